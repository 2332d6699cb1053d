"""End to end over real DDS: the installed detector_node in its own process, a
probe node here (tools/ros/dds.py).  Run by the ROS tier only (`make test-ros`:
real rclpy and Fast DDS from PyPI wheels, the colcon-built package).

Every node runs on a ROS domain of its own with discovery limited to this host;
the tier runs inside a private network namespace where the machine allows it.
"""
import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

if os.environ.get("GOODPOINT_ROS_TIER") != "1":
    pytest.skip("real DDS: run by the ROS tier (make test-ros)", allow_module_level=True)

import cv2  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools" / "ros"))
import dds  # noqa: E402

N_FRAMES = 20            # ≥ 20 real frames: the 6 bundled photos, cycled
BASE = {                 # overrides of config/detector.yaml, as a user's params file would
    "backend": "onnxruntime", "precision": "fp32", "threads": 1,
    # the network sees 192x256 (keypoints mapped back to 384x512): 4x less CPU on the
    # tier's 2 shared cores; the ROS path is the same at any size
    "resize_width": 192, "resize_height": 256,
    "image_topic": "/cam/image",
    # reliable in, so every published frame is received and the counts are exact
    "qos_reliability": "reliable", "qos_depth": 50,
    "diagnostics_period": 0.2,
}
KP, MATCHES, STATUS = "/{}/keypoints", "/{}/matches", "/{}/status"


@pytest.fixture
def session(tmp_path):
    """(domain, probe, start(params, name) → NodeProcess); every node is stopped with
    SIGINT at the end and must exit 0 without a traceback."""
    domain = dds.next_domain()
    probe = dds.Probe(domain)
    nodes = []

    def start(params, name=dds.NODE):
        node = dds.start_node(dict(BASE, **params), domain, tmp_path / name, name)
        nodes.append(node)
        return node

    yield domain, probe, start
    probe.close()
    for node in nodes:
        code = node.stop()
        out = node.output()
        assert code == 0, out[-3000:]
        assert "Traceback" not in out and "terminate called" not in out, out[-3000:]


def _reliable(depth=50):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)


def _xy(msg):
    return np.stack([np.asarray(msg.x), np.asarray(msg.y)], 1)


def test_dds_stays_on_this_machine(session):
    """Discovery is limited to this host, every node gets a domain of its own, and
    (where the machine allows it) the tier has no network but loopback."""
    domain, probe, start = session
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert dds.next_domain() != domain
    node = start({})
    pub = probe.publisher(dds_image_type(), "/cam/image", _reliable())
    assert probe.wait_for_node([pub], [], node)
    env = open(f"/proc/{node.proc.pid}/environ", "rb").read().split(b"\0")
    assert b"ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST" in env
    assert f"ROS_DOMAIN_ID={domain}".encode() in env
    if os.environ.get("GOODPOINT_NETNS") == "1":
        assert [name for _, name in socket.if_nameindex()] == ["lo"]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            with pytest.raises(OSError):          # ENETUNREACH: no route off the machine
                s.connect(("192.0.2.1", 7400))
    else:
        print("ROS TIER: no private network namespace here; LOCALHOST discovery only")


def dds_image_type():
    from sensor_msgs.msg import Image
    return Image


