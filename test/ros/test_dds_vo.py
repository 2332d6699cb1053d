"""Visual odometry end to end over real DDS: the installed ``vo_node`` (ONNX Runtime, no
torch) on real rectified KITTI 06 stereo pairs (../shared/data/vo) published with their
CameraInfo, nav_msgs/Odometry, Path, /diagnostics and the ~/reset service checked
through real rclpy.  The node halves the frames itself (``resize_scale``), so its
resize and calibration-scaling path is part of the test.  ROS tier only."""
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest

if os.environ.get("GOODPOINT_ROS_TIER") != "1":
    pytest.skip("real DDS: run by the ROS tier (make test-ros)", allow_module_level=True)

from conftest import require_shared  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools" / "ros"))
import dds  # noqa: E402

KITTI = "vo/kitti06_000000-000050"
NODE = "goodpoint_vo"
BEFORE_RESET, AFTER_RESET = 6, 2
T0 = 1_000_000_000            # input stamps: t0 + KITTI's times.txt, in nanoseconds
PARAMS = {"mode": "stereo", "backend": "onnxruntime", "threads": 1, "resize_scale": 0.5,
          "left_image_topic": "/kitti/left/image_rect", "right_image_topic": "/kitti/right/image_rect",
          "left_camera_info_topic": "/kitti/left/camera_info",
          "right_camera_info_topic": "/kitti/right/camera_info",
          "qos_reliability": "reliable", "qos_depth": 10,
          "publish_path": True, "publish_tf": True, "diagnostics_period": 0.2}


def _stamp(ns: int):
    return divmod(ns, 1_000_000_000)


def _camera_info(P: np.ndarray, size, stamp_ns: int, frame_id: str):
    from sensor_msgs.msg import CameraInfo
    m = CameraInfo()
    m.header.stamp.sec, m.header.stamp.nanosec = _stamp(stamp_ns)
    m.header.frame_id = frame_id
    m.width, m.height = size
    m.distortion_model = "plumb_bob"
    m.d = [0.0] * 5
    m.k = [float(v) for v in P[:, :3].ravel()]
    m.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    m.p = [float(v) for v in P.ravel()]
    return m


def _kitti():
    """The KITTI slice at native resolution: (frames, P_left, P_right, size, gt)."""
    from goodpoint_ros.evaluation.vo.datasets import load_sequence
    seq = load_sequence(require_shared(KITTI))
    c = seq.rig.left
    P0 = np.array([[c.fx, 0, c.cx, 0], [0, c.fy, c.cy, 0], [0, 0, 1, 0]], float)
    P1 = P0.copy()
    P1[0, 3] = -c.fx * seq.rig.baseline                      # Tx = −fx·B (REP-104)
    return list(seq.frames(BEFORE_RESET + AFTER_RESET)), P0, P1, seq.size, seq.gt


def _covariance_ok(values) -> bool:
    c = np.asarray(values, float).reshape(6, 6)
    if not np.isfinite(c).all() or not np.allclose(c, c.T, rtol=1e-9, atol=1e-12):
        return False
    eig = np.linalg.eigvalsh(c)
    return bool(eig.min() >= -1e-9 * max(1.0, abs(eig).max()))


def _state(diagnostics) -> list:
    """The tracking states the node reported on /diagnostics, in order."""
    out = []
    for arr in diagnostics:
        for s in arr.status:
            if s.name.startswith(NODE):
                out.extend(kv.value for kv in s.values if kv.key == "state")
    return out


