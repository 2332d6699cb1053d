"""``goodpoint eval bag``: end to end on generated bags, and every bad-input path."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from goodpoint_ros.cli import main
from goodpoint_ros.evaluation.bags.evaluate import (
    DEFAULT_DEPTH,
    DEFAULT_IMAGE,
    DEFAULT_INFO,
    DEFAULT_POSE,
    BagOptions,
    inlier_links,
    make_pairs,
    relative_pose_errors,
)
from goodpoint_ros.evaluation.bags.replay import (
    BagError,
    PoseTrack,
    quat_to_matrix,
    read_bag,
    slerp,
    static_chain,
)
from goodpoint_ros.synthetic import sample_bag as sb


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalbags")
    day = sb.write_sample_bag(root / "day", sb.SampleBagSpec(frames=9))
    night = sb.write_sample_bag(root / "night", sb.SampleBagSpec(frames=9, lighting="night"))
    return day, night


def write_bag(out: Path, frames=8, encoding="bgr8", depth_fn=None, depth_offset_s=0.0,
              tf_static=True):
    """A small rendered bag with one thing changed (see the keyword arguments)."""
    from rosbags.rosbag2 import Writer
    world = sb.sc.village()
    K = sb.sc.intrinsics((320, 240))
    m = sb.Messages()
    st = m.store
    with Writer(out, version=9) as w:
        ci = w.add_connection(DEFAULT_IMAGE, "sensor_msgs/msg/Image", typestore=st)
        cd = w.add_connection(DEFAULT_DEPTH, "sensor_msgs/msg/Image", typestore=st)
        cc = w.add_connection(DEFAULT_INFO, "sensor_msgs/msg/CameraInfo", typestore=st)
        co = w.add_connection(DEFAULT_POSE, "nav_msgs/msg/Odometry", typestore=st)
        if tf_static:
            ct = w.add_connection("/tf_static", "tf2_msgs/msg/TFMessage", typestore=st)
            w.write(ct, sb.START_NS, st.serialize_cdr(m.tf_static(sb.START_NS, sb.camera_extrinsic()),
                                                      ct.msgtype))
        for k in range(frames * 5 + 5):                   # odometry at 50 Hz
            t = k * 0.02 - 0.05
            ns = sb.START_NS + int((t + 0.1) * 1e9)
            w.write(co, ns, st.serialize_cdr(m.odometry(ns, sb.body_pose(t, 1.5)), co.msgtype))
        for i in range(frames):
            t = i * 0.1
            ns = sb.START_NS + int((t + 0.1) * 1e9)
            T = sb.body_pose(t, 1.5) @ sb.camera_extrinsic()
            bgr, depth = sb.sc.render(world, K, T, (320, 240))
            if depth_fn:
                depth = depth_fn(i, depth)
            img = m.image(ns, sb.CAMERA_FRAME, bgr, "bgr8")
            img.encoding = encoding
            w.write(ci, ns, st.serialize_cdr(img, ci.msgtype))
            dns = ns + int(depth_offset_s * 1e9)
            w.write(cd, dns, st.serialize_cdr(m.image(dns, sb.CAMERA_FRAME, depth.astype("<f4"),
                                                      "32FC1"), cd.msgtype))
            w.write(cc, ns, st.serialize_cdr(m.camera_info(ns, sb.CAMERA_FRAME, K, (320, 240)),
                                             cc.msgtype))
    return out


def run_eval(argv, capsys):
    try:
        code = main(["eval", "bag", *argv, "--no-progress"])
    except SystemExit as exc:      # refused by the parser (an option out of range)
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


# --------------------------------------------------------------------------- end to end

def test_eval_bag_json_report_and_roll(bags, tmp_path, capsys):
    day, _ = bags
    js, rep = tmp_path / "r.json", tmp_path / "rep"
    code, out, err = run_eval([str(day), "--methods", "orb,sift", "--roll", "5", "--json", str(js),
                               "--report", str(rep), "--pictures", "1"], capsys)
    assert code == 0, err
    r = json.loads(js.read_text())
    assert r["pairs"] == 4 and r["skipped"] == 0              # 9 frames, shift 5
    for m in ("orb", "sift"):
        s = r["methods"][m]
        assert 0.5 < s["precision"] <= 1 and 0.3 < s["repeatability"] <= 1
        assert 0 < s["coverage"] < 1 and "eps5" in s and "pose_auc" in s
        assert s["eps5"]["precision"] >= s["precision"]
    st = r["settings"]
    assert st["extrinsic"] == "tf_static" and st["roll_deg"] == 5 and st["eval_size"] == [320, 240]
    assert st["gt_check_agreement"] > 0.7
    assert set(r["timing_s"]) >= {"decode", "ground_truth", "extraction", "matching", "metrics"}
    assert (rep / "report.md").exists() and (rep / "harmonic_per_pair.png").exists()
    assert "frames/s" in out


def test_bag_b_pairs_day_with_night(bags, tmp_path, capsys):
    day, night = bags
    js = tmp_path / "dn.json"
    code, _, err = run_eval([str(day), "--bag-b", str(night), "--methods", "sift", "--max-pairs",
                             "2", "--json", str(js)], capsys)
    assert code == 0, err
    r = json.loads(js.read_text())
    assert r["pairs"] == 2 and r["settings"]["bag_b"] == str(night)
    assert r["per_pair"][0]["frame_a"] == 0 and r["per_pair"][0]["frame_b"] == 5


def test_no_depth_mode_reports_matches_inliers_pose_and_tracks(bags, tmp_path, capsys):
    day, _ = bags
    js = tmp_path / "nd.json"
    code, out, err = run_eval([str(day), "--no-depth", "--methods", "orb", "--shift", "2",
                               "--json", str(js)], capsys)
    assert code == 0, err
    s = json.loads(js.read_text())["methods"]["orb"]
    assert "precision" not in s
    assert s["matches"] > 50 and 0.3 < s["inlier_ratio"] <= 1
    assert s["pose_auc"]["20"] > 0                       # odometry present: pose error scored
    assert s["track_length"]["mean"] >= 2
    assert "track length" in out


# --------------------------------------------------------------------------- bad input

def test_missing_topic_lists_the_topics(bags, capsys):
    code, _, err = run_eval([str(bags[0]), "--depth-topic", "/nope", "--methods", "orb"], capsys)
    assert code == 2 and "/nope" in err and DEFAULT_IMAGE in err and err.count("\n") == 1


def test_truncated_and_corrupt_bags_give_one_line(bags, tmp_path, capsys):
    bad = tmp_path / "trunc"
    shutil.copytree(bags[0], bad)
    f = next(bad.glob("*.mcap"))
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    code, _, err = run_eval([str(bad), "--methods", "orb"], capsys)
    assert code == 2 and "truncated" in err and err.count("\n") == 1
    assert f"mcap recover {f}" in err                   # issue 12 case 23: how to repair it
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"not a bag at all" * 10)
    code, _, err = run_eval([str(junk), "--methods", "orb"], capsys)
    assert code == 2 and "cannot open bag" in err
    code, _, err = run_eval([str(tmp_path / "absent"), "--methods", "orb"], capsys)
    assert code == 2 and "not found" in err


def test_tf_static_as_the_pose_topic_says_it_is_static(bags, capsys):
    # issue 12 case 18: /tf_static has a message, just no moving transform
    code, _, err = run_eval([str(bags[0]), "--pose-topic", "/tf_static", "--methods", "orb"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "only static transforms" in err and "no messages" not in err


def test_damaged_middle_is_reported_and_pairs_keep_their_frames(tmp_path, capsys):
    # issue 12 case 10: random bytes in the middle of an .mcap (end magic intact) lose an
    # image; the run must say so, and pair "i-(i+shift)" must still span `shift` frames
    bag = sb.write_sample_bag(tmp_path / "ok", sb.SampleBagSpec(frames=12))
    bad = tmp_path / "bad"
    shutil.copytree(bag, bad)
    f = next(bad.glob("*.mcap"))
    data = bytearray(f.read_bytes())
    at = int(len(data) * 0.2)
    data[at:at + 200_000] = np.random.default_rng(1).integers(0, 256, 200_000, np.uint8).tobytes()
    f.write_bytes(bytes(data))
    r = read_bag(bad, DEFAULT_IMAGE, DEFAULT_INFO, DEFAULT_DEPTH, DEFAULT_POSE)
    assert len(r.frames) == 11                            # one image is lost in the damage
    period = 0.1                                          # SampleBagSpec.fps = 10
    for fr in r.frames:                                   # a frame keeps its own number
        assert fr.stamp - r.frames[0].stamp == pytest.approx(fr.index * period, abs=1e-6)
    assert any("11 of 12" in w for w in r.warnings), r.warnings
    js = tmp_path / "d.json"
    code, out, err = run_eval([str(bad), "--methods", "orb", "--shift", "2", "--json", str(js),
                               "--no-gt-check"], capsys)
    assert code == 0, err
    res = json.loads(js.read_text())
    assert res["settings"]["warnings"]
    for p in res["per_pair"]:
        assert p["frame_b"] - p["frame_a"] == 2
        assert p["stamp_b"] - p["stamp_a"] == pytest.approx(2 * period, abs=1e-6)
    assert any("missing" in why for why in res["skipped_reasons"])
    assert "warning" in out


def test_unknown_encoding_is_named(tmp_path):
    bag = write_bag(tmp_path / "nv21", frames=2, encoding="nv21")
    with pytest.raises(BagError, match="nv21"):
        read_bag(bag, DEFAULT_IMAGE, DEFAULT_INFO, DEFAULT_DEPTH, DEFAULT_POSE)


def test_bag_replay_reads_every_encoding_the_node_reads(tmp_path):
    # one decoder (core/image_msgs) for the node and the replay: a yuv422 camera once
    # worked in the node and failed in `goodpoint eval bag` (issue 10)
    bag = write_bag(tmp_path / "yuv", frames=2, encoding="yuv422")
    r = read_bag(bag, DEFAULT_IMAGE, DEFAULT_INFO, DEFAULT_DEPTH, DEFAULT_POSE)
    assert len(r.frames) == 2 and r.frames[0].image.shape == (240, 320, 3)


def test_all_invalid_depth_is_an_error(tmp_path):
    bag = write_bag(tmp_path / "nan", frames=2, depth_fn=lambda i, d: np.full_like(d, np.nan))
    with pytest.raises(BagError, match="every depth map is invalid"):
        read_bag(bag, DEFAULT_IMAGE, DEFAULT_INFO, DEFAULT_DEPTH, DEFAULT_POSE)


def test_no_overlapping_stamps_is_an_error(tmp_path):
    bag = write_bag(tmp_path / "late", frames=2, depth_offset_s=30.0)
    with pytest.raises(BagError, match="within"):
        read_bag(bag, DEFAULT_IMAGE, DEFAULT_INFO, DEFAULT_DEPTH, DEFAULT_POSE)


def test_partly_bad_bag_is_evaluated_on_its_good_pairs(tmp_path, capsys):
    # frame 1 has no valid depth: it stays in the sequence without ground truth, so pair
    # (1, 3) is skipped; frame 2's depth is zero (invalid) on its left half: still usable.
    # 8 frames at shift 2 → 6 pairs, 5 evaluated.
    def damage(i, d):
        if i == 1:
            return np.zeros_like(d)
        if i == 2:
            d = d.copy()
            d[:, :160] = 0
        return d
    bag = write_bag(tmp_path / "partly", frames=8, depth_fn=damage)
    r = read_bag(bag, DEFAULT_IMAGE, DEFAULT_INFO, DEFAULT_DEPTH, DEFAULT_POSE)
    assert len(r.frames) == 8 and r.incomplete == {"all-invalid depth": 1}
    assert r.frames[1].depth is None and r.frames[2].depth is not None
    assert r.frames[4].stamp - r.frames[0].stamp == pytest.approx(0.4, abs=1e-6)   # spacing kept
    js = tmp_path / "p.json"
    code, out, err = run_eval([str(bag), "--methods", "orb", "--shift", "2", "--json", str(js)],
                              capsys)
    assert code == 0, err
    res = json.loads(js.read_text())
    assert res["pairs"] == 5 and res["skipped"] == 1
    assert res["skipped_reasons"] == ["1-3: frame a has no depth"]
    assert res["settings"]["frames_without_ground_truth"] == {"all-invalid depth": 1}


def test_missing_tf_static_falls_back_to_the_airsim_preset(tmp_path):
    bag = write_bag(tmp_path / "notf", frames=2, tf_static=False)
    r = read_bag(bag, DEFAULT_IMAGE, DEFAULT_INFO, DEFAULT_DEPTH, DEFAULT_POSE)
    assert r.extrinsic == "airsim"
    with pytest.raises(BagError, match="tf_static"):
        read_bag(bag, DEFAULT_IMAGE, DEFAULT_INFO, DEFAULT_DEPTH, DEFAULT_POSE, extrinsic="tf_static")


# --------------------------------------------------------------------------- pieces

def test_pose_interpolation_slerps_between_stamps():
    def rz(deg):
        a = np.radians(deg) / 2
        return np.array([0, 0, np.sin(a), np.cos(a)])
    track = PoseTrack(np.array([0.0, 0.1]), np.array([[0, 0, 0], [1.0, 2.0, 0]]),
                      np.stack([rz(0), rz(20)]))
    T = track.at(0.025, 0.1)
    np.testing.assert_allclose(T[:3, 3], [0.25, 0.5, 0])
    np.testing.assert_allclose(T[:3, :3], quat_to_matrix(rz(5)), atol=1e-12)
    assert track.at(0.5, 0.1) is None and track.at(0.15, 0.1) is not None
    np.testing.assert_allclose(slerp(rz(10), -rz(30), 0.5), rz(20), atol=1e-12)   # shorter way


def test_static_chain_walks_edges_both_ways():
    A = np.eye(4)
    A[:3, 3] = (1, 0, 0)
    B = np.eye(4)
    B[:3, 3] = (0, 2, 0)
    edges = {("body", "cam_link"): A, ("cam_optical", "cam_link"): B}
    np.testing.assert_allclose(static_chain(edges, "body", "cam_optical")[:3, 3], (1, -2, 0))
    assert static_chain(edges, "body", "elsewhere") is None


def test_pairs_and_pose_errors():
    assert make_pairs(9, 9, BagOptions(shift=5)) == [(i, i + 5) for i in range(4)]
    assert make_pairs(9, 9, BagOptions(shift=2, stride=3, max_pairs=2)) == [(0, 2), (3, 5)]
    with pytest.raises(ValueError):
        make_pairs(9, 9, BagOptions(shift=0))
    T = np.eye(4)
    T[:3, 3] = (0, 0, 1)
    assert relative_pose_errors(None, None, T)[2] == np.inf
    assert relative_pose_errors(np.eye(3), np.array([0, 0, 2.0]), T) == (0.0, 0.0, 0.0)
    assert relative_pose_errors(np.eye(3), np.array([1.0, 0, 0]), T)[1] == pytest.approx(90)


def test_track_length_counts_consecutive_inlier_matches():
    from goodpoint_ros.core.keypoints import Features
    K = sb.sc.intrinsics((320, 240))
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.uniform(-3, 3, (80, 2)), rng.uniform(4, 8, (80, 1))], axis=1)

    class Sideways:
        """Frame k: camera at x = 0.1·k; sees points with id ≥ 10·k (10 vanish per frame)."""
        def detect(self, k):
            ids = np.arange(10 * k, 80)
            p = (X[ids] - [0.1 * k, 0, 0]) @ K.T
            return Features((p[:, :2] / p[:, 2:]).astype(np.float32), ids.astype(np.float32),
                            np.zeros((len(ids), 1), np.float32), (320, 240))

        def match(self, f0, f1):
            common = np.intersect1d(f0.scores, f1.scores)
            return np.stack([np.searchsorted(f0.scores, common),
                             np.searchsorted(f1.scores, common)], axis=1)

    class Frame:
        def __init__(self, k):
            self.image, self.K, self.dist = k, K, np.zeros(5)

    from goodpoint_ros.frontend.tracking import TrackLengths
    lengths, method = TrackLengths(), Sideways()
    frames = [Frame(k) for k in range(4)]
    for f0, f1 in zip(frames, frames[1:]):
        d0, d1 = method.detect(f0.image), method.detect(f1.image)
        lengths.update(len(d0), len(d1), inlier_links(method, d0, d1, f0, f1))
    out = lengths.summary()
    # ids 10–19 live 2 frames, 20–29 three, 30–79 four; ids 0–9 (one frame) are not tracks
    assert out["tracks"] == 70
    assert out["mean"] == pytest.approx((10 * 2 + 10 * 3 + 50 * 4) / 70)


def test_decode_image_honours_step_encoding_and_compression():
    from types import SimpleNamespace as NS

    import cv2

    from goodpoint_ros.evaluation.bags.replay import decode_depth, decode_image, to_uint8
    rgb = np.arange(4 * 3 * 3, dtype=np.uint8).reshape(4, 3, 3)
    padded = np.zeros((4, 12), np.uint8)                   # step 12 > 9 bytes per row
    padded[:, :9] = rgb.reshape(4, 9)
    msg = NS(encoding="rgb8", is_bigendian=0, height=4, width=3, step=12, data=padded.ravel())
    np.testing.assert_array_equal(decode_image(msg, "/t"), rgb[:, :, ::-1])
    m16 = np.array([[0, 1000], [65535, 3]], ">u2")
    msg = NS(encoding="mono16", is_bigendian=1, height=2, width=2, step=4,
             data=np.frombuffer(m16.tobytes(), np.uint8))
    np.testing.assert_array_equal(decode_image(msg, "/t"), m16.astype(np.uint16))
    assert to_uint8(decode_image(msg, "/t"))[1, 0] == 255
    ok, png = cv2.imencode(".png", rgb)
    np.testing.assert_array_equal(decode_image(NS(format="png", data=png.ravel()), "/t"), rgb)
    with pytest.raises(BagError, match="cannot decode"):
        decode_image(NS(format="jpeg", data=np.zeros(10, np.uint8)), "/t")
    with pytest.raises(BagError, match="/t: .*needs"):
        decode_image(NS(encoding="bgr8", is_bigendian=0, height=4, width=3, step=9,
                        data=np.zeros(20, np.uint8)), "/t")
    mm = np.array([[0, 1500]], "<u2")
    d = decode_depth(NS(encoding="16UC1", is_bigendian=0, height=1, width=2, step=4,
                        data=np.frombuffer(mm.tobytes(), np.uint8)), "/d")
    assert np.isnan(d[0, 0]) and d[0, 1] == pytest.approx(1.5)


def write_tf_robot_bag(out: Path, frames=8):
    """A robot-style bag: /camera/image_raw, camera_info, /tf odom→base_link (50 Hz) and
    /tf_static base_link→camera_link→camera_optical, no depth, no odometry topic."""
    from rosbags.rosbag2 import Writer
    world = sb.sc.village()
    K = sb.sc.intrinsics((320, 240))
    m = sb.Messages()
    st, T = m.store, m.T
    mount = sb.camera_extrinsic()
    link = np.eye(4)
    link[:3, 3] = mount[:3, 3]                        # base_link → camera_link: the offset
    optical = np.eye(4)
    optical[:3, :3] = mount[:3, :3]                   # camera_link → camera_optical: the axes

    def tfmsg(ns, pairs):
        out = []
        for parent, child, M in pairs:
            q = sb.quaternion_xyzw(M[:3, :3])
            out.append(T["geometry_msgs/msg/TransformStamped"](
                header=m.header(ns, parent), child_frame_id=child,
                transform=T["geometry_msgs/msg/Transform"](
                    translation=T["geometry_msgs/msg/Vector3"](x=M[0, 3], y=M[1, 3], z=M[2, 3]),
                    rotation=T["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3]))))
        return T["tf2_msgs/msg/TFMessage"](transforms=out)

    with Writer(out, version=9) as w:
        ci = w.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=st)
        cc = w.add_connection("/camera/camera_info", "sensor_msgs/msg/CameraInfo", typestore=st)
        ct = w.add_connection("/tf", "tf2_msgs/msg/TFMessage", typestore=st)
        cs = w.add_connection("/tf_static", "tf2_msgs/msg/TFMessage", typestore=st)
        w.write(cs, sb.START_NS, st.serialize_cdr(tfmsg(sb.START_NS, [
            ("base_link", "camera_link", link), ("camera_link", "camera_optical", optical)]),
            cs.msgtype))
        for k in range(frames * 5 + 5):
            t = k * 0.02 - 0.05
            ns = sb.START_NS + int((t + 0.1) * 1e9)
            w.write(ct, ns, st.serialize_cdr(tfmsg(ns, [("odom", "base_link",
                                                          sb.body_pose(t, 1.5))]), ct.msgtype))
        for i in range(frames):
            t = i * 0.1
            ns = sb.START_NS + int((t + 0.1) * 1e9)
            bgr, _ = sb.sc.render(world, K, sb.body_pose(t, 1.5) @ mount, (320, 240))
            w.write(ci, ns, st.serialize_cdr(m.image(ns, "camera_optical", bgr, "bgr8"),
                                             ci.msgtype))
            w.write(cc, ns, st.serialize_cdr(m.camera_info(ns, "camera_optical", K, (320, 240)),
                                             cc.msgtype))
    return out


def test_robot_bag_poses_come_from_tf_when_there_is_no_odometry(tmp_path, capsys):
    bag = write_tf_robot_bag(tmp_path / "robot", frames=8)
    r = read_bag(bag, "/camera/image_raw", "/camera/camera_info", None, DEFAULT_POSE,
                 require_pose=False)
    assert r.topics["pose"] == "/tf" and r.extrinsic == "tf_static" and len(r.frames) == 8
    expect = sb.body_pose(0.3, 1.5) @ sb.camera_extrinsic()
    np.testing.assert_allclose(r.frames[3].T_world_cam, expect, atol=1e-4)
    js = tmp_path / "robot.json"
    code, out, err = run_eval([str(bag), "--no-depth", "--image-topic", "/camera/image_raw",
                               "--camera-info-topic", "/camera/camera_info", "--methods", "sift",
                               "--shift", "3", "--json", str(js)], capsys)
    assert code == 0, err
    s = json.loads(js.read_text())["methods"]["sift"]
    assert s["pose_auc"]["20"] > 0.3 and s["rotation_error_deg"] < 2.0


def test_evaluation_streams_a_long_bag_in_bounded_memory():
    """Only the frames a pair still needs stay alive, however long the bag."""
    import weakref

    from goodpoint_ros.core.keypoints import Features
    from goodpoint_ros.evaluation.bags.evaluate import evaluate_bag
    from goodpoint_ros.evaluation.bags.replay import Frame
    K = sb.sc.intrinsics((64, 48))
    refs = []
    most = [0]

    def frames(n):
        for k in range(n):
            f = Frame(k, 0.1 * k, np.zeros((48, 64), np.uint8), K, np.zeros(5))
            refs.append(weakref.ref(f))
            most[0] = max(most[0], sum(r() is not None for r in refs))
            yield f
            del f

    class Nothing:
        def detect(self, image):
            return Features.empty((64, 48), 8)

        def match(self, f0, f1):
            return np.zeros((0, 2), np.int64)

    opts = BagOptions(shift=3, no_depth=True, progress=False, keep_examples=0)
    per_pair, skipped, _, tracks = evaluate_bag(frames(60), None, {"x": Nothing()}, opts)
    assert len(per_pair) == 57 and not skipped and tracks["x"]["tracks"] == 0
    assert 2 <= most[0] <= opts.shift + 2
    # two bags advance together: frame i of the first with i + shift of the second
    per_pair, _, _, _ = evaluate_bag(frames(20), frames(20), {"x": Nothing()},
                                     BagOptions(shift=3, stride=2, no_depth=True, progress=False,
                                                keep_examples=0))
    assert [(p["frame_a"], p["frame_b"]) for p in per_pair] == [(i, i + 3) for i in range(0, 17, 2)]
    assert most[0] <= 2 * (3 + 2)


def test_wrong_extrinsic_stops_the_cli_with_one_line(bags, capsys):
    code, out, err = run_eval([str(bags[0]), "--extrinsic", "optical", "--methods", "orb"], capsys)
    assert code == 2 and "--extrinsic" in err and err.count("\n") == 1
    code, _, err = run_eval([str(bags[0]), "--extrinsic", "optical", "--methods", "orb",
                             "--no-gt-check", "--max-pairs", "1"], capsys)
    assert code == 0, err                                  # the user may insist


def test_bad_option_values_give_one_line(bags, capsys):
    for argv in (["--roll", "120"], ["--shift", "0"], ["--depth-tolerance", "0"],
                 ["--coverage-radius", "-1"]):
        code, _, err = run_eval([str(bags[0]), "--methods", "orb", *argv], capsys)
        assert code == 2 and err.count("\n") == 1, argv


def test_bag_stream_opens_cheaply_and_can_be_read_twice(bags):
    from goodpoint_ros.evaluation.bags.replay import BagStream
    with BagStream(bags[0], DEFAULT_IMAGE, DEFAULT_INFO, DEFAULT_DEPTH, DEFAULT_POSE) as s:
        assert s.frames_read == 0 and s.extrinsic == "tf_static" and s.native_size == (320, 240)
        first = [f.stamp for f in s]
        second = [(f.index, f.stamp) for f in s]
    assert len(first) == 9 and second == list(enumerate(first))
    assert all(b - a == pytest.approx(0.1, abs=1e-6) for a, b in zip(first, first[1:]))
    with BagStream(bags[0], DEFAULT_IMAGE, DEFAULT_INFO, DEFAULT_DEPTH, DEFAULT_POSE,
                   max_frames=4) as s:
        assert len(list(s)) == 4


def test_pose_messages_of_every_supported_type():
    from types import SimpleNamespace as NS

    from goodpoint_ros.evaluation.bags.replay import _extrinsic, _pose_from_msg
    p, q = NS(x=1.0, y=2.0, z=3.0), NS(x=0.0, y=0.0, z=0.0, w=1.0)
    hdr = NS(frame_id="world", stamp=NS(sec=1, nanosec=0))
    pose = NS(position=p, orientation=q)
    msgs = {"nav_msgs/msg/Odometry": NS(header=hdr, child_frame_id="body",
                                        pose=NS(pose=pose)),
            "geometry_msgs/msg/PoseStamped": NS(header=hdr, pose=pose),
            "geometry_msgs/msg/PoseWithCovarianceStamped": NS(header=hdr, pose=NS(pose=pose)),
            "geometry_msgs/msg/TransformStamped": NS(header=hdr, child_frame_id="body",
                                                     transform=NS(translation=p, rotation=q))}
    for msgtype, msg in msgs.items():
        pos, quat, parent, child = _pose_from_msg(msg, msgtype)
        assert pos == (1.0, 2.0, 3.0) and quat == (0.0, 0.0, 0.0, 1.0) and parent == "world"
        assert child == ("" if "Pose" in msgtype and "Odometry" not in msgtype else "body")
    # PoseStamped names no body frame: the root of the static tree is taken as the body
    link = np.eye(4)
    link[:3, 3] = (0.5, 0, 0)
    static = {("base", "cam_link"): link, ("cam_link", "cam_optical"): np.eye(4)}
    owner = NS(extrinsic="auto")
    T = _extrinsic(owner, "auto", static, ("world", ""), "cam_optical", True)
    assert owner.extrinsic == "tf_static"
    np.testing.assert_allclose(T, link)
    owner = NS(extrinsic="auto")
    T = _extrinsic(owner, "auto", {}, ("world", "body"), "cam_optical", True)
    assert owner.extrinsic == "airsim"
    np.testing.assert_allclose(T[:3, :3] @ [0, 0, 1.0], [1.0, 0, 0])   # optical z = body forward


def test_frame_numbers_follow_the_stamps():
    from goodpoint_ros.evaluation.bags.replay import FrameNumbers
    numbers = FrameNumbers()
    out = [numbers.number(t) for t in (0.0, 0.1, 0.2, 0.5, 0.6, 0.69)]
    assert [n for n, _ in out] == [0, 1, 2, 5, 6, 7]                 # 0.3 and 0.4 are lost
    assert [w is not None for _, w in out] == [False, False, False, True, False, False]


def test_eval_bag_on_raw_frames_of_a_distorted_lens_matches_the_ideal_bag(tmp_path, capsys):
    """make-sample-bag --distortion: raw frames and their camera_info d.  The replay
    undistorts them, so the depth warp that makes the ground truth holds and the metrics
    are those of the same scene seen through an ideal lens."""
    scores = {}
    for name, d in (("ideal", ()), ("raw", (-0.3, 0.08, 0.0, 0.0, 0.0))):
        bag = sb.write_sample_bag(tmp_path / name, sb.SampleBagSpec(frames=9, distortion=d))
        js = tmp_path / f"{name}.json"
        code, _, err = run_eval([str(bag), "--methods", "sift", "--json", str(js)], capsys)
        assert code == 0, err
        scores[name] = json.loads(js.read_text())
    raw, ideal = scores["raw"], scores["ideal"]
    assert raw["settings"]["gt_check_agreement"] > 0.7
    for k in ("precision", "repeatability"):
        assert abs(raw["methods"]["sift"][k] - ideal["methods"]["sift"][k]) < 0.1, (k, raw, ideal)


def test_a_folder_that_is_not_a_rosbag2_says_what_it_lacks(bags, tmp_path):
    """An empty folder read as "Expected metadata file 'X' does not exist" (rosbags); a
    folder of .mcap files without metadata.yaml (the mcap CLI's) is readable file by file."""
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BagError, match=r"is not a rosbag2 folder \(no metadata.yaml"):
        read_bag(empty, DEFAULT_IMAGE, DEFAULT_INFO, DEFAULT_DEPTH, DEFAULT_POSE)
    loose = tmp_path / "loose"
    loose.mkdir()
    mcap = next(bags[0].glob("*.mcap"))
    shutil.copy(mcap, loose / mcap.name)
    with pytest.raises(BagError, match=rf"pass the file itself: .*{mcap.name}"):
        read_bag(loose, DEFAULT_IMAGE, DEFAULT_INFO, DEFAULT_DEPTH, DEFAULT_POSE)
    r = read_bag(loose / mcap.name, DEFAULT_IMAGE, DEFAULT_INFO, DEFAULT_DEPTH, DEFAULT_POSE)
    assert len(r.frames) == 9
