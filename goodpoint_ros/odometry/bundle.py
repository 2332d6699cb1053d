"""Sliding-window bundle adjustment over the last keyframes (robust, two solvers).

Unknowns: the window's keyframe poses ``T_world_cam`` (the oldest held fixed
— in mono the two oldest, which also fixes the scale) and the landmarks they
observe.  Residuals: stereo observations (u_left, u_right, v) through the
rectified rig, mono observations (u, v) through the pinhole, each with a
Huber loss at ``huber`` whitened units (σ = ``pixel_sigma`` px).

* ``gtsam`` (default): ``GenericStereoFactor3D`` / ``GenericProjectionFactorCal3_S2``
  with a Huber m-estimator, Levenberg–Marquardt, and the newest pose's
  marginal covariance from ``gtsam.Marginals`` (body frame, (rotation,
  translation) — gtsam's Pose3 tangent order).
* ``scipy``: ``scipy.optimize.least_squares`` (TRF, sparse analytic Jacobian) in
  rounds of Huber reweighting (IRLS, the weights gtsam's robust model uses); the
  covariance is the newest pose's block of (JᵀJ)⁻¹ (residuals whitened by σ), a
  Gauss–Newton approximation, carried from the solver's (rvec, tvec) of
  T_cam_world to the body frame gtsam reports in.

docs/odometry.md records the measured comparison that made gtsam the default.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from goodpoint_ros.core.geometry import inv_T, make_T, skew, so3_left_jacobian

#: Huber reweighting rounds of the scipy solver (it stops early once the weights settle).
IRLS_ROUNDS = 4


@dataclass
class BAProblem:
    """poses [K,4,4] T_world_cam; fixed [K] bool; points [P,3] world;
    observations: obs_kf [O], obs_pt [O] (indices), uv [O,2] left pixels,
    ur [O] right-image u (NaN: a mono observation); intrinsics and baseline."""
    poses: np.ndarray
    fixed: np.ndarray
    points: np.ndarray
    obs_kf: np.ndarray
    obs_pt: np.ndarray
    uv: np.ndarray
    ur: np.ndarray
    fx: float
    fy: float
    cx: float
    cy: float
    baseline: float = 0.0


@dataclass
class BAResult:
    poses: np.ndarray
    points: np.ndarray
    covariance: Optional[np.ndarray]      # 6×6 newest pose, body (rotation, translation)
    errors: np.ndarray                    # [O] reprojection error after BA, pixels
    ms: float
    solver: str


def reprojection_errors(p: BAProblem, poses: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Per-observation pixel error (max over left / right for stereo). → [O]."""
    T_cw = np.stack([inv_T(T) for T in poses])
    Xc = np.einsum("oij,oj->oi", T_cw[p.obs_kf, :3, :3], points[p.obs_pt]) + T_cw[p.obs_kf, :3, 3]
    z = np.where(Xc[:, 2] > 1e-6, Xc[:, 2], np.nan)
    u = p.fx * Xc[:, 0] / z + p.cx
    v = p.fy * Xc[:, 1] / z + p.cy
    err = np.hypot(u - p.uv[:, 0], v - p.uv[:, 1])
    stereo = np.isfinite(p.ur)
    ur = p.fx * (Xc[:, 0] - p.baseline) / z + p.cx
    err[stereo] = np.maximum(err[stereo], np.abs(ur[stereo] - p.ur[stereo]))
    return np.nan_to_num(err, nan=1e9)


_GTSAM = None


def gtsam_available() -> bool:
    """Whether gtsam imports (checked once; says so once when it does not)."""
    global _GTSAM
    if _GTSAM is None:
        try:
            import gtsam  # noqa: F401  (optional: pip install goodpoint_ros[odometry])
            _GTSAM = True
        except ImportError:
            logging.getLogger(__name__).warning(
                "gtsam is not installed (pip install 'goodpoint_ros[odometry]'): bundle "
                "adjustment uses scipy's least_squares")
            _GTSAM = False
    return _GTSAM


