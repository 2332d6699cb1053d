"""The rendered stereo sequence: a rectified rig whose geometry the KITTI loader recovers.

Disparities measured by matching the two written images must give the rendered depth,
matches must lie on one row, the poses must be the trajectory's, and an interrupted
write must leave nothing behind.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from goodpoint_ros.evaluation.vo.datasets import load_sequence
from goodpoint_ros.synthetic import scene as sc
from goodpoint_ros.synthetic import stereo_sequence as ss


@pytest.fixture(scope="module")
def spec():
    return ss.StereoSequenceSpec(frames=6, size=(320, 240), baseline=0.5, seed=3)


@pytest.fixture(scope="module")
def sequence(tmp_path_factory, spec):
    return ss.write_stereo_sequence(tmp_path_factory.mktemp("stereo") / "seq", spec)


def test_loader_reads_the_rig_and_the_poses(sequence, spec):
    seq = load_sequence(sequence)
    assert seq.layout == "kitti" and "stereo" in seq.modes and len(seq) == spec.frames
    assert seq.rig.baseline == pytest.approx(spec.baseline)
    K = sc.intrinsics(spec.size)
    assert seq.camera.fx == pytest.approx(K[0, 0]) and seq.camera.cx == pytest.approx(K[0, 2])
    np.testing.assert_allclose(seq.gt[0], np.eye(4), atol=1e-12)
    T = ss.camera_poses(spec)
    np.testing.assert_allclose(seq.gt[-1], np.linalg.inv(T[0]) @ T[-1], atol=1e-9)
    step = np.linalg.norm(seq.gt[1][:3, 3])
    assert step == pytest.approx(spec.speed / spec.fps, rel=0.3)    # ~0.15 m per frame


def test_disparities_give_the_rendered_depth(sequence, spec):
    left = cv2.imread(str(sequence / "image_0" / "000002.png"), cv2.IMREAD_GRAYSCALE)
    right = cv2.imread(str(sequence / "image_1" / "000002.png"), cv2.IMREAD_GRAYSCALE)
    K = sc.intrinsics(spec.size)
    _, depth = sc.render(sc.village(seed=spec.seed), K, ss.camera_poses(spec)[2], spec.size)
    sift = cv2.SIFT_create(1000)
    k0, d0 = sift.detectAndCompute(left, None)
    k1, d1 = sift.detectAndCompute(right, None)
    pairs = [m for m, n in cv2.BFMatcher().knnMatch(d0, d1, k=2) if m.distance < 0.7 * n.distance]
    p0 = np.array([k0[m.queryIdx].pt for m in pairs])
    p1 = np.array([k1[m.trainIdx].pt for m in pairs])
    assert len(p0) > 50
    dy, disp = p1[:, 1] - p0[:, 1], p0[:, 0] - p1[:, 0]
    assert np.median(np.abs(dy)) < 0.3                      # rectified: same row
    z = depth[np.rint(p0[:, 1]).astype(int), np.rint(p0[:, 0]).astype(int)]
    ok = np.isfinite(z) & (disp > 1)
    assert ok.sum() > 30
    z_stereo = K[0, 0] * spec.baseline / disp[ok]
    assert np.median(np.abs(z_stereo / z[ok] - 1)) < 0.05   # right camera at +B along x


def test_refuses_an_existing_path_and_cleans_up_an_interrupted_write(tmp_path, monkeypatch):
    out = tmp_path / "seq"
    out.mkdir()
    with pytest.raises(FileExistsError):
        ss.write_stereo_sequence(out, ss.StereoSequenceSpec(frames=2, size=(64, 48)))
    out.rmdir()
    calls = []

    def failing(*a, **k):
        calls.append(1)
        if len(calls) > 2:
            raise KeyboardInterrupt
        return np.zeros((48, 64, 3), np.uint8), np.ones((48, 64), np.float32)

    monkeypatch.setattr(sc, "render", failing)
    with pytest.raises(KeyboardInterrupt):
        ss.write_stereo_sequence(out, ss.StereoSequenceSpec(frames=4, size=(64, 48)))
    assert list(tmp_path.iterdir()) == []


def test_a_writer_that_finished_first_keeps_its_sequence(tmp_path, monkeypatch):
    """Two writers of one path: the one that finishes second gets FileExistsError, and the
    first one's sequence stays whole (no bare "Directory not empty", no temp dir left)."""
    out = tmp_path / "seq"
    real, other = sc.render, []

    def racing(*a, **k):
        if not other:                   # the other writer finishes during our first frame
            other.append(1)
            ss.write_stereo_sequence(out, ss.StereoSequenceSpec(frames=2, size=(64, 48)))
        return real(*a, **k)

    monkeypatch.setattr(ss.sc, "render", racing)
    with pytest.raises(FileExistsError, match="seq"):
        ss.write_stereo_sequence(out, ss.StereoSequenceSpec(frames=3, size=(64, 48)))
    assert [p.name for p in tmp_path.iterdir()] == ["seq"]
    assert len(load_sequence(out)) == 2


@pytest.mark.parametrize("kw", [{"baseline": 0.0}, {"frames": 1}, {"motion": "loops"}])
def test_bad_spec_is_one_clear_error(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        ss.StereoSequenceSpec(**kw).validate()
