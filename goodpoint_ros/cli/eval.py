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

from goodpoint_ros.cli.common import UserError, add_model_args, parse_size, write_json

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
    g.add_argument("--max-keypoints", type=int, default=1000,
                   help="each method keeps its strongest k keypoints, 0 = all (default 1000)")
    g.add_argument("--threshold", type=float, default=None,
                   help="GoodPoint θ_keypoint (default: the weights' metadata)")
    g.add_argument("--nms", type=int, default=None,
                   help="GoodPoint NMS radius (default: the weights' metadata, else 8)")
    g.add_argument("--border", type=int, default=4, help="GoodPoint border in pixels (default 4)")
    g.add_argument("--desc-threshold", type=float, default=0.8,
                   help="GoodPoint θ_desc, L2 between unit descriptors (default 0.8)")
    g.add_argument("--ratio", type=float, default=None,
                   help="optional Lowe ratio for GoodPoint's matcher (default off, as the paper)")
    g.add_argument("--eps", type=_eps_list, default=(3.0, 5.0),
                   help="correctness tolerances in pixels; the first is the headline (default 3,5)")
    o = p.add_argument_group("output")
    o.add_argument("--json", help="write the full result (summary, splits, per pair, settings)")
    o.add_argument("--report", help="write report.md and PNG plots into this directory")
    o.add_argument("--pictures", type=int, default=3,
                   help="match pictures in the report: this many pairs (default 3)")
    o.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_args(p)


def add_homography_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="a data set folder: HPatches sequence(s), EVD (1/ 2/ h/) or the "
                               "retina pair; searched a few levels deep")
    g = p.add_argument_group("homography sets")
    g.add_argument("--resize", type=parse_size, default=None,
                   help="evaluate at WxH (images resized, H updated); default: native resolution")
    g.add_argument("--coverage-radius", type=float, default=25.0,
                   help="coverage disc radius in pixels (default 25, paper §6.2)")
    g.add_argument("--ransac-threshold", type=float, default=3.0,
                   help="USAC/MAGSAC inlier threshold for the estimated homography (default 3)")
    g.add_argument("--max-pairs", type=int, default=0, help="evaluate at most N pairs (0 = all)")


def _bag_unavailable(reason: str):
    def run(args) -> int:
        raise UserError(f"eval bag is not available in this installation ({reason})")
    return run


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="eval_mode", metavar="MODE")
    h = sub.add_parser("homography", help="homography sequences (HPatches, EVD, retina)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_homography_arguments(h)
    add_common_arguments(h)
    h.set_defaults(_eval_run=run_homography)
    # B's module defines the bag options; later definitions win on a clash so a
    # duplicate option name can never break `goodpoint --help`.
    b = sub.add_parser("bag", help="rosbag2 replay with depth + poses, or --no-depth",
                       conflict_handler="resolve")
    try:
        from goodpoint_ros.evaluation.bags.evaluate import add_bag_arguments, run_bag
    except ImportError as exc:
        b.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        b.set_defaults(_eval_run=_bag_unavailable(str(exc)))
        return
    add_common_arguments(b)
    add_bag_arguments(b)
    b.set_defaults(_eval_run=run_bag)


def run(args) -> int:
    fn = getattr(args, "_eval_run", None)
    if fn is None:
        raise UserError("choose what to evaluate: `goodpoint eval homography DIR` or "
                        "`goodpoint eval bag BAG` (see goodpoint eval -h)")
    return fn(args)


# --------------------------------------------------------------------------- shared by both modes

def config_from_args(args):
    """GoodPoint's config from the eval options (None fields resolve from the weights)."""
    from goodpoint_ros.core.config import GoodPointConfig
    kw = dict(keypoint_threshold=args.threshold, border=args.border,
              max_keypoints=args.max_keypoints or None, descriptor_threshold=args.desc_threshold,
              ratio_test=args.ratio)
    if args.nms is not None:
        kw["nms_radius"] = args.nms
    return GoodPointConfig(**kw)


def methods_from_args(args):
    """{name: Method} for ``--methods`` (the GoodPoint network is loaded only when asked)."""
    from goodpoint_ros.evaluation.methods import make_method, parse_methods
    names = parse_methods(args.methods)
    if args.max_keypoints < 0:
        raise UserError(f"--max-keypoints must be >= 0, got {args.max_keypoints}")
    out = {}
    for name in names:
        extractor, config = None, None
        if name == "goodpoint":
            from goodpoint_ros.core.pipeline import FeatureExtractor
            kw = {"threads": args.threads} if getattr(args, "threads", None) else {}
            extractor = FeatureExtractor(args.backend, None, weights=args.weights,
                                         device=args.device, precision=args.precision, **kw)
            config = config_from_args(args)
            if args.nms is None:     # the NMS radius recorded with the weights, as θ_keypoint
                det = extractor.metadata.get("detection", {})
                if "nms_radius" in det:
                    config.nms_radius = int(det["nms_radius"])
            config = config.resolved(extractor.metadata)
        out[name] = make_method(name, args.max_keypoints, extractor=extractor, config=config)
    return out


def common_settings(args, methods) -> dict:
    """What every run echoes under ``settings``."""
    import cv2

    from goodpoint_ros import __version__
    s = {"methods": list(methods), "max_keypoints": args.max_keypoints,
         "eps": list(args.eps), "method_settings": {n: m.settings() for n, m in methods.items()},
         "opencv": cv2.__version__, "goodpoint_ros": __version__}
    if "goodpoint" in methods:
        from goodpoint_ros.core.weights import DEFAULT_WEIGHTS
        ex = methods["goodpoint"].extractor
        s["weights"] = str(args.weights or DEFAULT_WEIGHTS)
        s["weights_metadata"] = {k: ex.metadata.get(k) for k in ("detection", "training", "version")
                                 if k in ex.metadata}
    return s


def finish(result: dict, args, examples=None, title: str = "GoodPoint evaluation") -> int:
    """Write --json / --report and print the table; shared by both modes."""
    from goodpoint_ros.evaluation.aggregate import json_safe
    from goodpoint_ros.evaluation.report import paper_table, slam_table, write_report
    safe = json_safe(result)
    if args.json:
        write_json(args.json, safe)
    if args.report:
        write_report(safe, args.report, examples, title=title)
    eps = list(args.eps)
    lines = [title, ""] + paper_table(safe, eps) + [""] + slam_table(safe)
    skipped = result.get("skipped", 0)
    lines.append("")
    lines.append(f"{result.get('pairs', 0)} pairs" + (f", {skipped} skipped" if skipped else ""))
    if skipped:
        for reason in result.get("skipped_reasons", [])[:5]:
            lines.append(f"  skipped: {reason}")
    print("\n".join(lines))
    return 0


# --------------------------------------------------------------------------- homography mode

def run_homography(args) -> int:
    from goodpoint_ros.evaluation.aggregate import aggregate
    from goodpoint_ros.evaluation.homography import discover_pairs, evaluate_pairs
    if args.coverage_radius <= 0:
        raise UserError(f"--coverage-radius must be positive, got {args.coverage_radius}")
    pairs, problems = discover_pairs(args.dir)
    if args.max_pairs and args.max_pairs > 0:
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