def solve(p: BAProblem, solver: str = "gtsam", sigma: float = 1.0, huber: float = 1.345,
          iterations: int = 10, want_covariance: bool = True) -> BAResult:
    """Run the chosen solver (``gtsam`` or ``scipy``) on a window."""
    t0 = time.perf_counter()
    if solver == "gtsam" and not gtsam_available():
        solver = "scipy"          # documented fallback: the `odometry` extra is not installed
    if solver == "gtsam":
        poses, points, cov = _solve_gtsam(p, sigma, huber, iterations, want_covariance)
    elif solver == "scipy":
        poses, points, cov = _solve_scipy(p, sigma, huber, iterations, want_covariance)
    else:
        raise ValueError(f"unknown BA solver {solver!r} (gtsam or scipy)")
    errors = reprojection_errors(p, poses, points)
    return BAResult(poses, points, cov, errors, (time.perf_counter() - t0) * 1e3, solver)


# --------------------------------------------------------------------------- gtsam

def _solve_gtsam(p: BAProblem, sigma, huber, iterations, want_covariance):
    import gtsam  # optional heavy dependency (the `odometry` extra): lazy
    from gtsam.symbol_shorthand import L, X

    graph = gtsam.NonlinearFactorGraph()
    values = gtsam.Values()
    robust = gtsam.noiseModel.mEstimator.Huber.Create(huber)
    n3 = gtsam.noiseModel.Robust.Create(robust, gtsam.noiseModel.Isotropic.Sigma(3, sigma))
    n2 = gtsam.noiseModel.Robust.Create(robust, gtsam.noiseModel.Isotropic.Sigma(2, sigma))
    K3 = gtsam.Cal3_S2Stereo(p.fx, p.fy, 0.0, p.cx, p.cy, max(p.baseline, 1e-9))
    K2 = gtsam.Cal3_S2(p.fx, p.fy, 0.0, p.cx, p.cy)
    prior = gtsam.noiseModel.Isotropic.Sigma(6, 1e-6)
    for k, T in enumerate(p.poses):
        values.insert(X(k), gtsam.Pose3(T))
        if p.fixed[k]:
            graph.add(gtsam.PriorFactorPose3(X(k), gtsam.Pose3(T), prior))
    # plain Python numbers and pre-made keys: half the graph-building time of numpy scalars
    xs = [X(k) for k in range(len(p.poses))]
    ls = [L(j) for j in range(len(p.points))]
    for j, P in enumerate(np.asarray(p.points, np.float64).tolist()):
        values.insert(ls[j], gtsam.Point3(*P))
    ur_all = np.asarray(p.ur, np.float64)
    for k, j, (u, v), ur, stereo in zip(np.asarray(p.obs_kf).tolist(), np.asarray(p.obs_pt).tolist(),
                                        np.asarray(p.uv, np.float64).tolist(), ur_all.tolist(),
                                        np.isfinite(ur_all).tolist()):
        if stereo:
            graph.add(gtsam.GenericStereoFactor3D(gtsam.StereoPoint2(u, ur, v), n3,
                                                  xs[k], ls[j], K3))
        else:
            graph.add(gtsam.GenericProjectionFactorCal3_S2(gtsam.Point2(u, v), n2,
                                                           xs[k], ls[j], K2))
    params = gtsam.LevenbergMarquardtParams()
    params.setMaxIterations(int(iterations))
    result = gtsam.LevenbergMarquardtOptimizer(graph, values, params).optimize()
    poses = np.stack([result.atPose3(X(k)).matrix() for k in range(len(p.poses))])
    points = np.stack([np.asarray(result.atPoint3(L(j))) for j in range(len(p.points))])
    cov = None
    if want_covariance:
        try:
            cov = gtsam.Marginals(graph, result).marginalCovariance(X(len(p.poses) - 1))
        except RuntimeError:      # indeterminant system: no covariance this time
            cov = None
    return poses, points, cov


# --------------------------------------------------------------------------- scipy

