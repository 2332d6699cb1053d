"""vo_node wiring with the rclpy test double: stereo KITTI frames in, nav_msgs/Odometry out
(stamps, frames, covariance), waiting for CameraInfo, ~/reset, ~/path, no tf2_ros."""
import array
import importlib
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rclpy_double  # noqa: E402

from conftest import require_shared  # noqa: E402

KITTI = "vo/kitti06_000000-000050"


class Env:
    def __init__(self):
        self.rclpy = importlib.import_module("rclpy")
        self.mod = importlib.import_module("goodpoint_ros.ros.vo_node")
        self.Parameter = importlib.import_module("rclpy.parameter").Parameter
        sm = importlib.import_module("sensor_msgs.msg")
        self.Image, self.CameraInfo = sm.Image, sm.CameraInfo
        nm = importlib.import_module("nav_msgs.msg")
        self.Odometry, self.Path = nm.Odometry, nm.Path
        self.qos = importlib.import_module("rclpy.qos").qos_profile_sensor_data
        self.Node = importlib.import_module("rclpy.node").Node
        self.nodes = []

    def vo(self, **params):
        from goodpoint_ros.evaluation.vo.run import method_source
        node = self.mod.VONode(source=method_source("orb", 1000),
                               parameter_overrides=[self.Parameter(k, value=v)
                                                    for k, v in params.items()])
        self.nodes.append(node)
        return node

    def probe(self):
        n = self.Node("probe")
        self.nodes.append(n)
        return n

    def spin_until(self, cond, timeout=30.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for n in self.nodes:
                self.rclpy.spin_once(n, timeout_sec=0.005)
            if cond():
                return True
        return False

    def image(self, img, stamp):
        m = self.Image()
        m.header.stamp.sec, m.header.stamp.nanosec = int(stamp), int(round((stamp % 1) * 1e9))
        m.header.frame_id = "camera_optical"
        m.height, m.width, m.encoding = img.shape[0], img.shape[1], "mono8"
        m.is_bigendian, m.step = 0, img.shape[1]
        m.data = array.array("B", img.tobytes())
        return m

    def info(self, P, size):
        m = self.CameraInfo()
        m.width, m.height = size
        m.k = [float(v) for v in P[:, :3].ravel()]
        m.p = [float(v) for v in P.ravel()]
        return m


@pytest.fixture
def env():
    restore = rclpy_double.install()
    e = Env()
    e.rclpy.init()
    try:
        yield e
    finally:
        for n in e.nodes:
            n.destroy_node()
        e.rclpy.try_shutdown()
        restore()


@pytest.fixture(scope="module")
def kitti():
    from goodpoint_ros.evaluation.vo.datasets import load_sequence
    seq = load_sequence(require_shared(KITTI), scale=0.5)
    c = seq.rig.left
    P0 = np.array([[c.fx, 0, c.cx, 0], [0, c.fy, c.cy, 0], [0, 0, 1, 0]])
    P1 = P0.copy()
    P1[0, 3] = -c.fx * seq.rig.baseline
    return seq, P0, P1, list(seq.frames(5))


def _feed(env, node, probe, kitti, frames, inbox, with_info=True, t0=100.0):
    seq, P0, P1, _ = kitti
    pl = probe.create_publisher(env.Image, "left/image_rect", env.qos)
    pr = probe.create_publisher(env.Image, "right/image_rect", env.qos)
    il = probe.create_publisher(env.CameraInfo, "left/camera_info", env.qos)
    ir = probe.create_publisher(env.CameraInfo, "right/camera_info", env.qos)
    assert env.spin_until(lambda: pl.get_subscription_count() > 0)
    for f in frames:
        if with_info:
            il.publish(env.info(P0, seq.size))
            ir.publish(env.info(P1, seq.size))
            env.spin_until(lambda: node._infos[1] is not None, 2)
        n = len(inbox)
        pl.publish(env.image(f.image, t0 + f.stamp))
        pr.publish(env.image(f.right, t0 + f.stamp))
        if with_info:
            assert env.spin_until(lambda: len(inbox) == n + 1), "no odometry"
        else:
            env.spin_until(lambda: node.worker.wait_idle(0) and node.worker.stats().processed >= 1, 5)


def test_stereo_odometry_messages(env, kitti):
    node = env.vo(publish_path=True)
    probe = env.probe()
    odom, paths = [], []
    probe.create_subscription(env.Odometry, "/goodpoint_vo/odometry", odom.append, 10)
    probe.create_subscription(env.Path, "/goodpoint_vo/path", paths.append, 10)
    frames = kitti[3]
    _feed(env, node, probe, kitti, frames, odom)
    assert [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in odom] == \
        pytest.approx([100.0 + f.stamp for f in frames], abs=1e-6)        # the input stamps
    assert all(m.header.frame_id == "odom" and m.child_frame_id == "base_link" for m in odom)
    last = odom[-1]
    # KITTI drives forward ~1.2 m per frame: base x (REP-103)
    assert last.pose.pose.position.x == pytest.approx(4.8, abs=0.4)
    assert abs(last.pose.pose.position.y) < 0.3
    assert last.twist.twist.linear.x == pytest.approx(11.5, abs=1.5)
    cov = np.array(last.pose.covariance).reshape(6, 6)
    assert np.allclose(cov, cov.T) and np.all(np.linalg.eigvalsh(cov) > 0) and cov[0, 0] < 0.25
    first = np.array(odom[0].pose.covariance).reshape(6, 6)
    assert first[0, 0] >= 1e3                    # nothing measured on the first frame
    assert env.spin_until(lambda: len(paths) == len(frames))
    assert len(paths[-1].poses) == len(frames) and paths[-1].header.frame_id == "odom"


def test_waits_for_camera_info_and_says_so_once(env, kitti):
    node = env.vo()
    probe = env.probe()
    odom = []
    probe.create_subscription(env.Odometry, "/goodpoint_vo/odometry", odom.append, 10)
    _feed(env, node, probe, kitti, kitti[3][:2], odom, with_info=False)
    assert env.spin_until(lambda: node.worker.stats().processed >= 2, 10)
    assert odom == [] and node.vo is None
    waiting = [t for t in node._say_once.said if "waiting for camera_info" in t]
    assert len(waiting) == 1
    assert any("tf2_ros is not available" in t for t in node._say_once.said)   # the double has no tf2_ros


def test_reset_service_returns_to_the_origin(env, kitti):
    node = env.vo()
    probe = env.probe()
    odom = []
    probe.create_subscription(env.Odometry, "/goodpoint_vo/odometry", odom.append, 10)
    frames = kitti[3]
    _feed(env, node, probe, kitti, frames[:3], odom)
    assert odom[-1].pose.pose.position.x > 2.0
    resp = node.reset_service.call()
    assert resp.success
    _feed(env, node, probe, kitti, frames[3:4], odom, t0=200.0)
    assert odom[-1].pose.pose.position.x == pytest.approx(0.0, abs=1e-9)


def test_keyframe_gap_and_threshold_parameters_reach_the_running_vo(env, kitti):
    """Set on the node, the gap and the threshold are the VO's, and the start-up line
    says both (0, the default, is the mode's: stereo 2 px / 3 frames)."""
    node = env.vo(keyframe_max_gap=2, pnp_threshold=1.5)
    probe = env.probe()
    odom = []
    probe.create_subscription(env.Odometry, "/goodpoint_vo/odometry", odom.append, 10)
    _feed(env, node, probe, kitti, kitti[3][:2], odom)
    assert (node.vo.config.keyframe_gap, node.vo.config.reprojection_threshold) == (2, 1.5)
    started = [m for _, m in node.get_logger().records if "visual odometry starts" in m]
    assert len(started) == 1
    assert "reprojection threshold 1.5 px" in started[0] and "every 2 frames" in started[0]


def test_bad_parameter_is_refused(env):
    for name, value in (("mode", "lidar"), ("camera_xyz", [1.0, 2.0]), ("window", 1),
                        ("camera_quaternion", [0.0, 0.0, 0.0, 0.0]), ("sync_slop", 1)):
        with pytest.raises(env.mod.FatalError, match=name) as err:
            env.vo(**{name: value})
        assert "\n" not in str(err.value)


def test_network_scale_and_pyramid_parameters_reach_goodpoint(env):
    from goodpoint_ros.ros.vo_params import vo_defaults
    v = {**vo_defaults(), "network_scale": 2.0}
    source = env.mod.VONode._load_source(v)
    assert source.detect_fn.scale == 2.0
    by_weights = env.mod.VONode._load_source(vo_defaults()).detect_fn   # 0: the weights' rule
    assert by_weights.scale is None and by_weights.frame_scale((320, 240)) == 2.0
    assert by_weights.frame_scale((640, 480)) == 1.0
    assert source.detect_fn.config.pyramid_levels == 1        # the VO's, not the weights' 3
    with pytest.raises(env.mod.FatalError, match="scale"):
        env.mod.VONode._load_source({**v, "network_scale": 9.0})


def test_tf_odom_to_base_follows_the_odometry_when_tf2_ros_is_there(env, kitti):
    """tf2_ros has no wheel (never in the ROS tier): a stand-in broadcaster records what
    the node sends — REP-105 odom → base_link, the odometry's stamp and pose."""
    import types
    sent = []

    class Broadcaster:
        def __init__(self, node):
            self.node = node

        def sendTransform(self, t):
            sent.append(t)
    sys.modules["tf2_ros"] = types.ModuleType("tf2_ros")
    sys.modules["tf2_ros"].TransformBroadcaster = Broadcaster
    node = env.vo()
    assert not any("tf2_ros" in t for t in node._say_once.said)
    probe = env.probe()
    odom = []
    probe.create_subscription(env.Odometry, "/goodpoint_vo/odometry", odom.append, 10)
    _feed(env, node, probe, kitti, kitti[3][:3], odom)
    assert len(sent) == len(odom) == 3
    for t, o in zip(sent, odom):
        assert (t.header.frame_id, t.child_frame_id) == ("odom", "base_link")
        assert (t.header.stamp.sec, t.header.stamp.nanosec) == (o.header.stamp.sec,
                                                                o.header.stamp.nanosec)
        tr, p, q = t.transform.translation, o.pose.pose.position, o.pose.pose.orientation
        assert (tr.x, tr.y, tr.z) == (p.x, p.y, p.z)
        r = t.transform.rotation
        assert (r.x, r.y, r.z, r.w) == (q.x, q.y, q.z, q.w)
    assert sent[-1].transform.translation.x > 2.0          # KITTI: forward along base x
    none = env.vo(publish_tf=False)
    assert none.tf is None


def _start(env, topics, **params):
    """A VO node with ``params``, a probe publishing on ``topics`` (camera_info or images)
    and collecting ~/odometry → (node, probe, publishers, odometry list)."""
    node, probe, odom = env.vo(**params), env.probe(), []
    probe.create_subscription(env.Odometry, "/goodpoint_vo/odometry", odom.append, 10)
    pubs = [probe.create_publisher(env.CameraInfo if t.endswith("camera_info") else env.Image,
                                   t, env.qos) for t in topics]
    assert env.spin_until(lambda: all(p.get_subscription_count() > 0 for p in pubs))
    return node, probe, pubs, odom


def _stop(env, node, probe, odom) -> np.ndarray:
    """The last odometry position [3]; node and probe gone, so the next run's node is
    alone on these topics."""
    p = odom[-1].pose.pose.position
    for n in (node, probe):
        env.nodes.remove(n)
        n.destroy_node()
    return np.array([p.x, p.y, p.z])


@pytest.fixture(scope="module")
def rgbd_bag(tmp_path_factory):
    from goodpoint_ros.evaluation.vo.datasets import load_sequence
    from goodpoint_ros.synthetic.sample_bag import SampleBagSpec, write_sample_bag
    out = tmp_path_factory.mktemp("vo_node") / "bag"
    write_sample_bag(out, SampleBagSpec(frames=12))
    return load_sequence(out)


def test_raw_distorted_rgbd_frames_are_undistorted_from_camera_info(env, rgbd_bag):
    """A wide-angle camera's raw frames (barrel distortion, k1 = −0.3) and its CameraInfo
    (k, d, and p = the ideal camera): with ``undistort`` (the default) the node undoes the
    distortion and the travelled distance comes out right; taking the raw frames for
    rectified ones (``undistort`` false) gets it wrong."""
    import cv2

    from goodpoint_ros.synthetic.sample_bag import distortion_maps
    seq = rgbd_bag
    K = seq.camera.K
    D = np.array([-0.3, 0.08, 0.0, 0.0, 0.0])
    w, h = seq.size
    mx, my = distortion_maps(K, D, seq.size)     # the raw frames of that lens
    frames = list(seq.frames(12))
    truth = np.linalg.norm(frames[-1].T_world_cam[:3, 3] - frames[0].T_world_cam[:3, 3])

    def run(undistort):
        node, probe, (pi, pd, pc), odom = _start(env, ("image", "depth", "camera_info"),
                                                 mode="rgbd", undistort=undistort)
        info = env.info(np.hstack([K, np.zeros((3, 1))]), seq.size)
        info.distortion_model, info.d = "plumb_bob", [float(v) for v in D]
        for f in frames:
            pc.publish(info)
            env.spin_until(lambda: node._infos[0] is not None, 2)
            gray = cv2.cvtColor(f.image, cv2.COLOR_BGR2GRAY) if f.image.ndim == 3 else f.image
            raw = cv2.remap(gray, mx, my, cv2.INTER_LINEAR)
            depth = cv2.remap(f.depth, mx, my, cv2.INTER_NEAREST, borderValue=float("nan"))
            n = len(odom)
            pi.publish(env.image(raw, 100.0 + f.stamp))
            dm = env.image(np.zeros((h, w), np.uint8), 100.0 + f.stamp)
            dm.encoding, dm.step = "32FC1", 4 * w
            dm.data = array.array("B", depth.astype(np.float32).tobytes())
            pd.publish(dm)
            assert env.spin_until(lambda: len(odom) == n + 1), "no odometry"
        return abs(np.linalg.norm(_stop(env, node, probe, odom)) - truth) / truth

    undistorted, taken_as_rectified = run(True), run(False)
    assert undistorted < 0.03, undistorted
    assert taken_as_rectified > 2 * undistorted, (undistorted, taken_as_rectified)


def test_raw_stereo_pair_is_rectified_with_rectify_stereo(env, kitti):
    """KITTI's rectified pair turned back into a raw one — each camera with its own lens
    (k ≠ p, barrel distortion) and a ±0.6° rectification rotation — with CameraInfos that
    say so (k, d, r, p).  ``rectify_stereo`` undoes it as image_proc would: the drive comes
    out as on the rectified pair; taking the raw pair as rectified does not."""
    import cv2

    seq, P0, P1, frames = kitti
    w, h = seq.size
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    grid = np.c_[gx.ravel(), gy.ravel()].reshape(-1, 1, 2)
    cams = []
    for P, angle in ((P0, 0.6), (P1, -0.6)):
        K = P[:, :3].copy()
        K[0, 0] *= 1.03
        K[1, 1] *= 1.03
        K[0, 2] += 4.0
        D = np.array([-0.12, 0.03, 0.0, 0.0, 0.0])
        R = cv2.Rodrigues(np.array([0.0, np.radians(angle), np.radians(angle / 2)]))[0]
        # each raw pixel shows the rectified image where its ray lands
        src = cv2.undistortPoints(grid, K, D, R=R, P=P[:, :3]).reshape(h, w, 2).astype(np.float32)
        cams.append((K, D, R, P, src[..., 0].copy(), src[..., 1].copy()))

    def info(K, D, R, P):
        m = env.info(P, seq.size)
        m.k = [float(v) for v in K.ravel()]
        m.d, m.distortion_model = [float(v) for v in D], "plumb_bob"
        m.r = [float(v) for v in R.ravel()]
        return m

    def run(rectify):
        node, probe, (pl, pr, il, ir), odom = _start(
            env, ("left/image_rect", "right/image_rect", "left/camera_info", "right/camera_info"),
            rectify_stereo=rectify)
        for f in frames:
            il.publish(info(*cams[0][:4]))
            ir.publish(info(*cams[1][:4]))
            env.spin_until(lambda: node._infos[1] is not None, 2)
            n = len(odom)
            for pub, img, (*_, mx, my) in ((pl, f.image, cams[0]), (pr, f.right, cams[1])):
                pub.publish(env.image(cv2.remap(img, mx, my, cv2.INTER_LINEAR), 100.0 + f.stamp))
            assert env.spin_until(lambda: len(odom) == n + 1), "no odometry"
        return _stop(env, node, probe, odom)

    rectified = run(True)
    # KITTI drives forward ~1.2 m per frame: base x (REP-103), as on the rectified pair
    assert rectified[0] == pytest.approx(4.8, abs=0.4) and abs(rectified[1]) < 0.3
    as_rectified = run(False)        # measured: 0.5 m of the 4.8
    assert abs(as_rectified[0] - 4.8) > 2 * abs(rectified[0] - 4.8), (rectified, as_rectified)


def test_a_frame_that_fails_in_the_worker_is_one_error_line_and_odometry_goes_on(env, kitti, monkeypatch):
    from goodpoint_ros.odometry import vo as vo_mod
    real, calls = vo_mod.VisualOdometry.process, []

    def fails_second(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise FloatingPointError("solver blew up")
        return real(self, *a, **k)

    monkeypatch.setattr(vo_mod.VisualOdometry, "process", fails_second)
    node = env.vo()
    probe = env.probe()
    odom = []
    probe.create_subscription(env.Odometry, "/goodpoint_vo/odometry", odom.append, 10)
    frames = kitti[3]
    _feed(env, node, probe, kitti, frames[:1], odom)
    pl = probe.create_publisher(env.Image, "left/image_rect", env.qos)
    pr = probe.create_publisher(env.Image, "right/image_rect", env.qos)
    pl.publish(env.image(frames[1].image, 100.0 + frames[1].stamp))
    pr.publish(env.image(frames[1].right, 100.0 + frames[1].stamp))
    assert env.spin_until(lambda: node.worker.stats().failed == 1)
    assert len(odom) == 1 and node.worker.alive                          # nothing out for it
    _feed(env, node, probe, kitti, frames[2:4], odom)
    assert len(odom) == 3 and odom[-1].pose.pose.position.x > 2.0      # tracking went on
    errors = [m for level, m in node.get_logger().records if level == "error"]
    assert errors == ["frame failed: FloatingPointError: solver blew up"]
