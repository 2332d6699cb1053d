"""Evaluation metrics on hand-made cases whose answers are worked out by hand."""
import math

import numpy as np
import pytest

from goodpoint_ros.evaluation.metrics import (
    accuracy_at,
    apply_homography,
    corner_error,
    coverage,
    eps_key,
    harmonic_mean,
    homography_warp,
    inside_image,
    match_correctness,
    pair_metrics,
    pose_auc,
    repeatability,
    rotation_error_deg,
    translation_error_deg,
)


def translation(tx, ty):
    return np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], np.float64)


# --------------------------------------------------------------------------- warps

def test_inside_image_uses_pixel_centre_convention():
    pts = np.array([[-0.5, 0], [-0.51, 0], [99.49, 0], [99.5, 0], [0, 49.49], [0, 49.5],
                    [np.nan, 3]])
    assert inside_image(pts, (100, 50)).tolist() == [True, False, True, False, True, False, False]


def test_homography_warp_moves_points_and_marks_those_leaving_b():
    warp = homography_warp(translation(10, -2), (100, 50))
    out, valid = warp(np.array([[5, 5], [89.4, 10], [89.6, 10], [5, 1]], np.float32))
    np.testing.assert_allclose(out, [[15, 3], [99.4, 8], [99.6, 8], [15, -1]], atol=1e-5)
    assert valid.tolist() == [True, True, False, False]


def test_point_mapped_behind_the_camera_is_invalid():
    # w = 1 - x/50: points with x > 50 go through the line at infinity.
    H = np.array([[1, 0, 0], [0, 1, 0], [-1 / 50, 0, 1]], np.float64)
    out, front = apply_homography(H, np.array([[10, 5], [60, 5]]))
    assert front.tolist() == [True, False]
    _, valid = homography_warp(H, (10000, 10000))(np.array([[10, 5], [60, 5]]))
    assert valid.tolist() == [True, False]


def test_bad_homography_is_a_value_error():
    with pytest.raises(ValueError, match="3x3"):
        homography_warp(np.eye(2), (10, 10))
    with pytest.raises(ValueError):
        homography_warp(np.full((3, 3), np.nan), (10, 10))


# --------------------------------------------------------------------------- repeatability / precision

WARPED = np.array([[0, 0], [10, 10], [50, 50]], np.float64)
VALID = np.array([True, True, False])
KB = np.array([[1, 1], [30, 30]], np.float64)


def test_repeatability_counts_valid_keypoints_near_a_b_keypoint():
    assert repeatability(WARPED, VALID, KB, 3) == pytest.approx(0.5)      # (0,0)~(1,1) only
    assert repeatability(WARPED, VALID, KB, 13) == pytest.approx(1.0)     # |(10,10)-(1,1)|=12.7
    assert repeatability(WARPED, VALID, KB, 1.4) == pytest.approx(0.0)    # sqrt(2)=1.414 > 1.4
    # the invalid point at (50,50) is ignored even with a b-keypoint on top of it
    assert repeatability(WARPED, VALID, np.array([[50, 50]]), 3) == 0.0
    assert repeatability(WARPED, VALID, np.zeros((0, 2)), 3) == 0.0


def test_repeatability_is_nan_without_valid_keypoints():
    assert math.isnan(repeatability(WARPED, np.zeros(3, bool), KB, 3))
    assert math.isnan(repeatability(np.zeros((0, 2)), np.zeros(0, bool), KB, 3))


def test_match_correctness_excludes_matches_of_invalid_keypoints():
    matches = np.array([[0, 0], [1, 1], [2, 0]])
    prec, correct = match_correctness(WARPED, VALID, KB, matches, 3)
    assert correct.tolist() == [True, False, False]
    assert prec == pytest.approx(0.5)                 # 1 correct of 2 valid; match 2 excluded
    prec, correct = match_correctness(WARPED, VALID, KB, matches, 30)
    assert correct.tolist() == [True, True, False] and prec == 1.0


def test_precision_is_nan_without_valid_matches():
    prec, correct = match_correctness(WARPED, VALID, KB, np.array([[2, 1]]), 3)
    assert math.isnan(prec) and correct.tolist() == [False]
    prec, correct = match_correctness(WARPED, VALID, KB, np.zeros((0, 2), int), 3)
    assert math.isnan(prec) and correct.shape == (0,)