def test_mono_real_images_as_mono8_bgr8_and_compressed(session):
    """≥ 20 real photos in each encoding: outputs keep stamp and frame_id, matches name
    the right headers, all three encodings give the same keypoints (the network runs
    on the same grey image), counts add up on Status and /diagnostics."""
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import CompressedImage, Image

    from goodpoint_ros.msg import Keypoints, Matches, Status
    domain, probe, start = session
    raw = start({})
    comp = start({"compressed": True, "image_topic": "/cam/image/compressed"}, name="detector_png")
    pub = probe.publisher(Image, "/cam/image", _reliable())
    pub_c = probe.publisher(CompressedImage, "/cam/image/compressed", _reliable())
    kp = probe.listen(Keypoints, KP.format(dds.NODE))
    kp_c = probe.listen(Keypoints, KP.format("detector_png"))
    matches = probe.listen(Matches, MATCHES.format(dds.NODE))
    status = probe.listen(Status, STATUS.format(dds.NODE))
    status_c = probe.listen(Status, STATUS.format("detector_png"))
    diags = probe.listen(DiagnosticArray, "/diagnostics")
    assert probe.wait_for_node([pub, pub_c], [KP.format(dds.NODE), KP.format("detector_png")], raw)

    frames = dds.bundled_images(N_FRAMES)
    sent = []                                   # headers of the raw node's inputs, in order
    for i, bgr in enumerate(frames):
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        for encoding, img in (("mono8", gray), ("bgr8", bgr)):
            msg = dds.image_msg(img, encoding, 1000 + 2 * i + (encoding == "bgr8"), 250 + i,
                                frame_id=f"cam_{encoding}")
            pub.publish(msg)
            sent.append(msg.header)
            assert probe.spin_until(lambda: len(kp) == len(sent)), raw.output()[-2000:]
        pub_c.publish(dds.compressed_msg(bgr, "png", 5000 + i, 7, frame_id="cam_png"))
        assert probe.spin_until(lambda: len(kp_c) == i + 1), comp.output()[-2000:]

    # stamps and frame ids kept, in order
    assert [dds.header_key(m.header) for m in kp] == [dds.header_key(h) for h in sent]
    assert [dds.stamp_of(m) for m in kp_c] == [(5000 + i, 7) for i in range(N_FRAMES)]
    assert {m.header.frame_id for m in kp_c} == {"cam_png"}
    # mono8, bgr8 and png of one photo: the same keypoints, and real ones
    for i in range(N_FRAMES):
        a, b, c = kp[2 * i], kp[2 * i + 1], kp_c[i]
        assert len(a.x) > 50
        np.testing.assert_array_equal(_xy(a), _xy(b))
        np.testing.assert_array_equal(_xy(a), _xy(c))
        h, w = frames[i].shape[:2]
        assert (a.width, a.height) == (w, h)
        assert _xy(a).min() >= 0 and (_xy(a) < [w, h]).all()
    # matches: previous frame → this frame, indices into those frames' keypoints
    assert probe.spin_until(lambda: len(matches) == len(sent) - 1)
    for k, m in enumerate(matches, start=1):
        assert dds.header_key(m.header) == dds.header_key(sent[k])
        assert dds.header_key(m.query_header) == dds.header_key(sent[k - 1])
        assert dds.header_key(m.train_header) == dds.header_key(sent[k])
        q, t = np.asarray(m.query_indices), np.asarray(m.train_indices)
        assert len(q) == len(t) == len(m.distances) == len(m.inliers)
        assert (q < len(kp[k - 1].x)).all() and (t < len(kp[k].x)).all()
    # the same photo twice (mono8 then bgr8): most keypoints match themselves
    same = matches[0]
    assert np.mean(np.asarray(same.query_indices) == np.asarray(same.train_indices)) > 0.9
    # Status: one per frame, counts add up
    assert probe.spin_until(lambda: len(status) == len(sent) and len(status_c) == N_FRAMES)
    for st, k in zip(status, kp):
        assert dds.header_key(st.header) == dds.header_key(k.header)
        assert st.num_keypoints == len(k.x)
    for st, n in ((status[-1], len(sent)), (status_c[-1], N_FRAMES)):
        assert st.frames_received == n and st.frames_skipped == 0
        assert st.frames_received == st.frames_processed + st.frames_dropped + st.frames_skipped
        assert st.backend == "onnxruntime" and st.network_ms > 0
    # /diagnostics: the raw node's counters, in a report made after the last Status arrived
    name = f"{dds.NODE}: GoodPoint detector"
    done = probe.node.get_clock().now().nanoseconds

    def final_diag():
        for arr in diags:
            t = arr.header.stamp.sec * 10**9 + arr.header.stamp.nanosec
            for s in arr.status:
                if s.name == name and t > done:
                    return {kv.key: kv.value for kv in s.values}
    assert probe.spin_until(lambda: final_diag() is not None, 10.0)
    assert final_diag()["frames_received"] == str(len(sent))
    v = {k: int(x) for k, x in final_diag().items() if k.startswith("frames_")}
    assert v["frames_received"] == v["frames_processed"] + v["frames_dropped"] + v["frames_skipped"]
    assert v["frames_failed"] == 0


def test_node_output_is_the_pipelines_output_on_the_same_frame(session):
    """What arrives over DDS is what the ROS-free pipeline computes on that photo."""
    from sensor_msgs.msg import Image

    from goodpoint_ros.backends.onnxruntime_backend import OnnxRuntimeBackend
    from goodpoint_ros.core.pipeline import FeatureExtractor
    from goodpoint_ros.msg import Keypoints
    from goodpoint_ros.ros.params import config_from_params, load_yaml
    domain, probe, start = session
    node = start({})
    pub = probe.publisher(Image, "/cam/image", _reliable())
    kp = probe.listen(Keypoints, KP.format(dds.NODE))
    assert probe.wait_for_node([pub], [KP.format(dds.NODE)], node)
    gray = cv2.cvtColor(dds.bundled_images(1)[0], cv2.COLOR_BGR2GRAY)
    pub.publish(dds.image_msg(gray, "mono8", 1))
    assert probe.spin_until(lambda: len(kp) == 1)
    values = load_yaml(dds.ROOT / "config" / "detector.yaml")    # what the node was started with
    feats = FeatureExtractor(OnnxRuntimeBackend(device="cpu", threads=1),
                             config=config_from_params(values),
                             resize=(BASE["resize_width"], BASE["resize_height"]))(gray)
    got = _xy(kp[0])
    assert len(got) == len(feats.keypoints) > 50
    np.testing.assert_allclose(np.sort(got, axis=0), np.sort(np.asarray(feats.keypoints), axis=0),
                               atol=1e-3)


