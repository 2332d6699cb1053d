"""Evaluate GoodPoint beside ORB, SIFT and AKAZE with the paper's metrics.

  goodpoint eval homography DIR   HPatches sequences (<seq>/1.png .. 6.png + H_1_k),
                                  EVD (1/ 2/ h/) or the retina pair, at native size
                                  unless --resize
  goodpoint eval bag BAG          rosbag2 replay with depth + poses (or --no-depth)

Per pair: precision, repeatability and coverage, each the mean of a→b and b→a,
at ε = 3 and 5 px; tables as the paper's (harmonic mean of the split means on
HPatches, of the three means on bags).  --json writes everything, --report DIR
writes a Markdown table and plots.  Undefined values (nothing to count) are
null in the JSON.  See docs/evaluation.md.
"""
from __future__ import annotations

import argparse
import sys
import time
import uuid
from typing import Dict

import cv2

from goodpoint_ros import __version__
from goodpoint_ros.cli.common import (
    UserError,
    add_config_options,
    add_model_args,
    bounded,
    check_outputs,
    config_from_args,
    parse_size,
    write_json,
)
from goodpoint_ros.cli.eval_vo import add_vo_parser
from goodpoint_ros.core.config import AIRSIM_TOPICS, STILL_PAIR, field_info
from goodpoint_ros.core.pipeline import FeatureExtractor
from goodpoint_ros.core.weights import DEFAULT_WEIGHTS
from goodpoint_ros.evaluation.aggregate import aggregate, json_safe
from goodpoint_ros.evaluation.bags.evaluate import (
    BagOptions,
    GroundTruthCheck,
    Timing,
    evaluate_bag,
)
from goodpoint_ros.evaluation.bags.replay import BagStream
from goodpoint_ros.evaluation.homography import discover_pairs, evaluate_pairs
from goodpoint_ros.evaluation.methods import make_method, parse_methods
from goodpoint_ros.evaluation.report import check_report_folder, fmt, paper_table, slam_table, write_report

DEFAULT_METHODS = "goodpoint,orb,sift,akaze"