# --------------------------------------------------------------------------- coverage

def test_coverage_of_one_disc_is_its_area_over_the_image():
    c = coverage(np.array([[50, 50]]), [0], (100, 100), 10)
    assert c == pytest.approx(math.pi * 100 / 1e4, rel=0.05)


def test_coverage_takes_the_union_and_clips_at_the_border():
    one = coverage(np.array([[50, 50]]), [0], (100, 100), 10)
    same = coverage(np.array([[50, 50], [50, 50]]), [0, 1], (100, 100), 10)
    apart = coverage(np.array([[20, 20], [70, 70]]), [0, 1], (100, 100), 10)
    overlap = coverage(np.array([[50, 50], [55, 50]]), [0, 1], (100, 100), 10)
    corner = coverage(np.array([[0, 0]]), [0], (100, 100), 10)
    assert same == pytest.approx(one)
    assert apart == pytest.approx(2 * one, rel=0.02)
    assert one < overlap < 2 * one
    assert corner == pytest.approx(one / 4, rel=0.15)
    # keypoints just outside the image still cover what of their disc is inside
    outside = coverage(np.array([[-5, 50], [104, 50]]), [0, 1], (100, 100), 10)
    assert 0 < outside < one
    # only the listed (correctly matched) keypoints count
    assert coverage(np.array([[20, 20], [70, 70]]), [1], (100, 100), 10) == pytest.approx(one)


def test_coverage_without_correct_matches_is_zero_and_full_is_one():
    assert coverage(np.array([[5, 5]]), [], (100, 100), 10) == 0.0
    assert coverage(np.array([[5, 5]]), np.zeros(0, int), (100, 100), 10) == 0.0
    assert coverage(np.array([[5, 5]]), [0], (10, 10), 50) == 1.0


# --------------------------------------------------------------------------- harmonic mean

def test_harmonic_mean():
    assert harmonic_mean([1.0, 0.5]) == pytest.approx(2 / 3)
    assert harmonic_mean([0.2, 0.2, 0.2]) == pytest.approx(0.2)
    assert harmonic_mean([0.9, 0.0, 0.5]) == 0.0
    assert math.isnan(harmonic_mean([0.9, float("nan")]))
    assert harmonic_mean([float("nan"), float("nan"), 0.0]) == 0.0     # found nothing: ranks last
    assert math.isnan(harmonic_mean([]))


# --------------------------------------------------------------------------- pair metrics

def grid_points(w, h, step=40, margin=20):
    xs, ys = np.meshgrid(np.arange(margin, w - margin, step), np.arange(margin, h - margin, step))
    return np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)


def test_ground_truth_keypoints_score_one_and_shifted_ones_fail_at_eps3_only():
    size = (320, 240)
    H = np.array([[0.9, 0.05, 12], [-0.04, 0.95, 7], [1e-5, 2e-5, 1]])
    Hinv = np.linalg.inv(H)
    ka = grid_points(*size)
    kb_all, valid = homography_warp(H, size)(ka)
    assert valid.all()
    kb = kb_all
    matches = np.stack([np.arange(len(ka))] * 2, 1)
    wab, wba = homography_warp(H, size), homography_warp(Hinv, size)
    m = pair_metrics(ka, kb, matches, wab, wba, size, size, eps_list=(3, 5), coverage_radius=25)
    assert m["precision"] == pytest.approx(1.0) and m["repeatability"] == pytest.approx(1.0)
    assert m["eps5"]["precision"] == pytest.approx(1.0)
    assert 0.3 < m["coverage"] <= 1.0
    assert m["harmonic_mean"] == pytest.approx(harmonic_mean([1, 1, m["coverage"]]))
    assert m["matches"] == len(ka) and m["keypoints"] == len(ka)
    # b-keypoints moved by 4 px: wrong at ε=3, right at ε=5
    m4 = pair_metrics(ka, kb + [4, 0], matches, wab, wba, size, size, (3, 5), 25)
    assert m4["precision"] == 0.0 and m4["repeatability"] == 0.0 and m4["coverage"] == 0.0
    assert m4["eps5"]["precision"] == pytest.approx(1.0)
    assert m4["eps5"]["repeatability"] == pytest.approx(1.0)
    # shuffled matches: every match wrong, repeatability unchanged
    perm = np.roll(np.arange(len(ka)), 1)
    ms = pair_metrics(ka, kb, np.stack([np.arange(len(ka)), perm], 1), wab, wba, size, size)
    assert ms["precision"] == 0.0 and ms["repeatability"] == pytest.approx(1.0)