def test_runtime_parameters_through_the_real_parameter_service(session):
    """A valid θ_keypoint changes the keypoint count from the next frame on; invalid
    updates are refused with a reason and change nothing."""
    from sensor_msgs.msg import Image

    from goodpoint_ros.msg import Keypoints
    domain, probe, start = session
    node = start({"max_keypoints": 0})
    pub = probe.publisher(Image, "/cam/image", _reliable())
    kp = probe.listen(Keypoints, KP.format(dds.NODE))
    assert probe.wait_for_node([pub], [KP.format(dds.NODE)], node)
    set_params, get_params = dds.params_client(probe)
    gray = cv2.cvtColor(dds.bundled_images(1)[0], cv2.COLOR_BGR2GRAY)
    stamps = iter(range(1, 100))

    def count():
        pub.publish(dds.image_msg(gray, "mono8", next(stamps)))
        n = len(kp)
        assert probe.spin_until(lambda: len(kp) == n + 1), node.output()[-2000:]
        return len(kp[-1].x)

    n0 = count()
    assert count() == n0                                       # deterministic
    [res] = set_params({"keypoint_threshold": 0.3})
    assert res.successful, res.reason
    n1 = count()                                               # the very next frame
    assert 0 < n1 < n0
    names = ["keypoint_threshold", "bucket_cols", "bucket_rows", "mode", "nms_radius"]
    before = get_params(names)
    assert before[0] == 0.3
    refused = [{"keypoint_threshold": 1.5},                    # outside the declared range
               {"keypoint_threshold": 0.01},                   # below 1/64: GoodPointConfig refuses
               {"mode": "stereo"},                             # fixed at start-up
               {"nms_radius": "eight"}]                        # wrong type
    for change in refused:
        [res] = set_params(change)
        assert not res.successful and res.reason, change
    # SetParameters applies a list one by one; a combination goes through the atomic
    # service, all or nothing: bucketing without max_per_bucket is refused whole
    res = set_params({"bucket_cols": 4, "bucket_rows": 4}, atomically=True)
    assert not res.successful and "max_per_bucket" in res.reason
    assert get_params(names) == before
    assert count() == n1                                       # nothing changed
    assert node.alive()


def test_bad_frames_are_skipped_and_counted_and_the_node_keeps_serving(session):
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image

    from goodpoint_ros.msg import Keypoints, Status
    domain, probe, start = session
    node = start({})
    pub = probe.publisher(Image, "/cam/image", _reliable())
    kp = probe.listen(Keypoints, KP.format(dds.NODE))
    status = probe.listen(Status, STATUS.format(dds.NODE))
    diags = probe.listen(DiagnosticArray, "/diagnostics")
    assert probe.wait_for_node([pub], [KP.format(dds.NODE)], node)
    gray = cv2.cvtColor(dds.bundled_images(1)[0], cv2.COLOR_BGR2GRAY)
    unknown = dds.image_msg(gray, "mono8", 2)
    unknown.encoding = "yuv-unheard-of"
    truncated = dds.image_msg(gray, "mono8", 3)
    truncated.data = truncated.data[: len(truncated.data) // 2]

    def skipped_so_far():          # bad frames publish nothing: /diagnostics counts them
        last = [{kv.key: kv.value for kv in a.status[0].values} for a in diags[-1:]]
        return int(last[0]["frames_skipped"]) if last else -1

    pub.publish(dds.image_msg(gray, "mono8", 1))
    assert probe.spin_until(lambda: len(kp) == 1), node.output()[-2000:]
    for n, bad in enumerate((unknown, truncated), start=1):   # one at a time: none is dropped
        pub.publish(bad)
        assert probe.spin_until(lambda: skipped_so_far() == n), node.output()[-2000:]
    pub.publish(dds.image_msg(gray, "mono8", 4))
    assert probe.spin_until(lambda: len(kp) == 2 and len(status) == 2), node.output()[-2000:]
    assert [dds.stamp_of(m) for m in kp] == [(1, 0), (4, 0)]
    last = status[-1]
    assert (last.frames_received, last.frames_skipped) == (4, 2)
    assert last.frames_received == last.frames_processed + last.frames_dropped + last.frames_skipped
    out = node.output()
    assert "yuv-unheard-of" in out and "needs" in out        # one warning per problem, with why
    assert node.alive()


def test_sigint_while_serving_exits_0_without_traceback(session):
    """Ctrl-C with frames in flight: exit code 0, no traceback (shipped defaults, backend
    auto, as `ros2 run goodpoint_ros detector_node` starts it)."""
    from sensor_msgs.msg import Image

    from goodpoint_ros.msg import Keypoints
    domain, probe, start = session
    node = start({"backend": "auto", "threads": 0, "qos_reliability": "best_effort", "qos_depth": 5})
    pub = probe.publisher(Image, "/cam/image")
    kp = probe.listen(Keypoints, KP.format(dds.NODE))
    assert probe.wait_for_node([pub], [KP.format(dds.NODE)], node)
    frames = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in dds.bundled_images(6)]
    for i, img in enumerate(frames):                # faster than it computes: frames in flight
        pub.publish(dds.image_msg(img, "mono8", i + 1))
        probe.spin_for(0.01)
    assert probe.spin_until(lambda: len(kp) >= 1), node.output()[-2000:]
    code = node.stop()
    out = node.output()
    assert code == 0, out[-3000:]
    assert "Traceback" not in out and "terminate called" not in out, out[-3000:]
