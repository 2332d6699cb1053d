"""Odometry building blocks: calibration, depth decoding, frames, matching, degenerate rejection."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import require_shared
from goodpoint_ros.core.geometry import (
    R_BASE_OPTICAL,
    adjoint,
    inv_T,
    make_T,
    quat_to_R,
    quaternion_xyzw,
    twist,
)
from goodpoint_ros.odometry.camera import (
    CalibrationError,
    PinholeCamera,
    StereoRig,
    depth_to_metres,
    sample_depth,
)
from goodpoint_ros.odometry.config import VOConfig
from goodpoint_ros.odometry.filtering import (
    band_pairs,
    distinct_mask,
    pair_distances,
    radius_pairs,
    ratio_match,
    sparse_ratio_match,
    spread_cells,
)


def test_stereo_rig_from_kitti_projection_matrices():
    from goodpoint_ros.evaluation.vo.datasets import read_kitti_calib
    P0, P1 = read_kitti_calib(require_shared("vo/kitti06_000000-000050") / "calib.txt")
    rig = StereoRig.from_projections(P0, P1, (1226, 370))
    assert rig.baseline == pytest.approx(0.5372, abs=1e-4)       # README: −P1[0,3]/fx
    assert rig.left.fx == pytest.approx(707.0912)
    half = rig.scaled((613, 185))
    assert half.left.fx == pytest.approx(353.5456)
    assert half.left.cx == pytest.approx((601.8873 + 0.5) * 0.5 - 0.5)
    assert half.baseline == rig.baseline


def test_missing_or_bad_calibration_is_a_clear_error(tmp_path):
    from goodpoint_ros.evaluation.vo.datasets import read_kitti_calib
    with pytest.raises(CalibrationError, match="missing calibration"):
        read_kitti_calib(tmp_path / "calib.txt")
    P = np.hstack([np.diag([500.0, 500, 1]), np.zeros((3, 1))])
    with pytest.raises(CalibrationError, match="baseline"):
        StereoRig.from_projections(P, P, (640, 480))                 # no Tx: not a stereo pair
    with pytest.raises(CalibrationError, match="not calibrated"):
        PinholeCamera.from_K(np.zeros((3, 3)), (640, 480))           # CameraInfo with K = 0


def test_depth_encodings_and_invalid_values():
    mm = np.array([[0, 1500], [65535, 250]], np.uint16)
    m = depth_to_metres(mm, "16UC1")
    assert np.isnan(m[0, 0]) and m[0, 1] == pytest.approx(1.5) and m[1, 1] == pytest.approx(0.25)
    f = np.array([[np.nan, 2.0], [np.inf, -1.0]], np.float32)
    m = depth_to_metres(f, "32FC1")
    assert m[0, 1] == 2.0 and np.isnan(m[0, 0]) and np.isnan(m[1, 0]) and np.isnan(m[1, 1])
    assert np.all(np.isnan(sample_depth(m, np.array([[-3.0, 0.0], [0.0, 9.0]]))))
    with pytest.raises(ValueError, match="unsupported depth"):
        depth_to_metres(np.zeros((2, 2), np.int32), "32SC1")


def test_rep103_base_axes_and_quaternions():
    # camera looking forward: optical z is base x, optical x (right) is base −y
    assert R_BASE_OPTICAL @ np.array([0, 0, 1.0]) == pytest.approx([1, 0, 0])
    assert R_BASE_OPTICAL @ np.array([1.0, 0, 0]) == pytest.approx([0, -1, 0])
    assert R_BASE_OPTICAL @ np.array([0, 1.0, 0]) == pytest.approx([0, 0, -1])
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.standard_normal(4)
        q /= np.linalg.norm(q)
        R = quat_to_R(q)
        assert quat_to_R(quaternion_xyzw(R)) == pytest.approx(R, abs=1e-9)


def test_twist_and_adjoint():
    T0 = np.eye(4)
    T1 = make_T(np.eye(3), [0.5, 0, 0])
    assert twist(T0, T1, 0.5) == pytest.approx([1, 0, 0, 0, 0, 0])
    assert np.all(twist(T0, T1, 0.0) == 0)               # no rate without time
    T = make_T(quat_to_R([0.1, 0.2, 0.3, 0.9]), [1, 2, 3])
    # Ad(T) Ad(T⁻¹) = I
    assert adjoint(T) @ adjoint(inv_T(T)) == pytest.approx(np.eye(6), abs=1e-9)


def test_sparse_ratio_match_equals_dense_on_the_same_candidates():
    rng = np.random.default_rng(1)
    d = rng.random((40, 50))
    allowed = rng.random((40, 50)) < 0.3
    dense, dd = ratio_match(np.where(allowed, d, np.inf), 0.9, 0.8)
    i, j = np.nonzero(allowed)
    sparse, sd = sparse_ratio_match(i, j, d[i, j], 0.9, 0.8)
    assert len(dense) > 5
    assert sorted(map(tuple, dense)) == sorted(map(tuple, sparse))


def test_candidate_pairs():
    q = np.array([[10.0, 10], [50, 50]])
    p = np.array([[12.0, 10], [80, 50], [10, 30]])
    i, j = radius_pairs(q, p, 5.0)
    assert list(zip(i, j)) == [(0, 0)]
    left = np.array([[100.0, 20], [100, 40]])
    right = np.array([[90.0, 20.5], [101, 20], [40, 40], [95, 42]])
    li, ri = band_pairs(left, right, 1.0, 0.0, 50.0)
    assert sorted(zip(li.tolist(), ri.tolist())) == [(0, 0)]   # 101: negative disparity; 40: too far


def test_pair_distances_match_the_evaluator_distances():
    from goodpoint_ros.evaluation.methods import hamming_distances, l2_distances
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (30, 32), dtype=np.uint8)
    b = rng.integers(0, 256, (30, 32), dtype=np.uint8)
    assert pair_distances(a, b) == pytest.approx(np.diag(hamming_distances(a, b)))
    fa, fb = rng.standard_normal((30, 128)), rng.standard_normal((30, 128))
    assert pair_distances(fa, fb) == pytest.approx(np.diag(l2_distances(fa, fb)), rel=1e-4)


def test_distinctiveness_drops_copies_of_one_flat_cell():
    """Flat sky: many keypoints with (nearly) the same descriptor — they go, the rest stay."""
    rng = np.random.default_rng(3)
    unique = rng.standard_normal((200, 256))
    sky = np.tile(rng.standard_normal((1, 256)), (60, 1)) + 0.01 * rng.standard_normal((60, 256))
    desc = np.vstack([unique, sky])
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    kp = np.random.default_rng(4).random((260, 2)) * 600
    keep = distinct_mask(desc.astype(np.float32), kp, 0.25)
    assert keep[:200].mean() > 0.95
    assert not keep[200:].any()
    assert distinct_mask(desc, kp, 0.0).all()              # 0 disables


def test_spread_cells():
    pts = np.array([[1.0, 1], [2, 2], [3, 3]])
    assert spread_cells(pts, (100, 100), (4, 3)) == 1
    pts = np.array([[1.0, 1], [99, 99], [50, 50], [99, 1]])
    assert spread_cells(pts, (100, 100), (4, 3)) == 4


def test_config_validation():
    VOConfig().validate()
    for bad in ({"mode": "lidar"}, {"solver": "ceres"}, {"window": 1}, {"ratio": 0},
                {"min_inliers": 2}, {"distinct_fraction": 1.0}, {"pnp_threshold": 0.0}):
        with pytest.raises(ValueError):
            VOConfig(**bad).validate()


def test_median_parallax_of_known_geometry():
    """Points midway between centres 1 m apart, 10 m ahead: 2·atan(0.5/10) = 5.72°, the
    median of three (one farther); no motion or no points: 0."""
    from goodpoint_ros.core.geometry import median_parallax_deg
    X = np.array([[0.5, 0.0, 10.0], [0.5, 0.0, 10.0], [0.5, 0.0, 40.0]])
    c0, c1 = np.zeros(3), np.array([1.0, 0.0, 0.0])
    ang = median_parallax_deg(X, c0, c1)
    assert ang == pytest.approx(2 * np.degrees(np.arctan(0.5 / 10.0)), rel=1e-3)
    assert median_parallax_deg(X, c0, c0) == pytest.approx(0.0, abs=1e-5)
    assert median_parallax_deg(np.zeros((0, 3)), c0, c1) == 0.0


def test_keyframe_gap_follows_the_mode_unless_set():
    """Unset, mono and stereo keyframe at the latest every third frame, RGB-D every fifth
    (tuning data); a set value wins in every mode, and a gap under one frame is refused."""
    assert VOConfig(mode="mono").keyframe_gap == 3 == VOConfig(mode="stereo").keyframe_gap
    assert VOConfig(mode="rgbd").keyframe_gap == 5
    assert VOConfig(mode="stereo").replace(mode="mono").keyframe_gap == 3
    for mode in ("stereo", "rgbd", "mono"):
        assert VOConfig(mode=mode, keyframe_max_gap=7).keyframe_gap == 7
    with pytest.raises(ValueError, match="keyframe_max_gap"):
        VOConfig(keyframe_max_gap=0).validate()
    with pytest.raises(ValueError, match="keyframe_min_parallax_deg"):
        VOConfig(keyframe_min_parallax_deg=-1.0).validate()


def test_reprojection_threshold_follows_the_mode_unless_set():
    """Unset, the mode picks it (RGB-D / mono 1 px from the tuning bags, stereo 2 px), and a
    mode changed later takes its own; a set value wins in every mode."""
    assert VOConfig(mode="stereo").reprojection_threshold == 2.0
    assert VOConfig(mode="rgbd").reprojection_threshold == 1.0
    assert VOConfig(mode="mono").reprojection_threshold == 1.0
    assert VOConfig(mode="stereo").replace(mode="rgbd").reprojection_threshold == 1.0
    for mode in ("stereo", "rgbd", "mono"):
        assert VOConfig(mode=mode, pnp_threshold=1.5).reprojection_threshold == 1.5


def _random_spd(rng, stds):
    Q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    C = Q @ np.diag(np.square(stds)) @ Q.T
    s = np.sqrt(np.diag(C))
    return C / np.outer(s, s) * np.outer(stds, stds)         # correlated, given stds


def test_odometry_pose_covariance_is_that_of_the_published_position_and_fixed_axis_rotation():
    """geometry_msgs/PoseWithCovariance: (x, y, z) in the odom frame and rotations about its
    fixed X, Y, Z axes.  Perturb the camera pose by draws of the body covariance and measure
    the base's published position and orientation errors: their covariance is the one to
    publish.  60 m from the odom origin a lever-arm term (rotation seen as translation through
    the distance to the origin) would show as decimetres of spurious position uncertainty."""
    from goodpoint_ros.odometry.vo import default_T_base_camera, odometry_covariances
    rng = np.random.default_rng(0)
    cov_body = _random_spd(rng, [2e-3, 1e-3, 3e-3, 0.01, 0.02, 0.005])      # rad, m
    T_bc = default_T_base_camera()
    T_bc[:3, 3] = [0.3, -0.1, 1.2]                              # camera ahead of and above base
    T_wc = make_T(cv2.Rodrigues(np.array([0.1, 0.6, -0.05]))[0], [5.0, -1.0, 60.0])
    T_ob = T_bc @ T_wc @ inv_T(T_bc)
    errs = []
    for xi in rng.multivariate_normal(np.zeros(6), cov_body, 20000):
        Tp = T_bc @ (T_wc @ make_T(cv2.Rodrigues(xi[:3])[0], xi[3:])) @ inv_T(T_bc)
        dtheta = cv2.Rodrigues(Tp[:3, :3] @ T_ob[:3, :3].T)[0].ravel()     # about odom axes
        errs.append(np.r_[Tp[:3, 3] - T_ob[:3, 3], dtheta])
    empirical = np.cov(np.array(errs).T)
    pose_cov, twist_cov = odometry_covariances(T_bc, T_wc, cov_body, dt=0.1)
    std_e, std_p = np.sqrt(np.diag(empirical)), np.sqrt(np.diag(pose_cov))
    assert np.allclose(std_p, std_e, rtol=0.05), (std_p, std_e)
    corr = pose_cov / np.outer(std_p, std_p)
    assert np.abs(corr - empirical / np.outer(std_e, std_e)).max() < 0.05
    assert twist_cov.shape == (6, 6) and np.all(np.linalg.eigvalsh(twist_cov) > 0)


def _ratio_match_by_rows(i, j, d, max_distance, ratio, positions, exclusion):
    """sparse_ratio_match written row by row (ties to the earlier candidate)."""
    out = {}
    for row in np.unique(i):
        c = np.nonzero(i == row)[0]
        c = c[np.lexsort((c, d[c]))]
        b = c[0]
        far = np.linalg.norm(positions[j[c[1:]]] - positions[j[b]], axis=1) > exclusion
        second = d[c[1:]][far].min() if far.any() else np.inf
        col = np.nonzero(j == j[b])[0]
        col_best = col[np.lexsort((col, d[col]))][0]
        if d[b] < ratio * second and i[col_best] == row and d[b] <= max_distance:
            out[(int(row), int(j[b]))] = float(d[b])
    return out


@pytest.mark.parametrize("binary", [True, False])
def test_sparse_ratio_match_equals_a_row_by_row_reference_with_ties(binary):
    """Hamming distances tie often: the order among equal distances must stay the earlier
    candidate's, with the exclusion radius, on a guided-matching-sized problem."""
    rng = np.random.default_rng(3)
    kp = rng.random((400, 2)) * [320, 240]
    uv = rng.random((300, 2)) * [320, 240]
    i, j = radius_pairs(uv, kp, 25.0)
    a = rng.integers(0, 256, (300, 8), dtype=np.uint8) if binary else \
        rng.standard_normal((300, 16)).astype(np.float32)
    b = rng.integers(0, 256, (400, 8), dtype=np.uint8) if binary else \
        rng.standard_normal((400, 16)).astype(np.float32)
    d = pair_distances(a[i], b[j])
    limit = 30.0 if binary else 5.5
    m, md = sparse_ratio_match(i, j, d, limit, 0.9, kp, 3.0)
    ref = _ratio_match_by_rows(i, j, d, limit, 0.9, kp, 3.0)
    assert len(ref) > 20
    assert {(int(r), int(c)): float(x) for (r, c), x in zip(m, md)} == pytest.approx(ref)
    assert np.all(np.diff(md) >= 0)


@pytest.mark.parametrize("numpy_1", [False, True])
def test_pair_distances_of_every_descriptor_width(numpy_1, monkeypatch):
    """ORB 32 bytes, AKAZE 61 (not a multiple of 8), BRIEF 16: a bit count per row, with
    numpy 2's bitwise_count and with the lookup table numpy 1 (a ROS distro's) takes."""
    if numpy_1:
        monkeypatch.delattr(np, "bitwise_count", raising=False)
    rng = np.random.default_rng(4)
    for width in (16, 32, 61):
        a = rng.integers(0, 256, (50, width), dtype=np.uint8)
        b = rng.integers(0, 256, (50, width), dtype=np.uint8)
        bits = np.unpackbits(np.bitwise_xor(a, b), axis=1).sum(1)
        assert np.array_equal(pair_distances(a, b), bits)
        assert np.array_equal(pair_distances(a[:, ::-1], b[:, ::-1]), bits)   # not contiguous
