"""launch_testing: launch detector.launch.py, publish images, receive keypoints and matches.

Runs on a ROS 2 machine (`colcon test --packages-select goodpoint_ros`, or
`launch_test test/ros/test_launch_detector.py` in a sourced workspace); skips
cleanly under plain pytest where launch_testing / rclpy are missing.
"""
import os
import tempfile
import time
import unittest
from pathlib import Path

import pytest

pytest.importorskip("launch_testing")
pytest.importorskip("launch_ros")
rclpy = pytest.importorskip("rclpy")

import cv2  # noqa: E402
import launch  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import yaml  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from goodpoint_ros.msg import Keypoints, Matches, Status  # noqa: E402
from goodpoint_ros.ros.params import defaults  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
IMAGES = [ROOT / "data" / "hpatches_v_churchill" / f"{i}.png" for i in (1, 2)]
TOPIC = "/goodpoint_test/image"
NS = "/goodpoint_detector"


def _params_file():
    # A low θ so that any bundled weights give keypoints; torch runs everywhere.
    params = dict(defaults(), keypoint_threshold=0.0157, verification="homography")
    fd, path = tempfile.mkstemp(suffix=".yaml")
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump({"/**": {"ros__parameters": params}}, f)
    return path


@pytest.mark.launch_test
def generate_test_description():
    detector = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(ROOT / "launch" / "detector.launch.py")),
        launch_arguments={"image": TOPIC, "backend": "torch",
                          "params_file": _params_file()}.items())
    return launch.LaunchDescription([detector, launch_testing.actions.ReadyToTest()])


class TestDetectorOutputs(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rclpy.init()

    @classmethod
    def tearDownClass(cls):
        rclpy.shutdown()

    def setUp(self):
        self.node = rclpy.create_node("goodpoint_launch_probe")

    def tearDown(self):
        self.node.destroy_node()

    def _image(self, path, sec):
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        msg = Image()
        msg.header.stamp.sec, msg.header.frame_id = sec, "camera"
        msg.height, msg.width = gray.shape
        msg.encoding, msg.step = "mono8", gray.shape[1]
        msg.data = gray.tobytes()
        return msg

    def test_publishes_keypoints_matches_and_status(self, proc_output):
        kps, matches, status = [], [], []
        self.node.create_subscription(Keypoints, f"{NS}/keypoints", kps.append, 10)
        self.node.create_subscription(Matches, f"{NS}/matches", matches.append, 10)
        self.node.create_subscription(Status, f"{NS}/status", status.append, 10)
        pub = self.node.create_publisher(Image, TOPIC, qos_profile_sensor_data)
        sent = []
        end = time.monotonic() + 120          # model load + first inference on a slow CPU
        while time.monotonic() < end and not (len(kps) >= 2 and matches):
            sec = len(sent) + 1
            pub.publish(self._image(IMAGES[sec % 2], sec))
            sent.append(sec)
            t = time.monotonic() + 1.0
            while time.monotonic() < t:
                rclpy.spin_once(self.node, timeout_sec=0.1)
        self.assertGreaterEqual(len(kps), 2, "no keypoints received")
        self.assertTrue(matches, "no matches received")
        k = kps[-1]
        self.assertIn(k.header.stamp.sec, sent)                  # output stamp = input stamp
        self.assertEqual(k.header.frame_id, "camera")
        h, w = cv2.imread(str(IMAGES[0]), cv2.IMREAD_GRAYSCALE).shape
        self.assertEqual((k.width, k.height), (w, h))
        self.assertGreater(len(k.x), 0)
        self.assertEqual(len(k.descriptors), len(k.x) * k.descriptor_size)
        m = matches[-1]
        self.assertLess(m.query_header.stamp.sec, m.train_header.stamp.sec)
        self.assertTrue(status and status[-1].backend == "torch")


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_clean_exit(self, proc_info):
        # SIGINT from launch: main() returns 0, no traceback.
        launch_testing.asserts.assertExitCodes(proc_info)
