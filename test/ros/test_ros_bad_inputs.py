"""Bad inputs reaching the detector node (docs/bad-inputs.md): it keeps serving,
says what is wrong once, and never verifies with garbage."""
import numpy as np
import pytest
from test_node_wiring import DotBackend, Inbox, dots_image
from test_node_wiring import ros as _ros_fixture

ros = _ros_fixture         # the node tests' fixture: rclpy double, and real rclpy where built


def warnings_with(node, text):
    logger = node.get_logger()
    if not hasattr(logger, "records"):                 # the real rclpy: logs are not readable
        return None
    return [m for level, m in logger.records if text in m]


def test_nan_camera_info_falls_back_to_the_fundamental_matrix_and_says_so_once(ros):
    node = ros.detector(image_topic="/cam/image", camera_info_topic="/cam/info")
    probe = ros.probe()
    pub = probe.create_publisher(ros.Image, "/cam/image", ros.sensor_qos)
    info_pub = probe.create_publisher(ros.CameraInfo, "/cam/info", ros.sensor_qos)
    mt = Inbox(ros, probe, "/goodpoint_detector/matches", ros.Matches)
    assert ros.spin_until(lambda: pub.get_subscription_count() > 0
                          and info_pub.get_subscription_count() > 0)
    info = ros.CameraInfo()
    info.k = [float("nan"), 0.0, 160.0, 0.0, float("nan"), 120.0, 0.0, 0.0, 1.0]
    for _ in range(3):
        info_pub.publish(info)
        ros.spin_until(lambda: False, timeout=0.05)
    pub.publish(ros.image_msg(dots_image(), 1))
    assert ros.spin_until(lambda: node.worker.stats().processed == 1)
    pub.publish(ros.image_msg(dots_image(shift=(8, 4)), 2))
    assert ros.spin_until(lambda: len(mt.msgs) == 1)
    m = mt.msgs[0]
    assert m.model_type == ros.Matches.MODEL_FUNDAMENTAL and sum(m.inliers) >= 8
    said = warnings_with(node, "camera_info 0")
    if said is not None:
        assert len(said) == 1 and "non-finite" in said[0] and "fundamental" in said[0]


@pytest.mark.parametrize("size", [(1, 1), (4, 240)])
def test_resize_under_8_px_is_a_one_line_fatal_error_like_the_cli(ros, size):
    with pytest.raises(ros.node_mod.FatalError, match="too small") as err:
        ros.detector(resize_width=size[0], resize_height=size[1])
    assert "\n" not in str(err.value)


def test_oversized_frames_are_downscaled_and_said_once(ros, monkeypatch):
    backend = DotBackend()
    monkeypatch.setattr(ros.node_mod, "create_backend", lambda name, **kw: backend)
    node = ros.node_mod.DetectorNode(parameter_overrides=[
        ros.Parameter("image_topic", value="/cam/image"),
        ros.Parameter("memory_budget_mb", value=100.0)])
    ros.nodes.append(node)
    probe = ros.probe()
    pub = probe.create_publisher(ros.Image, "/cam/image", ros.sensor_qos)
    kp = Inbox(ros, probe, "/goodpoint_detector/keypoints", ros.Keypoints)
    assert ros.spin_until(lambda: pub.get_subscription_count() > 0)
    big = np.zeros((960, 1280), np.uint8)
    big[100:104, 200:204] = 255
    for sec in (1, 2):
        pub.publish(ros.image_msg(big, sec))
        assert ros.spin_until(lambda: len(kp.msgs) == sec)
    assert (kp.msgs[0].width, kp.msgs[0].height) == (1280, 960)     # original pixels
    assert backend.calls == 2
    said = warnings_with(node, "memory budget")
    if said is not None:
        assert len(said) == 1 and "1280x960" in said[0]


def test_12_bit_mono16_is_said_once(ros):
    node = ros.detector(image_topic="/cam/image")
    probe = ros.probe()
    pub = probe.create_publisher(ros.Image, "/cam/image", ros.sensor_qos)
    kp = Inbox(ros, probe, "/goodpoint_detector/keypoints", ros.Keypoints)
    assert ros.spin_until(lambda: pub.get_subscription_count() > 0)
    img = dots_image().astype(np.uint16) * 16                         # max 4080
    for sec in (1, 2):
        pub.publish(ros.image_msg(img, sec, encoding="mono16"))
        assert ros.spin_until(lambda: len(kp.msgs) == sec)
    said = warnings_with(node, "12-bit")
    if said is not None:
        assert len(said) == 1 and "input_max" in said[0]


def test_odd_width_yuv422_is_skipped_not_failed(ros):
    node = ros.detector(image_topic="/cam/image")
    probe = ros.probe()
    pub = probe.create_publisher(ros.Image, "/cam/image", ros.sensor_qos)
    st = Inbox(ros, probe, "/goodpoint_detector/status", ros.Status)
    assert ros.spin_until(lambda: pub.get_subscription_count() > 0)
    msg = ros.image_msg(np.zeros((7, 10), np.uint8), 1, encoding="yuv422")
    msg.width, msg.step = 5, 10
    pub.publish(msg)
    assert ros.spin_until(lambda: node.worker.stats().processed == 1)
    pub.publish(ros.image_msg(dots_image(), 2))
    assert ros.spin_until(lambda: len(st.msgs) == 1)
    assert st.msgs[0].frames_skipped == 1 and node.worker.stats().failed == 0


def test_a_frame_that_fails_in_the_worker_is_one_error_line_and_the_node_serves_on(ros):
    class FailsOnce(DotBackend):
        def infer(self, x):
            if self.calls == 0:
                self.calls += 1
                raise RuntimeError("device lost")
            return super().infer(x)

    node = ros.detector(FailsOnce(), image_topic="/cam/image")
    probe = ros.probe()
    pub = probe.create_publisher(ros.Image, "/cam/image", ros.sensor_qos)
    kp = Inbox(ros, probe, "/goodpoint_detector/keypoints", ros.Keypoints)
    assert ros.spin_until(lambda: pub.get_subscription_count() > 0)
    pub.publish(ros.image_msg(dots_image(), 1))
    assert ros.spin_until(lambda: node.worker.stats().failed == 1)
    pub.publish(ros.image_msg(dots_image(), 2))
    assert ros.spin_until(lambda: len(kp.msgs) == 1)
    assert kp.msgs[0].header.stamp.sec == 2                  # nothing published for frame 1
    logger = node.get_logger()
    if hasattr(logger, "records"):
        errors = [m for level, m in logger.records if level == "error"]
        assert errors == ["frame failed: RuntimeError: device lost"]
