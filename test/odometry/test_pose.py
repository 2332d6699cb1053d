"""Pose from 2D–3D matches (goodpoint_ros/odometry/pose.py): robust PnP and its covariance."""
import cv2
import numpy as np
import pytest

from goodpoint_ros.core.geometry import T_from_rvec, inv_T
from goodpoint_ros.odometry.camera import PinholeCamera
from goodpoint_ros.odometry.pose import pnp_covariance, refine_pose, solve_pnp

CAM = PinholeCamera(500.0, 500.0, 319.5, 239.5, 640, 480)
#: camera → world: a small turn and a step, as between two frames of a drive
T_WC = inv_T(T_from_rvec([0.02, -0.05, 0.01], [0.3, -0.1, 0.5]))


def _scene(rng, n=200):
    """World points [n,3] that the camera T_WC sees 3–20 m ahead, and their exact pixels [n,2]."""
    uv = rng.uniform([20, 20], [620, 460], (n, 2))
    z = rng.uniform(3, 20, n)
    Xc = np.c_[(uv[:, 0] - CAM.cx) / CAM.fx * z, (uv[:, 1] - CAM.cy) / CAM.fy * z, z]
    return Xc @ T_WC[:3, :3].T + T_WC[:3, 3], uv


def _body_error(T_est):
    """(rotation vector, translation) [6] of T_WC⁻¹·T_est: the estimate's error in the camera frame."""
    D = inv_T(T_WC) @ T_est
    return np.r_[cv2.Rodrigues(D[:3, :3])[0].ravel(), D[:3, 3]]


def test_solve_pnp_recovers_the_pose_through_a_third_of_outliers():
    rng = np.random.default_rng(0)
    X, uv = _scene(rng)
    bad = rng.random(len(X)) < 0.33
    uv[bad] = rng.uniform([0, 0], [640, 480], (bad.sum(), 2))
    T, inl = solve_pnp(CAM.K, X, uv, threshold=2.0, seed=0)
    e = _body_error(T)
    assert np.degrees(np.linalg.norm(e[:3])) < 1e-3 and np.linalg.norm(e[3:]) < 1e-4
    assert not np.any(inl & bad)
    assert inl[~bad].mean() > 0.99


def test_solve_pnp_with_too_few_points_or_no_consensus_gives_no_pose():
    rng = np.random.default_rng(1)
    X, uv = _scene(rng, 3)
    T, inl = solve_pnp(CAM.K, X, uv, threshold=2.0)
    assert T is None and inl.shape == (3,) and not inl.any()
    X, _ = _scene(rng, 40)
    T, _ = solve_pnp(CAM.K, X, rng.uniform([0, 0], [640, 480], (40, 2)), threshold=1.0)
    assert T is None


def test_refine_pose_pulls_a_perturbed_pose_back():
    rng = np.random.default_rng(2)
    X, uv = _scene(rng)
    start = T_WC @ T_from_rvec([0.002, 0.0, -0.001], [0.01, 0.0, 0.02])
    T, inl = refine_pose(CAM.K, X, uv, start, threshold=30.0)
    assert inl.all()
    assert np.linalg.norm(_body_error(T)) < 1e-6


def test_pnp_covariance_matches_the_scatter_of_noisy_estimates():
    """Pixel noise σ = 0.5 px, 300 draws: the estimates' errors whitened by the reported
    covariance must be χ² with 6 degrees of freedom (mean 6), and each axis's spread must
    match its reported standard deviation.  A covariance off by a factor of 2 in any
    direction (or in the wrong frame) fails this."""
    rng = np.random.default_rng(3)
    X, uv = _scene(rng, 150)
    sigma = 0.5
    errors, covs = [], []
    for _ in range(300):
        noisy = uv + rng.normal(0, sigma, uv.shape)
        T, inl = solve_pnp(CAM.K, X, noisy, threshold=3.0, seed=0)
        errors.append(_body_error(T))
        covs.append(pnp_covariance(CAM, inv_T(T), X[inl], noisy[inl], sigma=0.1))
    errors, cov = np.array(errors), np.mean(covs, axis=0)
    mahalanobis = np.einsum("ni,ij,nj->n", errors, np.linalg.inv(cov), errors)
    assert mahalanobis.mean() == pytest.approx(6.0, abs=1.0)
    ratio = errors.std(axis=0) / np.sqrt(np.diag(cov))
    assert np.all((ratio > 0.8) & (ratio < 1.25)), ratio


def test_pnp_covariance_is_wide_for_a_poor_fit():
    """σ̂ follows the inliers' residuals when they exceed the floor ``sigma``."""
    rng = np.random.default_rng(4)
    X, uv = _scene(rng, 100)
    tight = pnp_covariance(CAM, inv_T(T_WC), X, uv + rng.normal(0, 0.2, uv.shape), sigma=0.2)
    loose = pnp_covariance(CAM, inv_T(T_WC), X, uv + rng.normal(0, 2.0, uv.shape), sigma=0.2)
    assert np.all(np.diag(loose) > 50 * np.diag(tight))
