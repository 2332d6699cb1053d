"""Sliding-window bundle adjustment (goodpoint_ros/odometry/bundle.py): both solvers, and the
newest pose's covariance against the scatter of solutions under known pixel noise."""
import cv2
import numpy as np
import pytest

from goodpoint_ros.core.geometry import inv_T, make_T
from goodpoint_ros.odometry import bundle

FX, CX, CY, BASELINE = 500.0, 319.5, 239.5, 0.5
SIGMA = 0.5                      # px, on u, v and the right image's u


def _window(rng, keyframes, points):
    """A stereo rig driving 1 m per keyframe along +z, 50 m from the world origin (so a
    covariance in the wrong frame shows: the origin's lever arm couples rotation into
    translation); landmarks 6–30 m ahead of the first keyframe, seen by every keyframe."""
    poses = np.stack([make_T(cv2.Rodrigues(np.array([0.0, 0.01 * k, 0.0]))[0],
                             [3.0, 0.0, 50.0 + k]) for k in range(keyframes)])
    z = rng.uniform(6 + keyframes, 30, points)
    X = np.c_[rng.uniform(-0.5, 0.5, points) * z, rng.uniform(-0.35, 0.35, points) * z, z]
    X = X @ poses[0][:3, :3].T + poses[0][:3, 3]
    kf, pt = np.meshgrid(np.arange(keyframes), np.arange(points), indexing="ij")
    kf, pt = kf.ravel(), pt.ravel()
    T_cw = np.stack([inv_T(T) for T in poses])
    Xc = np.einsum("oij,oj->oi", T_cw[kf, :3, :3], X[pt]) + T_cw[kf, :3, 3]
    uv = np.c_[FX * Xc[:, 0] / Xc[:, 2] + CX, FX * Xc[:, 1] / Xc[:, 2] + CY]
    ur = FX * (Xc[:, 0] - BASELINE) / Xc[:, 2] + CX
    fixed = np.zeros(keyframes, bool)
    fixed[0] = True
    return bundle.BAProblem(poses, fixed, X, kf, pt, uv, ur, FX, FX, CX, CY, BASELINE)


def _noisy(p: bundle.BAProblem, rng) -> bundle.BAProblem:
    """The same window observed with σ px of noise, solved from the true poses and points."""
    return bundle.BAProblem(p.poses, p.fixed, p.points, p.obs_kf, p.obs_pt,
                            p.uv + rng.normal(0, SIGMA, p.uv.shape),
                            p.ur + rng.normal(0, SIGMA, p.ur.shape),
                            p.fx, p.fy, p.cx, p.cy, p.baseline)


def _started_off(p: bundle.BAProblem, rng, rotation, translation, points) -> bundle.BAProblem:
    """The window with its free poses and all points moved off by draws of these standard
    deviations (rad, m, m): where a solver starts from after tracking errors."""
    poses = np.stack([T if f else T @ make_T(cv2.Rodrigues(rng.normal(0, rotation, 3))[0],
                                             rng.normal(0, translation, 3))
                      for T, f in zip(p.poses, p.fixed)])
    return bundle.BAProblem(poses, p.fixed, p.points + rng.normal(0, points, p.points.shape),
                            p.obs_kf, p.obs_pt, p.uv, p.ur, p.fx, p.fy, p.cx, p.cy, p.baseline)


def _body_error(T_true, T_est):
    """(rotation vector, translation) [6] of T_true⁻¹·T_est: the error in the camera frame."""
    D = inv_T(T_true) @ T_est
    return np.r_[cv2.Rodrigues(D[:3, :3])[0].ravel(), D[:3, 3]]


@pytest.mark.parametrize("solver", ["gtsam", "scipy"])
def test_newest_pose_covariance_matches_the_scatter_of_solutions(solver):
    """Whitened by the reported covariance, the newest pose's errors over repeated noisy
    windows must be χ² with 6 degrees of freedom (mean 6), each axis's spread its reported
    standard deviation; a covariance in the wrong frame or parametrisation fails."""
    if solver == "gtsam":
        pytest.importorskip("gtsam")
    rng = np.random.default_rng(0)
    p = _window(rng, keyframes=3, points=60)
    errors, covs = [], []
    for _ in range(60 if solver == "scipy" else 150):
        r = bundle.solve(_noisy(p, rng), solver=solver, sigma=SIGMA, huber=1e3, iterations=10)
        errors.append(_body_error(p.poses[-1], r.poses[-1]))
        covs.append(r.covariance)
    errors, cov = np.array(errors), np.mean(covs, axis=0)
    mahalanobis = np.einsum("ni,ij,nj->n", errors, np.linalg.inv(cov), errors)
    assert mahalanobis.mean() == pytest.approx(6.0, rel=0.25)
    ratio = errors.std(axis=0) / np.sqrt(np.diag(cov))
    assert np.all((ratio > 0.7) & (ratio < 1.4)), ratio


