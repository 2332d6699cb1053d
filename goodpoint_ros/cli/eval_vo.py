"""`goodpoint eval vo PATH`: visual odometry on real sequences, GoodPoint against ORB/SIFT/AKAZE.

  goodpoint eval vo PATH [--mode stereo|rgbd|mono] [--methods goodpoint,orb,sift,akaze]
                         --out DIR [--json FILE] [--scale 0.5] [--frames N]

PATH is a KITTI odometry sequence (image_0/, image_1/, calib.txt, times.txt,
poses.txt), EuRoC ASL (mav0/cam0|cam1 + sensor.yaml, rectified here), TUM
RGB-D (rgb.txt, depth.txt, groundtruth.txt) or a rosbag2 with image + depth
+ pose topics (goodpoint make-sample-bag).  Every method runs through the same
back end (goodpoint_ros.odometry).  Writes DIR/trajectory_<method>.tum
(estimated camera poses from the first frame, input stamps), DIR/report.md
with a top view and an error-over-time plot, and --json the metrics per
method: ATE RMSE after Umeyama (SE(3); Sim(3) in mono), RPE per frame and
per metre, the KITTI segment metric when the path is ≥ 100 m, end-point
drift, lost-track count and the per-frame time split.  See docs/odometry.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from goodpoint_ros.cli.common import UserError, add_model_args, bounded, write_json
from goodpoint_ros.core.pipeline import FeatureExtractor
from goodpoint_ros.evaluation.aggregate import json_safe
from goodpoint_ros.evaluation.methods import parse_methods
from goodpoint_ros.evaluation.vo.datasets import DatasetError, load_sequence
from goodpoint_ros.evaluation.vo.metrics import write_tum
from goodpoint_ros.evaluation.vo.report import table, write_report
from goodpoint_ros.evaluation.vo.run import TIMING_WARMUP, gt_from_first, method_source, run_sequence
from goodpoint_ros.odometry.camera import CalibrationError
from goodpoint_ros.odometry.config import (
    PNP_THRESHOLD_BY_MODE,
    VO_PYRAMID_LEVELS,
    VOConfig,
    per_mode,
)
from goodpoint_ros.odometry.features import vo_goodpoint_config

DEFAULT_METHODS = "goodpoint,orb,sift,akaze"


def add_vo_parser(sub) -> None:
    """Register ``vo`` under ``goodpoint eval``."""
    p = sub.add_parser("vo", help="visual odometry on KITTI / EuRoC / TUM RGB-D / rosbag2 "
                                  "(ATE, RPE, drift)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(_eval_run=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="sequence folder or bag (layout detected)")
    p.add_argument("--mode", choices=["stereo", "rgbd", "mono"], default=None,
                   help="default: stereo for KITTI/EuRoC, rgbd for TUM and bags")
    p.add_argument("--methods", default=DEFAULT_METHODS,
                   help=f"comma-separated subset of {DEFAULT_METHODS} (default: all)")
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument("--json", help="write the metrics per method to this file")
    p.add_argument("--max-keypoints", type=bounded(int, 0), default=2000,
                   help="each method keeps its strongest k per image (default 2000)")
    p.add_argument("--scale", type=bounded(float, 0.05, 4), default=1.0,
                   help="resize images by this factor, calibration scaled (default 1 = native)")
    p.add_argument("--frames", type=bounded(int, 0), default=0, help="use the first N frames (0 = all)")
    p.add_argument("--solver", choices=["gtsam", "scipy"], default="gtsam",
                   help="sliding-window BA solver (default gtsam)")
    p.add_argument("--stereo-matching", choices=["descriptor", "patch"], default="descriptor",
                   help="descriptor: detect in both images and match in the row band (default); "
                        "patch: the network on the left image only, right positions by an NCC "
                        "row search (half the network time)")
    p.add_argument("--threshold", type=float, default=None,
                   help="GoodPoint θ_keypoint (default: the weights' metadata)")
    p.add_argument("--nms", type=int, default=None,
                   help="GoodPoint NMS radius (default: the weights' metadata, else 8)")
    p.add_argument("--pyramid-levels", type=int, default=VO_PYRAMID_LEVELS,
                   help=f"GoodPoint image pyramid levels (default {VO_PYRAMID_LEVELS}: the VO's, "
                        "whatever the weights recommend for still pairs)")
    p.add_argument("--network-scale", type=bounded(float, 0.25, 2), default=None,
                   help="GoodPoint sees each frame resized by this factor (2: doubled, as "
                        "SIFT's first octave — more and finer keypoints from small images, 4x "
                        "the network time; default: the weights' rule, frames under their "
                        "upsample_below (480 px) doubled, others as they are)")
    p.add_argument("--pnp-threshold", type=bounded(float, above=0), default=None,
                   help="USAC / outlier reprojection threshold in pixels (default: the "
                        f"mode's, {per_mode(PNP_THRESHOLD_BY_MODE)})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    b = p.add_argument_group("rosbag2 input")
    b.add_argument("--image-topic", default=None)
    b.add_argument("--camera-info-topic", default=None)
    b.add_argument("--depth-topic", default=None)
    b.add_argument("--pose-topic", default=None)
    add_model_args(p, precision="fp32")   # reproducible figures: the reference model
    # The shipped ONNX model on ONNX Runtime is the reference runtime (docs/deployment.md);
    # `auto` would time probes first.
    p.set_defaults(backend="onnxruntime")


def _extractor(args):
    kw = {"threads": args.threads} if getattr(args, "threads", None) else {}
    ex = FeatureExtractor(args.backend, None, weights=args.weights, device=args.device,
                          precision=args.precision, scale=args.network_scale, **kw)
    # unset θ_keypoint / NMS radius resolve from the weights (set_config → resolved)
    ex.set_config(vo_goodpoint_config(keypoint_threshold=args.threshold, nms_radius=args.nms,
                                      max_keypoints=args.max_keypoints or None,
                                      pyramid_levels=args.pyramid_levels))
    return ex


def run(args) -> int:
    names = parse_methods(args.methods)
    bag_kw = {k: getattr(args, k) for k in ("image_topic", "camera_info_topic", "depth_topic",
                                            "pose_topic")}
    bag_kw["max_frames"] = args.frames
    try:
        seq = load_sequence(args.path, scale=args.scale, **bag_kw)
    except (DatasetError, CalibrationError) as exc:
        raise UserError(str(exc)) from None
    mode = args.mode or seq.modes[0]
    if mode not in seq.modes:
        raise UserError(f"{args.path} ({seq.layout}) supports --mode {', '.join(seq.modes)}, "
                        f"not {mode}")
    config = VOConfig(mode=mode, solver=args.solver, stereo_matching=args.stereo_matching,
                      pnp_threshold=args.pnp_threshold)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    metrics, runs, stamps, timing = {}, {}, {}, {}
    settings_methods = {}
    for name in names:
        t0 = time.perf_counter()
        source = method_source(name, args.max_keypoints,
                               extractor=_extractor(args) if name == "goodpoint" else None)
        if name == "goodpoint":
            ex = source.detect_fn
            settings_methods[name] = {**ex.config.to_dict(), "backend": type(ex.backend).__name__,
                                      "network_scale": ex.scale,
                                      "frame_scale": ex.frame_scale(seq.size)}
        else:
            settings_methods[name] = {"max_keypoints": args.max_keypoints}
        r = run_sequence(seq, source, config, limit=args.frames,
                         progress=not args.no_progress and sys.stderr.isatty())
        posed = r.posed          # frames before the first map have no pose: no line
        write_tum(out / f"trajectory_{name}.tum", r.stamps[posed], r.poses[posed],
                  f"goodpoint eval vo {name} {mode}: T_cam0_cam (optical), t tx ty tz qx qy qz qw")
        metrics[name] = r.metrics()
        idx = r.scored()
        runs[name] = (r.poses[idx], idx)
        stamps[name] = r.stamps[idx]
        timing[name] = time.perf_counter() - t0
    gt = None
    if sum(g is not None for g in seq.gt[:len(r.stamps)]) >= 2:
        gt = gt_from_first(seq.gt[:len(r.stamps)])
    result = {"sequence": seq.name, "layout": seq.layout, "frames": int(len(r.stamps)),
              "methods": metrics, "notes": seq.notes,
              "timing_s": {**timing, "total": time.perf_counter() - t_start},
              "settings": {"mode": mode, "size": list(seq.size), "scale": args.scale,
                           "timing": f"means per frame, the first {TIMING_WARMUP} left out "
                                     "(start-up); time_ms_median likewise",
                           "vo": {**config.to_dict(),
                                  "reprojection_threshold": config.reprojection_threshold,
                                  "keyframe_gap": config.keyframe_gap,
                                  "anchor_keyframes": config.anchor_count},
                           "methods": settings_methods,
                           "source": str(args.path)}}
    safe = json_safe(result)
    write_report(safe, out, runs, gt, stamps)
    if args.json:
        slim = json_safe(result)
        for m in slim["methods"].values():       # per-frame lists stay in the report's plots
            if m:
                m["ate"].pop("errors", None)
                m["rpe"].pop("trans_errors", None)
        write_json(args.json, slim)
    print(f"goodpoint eval vo {seq.name} ({seq.layout}, {mode}, {len(r.stamps)} frames, "
          f"{seq.size[0]}x{seq.size[1]})")
    print("\n".join(table(safe)))
    print(f"wrote {out / 'report.md'}")
    return 0