def _project(p: BAProblem, rvecs, tvecs, points, kf, pt):
    """Residuals (u, v, ur) of observations, camera from world via (rvec, tvec)."""
    R = np.stack([cv2.Rodrigues(r)[0] for r in rvecs])
    Xc = np.einsum("oij,oj->oi", R[kf], points[pt]) + tvecs[kf]
    z = np.maximum(Xc[:, 2], 1e-6)
    return np.stack([p.fx * Xc[:, 0] / z + p.cx, p.fy * Xc[:, 1] / z + p.cy,
                     p.fx * (Xc[:, 0] - p.baseline) / z + p.cx], axis=1)


def _projection_jacobians(p: BAProblem, rvecs, tvecs, points, kf, pt):
    """Derivatives of ``_project``'s (u, v, ur) [O,3] per observation: w.r.t. its camera's
    rvec [O,3,3], tvec [O,3,3] and its landmark [O,3,3].

    With R(r + δ) = exp([J_l(r)·δ]×)·R(r), the camera point X_c = R·X + t moves by
    −[R·X]×·J_l(r)·δ; the pinhole's derivative w.r.t. X_c = (x, y, z) is
    (f/z, 0, −f·x/z²) for u, and x − b in place of x for the right image.
    """
    R = np.stack([cv2.Rodrigues(r)[0] for r in rvecs])
    Jl = np.stack([so3_left_jacobian(r) for r in rvecs])
    RX = np.einsum("oij,oj->oi", R[kf], points[pt])
    x, y = RX[:, 0] + tvecs[kf, 0], RX[:, 1] + tvecs[kf, 1]
    z = np.maximum(RX[:, 2] + tvecs[kf, 2], 1e-6)
    d = np.zeros((len(kf), 3, 3))             # d(u, v, ur) / d(x, y, z)
    d[:, 0, 0] = d[:, 2, 0] = p.fx / z
    d[:, 1, 1] = p.fy / z
    d[:, 0, 2] = -p.fx * x / z ** 2
    d[:, 1, 2] = -p.fy * y / z ** 2
    d[:, 2, 2] = -p.fx * (x - p.baseline) / z ** 2
    return d @ -skew(RX) @ Jl[kf], d, d @ R[kf]