def _eps_list(text: str):
    try:
        vals = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected tolerances in pixels such as 3,5, got {text!r}")
    if not vals or any(v <= 0 for v in vals):
        raise argparse.ArgumentTypeError(f"tolerances must be positive pixels, got {text!r}")
    return vals


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by both modes: methods, thresholds, outputs, model."""
    g = p.add_argument_group("methods and thresholds")
    g.add_argument("--methods", default=DEFAULT_METHODS,
                   help=f"comma-separated subset of {DEFAULT_METHODS} (default: all)")
    k = field_info("max_keypoints")["default"]
    g.add_argument("--max-keypoints", type=bounded(int, 0), default=k,
                   help=f"each method keeps its strongest k keypoints, 0 = all (default {k})")
    # GoodPoint's θ_keypoint, NMS radius, border, θ_desc, ratio, pyramid: from GoodPointConfig
    add_config_options(g, ("keypoint_threshold", "nms_radius", "border", "descriptor_threshold",
                           "ratio_test", "pyramid_levels", "pyramid_factor", "upsample_below"))
    g.add_argument("--eps", type=_eps_list, default=(3.0, 5.0),
                   help="correctness tolerances in pixels; the first is the headline (default 3,5)")
    o = p.add_argument_group("output")
    o.add_argument("--json", help="write the full result (summary, splits, per pair, settings)")
    o.add_argument("--report", help="write report.md and PNG plots into this directory")
    o.add_argument("--pictures", type=bounded(int, 0), default=3,
                   help="match pictures in the report: this many pairs (default 3)")
    o.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_args(p, precision="fp32")   # reproducible figures: the reference model


def add_homography_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="a data set folder: HPatches sequence(s), EVD (1/ 2/ h/) or the "
                               "retina pair; searched a few levels deep")
    g = p.add_argument_group("homography sets")
    g.add_argument("--resize", type=parse_size, default=None,
                   help="evaluate at WxH (images resized, H updated); default: native resolution")
    g.add_argument("--coverage-radius", type=bounded(float, above=0), default=25.0,
                   help="coverage disc radius in pixels (default 25, paper §6.2)")
    g.add_argument("--ransac-threshold", type=bounded(float, above=0), default=STILL_PAIR.ransac_threshold,
                   help=f"USAC/MAGSAC inlier threshold for the estimated homography "
                        f"(default {STILL_PAIR.ransac_threshold:g})")
    g.add_argument("--max-pairs", type=bounded(int, 0), default=0, help="evaluate at most N pairs (0 = all)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="eval_mode", metavar="MODE")
    h = sub.add_parser("homography", help="homography sequences (HPatches, EVD, retina)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_homography_arguments(h)
    add_common_arguments(h)
    h.set_defaults(_eval_run=run_homography)
    add_vo_parser(sub)   # `eval vo` (issue 14): its own module
    # later definitions win on a clash so a duplicate option name can never break
    # `goodpoint --help`
    b = sub.add_parser("bag", help="rosbag2 replay with depth + poses, or --no-depth",
                       conflict_handler="resolve")
    add_common_arguments(b)
    add_bag_arguments(b)
    b.set_defaults(_eval_run=run_bag)


def run(args) -> int:
    fn = getattr(args, "_eval_run", None)
    if fn is None:
        raise UserError("choose what to evaluate: `goodpoint eval homography DIR` or "
                        "`goodpoint eval bag BAG` (see goodpoint eval -h)")
    # before the (long) evaluation: never an input clobbered, never a result lost to an
    # unwritable folder at the end
    inputs = [getattr(args, k, None) for k in ("dir", "bag", "bag_b", "path", "weights")]
    check_outputs(inputs, [getattr(args, "json", None)],
                  folders=[getattr(args, k, None) for k in ("report", "out")])
    if getattr(args, "report", None):
        check_report_folder(args.report)
    return fn(args)


# --------------------------------------------------------------------------- shared by both modes

def methods_from_args(args):
    """{name: Method} for ``--methods`` (the GoodPoint network is loaded only when asked)."""
    names = parse_methods(args.methods)
    out = {}
    for name in names:
        extractor, config = None, None
        if name == "goodpoint":
            kw = {"threads": args.threads} if getattr(args, "threads", None) else {}
            extractor = FeatureExtractor(args.backend, None, weights=args.weights,
                                         device=args.device, precision=args.precision, **kw)
            config = config_from_args(args).resolved(extractor.metadata)
        out[name] = make_method(name, args.max_keypoints, extractor=extractor, config=config)
    return out


def common_settings(args, methods) -> dict:
    """What every run echoes under ``settings``."""

    s = {"methods": list(methods), "max_keypoints": args.max_keypoints,
         "eps": list(args.eps), "method_settings": {n: m.settings() for n, m in methods.items()},
         "opencv": cv2.__version__, "goodpoint_ros": __version__}
    if "goodpoint" in methods:
        ex = methods["goodpoint"].extractor
        s["weights"] = str(args.weights or DEFAULT_WEIGHTS)
        s["weights_metadata"] = {k: ex.metadata.get(k) for k in ("detection", "training", "version")
                                 if k in ex.metadata}
    return s


def finish(result: dict, args, examples=None, title: str = "GoodPoint evaluation") -> int:
    """Write --json / --report and print the table; shared by both modes."""

    # One id in both outputs; the report folder is replaced whole first, the JSON after
    # it: a run killed between the two leaves a report and a JSON whose ids differ.
    result = dict(result, run_id=f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-"
                                 f"{uuid.uuid4().hex[:8]}")
    safe = json_safe(result)
    if args.report:
        write_report(safe, args.report, examples, title=title)
    if args.json:
        write_json(args.json, safe)
    eps = list(args.eps)
    lines = [title, ""] + paper_table(safe, eps) + [""] + slam_table(safe)
    skipped = result.get("skipped", 0)
    lines.append("")
    lines.append(f"{result.get('pairs', 0)} pairs" + (f", {skipped} skipped" if skipped else ""))
    if skipped:
        for reason in result.get("skipped_reasons", [])[:5]:
            lines.append(f"  skipped: {reason}")
    for warning in result.get("settings", {}).get("warnings", []):
        lines.append(f"  warning: {warning}")
    print("\n".join(lines))
    return 0


# --------------------------------------------------------------------------- homography mode

def run_homography(args) -> int:
    pairs, problems = discover_pairs(args.dir)
    if args.max_pairs:
        pairs = pairs[:args.max_pairs]
    t_start = time.perf_counter()
    methods = methods_from_args(args)
    timing = {"model_load": time.perf_counter() - t_start}
    per_pair, skipped, examples = evaluate_pairs(
        pairs, methods, eps_list=args.eps, coverage_radius=args.coverage_radius,
        resize=args.resize, ransac_threshold=args.ransac_threshold,
        progress=not args.no_progress and sys.stderr.isatty(),
        keep_matches=args.pictures if args.report else 0, timing=timing)
    reasons = problems + [f"{name}: {why}" for name, why in skipped]
    if not per_pair:
        raise UserError(f"{args.dir}: no pair could be evaluated ({reasons[0] if reasons else '?'})")
    names = list(methods)
    agg = aggregate(per_pair, names)
    datasets = {}
    for ds in dict.fromkeys(p["dataset"] for p in per_pair):
        sub = [p for p in per_pair if p["dataset"] == ds]
        datasets[ds] = {"pairs": len(sub), "methods": aggregate(sub, names)["methods"]}
    settings = common_settings(args, methods)
    settings.update({"mode": "homography", "source": str(args.dir),
                     "resize": list(args.resize) if args.resize else None,
                     "coverage_radius": args.coverage_radius,
                     "ransac_threshold": args.ransac_threshold, "max_pairs": args.max_pairs,
                     "homography_convention": "stored H used as-is (pixel centres at integers)"})
    timing["total"] = time.perf_counter() - t_start
    result = {"methods": agg["methods"], "splits": agg["splits"], "pairs": len(per_pair),
              "skipped": len(reasons), "skipped_reasons": reasons, "datasets": datasets,
              "per_pair": per_pair, "timing_s": timing, "settings": settings}
    code = finish(result, args, examples, title=f"goodpoint eval homography {args.dir}")
    print("time split (s): " + ", ".join(f"{k} {v:.2f}" for k, v in timing.items()))
    return code


# --------------------------------------------------------------------------- bag mode

def add_bag_arguments(p: argparse.ArgumentParser) -> None:
    """Bag-specific options of ``goodpoint eval bag`` (methods/model options: add_common_arguments)."""
    p.add_argument("bag", help="rosbag2 directory or file (.db3 / .mcap)")
    topics = AIRSIM_TOPICS
    g = p.add_argument_group("bag")
    g.add_argument("--bag-b", default=None,
                   help="second bag of the same trajectory (other lighting): frame i of BAG is "
                        "paired with frame i+shift of BAG_B")
    g.add_argument("--image-topic", default=topics.image, help=f"image topic ({topics.image})")
    g.add_argument("--depth-topic", default=topics.depth,
                   help=f"planar depth topic, 32FC1 metres or 16UC1 mm ({topics.depth})")
    g.add_argument("--camera-info-topic", default=topics.camera_info,
                   help=f"sensor_msgs/CameraInfo topic ({topics.camera_info})")
    g.add_argument("--pose-topic", default=topics.pose,
                   help=f"Odometry / PoseStamped / PoseWithCovarianceStamped / TransformStamped "
                        f"topic, or /tf ({topics.pose}); with --no-depth it is optional and "
                        "/tf is used when it is missing")
    g.add_argument("--extrinsic", default="auto", choices=["auto", "tf_static", "airsim", "optical"],
                   help="camera pose from the body pose: tf_static (body → image frame_id), airsim "
                        "(pure axis rotation p_body = (z, x, y)_optical), optical (pose topic is the "
                        "camera's optical pose); auto = tf_static when present, else airsim")
    g.add_argument("--shift", type=int, default=5, help="pair frame i with i+shift (default 5)")
    g.add_argument("--stride", type=int, default=1, help="use every k-th pair start (default 1)")
    g.add_argument("--max-pairs", type=bounded(int, 0), default=0, help="evaluate at most N pairs (0 = all)")
    g.add_argument("--eval-size", type=parse_size, default=(320, 240),
                   help="images are resized to WxH with K scaled (default 320x240)")
    g.add_argument("--roll", type=bounded(float, -90, 90), default=0.0,
                   help="roll the second image by this many degrees (paper: 5); warp updated")
    g.add_argument("--depth-tolerance", type=bounded(float, above=0), default=0.05,
                   help="visibility: relative depth agreement in b (default 0.05 = 5%%)")
    g.add_argument("--sync-tolerance", type=bounded(float, 0), default=0.02,
                   help="max |Δt| in seconds between image and depth stamps (default 0.02)")
    g.add_argument("--pose-tolerance", type=bounded(float, 0), default=0.1,
                   help="max gap in seconds for pose interpolation (default 0.1)")
    g.add_argument("--coverage-radius", type=bounded(float, above=0), default=20.0,
                   help="coverage disc radius in pixels (default 20, paper §6.1)")
    g.add_argument("--no-depth", action="store_true",
                   help="robot bag without depth: matches, essential inlier ratio, relative pose "
                        "error vs odometry when present, track length")
    g.add_argument("--no-gt-check", action="store_true",
                   help="skip the check that the ground truth agrees with SIFT matches (it catches "
                        "a wrong --extrinsic or pose topic)")



def _open(args, path, need_depth: bool):
    return BagStream(path, args.image_topic, args.camera_info_topic,
                     None if not need_depth else args.depth_topic,
                     args.pose_topic, args.extrinsic, args.eval_size, args.sync_tolerance,
                     args.pose_tolerance, require_pose=need_depth)


def run_bag(args) -> int:
    """Entry point of ``goodpoint eval bag``: options from :func:`add_bag_arguments` plus
    the common ones (methods, thresholds, outputs, model)."""
    t_start = time.perf_counter()
    timing = Timing()
    need_depth = not args.no_depth
    opts = BagOptions(shift=args.shift, stride=args.stride, max_pairs=args.max_pairs,
                      roll=args.roll, depth_tolerance=args.depth_tolerance,
                      coverage_radius=args.coverage_radius, eps=tuple(args.eps),
                      no_depth=args.no_depth,
                      keep_examples=args.pictures if args.report else 0,
                      progress=not args.no_progress and sys.stderr.isatty()).validate()
    t0 = time.perf_counter()
    stream_a = _open(args, args.bag, need_depth)
    try:
        stream_b = _open(args, args.bag_b, need_depth) if args.bag_b else None
    except BaseException:
        stream_a.close()
        raise
    timing.decode += time.perf_counter() - t0
    try:
        gt_check = GroundTruthCheck(opts.roll, opts.depth_tolerance, stream_a.extrinsic,
                                    spacing=opts.shift) \
            if need_depth and not args.no_gt_check else None
        methods = methods_from_args(args)
        per_pair, skipped, examples, tracks = evaluate_bag(stream_a, stream_b, methods, opts,
                                                           timing, gt_check)
    finally:
        stream_a.close()
        if stream_b is not None:
            stream_b.close()
    if not per_pair:
        reasons = sorted({r for _, r in skipped})
        raise ValueError(f"no pair could be evaluated: {stream_a.frames_read} usable frames"
                         + (f" ({dict(stream_a.incomplete)} without ground truth)"
                            if stream_a.incomplete else "")
                         + (f", {len(skipped)} pairs skipped: {'; '.join(reasons)[:300]}"
                            if skipped else f" for --shift {opts.shift}"))
    names = list(methods)
    result = aggregate(per_pair, names, by_split=False)
    result["splits"] = {}
    for name, summary in tracks.items():
        result["methods"][name]["track_length"] = summary
    timing.total = time.perf_counter() - t_start
    n_frames = len({p["frame_a"] for p in per_pair} | {p["frame_b"] for p in per_pair})
    settings = common_settings(args, methods)
    settings.update(_settings(args, opts, stream_a, stream_b,
                              gt_check.agreement if gt_check else None))
    result.update({
        "pairs": len(per_pair), "per_pair": per_pair,
        "skipped": len(skipped), "skipped_reasons": [f"{n}: {r}" for n, r in skipped],
        "timing_s": timing.to_dict(),
        "frames_per_second": n_frames / timing.total if timing.total > 0 else None,
        "settings": settings})
    title = f"goodpoint eval bag {args.bag}" + (" --no-depth" if args.no_depth else "")
    code = finish(result, args, examples, title=title)
    if args.no_depth:
        _print_no_depth(result)
    t = result["timing_s"]
    print(f"{result['frames_per_second'] or 0:.1f} frames/s; time split (s): decode {t['decode']:.2f}, "
          f"ground truth {t['ground_truth']:.2f}, extraction {t['extraction']:.2f}, matching "
          f"{t['matching']:.2f}, relative pose {t['pose']:.2f}, metrics {t['metrics']:.2f}, "
          + (f"tracks {t['tracks']:.2f}, " if args.no_depth else "")
          + f"other {t['other']:.2f}, total {t['total']:.2f}")
    return code


def _settings(args, opts, ra, rb, agreement) -> Dict:
    """What the bag run used (ra/rb: the streams, rb None for one bag)."""
    return {"mode": "bag-no-depth" if opts.no_depth else "bag", "bag": str(args.bag),
            "bag_b": str(args.bag_b) if args.bag_b else None, "topics": ra.topics,
            "extrinsic": ra.extrinsic, "shift": opts.shift, "stride": opts.stride,
            "max_pairs": opts.max_pairs,
            "eval_size": list(args.eval_size) if args.eval_size else None,
            "native_size": list(ra.native_size) if ra.native_size else None,
            "roll_deg": opts.roll, "depth_tolerance": opts.depth_tolerance,
            "sync_tolerance": args.sync_tolerance, "pose_tolerance": args.pose_tolerance,
            "coverage_radius": opts.coverage_radius,
            "frames": ra.frames_read, "frames_b": rb.frames_read if rb is not None else None,
            "frames_without_ground_truth": dict(ra.incomplete),
            "frames_without_ground_truth_b": dict(rb.incomplete) if rb is not None else None,
            "warnings": ra.warnings + (rb.warnings if rb is not None else []),
            "gt_check_agreement": agreement}


def _print_no_depth(result: Dict) -> None:
    print(f"\n{'method':10s} {'keypoints':>9s} {'matches':>8s} {'inlier ratio':>12s} "
          f"{'pose AUC@5/10/20':>17s} {'track length':>12s}")
    for name, s in result["methods"].items():
        auc = s.get("pose_auc", {})
        print(f"{name:10s} {fmt(s.get('keypoints'), 0):>9s} {fmt(s.get('matches'), 0):>8s} "
              f"{fmt(s.get('inlier_ratio')):>12s} "
              f"{'/'.join(fmt(auc.get(k)) for k in ('5', '10', '20')):>17s} "
              f"{fmt(s.get('track_length', {}).get('mean'), 1):>12s}")
