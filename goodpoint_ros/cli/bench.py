"""Benchmark the per-frame pipeline, stage by stage, beside OpenCV ORB and SIFT.

For every backend × precision × size: median / p90 latency of preprocess,
network, keypoints + descriptors (post-processing), matching to the previous
frame and the total, after warm-up; the ratio to a SuperPoint-style eager
fp32 PyTorch reference measured in the same run (figures move by machine and
load; ratios much less); the accuracy gate's verdict against that reference;
peak RSS; the CPU model and the flags that pick kernels (printed and in
``--json``).  ``--plot FILE`` draws latency vs input size per path, e.g.::

    goodpoint bench --sizes 320x240,640x480,960x720,1280x960 --frames 10 --plot latency.png

Frames are real images (bundled sample sequence), shifted a little each frame.
"""
from __future__ import annotations

from goodpoint_ros.backends import PRECISIONS, REGISTRY
from goodpoint_ros.cli.common import (
    bounded,
    check_outputs,
    check_plot_output,
    comma_list,
    parse_sizes,
    write_json,
)
from goodpoint_ros.core.config import GoodPointConfig
from goodpoint_ros.deploy.benchmark import DETECTIONS, format_table, plot_latency, run_benchmark

#: What ``--backends`` accepts beside ``--precision``'s PRECISIONS (a pair a backend cannot
#: run is reported as unavailable; a name no backend has is refused before measuring).
BACKENDS = (*REGISTRY, "auto", "inductor")


def add_arguments(p):
    p.add_argument("--backends", default="torch,onnxruntime",
                   help="comma list: torch,onnxruntime,openvino,tensorrt,auto, and inductor (PyTorch 2 "
                        "compiled fp32/bf16, PT2E int8; bench only, compiles first). The ratios' "
                        "reference, eager fp32 torch, always runs first")
    p.add_argument("--precision", default="fp32,bf16,int8", help="comma list: fp32,bf16,fp16,int8 "
                   "(a pair a backend cannot run is reported as unavailable)")
    p.add_argument("--sizes", default="320x240,640x480", help="comma list of WxH")
    p.add_argument("--frames", type=bounded(int, 1), default=50,
                   help="timed frames per run (default 50)")
    p.add_argument("--warmup", type=bounded(int, 0), default=5,
                   help="untimed frames before them (default 5)")
    p.add_argument("--weights", default=None)
    p.add_argument("--threads", type=bounded(int, 1), default=None,
                   help="CPU threads for the network")
    p.add_argument("--threshold", type=float, default=None,
                   help="θ_keypoint override (default: from the weights' metadata)")
    p.add_argument("--json", help="write the results as JSON")
    p.add_argument("--plot", help="write a plot of latency vs input size (PNG/SVG/PDF)")
    p.add_argument("--no-gate", action="store_true", help="skip the accuracy gate per path")
    p.add_argument("--no-opencv", action="store_true", help="skip the ORB / SIFT baselines")
    p.add_argument("--detection", default="network",
                   help="comma list: network (one pyramid level, frames as they are: figures per "
                        "network input size) and / or defaults (the weights' detection defaults, "
                        "their pyramid and doubled small frames, as goodpoint match and the node "
                        "run; with both, the cost of the defaults per path). Default: network")


def run(args) -> int:
    check_outputs([args.weights], [args.json, args.plot])
    check_plot_output(args.plot)
    if args.threshold is not None:      # before measuring: θ ≥ 1 leaves no keypoint to time
        GoodPointConfig(keypoint_threshold=args.threshold).validate()
    sizes = parse_sizes(args.sizes)
    detections = comma_list(args.detection, "--detection", DETECTIONS)
    result = run_benchmark(backends=comma_list(args.backends, "--backends", BACKENDS),
                           precisions=comma_list(args.precision, "--precision", PRECISIONS),
                           sizes=sizes, frames=args.frames, warmup=args.warmup,
                           weights=args.weights, threads=args.threads,
                           threshold=args.threshold, gate=not args.no_gate,
                           opencv=not args.no_opencv, detections=detections)
    print(format_table(result))
    if args.json:
        write_json(args.json, result)
    if args.plot:
        print(f"wrote {plot_latency(result, args.plot)}")
    return 0