def _body_covariance(cov_rt: np.ndarray, rvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    """Covariance [6,6] of (rvec, tvec) of T_cam_world → body frame of T_world_cam (rotation,
    translation), to first order.

    A step (δr, δt) is the left perturbation exp(ω, v)·T_cam_world with ω = J_l(r)·δr
    and v = δt + t × ω, i.e. the body perturbation −(ω, v) of T_world_cam; the sign
    does not change a covariance.  Without the t × ω term a camera far from the world
    origin would report its rotation's uncertainty as translation (lever arm |t|).
    """
    Jl = so3_left_jacobian(rvec)
    M = np.zeros((6, 6))
    M[:3, :3] = Jl
    M[3:, :3] = skew(tvec) @ Jl
    M[3:, 3:] = np.eye(3)
    return M @ cov_rt @ M.T


def _solve_scipy(p: BAProblem, sigma, huber, iterations, want_covariance):
    from scipy.optimize import least_squares
    from scipy.sparse import csr_matrix

    K, P, O = len(p.poses), len(p.points), len(p.obs_kf)
    free = np.nonzero(~p.fixed)[0]
    slot = -np.ones(K, int)
    slot[free] = np.arange(len(free))
    T_cw = np.stack([inv_T(T) for T in p.poses])
    r0 = np.stack([cv2.Rodrigues(np.ascontiguousarray(T[:3, :3]))[0].ravel() for T in T_cw])
    t0 = T_cw[:, :3, 3].copy()
    x0 = np.concatenate([np.concatenate([r0[free], t0[free]], 1).ravel(), p.points.ravel()])
    stereo = np.isfinite(p.ur)
    target = np.stack([p.uv[:, 0], p.uv[:, 1], np.where(stereo, p.ur, 0.0)], 1)
    n_pose = 6 * len(free)

    def unpack(x):
        r, t = r0.copy(), t0.copy()
        fp = x[:n_pose].reshape(-1, 6)
        r[free], t[free] = fp[:, :3], fp[:, 3:]
        return r, t, x[n_pose:].reshape(P, 3)

    def whitened(x):
        """[O,3] residuals / σ (the right-image column 0 for mono observations)."""
        r, t, pts = unpack(x)
        res = (_project(p, r, t, pts, p.obs_kf, p.obs_pt) - target) / sigma
        res[~stereo, 2] = 0.0
        return res

    def huber_weights(x):
        """gtsam's robust model: an observation of whitened norm e > k weighs k / e."""
        e = np.linalg.norm(whitened(x), axis=1)
        return np.where(e > huber, huber / np.maximum(e, 1e-12), 1.0)

    # The Jacobian's sparsity is fixed: each observation's three rows touch its camera's six
    # columns (when free) and its landmark's three.  Its values are analytic
    # (_projection_jacobians): the finite-difference Jacobian cost ~40 evaluations of the
    # residuals per iteration.
    s = slot[p.obs_kf]
    has = s >= 0
    rows = np.arange(3 * O).reshape(O, 3)
    pose_rows = np.repeat(rows[has], 6, axis=1)
    pose_cols = np.tile(6 * s[has, None] + np.arange(6), (1, 3))
    point_rows = np.repeat(rows, 3, axis=1)
    point_cols = np.tile(n_pose + 3 * p.obs_pt[:, None] + np.arange(3), (1, 3))
    ij = (np.r_[pose_rows.ravel(), point_rows.ravel()], np.r_[pose_cols.ravel(), point_cols.ravel()])
    keep = np.stack([np.ones(O), np.ones(O), stereo.astype(float)], 1) / sigma

    def jacobian(x, sw):
        """Sparse [3O, n] Jacobian of the weighted whitened residuals."""
        r, t, pts = unpack(x)
        d_r, d_t, d_X = _projection_jacobians(p, r, t, pts, p.obs_kf, p.obs_pt)
        scale = (keep * sw)[:, :, None]
        d_pose = (np.concatenate([d_r, d_t], axis=2) * scale)[has]
        values = np.r_[d_pose.ravel(), (d_X * scale).ravel()]
        return csr_matrix((values, ij), shape=(3 * O, len(x0)))

    # Iteratively reweighted least squares, as gtsam's robust noise model: scipy's own
    # loss="huber" crawls when many residuals start in the linear region (a window
    # started 5 cm off: 2.4 px left after 41 evaluations, test_bundle.py).
    x, w = x0, huber_weights(x0)
    for _ in range(IRLS_ROUNDS):
        sw = np.sqrt(w)[:, None]
        sol = least_squares(lambda z: (whitened(z) * sw).ravel(), x,
                            jac=lambda z, sw=sw: jacobian(z, sw),
                            method="trf", x_scale="jac", max_nfev=int(iterations) * 2 + 1)
        x, w_prev, w = sol.x, w, huber_weights(sol.x)
        if np.allclose(w, w_prev, atol=1e-3):
            break
    r, t, pts = unpack(x)
    poses = np.stack([inv_T(make_T(cv2.Rodrigues(r[k])[0], t[k])) for k in range(K)])
    cov = None
    last = K - 1
    if want_covariance and slot[last] >= 0:
        J = sol.jac.tocsc() if hasattr(sol.jac, "tocsc") else sol.jac
        JtJ = (J.T @ J)
        JtJ = JtJ.toarray() if hasattr(JtJ, "toarray") else JtJ
        try:
            inv = np.linalg.inv(JtJ + 1e-9 * np.eye(len(JtJ)))
            i = 6 * slot[last]
            cov = _body_covariance(inv[i:i + 6, i:i + 6], r[last], t[last])
        except np.linalg.LinAlgError:
            cov = None
    return poses, pts, cov
