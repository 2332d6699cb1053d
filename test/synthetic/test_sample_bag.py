"""The sample-bag generator and the ground truth it carries.

Ground-truth keypoints (points of a warped exactly into b) must score
repeatability and precision 1; a pose corrupted by a few degrees must make
precision collapse; a wrong extrinsic preset must be caught.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from goodpoint_ros.evaluation.bags.depth_warp import pair_warps
from goodpoint_ros.evaluation.bags.evaluate import (
    DEFAULT_DEPTH,
    DEFAULT_IMAGE,
    DEFAULT_INFO,
    DEFAULT_POSE,
    GroundTruthCheck,
    gt_agreement,
)
from goodpoint_ros.evaluation.bags.replay import BagError, read_bag
from goodpoint_ros.evaluation.metrics import pair_metrics
from goodpoint_ros.synthetic import sample_bag as sb


@pytest.fixture(scope="module")
def day_bag(tmp_path_factory):
    return sb.write_sample_bag(tmp_path_factory.mktemp("bags") / "day",
                               sb.SampleBagSpec(frames=12))


def replay(path, extrinsic="auto", eval_size=(320, 240)):
    return read_bag(path, DEFAULT_IMAGE, DEFAULT_INFO, DEFAULT_DEPTH, DEFAULT_POSE,
                    extrinsic=extrinsic, eval_size=eval_size)


def smooth_grid(depth, step=6, margin=6):
    """Integer pixels whose 7×7 neighbourhood lies on one smooth surface (no depth edge)."""
    h, w = depth.shape
    pts = []
    for y in range(margin, h - margin, step):
        for x in range(margin, w - margin, step):
            win = depth[y - 3:y + 4, x - 3:x + 4]
            if np.isfinite(win).all() and np.ptp(win) < 0.1 * win.min():
                pts.append((x, y))
    return np.array(pts, np.float64)


def test_bag_has_the_airsim_topics_with_exact_depth(day_bag):
    from rosbags.highlevel import AnyReader
    with AnyReader([Path(day_bag)]) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
        counts = {c.topic: c.msgcount for c in reader.connections}
    assert topics[DEFAULT_IMAGE] == "sensor_msgs/msg/Image"
    assert topics[DEFAULT_DEPTH] == "sensor_msgs/msg/Image"
    assert topics[DEFAULT_INFO] == "sensor_msgs/msg/CameraInfo"
    assert topics[DEFAULT_POSE] == "nav_msgs/msg/Odometry"
    assert topics["/tf_static"] == "tf2_msgs/msg/TFMessage"
    assert counts[DEFAULT_IMAGE] == counts[DEFAULT_DEPTH] == 12
    assert counts[DEFAULT_POSE] > 3 * 12                  # 50 Hz odometry vs 10 Hz frames
    r = replay(day_bag, eval_size=None)
    assert len(r.frames) == 12 and r.extrinsic == "tf_static" and not r.incomplete
    f = r.frames[0]
    assert f.size == (320, 240) and f.image.dtype == np.uint8 and f.image.ndim == 3
    valid = np.isfinite(f.depth)
    assert 0.5 < valid.mean() < 1.0                       # sky has no depth
    assert np.nanmin(f.depth) > 0.5
    # the generator's own camera matches what the replay reconstructs
    K = sb.sc.intrinsics((320, 240))
    np.testing.assert_allclose(f.K, K)
    T_expected = sb.body_pose(0.0, 1.5) @ sb.camera_extrinsic()
    np.testing.assert_allclose(f.T_world_cam, T_expected, atol=1e-4)


def test_ground_truth_keypoints_score_one(day_bag):
    r = replay(day_bag)
    fa, fb = r.frames[2], r.frames[7]
    ab, ba = pair_warps(fa, fb)
    kpts_a = smooth_grid(fa.depth)
    warped, valid = ab(kpts_a)
    assert valid.sum() > 100
    kpts_a, kpts_b = kpts_a[valid], warped[valid]
    matches = np.stack([np.arange(len(kpts_a))] * 2, axis=1)
    m = pair_metrics(kpts_a, kpts_b, matches, ab, ba, fa.size, fb.size, (3, 5), 20)
    assert m["precision"] == pytest.approx(1.0)
    assert m["repeatability"] == pytest.approx(1.0)
    assert m["coverage"] > 0.3


def test_poses_corrupted_by_a_few_degrees_make_precision_collapse(day_bag):
    r = replay(day_bag)
    fa, fb = r.frames[2], r.frames[7]
    ab, ba = pair_warps(fa, fb)
    kpts_a = smooth_grid(fa.depth)
    warped, valid = ab(kpts_a)
    kpts_a, kpts_b = kpts_a[valid], warped[valid]
    matches = np.stack([np.arange(len(kpts_a))] * 2, axis=1)
    c, s = np.cos(np.radians(3.0)), np.sin(np.radians(3.0))
    tilt = np.eye(4)
    tilt[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]    # 3° about the camera's y axis
    fb.T_world_cam = fb.T_world_cam @ tilt
    bad_ab, bad_ba = pair_warps(fa, fb)
    m = pair_metrics(kpts_a, kpts_b, matches, bad_ab, bad_ba, fa.size, fb.size, (3, 5), 20)
    assert m["precision"] < 0.2


def check_ground_truth(pairs, roll, rel_tolerance, extrinsic, samples=3):
    """GroundTruthCheck offered every pair, as evaluate_bag offers them."""
    check = GroundTruthCheck(roll, rel_tolerance, extrinsic, samples, spacing=1)
    for fa, fb in pairs:
        check.offer(fa, fb)
        if check.done:
            break
    return check.agreement if check.done else check.decide()


def test_wrong_extrinsic_preset_is_caught(day_bag):
    good = replay(day_bag)
    pairs = [(good.frames[i], good.frames[i + 5]) for i in range(0, 7, 3)]
    assert check_ground_truth(pairs, 0.0, 0.05, good.extrinsic) > 0.7
    air = replay(day_bag, extrinsic="airsim")            # the mount rotation without its offset
    assert air.extrinsic == "airsim"
    assert check_ground_truth([(air.frames[0], air.frames[5])], 0.0, 0.05, "airsim") > 0.5
    wrong = replay(day_bag, extrinsic="optical")         # body pose taken as the camera's
    with pytest.raises(BagError, match="--extrinsic"):
        check_ground_truth([(wrong.frames[i], wrong.frames[i + 5]) for i in range(0, 7, 3)],
                           0.0, 0.05, "optical")


def test_rolled_second_image_keeps_the_ground_truth(day_bag):
    r = replay(day_bag)
    agree, n = gt_agreement(r.frames[1], r.frames[6], roll=5.0)
    assert n >= 20 and agree > 0.7


def test_day_and_night_share_trajectory_and_depth(day_bag, tmp_path):
    night = sb.write_sample_bag(tmp_path / "night", sb.SampleBagSpec(frames=3, lighting="night"))
    d, n = replay(day_bag).frames[:3], replay(night).frames
    for fd, fn in zip(d, n):
        np.testing.assert_allclose(fd.T_world_cam, fn.T_world_cam)
        np.testing.assert_array_equal(np.isnan(fd.depth), np.isnan(fn.depth))
        assert fn.image.mean() < 0.6 * fd.image.mean()


def test_sqlite3_storage_and_no_overwrite():
    root = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        out = sb.write_sample_bag(Path(tmp) / "bag", sb.SampleBagSpec(frames=2, storage="sqlite3"))
        assert list(out.glob("*.db3"))
        assert len(replay(out).frames) == 2
        with pytest.raises(FileExistsError):
            sb.write_sample_bag(out, sb.SampleBagSpec(frames=2))
    with pytest.raises(ValueError):
        sb.write_sample_bag(Path("/nonexistent-dir-xyz/bag"), sb.SampleBagSpec(frames=1))


def test_cli_make_sample_bag(tmp_path, capsys):
    from goodpoint_ros.cli import main
    out = tmp_path / "cli_bag"
    assert main(["make-sample-bag", str(out), "--frames", "3", "--lighting", "night",
                 "--no-progress"]) == 0
    assert "3 frames" in capsys.readouterr().out
    assert len(replay(out).frames) == 3
    assert main(["make-sample-bag", str(out), "--frames", "3"]) == 2      # exists: one-line error
    assert "exists" in capsys.readouterr().err


def test_a_larger_bag_is_evaluated_at_320x240_with_k_scaled(tmp_path):
    from goodpoint_ros.evaluation.bags.replay import scale_intrinsics
    big = sb.write_sample_bag(tmp_path / "big", sb.SampleBagSpec(frames=6, size=(640, 480)))
    r = replay(big)                                       # default eval size 320x240
    assert r.native_size == (640, 480)
    f = r.frames[0]
    assert f.size == (320, 240) and f.depth.shape == (240, 320)
    K = scale_intrinsics(sb.sc.intrinsics((640, 480)), (640, 480), (320, 240))
    np.testing.assert_allclose(f.K, K)
    # pixel-centre convention: x' = (x + 0.5)/2 − 0.5, so cx 320 → 159.75, f 320 → 160
    assert K[0, 2] == pytest.approx(159.75) and K[0, 0] == pytest.approx(160.0)
    agree, n = gt_agreement(r.frames[0], r.frames[5])
    assert n >= 20 and agree > 0.7