def test_pair_metric_is_the_mean_of_both_directions():
    # b is the left half of a: a->b sees only a's left keypoint, b->a sees both of b's.
    ka = np.array([[10, 10], [80, 10]], np.float64)
    kb = np.array([[10, 10], [30, 50]], np.float64)
    wab = homography_warp(np.eye(3), (50, 100))
    wba = homography_warp(np.eye(3), (100, 100))
    m = pair_metrics(ka, kb, np.array([[0, 0]]), wab, wba, (100, 100), (50, 100))
    assert m["repeatability"] == pytest.approx((1.0 + 0.5) / 2)
    assert m["precision"] == pytest.approx(1.0)
    assert m["valid_keypoints"] == pytest.approx((1 + 2) / 2)


def test_pair_metrics_with_no_keypoints_is_undefined_not_a_crash():
    wab = homography_warp(np.eye(3), (64, 64))
    m = pair_metrics(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros((0, 2), int), wab, wab,
                     (64, 64), (64, 64))
    assert math.isnan(m["precision"]) and math.isnan(m["repeatability"])
    assert m["coverage"] == 0.0 and m["matches"] == 0
    assert m["eps5"]["harmonic_mean"] == 0.0


def test_pair_metrics_rejects_out_of_range_matches():
    wab = homography_warp(np.eye(3), (64, 64))
    with pytest.raises(ValueError, match="index"):
        pair_metrics(np.zeros((1, 2)), np.zeros((1, 2)), np.array([[0, 3]]), wab, wab,
                     (64, 64), (64, 64))


def test_eps_key():
    assert eps_key(5) == "eps5" and eps_key(2.5) == "eps2.5"


# --------------------------------------------------------------------------- SLAM extras

def test_corner_error():
    H = np.array([[1.1, 0.02, 3], [0.01, 0.9, -4], [1e-4, 0, 1]])
    assert corner_error(H, H, (320, 240)) == pytest.approx(0.0, abs=1e-9)
    assert corner_error(translation(2, 0) @ H, H, (320, 240)) == pytest.approx(2.0)
    assert corner_error(None, H, (320, 240)) == math.inf


def test_accuracy_at_thresholds():
    acc = accuracy_at([0.5, 2.0, math.inf, 4.0], (1, 3, 5))
    assert acc == {"1": 0.25, "3": 0.5, "5": 0.75}


def test_pose_auc():
    assert pose_auc([0.0, 0.0], (5,))["5"] == pytest.approx(1.0)
    assert pose_auc([math.inf, math.nan], (5,))["5"] == 0.0
    # one pair at 5°: the curve rises linearly (0,0)→(5,1) then stays at 1:
    # area 2.5 + 5 = 7.5 of 10
    assert pose_auc([5.0], (10,))["10"] == pytest.approx(0.75)
    assert pose_auc([5.0], (5, 2))["2"] == 0.0
    # two pairs, one perfect, one failed: recall 0.5 everywhere
    assert pose_auc([0.0, math.inf], (20,))["20"] == pytest.approx(0.5)


def test_rotation_and_translation_errors():
    import cv2
    R = cv2.Rodrigues(np.array([0.0, 0.0, np.radians(7)]))[0]
    assert rotation_error_deg(R, np.eye(3)) == pytest.approx(7.0)
    assert translation_error_deg([1, 0, 0], [0, 2, 0]) == pytest.approx(90.0)
    assert translation_error_deg([1, 0, 0], [3, 0, 0]) == pytest.approx(0.0)


def test_nearest_distance_matches_brute_force_numpy():
    from goodpoint_ros.evaluation.metrics import nearest_distance
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 4000, (300, 2))
    t = rng.uniform(0, 4000, (200, 2))
    ref = np.linalg.norm(p[:, None] - t[None], axis=2).min(1)
    np.testing.assert_allclose(nearest_distance(p, t), ref, atol=1e-3)
    p[0] = np.nan
    d = nearest_distance(p, t)
    assert d[0] == np.inf and nearest_distance(p, np.zeros((0, 2))).tolist() == [np.inf] * 300
