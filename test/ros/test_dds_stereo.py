"""Stereo end to end over real DDS: a real rectified KITTI pair (../shared) through the
installed detector_node (mode stereo; message_filters is the test-only stand-in in
test/ros/tier/ where the real one is not installed).  ROS tier only."""
import os
import sys
from pathlib import Path

import numpy as np
import pytest

if os.environ.get("GOODPOINT_ROS_TIER") != "1":
    pytest.skip("real DDS: run by the ROS tier (make test-ros)", allow_module_level=True)

import cv2  # noqa: E402

from conftest import require_shared  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools" / "ros"))
import dds  # noqa: E402

ROW_TOLERANCE = 1.0
PARAMS = {"mode": "stereo", "backend": "onnxruntime", "precision": "fp32", "threads": 1,
          "left_image_topic": "/stereo/left/image_rect", "right_image_topic": "/stereo/right/image_rect",
          "use_camera_info": False, "qos_reliability": "reliable", "qos_depth": 10,
          "stereo_row_tolerance": ROW_TOLERANCE, "rectified": True}


def test_rectified_stereo_pair_keypoints_and_same_row_matches(tmp_path):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from goodpoint_ros.msg import Keypoints, Matches
    kitti = require_shared("stereo/kitti06")
    left = cv2.imread(str(kitti / "kitti06-12.png"), cv2.IMREAD_GRAYSCALE)
    right = cv2.imread(str(kitti / "kitti06-12-R.png"), cv2.IMREAD_GRAYSCALE)
    domain = dds.next_domain()
    probe = dds.Probe(domain)
    node = dds.start_node(PARAMS, domain, tmp_path)
    try:
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        pub_l = probe.publisher(Image, "/stereo/left/image_rect", qos)
        pub_r = probe.publisher(Image, "/stereo/right/image_rect", qos)
        ns = f"/{dds.NODE}"
        kp_l = probe.listen(Keypoints, ns + "/left/keypoints")
        kp_r = probe.listen(Keypoints, ns + "/right/keypoints")
        stereo = probe.listen(Matches, ns + "/stereo_matches")
        temporal = probe.listen(Matches, ns + "/matches")
        assert probe.wait_for_node([pub_l, pub_r], [ns + "/stereo_matches"], node)
        pairs = []
        for k in range(3):
            ml = dds.image_msg(left, "mono8", 40 + k, 1000, frame_id="kitti_left")
            # the right camera's driver stamps 2 ms later: within sync_slop (10 ms)
            mr = dds.image_msg(right, "mono8", 40 + k, 2_001_000, frame_id="kitti_right")
            pub_l.publish(ml)
            pub_r.publish(mr)
            pairs.append((ml.header, mr.header))
            assert probe.spin_until(lambda: len(stereo) == k + 1, 60.0), node.output()[-2000:]
        assert probe.spin_until(lambda: len(temporal) == 2)
        for (hl, hr), a, b, m in zip(pairs, kp_l, kp_r, stereo):
            assert dds.header_key(a.header) == dds.header_key(hl)
            assert dds.header_key(b.header) == dds.header_key(hr)
            assert dds.header_key(m.query_header) == dds.header_key(hl)
            assert dds.header_key(m.train_header) == dds.header_key(hr)
            q, t = np.asarray(m.query_indices), np.asarray(m.train_indices)
            assert len(q) > 50, "a textured KITTI street gives many stereo matches"
            yl, yr = np.asarray(a.y)[q], np.asarray(b.y)[t]
            xl, xr = np.asarray(a.x)[q], np.asarray(b.x)[t]
            assert np.abs(yl - yr).max() <= ROW_TOLERANCE + 1e-4          # same row
            assert (xl - xr >= -1e-4).all()                               # right sees it further left
            np.testing.assert_allclose(np.asarray(m.disparities), xl - xr, atol=1e-3)
        # temporal matches: previous left frame → this left frame
        for k, m in enumerate(temporal, start=1):
            assert dds.header_key(m.query_header) == dds.header_key(pairs[k - 1][0])
            assert dds.header_key(m.train_header) == dds.header_key(pairs[k][0])
    finally:
        probe.close()
        code = node.stop()
    out = node.output()
    assert code == 0 and "Traceback" not in out, out[-3000:]
