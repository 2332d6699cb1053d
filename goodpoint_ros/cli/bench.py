"""Benchmark the per-frame pipeline, stage by stage, beside OpenCV ORB and SIFT.

For every backend × precision × size: median / p90 / p99 latency of
preprocess, network, keypoints + descriptors (post-processing), matching to
the previous frame and the total, after warm-up; the network's FLOPs and the
GFLOP/s achieved; peak RSS; and, for reduced precision, agreement with fp32
(repeatability of keypoints within 1 px, mean descriptor cosine).  Frames are
real images (bundled sample sequence), shifted a little each frame.
"""
from __future__ import annotations

from goodpoint_ros.cli.common import parse_size, write_json


def add_arguments(p):
    p.add_argument("--backends", default="torch,onnxruntime",
                   help="comma list: torch,onnxruntime,tensorrt (torch fp32 is the ratios' baseline)")
    p.add_argument("--precision", default="fp32", help="comma list: fp32,bf16,fp16,int8 (a pair "
                   "a backend cannot run is reported as unavailable)")
    p.add_argument("--sizes", default="320x240,640x480", help="comma list of WxH")
    p.add_argument("--frames", type=int, default=50, help="timed frames per run (default 50)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--weights", default=None)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the network")
    p.add_argument("--threshold", type=float, default=None,
                   help="θ_keypoint override (default: from the weights' metadata)")
    p.add_argument("--json", help="write the results as JSON")


def run(args) -> int:
    from goodpoint_ros.deploy.benchmark import format_table, run_benchmark
    sizes = [parse_size(s) for s in args.sizes.split(",") if s]
    result = run_benchmark(backends=[b for b in args.backends.split(",") if b],
                           precisions=[p for p in args.precision.split(",") if p],
                           sizes=sizes, frames=args.frames, warmup=args.warmup,
                           weights=args.weights, threads=args.threads,
                           threshold=args.threshold)
    print(format_table(result))
    if args.json:
        write_json(args.json, result)
    return 0
