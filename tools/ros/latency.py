"""`make ros-bench`: image published → keypoints received over DDS, beside the pipeline's
own time on the same frames (docs/ros.md).  A benchmark, not a test: it prints and
writes figures, it asserts nothing about speed.

One frame at a time (the next is published when the previous one's keypoints
arrived), so no frame waits in the node's slot and the figure is pure latency.
For each frame, in this order: the ROS-free pipeline in this process
(``FeatureExtractor`` with the node's backend, threads and settings) times the
frame; then it is published to the real ``detector_node`` and timed until its
``Keypoints`` arrive.  Interleaving keeps both under the same machine load.
ROS share = end-to-end − the pipeline's time on the same frame.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dds  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="network threads, node and in-process alike")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)

    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from goodpoint_ros.backends.onnxruntime_backend import OnnxRuntimeBackend
    from goodpoint_ros.core.pipeline import FeatureExtractor
    from goodpoint_ros.msg import Keypoints, Status
    from goodpoint_ros.ros.params import config_from_params, load_yaml

    params = {"backend": "onnxruntime", "precision": "fp32", "threads": args.threads,
              "image_topic": "/camera/image_raw", "qos_reliability": "reliable", "qos_depth": 5,
              "debug_image": False}
    values = dict(load_yaml(dds.ROOT / "config" / "detector.yaml"), **params)
    extractor = FeatureExtractor(OnnxRuntimeBackend(device="cpu", threads=args.threads),
                                 config=config_from_params(values))
    domain = dds.next_domain()
    node = dds.start_node(params, domain, dds.tmpdir("goodpoint-ros-bench-"))
    probe = dds.Probe(domain, "goodpoint_bench")
    pub = probe.publisher(Image, "/camera/image_raw",
                          QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
    kp = probe.listen(Keypoints, "/goodpoint_detector/keypoints")
    status = probe.listen(Status, "/goodpoint_detector/status")
    rows = []
    try:
        if not probe.wait_for_node([pub], ["/goodpoint_detector/keypoints"], node):
            raise SystemExit("the node did not come up:\n" + node.output()[-2000:])
        frames = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)
                  for f in dds.bundled_images(args.frames + args.warmup)]
        for i, img in enumerate(frames):
            t = time.perf_counter()
            feats = extractor(img)
            pipeline_ms = (time.perf_counter() - t) * 1e3
            msg = dds.image_msg(img, "mono8", 1 + i)
            sent = time.perf_counter()
            pub.publish(msg)
            if not probe.spin_until(lambda: len(kp) == i + 1 and len(status) == i + 1, 60.0):
                raise SystemExit("no keypoints:\n" + node.output()[-2000:])
            arrived = probe.arrivals["/goodpoint_detector/keypoints"][i]
            st = status[i]
            if i >= args.warmup:
                rows.append({"e2e_ms": (arrived - sent) * 1e3, "pipeline_ms": pipeline_ms,
                             "node_callback_ms": st.callback_ms,
                             "node_network_ms": st.network_ms,
                             "keypoints": len(kp[i].x), "keypoints_in_process": len(feats)})
    finally:
        probe.close()
        code = node.stop()

    def stat(key):
        med, p90 = dds.quantiles([r[key] for r in rows])
        return {"median": round(med, 2), "p90": round(p90, 2)}

    share = [r["e2e_ms"] - r["pipeline_ms"] for r in rows]
    over = [r["e2e_ms"] - r["node_callback_ms"] for r in rows]
    result = {
        "frames": len(rows), "image": f"{frames[0].shape[1]}x{frames[0].shape[0]} mono8",
        "backend": "onnxruntime fp32 cpu", "threads": args.threads,
        "rmw": os.environ.get("RMW_IMPLEMENTATION", "?"),
        "load_average_1min": os.getloadavg()[0], "cpus": os.cpu_count(),
        "e2e_ms": stat("e2e_ms"), "pipeline_ms": stat("pipeline_ms"),
        "node_callback_ms": stat("node_callback_ms"),
        "ros_share_ms": dict(zip(("median", "p90"), (round(v, 2) for v in dds.quantiles(share)))),
        "transport_ms": dict(zip(("median", "p90"), (round(v, 2) for v in dds.quantiles(over)))),
        "ratio_e2e_over_pipeline_median": round(float(np.median([r["e2e_ms"] / r["pipeline_ms"]
                                                                  for r in rows])), 3),
        "same_keypoint_count": all(r["keypoints"] == r["keypoints_in_process"] for r in rows),
        "node_exit_code": code,
    }
    print(f"{len(rows)} frames {result['image']}, {result['backend']}, {args.threads} thread(s), "
          f"{result['rmw']}, load {result['load_average_1min']:.1f} on {result['cpus']} CPUs")
    for key, label in (("e2e_ms", "image published → keypoints received"),
                       ("pipeline_ms", "pipeline in-process, same frames"),
                       ("node_callback_ms", "node: callback → status (decode+net+match+publish)"),
                       ("ros_share_ms", "ROS share (e2e − pipeline)"),
                       ("transport_ms", "DDS + executors (e2e − node callback→status)")):
        print(f"  {label:52s} median {result[key]['median']:8.1f} ms   p90 {result[key]['p90']:8.1f} ms")
    print(f"  e2e / pipeline (median of per-frame ratios): {result['ratio_e2e_over_pipeline_median']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(args.json)                       # atomic: never a half-written file
        print(f"wrote {args.json}")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
