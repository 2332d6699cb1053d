"""`make ros-demo`: the real detector node on the bundled images, no ROS install needed.

Starts the installed ``detector_node`` (ROS 2 Jazzy from PyPI wheels, Fast DDS,
discovery limited to this machine) with the shipped config/detector.yaml, plays
the bundled HPatches photos to it as a camera would (sensor-data QoS, fixed
rate), listens to every output topic and prints per-topic rates and the
image → keypoints latency.  Run through tools/ros/run.sh (the Makefile does).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dds  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=30, help="frames to publish (the 6 photos, cycled)")
    ap.add_argument("--rate", type=float, default=4.0, help="camera rate in Hz")
    ap.add_argument("--backend", default="onnxruntime", help="node backend (the robot runtime is torch-free)")
    args = ap.parse_args(argv)

    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image

    from goodpoint_ros.msg import Keypoints, Matches, Status
    domain = dds.next_domain()
    workdir = dds.tmpdir("goodpoint-ros-demo-")
    print(f"detector_node: {dds.node_executable('detector_node')}  (ROS_DOMAIN_ID={domain}, "
          f"logs in {workdir})")
    node = dds.start_node({"backend": args.backend, "image_topic": "/camera/image_raw"}, domain, workdir)
    probe = dds.Probe(domain, "goodpoint_demo")
    topics = {"/goodpoint_detector/keypoints": Keypoints, "/goodpoint_detector/matches": Matches,
              "/goodpoint_detector/status": Status, "/diagnostics": DiagnosticArray}
    for topic, kind in topics.items():
        probe.listen(kind, topic)
    pub = probe.publisher(Image, "/camera/image_raw")          # sensor-data QoS, like a driver
    t0 = time.monotonic()
    try:
        if not probe.wait_for_node([pub], list(topics)[:3], node):
            print("the node did not come up:\n" + node.output()[-2000:], file=sys.stderr)
            return 1
        print(f"node up in {time.monotonic() - t0:.1f} s; publishing {args.frames} frames at "
              f"{args.rate:g} Hz on /camera/image_raw")
        sent = {}
        frames = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in dds.bundled_images(args.frames)]
        start = time.perf_counter()
        for i, img in enumerate(frames):
            due = start + i / args.rate
            probe.spin_until(lambda: time.perf_counter() >= due, 10.0)
            msg = dds.image_msg(img, "mono8", 1 + i, 0, frame_id="camera")
            sent[dds.stamp_of(msg)] = time.perf_counter()
            pub.publish(msg)
        span = time.perf_counter() - start + 1 / args.rate
        probe.spin_for(2.0)                                   # the last frames' outputs
    finally:
        probe.close()
        code = node.stop()

    kp = probe.inboxes["/goodpoint_detector/keypoints"]
    lat = [(t - sent[dds.stamp_of(m)]) * 1e3
           for m, t in zip(kp, probe.arrivals["/goodpoint_detector/keypoints"])]
    print(f"\n{'topic':34s} {'msgs':>5s} {'rate Hz':>8s}")
    for topic in topics:
        times = probe.arrivals[topic]
        rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
        print(f"{topic:34s} {len(times):5d} {rate:8.2f}")
    print(f"{'/camera/image_raw (published)':34s} {len(sent):5d} {len(sent) / span:8.2f}")
    if lat:
        med, p90 = dds.quantiles(lat)
        print(f"\nimage → keypoints latency: median {med:.1f} ms, p90 {p90:.1f} ms")
        print(f"keypoints per frame: median {np.median([len(m.x) for m in kp]):.0f}")
    status = probe.inboxes["/goodpoint_detector/status"]
    if status:
        s = status[-1]
        print(f"last status: backend {s.backend} {s.precision} {s.device}, network {s.network_ms:.1f} ms, "
              f"frames received {s.frames_received} / processed {s.frames_processed} / dropped "
              f"{s.frames_dropped} / skipped {s.frames_skipped}; matches {s.num_matches}, "
              f"inliers {s.num_inliers}")
    print(f"node stopped with Ctrl-C (SIGINT): exit code {code}")
    return 0 if code == 0 and kp else 1


if __name__ == "__main__":
    sys.exit(main())
