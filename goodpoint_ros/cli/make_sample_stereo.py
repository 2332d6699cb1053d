"""Render a rectified stereo sequence of the textured village (KITTI odometry layout).

  goodpoint make-sample-stereo OUT [--frames N] [--baseline B] [--size WxH] [--motion turns|cruise]

The village and trajectories of make-sample-bag, seen by an ideal rectified rig
(the right camera B metres along the left's x axis): image_0/ and image_1/ (grey
PNG), calib.txt (P0, P1 with Tx = -fx·B), times.txt and poses.txt (the left
camera, KITTI's convention), so `goodpoint eval vo OUT` runs stereo VO on it
with exact ground truth.  Tuning data for stereo: the real sequences are for
evaluation only.
"""
from __future__ import annotations

import sys
from pathlib import Path

from goodpoint_ros.cli.common import UserError, bounded, check_writable, parse_size
from goodpoint_ros.synthetic.stereo_sequence import StereoSequenceSpec, write_stereo_sequence


def add_arguments(p):
    d = StereoSequenceSpec()
    p.add_argument("out", help="sequence directory to create (must not exist)")
    p.add_argument("--frames", type=int, default=d.frames, help=f"stereo pairs (default {d.frames})")
    p.add_argument("--baseline", type=float, default=d.baseline,
                   help=f"stereo baseline in metres (default {d.baseline})")
    p.add_argument("--size", type=parse_size, default=d.size,
                   help=f"image size WxH (default {d.size[0]}x{d.size[1]}; 90° field of view)")
    p.add_argument("--lighting", choices=["day", "night"], default=d.lighting,
                   help="day: sun and sky; night: dark with a headlight (default day)")
    p.add_argument("--fps", type=float, default=d.fps, help=f"frame rate in Hz (default {d.fps:g})")
    p.add_argument("--speed", type=float, default=d.speed,
                   help=f"flight speed in m/s (default {d.speed:g})")
    p.add_argument("--seed", type=bounded(int, 0), default=d.seed, help="scene layout seed (default 0)")
    p.add_argument("--motion", choices=["cruise", "turns"], default=d.motion,
                   help="turns (default): speed changes and ±25° turns; cruise: steady flight")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    if Path(args.out).exists() or Path(args.out).is_symlink():
        raise UserError(f"{args.out} exists already (remove it or pick another name)")
    check_writable(args.out)       # before minutes of rendering
    spec = StereoSequenceSpec(frames=args.frames, size=args.size, baseline=args.baseline,
                              lighting=args.lighting, fps=args.fps, speed=args.speed,
                              seed=args.seed, motion=args.motion)
    try:
        spec.validate()
    except ValueError as exc:
        raise UserError(str(exc)) from None
    out = write_stereo_sequence(args.out, spec,
                                progress=not args.no_progress and sys.stderr.isatty())
    print(f"wrote {out} ({args.frames} stereo pairs, {args.size[0]}x{args.size[1]}, "
          f"baseline {args.baseline:g} m, {args.motion}, {args.lighting})")
    return 0
