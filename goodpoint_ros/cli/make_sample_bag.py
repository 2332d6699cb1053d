"""Render a rosbag2 of a textured village with exact ground truth.

  goodpoint make-sample-bag OUT [--frames N] [--lighting day|night] [--storage mcap|sqlite3]

A camera flies down a street of box houses textured with photos bundled in
data/textures/; each frame is written as the AirSim ROS 2 wrapper would:
image (bgr8), planar depth (32FC1, metres, inf = sky), camera_info, the
body's odometry in NED (50 Hz) and /tf_static body → camera.  The same
--seed gives the same trajectory under both lightings, for
`goodpoint eval bag DAY --bag-b NIGHT`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from goodpoint_ros.cli.common import UserError, bounded, check_writable, parse_size
from goodpoint_ros.synthetic.sample_bag import SampleBagSpec, write_sample_bag


def add_arguments(p):
    p.add_argument("out", help="bag directory to create (must not exist)")
    p.add_argument("--frames", type=int, default=30, help="number of camera frames (default 30)")
    p.add_argument("--lighting", choices=["day", "night"], default="day",
                   help="day: sun and sky; night: dark with a headlight (default day)")
    p.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap",
                   help="rosbag2 storage plugin (default mcap)")
    p.add_argument("--size", type=parse_size, default=(320, 240),
                   help="image size WxH (default 320x240)")
    p.add_argument("--fps", type=float, default=10.0, help="frame rate in Hz (default 10)")
    p.add_argument("--speed", type=float, default=1.5, help="flight speed in m/s (default 1.5)")
    p.add_argument("--seed", type=bounded(int, 0), default=0, help="scene layout seed (default 0)")
    p.add_argument("--motion", choices=["cruise", "turns"], default="cruise",
                   help="cruise: steady flight; turns: speed changes and ±25° turns (for VO)")
    p.add_argument("--distortion", default="",
                   help="plumb_bob k1,k2,p1,p2,k3: write raw frames as a lens with this "
                        "distortion records them, with that d in camera_info (e.g. "
                        "--distortion=-0.3,0.08,0,0,0; default: an ideal pinhole camera)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    if args.frames < 2:
        raise UserError(f"--frames must be at least 2, got {args.frames}")
    if Path(args.out).exists() or Path(args.out).is_symlink():   # a dangling link too
        raise UserError(f"{args.out} exists already; rosbag2 writers never overwrite "
                        "(remove it or pick another name)")
    check_writable(args.out)       # before minutes of rendering
    if args.fps <= 0 or args.speed < 0:
        raise UserError("--fps must be positive and --speed non-negative")
    try:
        distortion = tuple(float(v) for v in args.distortion.split(",")) if args.distortion else ()
    except ValueError:
        distortion = (float("nan"),)
    if len(distortion) > 5 or not all(np.isfinite(distortion)):
        raise UserError(f"--distortion takes up to 5 numbers k1,k2,p1,p2,k3, got {args.distortion!r}")
    spec = SampleBagSpec(frames=args.frames, size=args.size, lighting=args.lighting,
                         storage=args.storage, fps=args.fps, speed=args.speed, seed=args.seed,
                         motion=args.motion, distortion=distortion)
    out = write_sample_bag(args.out, spec,
                           progress=not args.no_progress and sys.stderr.isatty())
    print(f"wrote {out} ({args.frames} frames, {args.size[0]}x{args.size[1]}, {args.lighting}, "
          f"{args.storage})")
    return 0
