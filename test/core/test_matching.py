"""Matching: mutual NN with θ_desc, ratio test, USAC verification on real images."""
import cv2
import numpy as np
import pytest

from goodpoint_ros.core.config import STILL_PAIR, VIDEO, GoodPointConfig
from goodpoint_ros.core.keypoints import Features
from goodpoint_ros.core.matching import (
    descriptor_distances,
    match_descriptors,
    match_features,
    mutual_nn_match,
    resolve_verification,
    verify_essential,
    verify_homography,
)


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_mutual_and_threshold():
    rng = np.random.default_rng(0)
    d0 = unit(rng.standard_normal((50, 32)))
    # d1: noisy copies of d0[:30] in shuffled order + 20 unrelated descriptors
    perm = rng.permutation(30)
    d1 = unit(np.concatenate([d0[perm] + 0.05 * rng.standard_normal((30, 32)),
                              rng.standard_normal((20, 32))]))
    matches, dist = match_descriptors(d0, d1, GoodPointConfig(descriptor_threshold=0.8))
    truth = {(int(p), k) for k, p in enumerate(perm)}
    assert {tuple(m) for m in matches.tolist()} == truth
    assert np.all(dist <= 0.8) and np.all(np.diff(dist) >= 0)
    # mutuality: no index repeated on either side
    assert len(set(matches[:, 0])) == len(matches) == len(set(matches[:, 1]))


def test_threshold_is_l2_between_unit_vectors():
    a = np.array([[1.0, 0.0]], np.float32)
    cos = 0.68 + 1e-3                        # just above cos = 0.68 ≡ L2 0.8
    b = np.array([[cos, np.sqrt(1 - cos ** 2)]], np.float32)
    assert len(match_descriptors(a, b, GoodPointConfig(descriptor_threshold=0.8))[0]) == 1
    cos = 0.68 - 1e-3
    b = np.array([[cos, np.sqrt(1 - cos ** 2)]], np.float32)
    assert len(match_descriptors(a, b, GoodPointConfig(descriptor_threshold=0.8))[0]) == 0


def test_non_mutual_nearest_neighbour_rejected():
    # 0 → 0 is 0's nearest, but 1 is closer to 0 in set 1's view: not mutual
    dist = np.array([[0.1, 0.9], [0.05, 0.2]])
    m, _ = mutual_nn_match(dist, max_distance=1.0)
    assert m.tolist() == [[1, 0]]
    m, _ = mutual_nn_match(dist, max_distance=1.0, mutual=False)
    assert sorted(m.tolist()) == [[0, 0], [1, 0]]


def test_ratio_test():
    dist = np.array([[0.10, 0.11, 0.9], [0.5, 0.9, 0.1]])
    m, _ = mutual_nn_match(dist, max_distance=1.0, ratio=0.8)
    assert m.tolist() == [[1, 2]]           # row 0 is ambiguous (0.10 vs 0.11)


def test_empty_inputs():
    m, d = match_descriptors(np.zeros((0, 8), np.float32), unit(np.ones((3, 8))))
    assert m.shape == (0, 2) and d.shape == (0,)
    H, inl = verify_homography(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros((0, 2), int))
    assert H is None and inl.shape == (0,)


def test_homography_verification_on_real_pair(sample_pair):
    img0, img1, H_true = sample_pair
    sift = cv2.SIFT_create(1500)
    k0, d0 = sift.detectAndCompute(img0, None)
    k1, d1 = sift.detectAndCompute(img1, None)
    p0 = np.array([k.pt for k in k0], np.float32)
    p1 = np.array([k.pt for k in k1], np.float32)
    m, _ = mutual_nn_match(descriptor_distances(unit(d0), unit(d1)), max_distance=0.7)
    H, inl = verify_homography(p0, p1, m, threshold=3.0)
    assert H is not None and inl.sum() > 50
    corners = np.array([[0, 0, 1], [383, 0, 1], [383, 511, 1], [0, 511, 1]], float).T
    a = H @ corners
    b = H_true @ corners
    err = np.linalg.norm(a[:2] / a[2] - b[:2] / b[2], axis=0).mean()
    assert err < 5.0
    # inliers agree with the ground truth; outliers mostly don't
    w = H_true @ np.c_[p0[m[:, 0]], np.ones(len(m))].T
    gt_err = np.linalg.norm((w[:2] / w[2]).T - p1[m[:, 1]], axis=1)
    assert np.median(gt_err[inl]) < 2.0