def test_stereo_vo_over_dds_odometry_path_diagnostics_reset(tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray
    from nav_msgs.msg import Odometry
    from nav_msgs.msg import Path as PathMsg
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image
    from std_srvs.srv import Trigger

    frames, P0, P1, size, gt = _kitti()
    domain = dds.next_domain()
    probe = dds.Probe(domain)
    node = dds.start_node(PARAMS, domain, tmp_path, name=NODE, executable="vo_node",
                          config="vo.yaml")
    try:
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        pubs = [probe.publisher(Image, "/kitti/left/image_rect", qos),
                probe.publisher(Image, "/kitti/right/image_rect", qos)]
        infos = [probe.publisher(CameraInfo, "/kitti/left/camera_info", qos),
                 probe.publisher(CameraInfo, "/kitti/right/camera_info", qos)]
        ns = f"/{NODE}"
        odom = probe.listen(Odometry, ns + "/odometry")
        paths = probe.listen(PathMsg, ns + "/path")
        diagnostics = probe.listen(DiagnosticArray, "/diagnostics")
        reset = probe.node.create_client(Trigger, ns + "/reset")
        assert probe.wait_for_node(pubs + infos, [ns + "/odometry", ns + "/path"], node), \
            node.output()[-3000:]
        assert probe.spin_until(reset.service_is_ready, 30.0)

        sent = []

        def feed(frame, stamp_ns):
            # a camera driver publishes camera_info with every frame
            infos[0].publish(_camera_info(P0, size, stamp_ns, "kitti_left"))
            infos[1].publish(_camera_info(P1, size, stamp_ns, "kitti_right"))
            if not sent:
                probe.spin_for(0.5)              # the first CameraInfo lands before the pair
            sec, nsec = _stamp(stamp_ns)
            left = dds.image_msg(frame.image, "mono8", sec, nsec, frame_id="kitti_left")
            right = dds.image_msg(frame.right, "mono8", sec, nsec, frame_id="kitti_right")
            pubs[0].publish(left)
            pubs[1].publish(right)
            sent.append((sec, nsec))
            assert probe.spin_until(lambda: len(odom) == len(sent), 60.0), node.output()[-3000:]

        for f in frames[:BEFORE_RESET]:
            feed(f, T0 + round(f.stamp * 1e9))
        assert probe.spin_until(lambda: len(paths) == BEFORE_RESET, 10.0)
        assert probe.spin_until(lambda: "OK" in _state(diagnostics), 10.0), _state(diagnostics)

        # ---- nav_msgs/Odometry: frames, stamps, covariance, motion
        assert [dds.stamp_of(m) for m in odom] == sent              # the input images' stamps
        assert all(m.header.frame_id == "odom" and m.child_frame_id == "base_link" for m in odom)
        assert all(_covariance_ok(m.pose.covariance) and _covariance_ok(m.twist.covariance)
                   for m in odom)
        first, last = odom[0], odom[BEFORE_RESET - 1]
        assert first.pose.pose.position.x == 0.0                    # odometry starts at the origin
        assert np.asarray(first.pose.covariance)[0] >= 1e3          # nothing measured yet
        # KITTI drives forward along the camera's z: base x (REP-103), as far as the truth says
        forward = gt[BEFORE_RESET - 1][2, 3] - gt[0][2, 3]
        assert forward > 5.0                                        # ~1.2 m per frame
        p = last.pose.pose.position
        assert p.x == pytest.approx(forward, rel=0.05), (p.x, forward)   # measured: 1 %
        assert abs(p.y) < 0.05 * forward and abs(p.z) < 0.05 * forward
        speed = forward / (frames[BEFORE_RESET - 1].stamp - frames[0].stamp)
        assert last.twist.twist.linear.x == pytest.approx(speed, rel=0.1)
        assert np.asarray(last.pose.covariance)[0] < 0.25           # measured: far below LOST's
        xs = [m.pose.pose.position.x for m in odom]
        assert all(b > a for a, b in zip(xs, xs[1:]))               # forward every frame

        # ---- nav_msgs/Path: every pose so far, in the odom frame, the odometry's poses
        path = paths[-1]
        assert path.header.frame_id == "odom" and len(path.poses) == BEFORE_RESET
        assert [dds.stamp_of(ps) for ps in path.poses] == sent
        assert [ps.pose.position.x for ps in path.poses] == xs

        # ---- ~/reset (std_srvs/Trigger): the odometry restarts at the origin
        future = reset.call_async(Trigger.Request())
        assert probe.spin_until(future.done, 30.0)
        assert future.result().success, future.result().message
        for f in frames[BEFORE_RESET:]:
            feed(f, T0 + round(f.stamp * 1e9))
        after = odom[BEFORE_RESET:]
        assert after[0].pose.pose.position.x == 0.0                 # back at the origin
        step = gt[BEFORE_RESET + 1][2, 3] - gt[BEFORE_RESET][2, 3]
        assert after[1].pose.pose.position.x == pytest.approx(step, rel=0.1)
        assert probe.spin_until(lambda: len(paths) == len(sent), 10.0)
        assert len(paths[-1].poses) == AFTER_RESET                  # the path restarts too
    finally:
        probe.close()
        code = node.stop()
    out = node.output()
    assert code == 0 and "Traceback" not in out, out[-3000:]
    assert "visual odometry reset" in out
    # No tf2_ros wheel: the node says so once and published odometry all the same (above).
    if importlib.util.find_spec("tf2_ros") is None:
        assert out.count("tf2_ros is not available") == 1, out[-3000:]