@pytest.mark.parametrize("solver", ["gtsam", "scipy"])
def test_bundle_adjustment_pulls_perturbed_poses_and_points_back(solver):
    if solver == "gtsam":
        pytest.importorskip("gtsam")
    rng = np.random.default_rng(1)
    p = _window(rng, keyframes=4, points=80)
    start = _started_off(p, rng, rotation=0.003, translation=0.05, points=0.1)
    assert np.median(bundle.reprojection_errors(start, start.poses, start.points)) > 1.0
    r = bundle.solve(start, solver=solver, sigma=SIGMA, iterations=20)
    assert np.median(r.errors) < 0.01
    for T_true, T in zip(p.poses, r.poses):
        assert np.linalg.norm(_body_error(T_true, T)) < 1e-3


@pytest.mark.parametrize("solver", ["gtsam", "scipy"])
def test_huber_loss_holds_the_window_against_gross_outliers(solver):
    """A tenth of the observations 20–40 px off (wrong associations), the window started
    10 cm / 0.3° off and the points 20 cm off: with the Huber loss the poses come back
    near the truth; plain least squares is dragged many times further.  (One Huber
    reweighting for scipy, not rounds of it, leaves 21 cm here.)"""
    if solver == "gtsam":
        pytest.importorskip("gtsam")
    rng = np.random.default_rng(2)
    truth = _window(rng, keyframes=4, points=80)
    p = _noisy(truth, rng)
    bad = rng.random(len(p.obs_kf)) < 0.1
    jump = rng.uniform(20, 40, bad.sum()) * rng.choice([-1, 1], bad.sum())
    p.uv[bad, 0] += jump
    p.ur[bad] += jump
    start = _started_off(p, rng, rotation=0.005, translation=0.1, points=0.2)

    def worst(huber):
        r = bundle.solve(start, solver=solver, sigma=SIGMA, huber=huber, iterations=10)
        return max(np.linalg.norm(_body_error(T_true, T)[3:])
                   for T_true, T in zip(truth.poses, r.poses))

    robust, plain = worst(1.345), worst(1e3)
    assert robust < 0.06                              # after 3 m of driving (scipy: 0.037)
    assert plain > 5 * robust


def test_analytic_projection_jacobians_match_finite_differences():
    """The scipy solver's analytic Jacobian (camera rvec, tvec, landmark) against central
    differences of the projection itself, for stereo observations at 6–30 m."""
    rng = np.random.default_rng(3)
    p = _window(rng, keyframes=3, points=20)
    T_cw = np.stack([inv_T(T) for T in p.poses])
    r = np.stack([cv2.Rodrigues(np.ascontiguousarray(T[:3, :3]))[0].ravel() for T in T_cw])
    r += rng.normal(0, 0.3, r.shape)           # away from the identity, where J_l ≈ I
    t = T_cw[:, :3, 3]
    kf, pt = p.obs_kf, p.obs_pt
    d_r, d_t, d_X = bundle._projection_jacobians(p, r, t, p.points, kf, pt)
    h = 1e-6

    def central(shift):
        return (bundle._project(p, *shift(h), kf, pt) - bundle._project(p, *shift(-h), kf, pt)) / (2 * h)

    for q in range(3):
        e = np.eye(3)[q]
        numeric = {"rvec": central(lambda s: (r + s * e, t, p.points)),
                   "tvec": central(lambda s: (r, t + s * e, p.points)),
                   "point": central(lambda s: (r, t, p.points + s * e))}
        for name, analytic in (("rvec", d_r), ("tvec", d_t), ("point", d_X)):
            scale = np.abs(numeric[name]).max()
            assert np.abs(analytic[:, :, q] - numeric[name]).max() < 1e-5 * scale, (name, q)