def test_essential_verification_recovers_motion():
    rng = np.random.default_rng(3)
    K = np.array([[300.0, 0, 160], [0, 300, 120], [0, 0, 1]])
    X = np.c_[rng.uniform(-2, 2, 200), rng.uniform(-1.5, 1.5, 200), rng.uniform(4, 8, 200)]
    angle = np.deg2rad(5)
    R = cv2.Rodrigues(np.array([0, angle, 0]))[0]
    t = np.array([0.5, 0.0, 0.1])
    x0 = (K @ X.T).T
    X1 = (R @ X.T).T + t
    x1 = (K @ X1.T).T
    p0, p1 = x0[:, :2] / x0[:, 2:], x1[:, :2] / x1[:, 2:]
    p1[:20] += rng.uniform(20, 40, (20, 2))       # 10% gross outliers
    matches = np.stack([np.arange(200), np.arange(200)], 1)
    E, R_est, t_est, inl = verify_essential(p0, p1, matches, K)
    assert E is not None
    assert inl[20:].mean() > 0.95 and inl[:20].mean() < 0.2
    rot_err = np.rad2deg(np.arccos(np.clip((np.trace(R_est.T @ R) - 1) / 2, -1, 1)))
    assert rot_err < 0.5
    assert np.dot(t_est, t / np.linalg.norm(t)) > 0.99


def test_match_features_end_to_end_shapes():
    rng = np.random.default_rng(0)
    d = unit(rng.standard_normal((40, 256)))
    k = rng.uniform(0, 200, (40, 2)).astype(np.float32)
    f0 = Features(k, np.ones(40, np.float32), d, (200, 200))
    f1 = Features(k + np.float32(5), np.ones(40, np.float32), d, (200, 200))
    res = match_features(f0, f1, GoodPointConfig())
    assert len(res) == 40 and res.model_type == "homography" and res.inliers.all()
    np.testing.assert_allclose(res.model[:2, 2], [5, 5], atol=1e-3)
    with pytest.raises(ValueError):
        match_features(f0, f1, verify="essential")


def test_match_features_verifies_with_the_fundamental_matrix_without_intrinsics():
    # a 3-D scene seen from two poses, no K: F keeps the consistent matches, drops outliers
    rng = np.random.default_rng(5)
    K = np.array([[300.0, 0, 160], [0, 300, 120], [0, 0, 1]])
    X = np.c_[rng.uniform(-2, 2, 150), rng.uniform(-1.5, 1.5, 150), rng.uniform(3, 9, 150)]
    R = cv2.Rodrigues(np.array([0.02, np.deg2rad(4), 0]))[0]
    x0, x1 = (K @ X.T).T, (K @ ((R @ X.T).T + [0.4, 0.05, 0.1]).T).T
    p0, p1 = x0[:, :2] / x0[:, 2:], x1[:, :2] / x1[:, 2:]
    p1[:15] = rng.uniform((0, 0), (320, 240), (15, 2))      # 10% matches to anywhere
    d = unit(rng.standard_normal((150, 256)))
    f0 = Features(p0.astype(np.float32), np.ones(150, np.float32), d, (320, 240))
    f1 = Features(p1.astype(np.float32), np.ones(150, np.float32), d, (320, 240))
    res = match_features(f0, f1, GoodPointConfig(), verify="fundamental", ransac_threshold=1.0)
    assert res.model_type == "fundamental" and res.model.shape == (3, 3) and res.verified
    assert len(res) == 150
    inl = np.zeros(150, bool)
    inl[res.matches[res.inliers, 0]] = True                   # by point, not by match order
    assert inl[15:].mean() > 0.9 and inl[:15].mean() < 0.3
    h0 = np.c_[p0[15:], np.ones(135)]
    h1 = np.c_[p1[15:], np.ones(135)]
    assert np.median(np.abs(np.sum(h1 @ res.model * h0, axis=1))) < 1e-2   # x1ᵀ F x0 ≈ 0
    # `auto` for video (VIDEO: no intrinsics → fundamental) is the same fit
    auto = match_features(f0, f1, GoodPointConfig(), ransac_threshold=VIDEO.ransac_threshold,
                          uncalibrated=VIDEO.uncalibrated)
    assert auto.model_type == "fundamental"
    np.testing.assert_array_equal(auto.inliers, res.inliers)


def test_auto_has_one_meaning_essential_with_intrinsics_else_the_uncalibrated_model():
    for kind in (STILL_PAIR, VIDEO):
        assert resolve_verification("auto", True, kind.uncalibrated) == "essential"
        assert resolve_verification("auto", False, kind.uncalibrated) == kind.uncalibrated
        assert resolve_verification("homography", True, kind.uncalibrated) == "homography"
    assert (STILL_PAIR.uncalibrated, VIDEO.uncalibrated) == ("homography", "fundamental")
    assert STILL_PAIR.ransac_threshold > VIDEO.ransac_threshold   # far-apart stills vs video
    with pytest.raises(ValueError, match="unknown verification 'affine'"):
        resolve_verification("affine", False, "homography")
    with pytest.raises(ValueError, match="uncalibrated"):
        resolve_verification("auto", False, "essential")
