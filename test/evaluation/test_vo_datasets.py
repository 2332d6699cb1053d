"""Sequence loaders of `goodpoint eval vo` (goodpoint_ros/evaluation/vo/datasets.py): TUM RGB-D."""
import dataclasses

import cv2
import numpy as np
import pytest

from goodpoint_ros.core.geometry import quaternion_xyzw

D = [-0.3, 0.08, 0.0, 0.0, 0.0]          # a TUM fr1-sized distortion (fr1: 0.26, −0.95, …)


@pytest.fixture(scope="module")
def bag():
    import tempfile
    from pathlib import Path

    from goodpoint_ros.evaluation.vo.datasets import load_sequence
    from goodpoint_ros.synthetic.sample_bag import SampleBagSpec, write_sample_bag
    out = Path(tempfile.mkdtemp()) / "bag"
    write_sample_bag(out, SampleBagSpec(frames=12))
    return load_sequence(out)


def _write_tum(root, seq, distortion):
    """The bag as a TUM RGB-D folder whose frames went through ``distortion`` (raw frames),
    with its calibration.txt: fx fy cx cy and the distortion."""
    from goodpoint_ros.synthetic.sample_bag import distortion_maps
    c = seq.camera
    mx, my = distortion_maps(c.K, distortion, seq.size)
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    rgb, depth, gt = [], [], []
    for f in seq.frames():
        name = f"{f.stamp:.6f}.png"
        cv2.imwrite(str(root / "rgb" / name), cv2.remap(f.image, mx, my, cv2.INTER_LINEAR))
        d = cv2.remap(np.nan_to_num(f.depth), mx, my, cv2.INTER_NEAREST)
        cv2.imwrite(str(root / "depth" / name), np.round(d * 5000).astype(np.uint16))
        rgb.append(f"{f.stamp:.6f} rgb/{name}")
        depth.append(f"{f.stamp:.6f} depth/{name}")
        T = f.T_world_cam
        gt.append(" ".join(f"{v:.9f}" for v in [f.stamp, *T[:3, 3], *quaternion_xyzw(T[:3, :3])]))
    for fname, lines in (("rgb.txt", rgb), ("depth.txt", depth), ("groundtruth.txt", gt)):
        (root / fname).write_text("# timestamp data\n" + "\n".join(lines) + "\n")
    (root / "calibration.txt").write_text(" ".join(str(v) for v in [c.fx, c.fy, c.cx, c.cy, *D]))
    return root


def test_tum_frames_with_distortion_in_calibration_are_undistorted(bag, tmp_path):
    from goodpoint_ros.evaluation.vo.datasets import load_sequence
    from goodpoint_ros.evaluation.vo.run import method_source, run_sequence
    from goodpoint_ros.odometry.config import VOConfig
    seq = load_sequence(_write_tum(tmp_path / "tum", bag, D))
    assert seq.layout == "tum" and any("undistorted" in n for n in seq.notes)
    ideal = cv2.cvtColor(next(iter(bag.frames(1))).image, cv2.COLOR_BGR2GRAY).astype(np.float64)
    got = cv2.cvtColor(seq.read(0).image, cv2.COLOR_BGR2GRAY).astype(np.float64)
    inner = (slice(40, 200), slice(50, 270))
    a, b = got[inner] - got[inner].mean(), ideal[inner] - ideal[inner].mean()
    assert (a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()) > 0.95
    r = run_sequence(seq, method_source("sift", 1000), VOConfig(mode="rgbd"))
    m = r.metrics()
    assert m["ate"]["rmse"] <= 0.01 * m["path_length_m"], (m["ate"]["rmse"], m["path_length_m"])

    # the same raw frames read as if undistorted (no d in calibration.txt): far off
    (tmp_path / "tum" / "calibration.txt").write_text(
        " ".join(str(v) for v in [bag.camera.fx, bag.camera.fy, bag.camera.cx, bag.camera.cy]))
    wrong = run_sequence(load_sequence(tmp_path / "tum"), method_source("sift", 1000),
                         VOConfig(mode="rgbd")).metrics()
    assert wrong["ate"]["rmse"] > 2 * m["ate"]["rmse"]


def test_tum_calibration_with_a_wrong_count_of_numbers_is_a_clear_error(bag, tmp_path):
    from goodpoint_ros.evaluation.vo.datasets import DatasetError, load_sequence
    root = _write_tum(tmp_path / "tum", bag, D)
    (root / "calibration.txt").write_text("525 525 319.5")
    with pytest.raises(DatasetError, match="expected 'fx fy cx cy"):
        load_sequence(root)


def test_bag_of_raw_distorted_frames_is_undistorted_from_its_camera_info(tmp_path):
    """make-sample-bag with ``distortion``: raw frames and their camera_info d, as a real
    lens records them.  The bag replay undoes it (for `goodpoint eval vo` and `eval bag`
    alike): the VO is as good as on an ideal bag, where taking the raw frames for pinhole
    frames is far off."""
    from goodpoint_ros.core.config import AIRSIM_TOPICS as T
    from goodpoint_ros.evaluation.bags.replay import read_bag
    from goodpoint_ros.evaluation.vo.datasets import load_sequence
    from goodpoint_ros.evaluation.vo.run import method_source, run_sequence
    from goodpoint_ros.odometry.config import VOConfig
    from goodpoint_ros.synthetic.sample_bag import SampleBagSpec, write_sample_bag
    ideal = load_sequence(write_sample_bag(tmp_path / "ideal", SampleBagSpec(frames=12)))
    raw_bag = write_sample_bag(tmp_path / "raw", SampleBagSpec(frames=12, distortion=tuple(D)))
    raw = load_sequence(raw_bag)
    assert any("undistorted" in n for n in raw.notes)
    recorded = read_bag(raw_bag, T.image, T.camera_info, T.depth, T.pose, "auto",
                        eval_size=None, undistort=False).frames
    assert recorded[0].dist.tolist() == D and recorded[0].distortion_model == "plumb_bob"
    assert not read_bag(raw_bag, T.image, T.camera_info, T.depth, T.pose, "auto",
                        eval_size=None, max_frames=1).frames[0].dist.size      # pinhole now
    a = cv2.cvtColor(raw.read(0).image, cv2.COLOR_BGR2GRAY).astype(np.float64)[40:200, 50:270]
    b = cv2.cvtColor(ideal.read(0).image, cv2.COLOR_BGR2GRAY).astype(np.float64)[40:200, 50:270]
    a, b = a - a.mean(), b - b.mean()
    assert (a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()) > 0.95
    sift = method_source("sift", 1000)
    m = run_sequence(raw, sift, VOConfig(mode="rgbd")).metrics()
    assert m["ate"]["rmse"] <= 0.01 * m["path_length_m"]
    # the recorded frames taken for pinhole frames (the loader before session 17)
    as_pinhole = dataclasses.replace(raw, read=lambda i: dataclasses.replace(
        raw.read(i), image=recorded[i].image, depth=recorded[i].depth))
    wrong = run_sequence(as_pinhole, sift, VOConfig(mode="rgbd")).metrics()
    assert wrong["ate"]["rmse"] > 2 * m["ate"]["rmse"], (m["ate"]["rmse"], wrong["ate"]["rmse"])
