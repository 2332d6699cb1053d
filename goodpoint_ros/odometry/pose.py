"""Camera pose from 2D–3D matches: robust PnP, LM refinement, and its covariance.

    T_wc, inliers = solve_pnp(K, X, uv, threshold=2.0, seed=0)
    cov = pnp_covariance(camera, inv_T(T_wc), X[inliers], uv[inliers], sigma=1.0)

``X`` [N,3] are world points, ``uv`` [N,2] their pixels in the frame, ``K``
[3,3] the intrinsics of an undistorted (rectified) camera.  Poses are 4×4:
``T_wc`` maps camera to world, ``T_cw`` its inverse.  Robust estimation is
OpenCV's USAC with MAGSAC scoring (or plain RANSAC on an OpenCV without USAC,
:data:`goodpoint_ros.core.matching.ROBUST`); the consensus is refined by
Levenberg–Marquardt on the inliers and re-thresholded.
"""
from __future__ import annotations

from typing import Optional, Tuple

import cv2
import numpy as np

from goodpoint_ros.core.geometry import inv_T, make_T, reprojection_errors, skew
from goodpoint_ros.core.matching import ROBUST
from goodpoint_ros.odometry.camera import PinholeCamera

#: A pose needs at least this many correspondences (P3P + one to disambiguate).
MIN_POINTS = 4


def usac_pnp(X: np.ndarray, uv: np.ndarray, K: np.ndarray, threshold: float, seed: int = 0):
    """PnP with OpenCV's USAC (MAGSAC scoring) → (ok, rvec, tvec, inlier indices).

    ``seed`` is USAC's random generator state: the same data and seed give the
    same consensus (the VO's ``ransac_seed``).
    """
    params = cv2.UsacParams()
    params.randomGeneratorState = int(seed)
    params.confidence = 0.999
    params.maxIterations = 1000
    params.threshold = float(threshold)
    params.score = cv2.SCORE_METHOD_MAGSAC
    params.sampler = cv2.SAMPLING_UNIFORM
    params.loMethod = cv2.LOCAL_OPTIM_SIGMA
    ok, _, rvec, tvec, idx = cv2.solvePnPRansac(
        X.reshape(-1, 1, 3).astype(np.float64), uv.reshape(-1, 1, 2).astype(np.float64),
        K, np.zeros(0), params=params)
    if ok and idx is not None:
        idx = np.asarray(idx).ravel()
        # some OpenCV builds return a 0/1 mask here instead of indices
        if idx.dtype == np.uint8 or (len(idx) == len(X) and set(np.unique(idx)) <= {0, 1}):
            idx = np.nonzero(idx)[0]
    return ok, rvec, tvec, idx


def refine_pose(K: np.ndarray, X: np.ndarray, uv: np.ndarray, T_wc: np.ndarray,
                threshold: float, inliers: Optional[np.ndarray] = None
                ) -> Tuple[Optional[np.ndarray], np.ndarray]:
    """LM refinement of ``T_wc`` → (refined T_wc or None, inlier mask [N]).

    Starts from ``inliers`` (a mask [N]) or, without one, from the matches
    within ``threshold`` px of ``T_wc``; two rounds of refine-and-re-threshold.
    None when fewer than :data:`MIN_POINTS` inliers remain.
    """
    T_cw = inv_T(T_wc)
    if inliers is None:
        inliers = reprojection_errors(K, T_cw, X, uv) <= threshold
    if inliers.sum() < MIN_POINTS:
        return None, inliers
    rvec, _ = cv2.Rodrigues(np.ascontiguousarray(T_cw[:3, :3]))
    tvec = T_cw[:3, 3].reshape(3, 1).copy()
    try:
        for _ in range(2):
            rvec, tvec = cv2.solvePnPRefineLM(X[inliers].astype(np.float64),
                                              uv[inliers].astype(np.float64), K, None,
                                              rvec, tvec)
            T_cw = make_T(cv2.Rodrigues(rvec)[0], tvec)
            inliers = reprojection_errors(K, T_cw, X, uv) <= threshold
            if inliers.sum() < MIN_POINTS:
                return None, inliers
    except cv2.error:
        return None, inliers
    return inv_T(T_cw), inliers


def solve_pnp(K: np.ndarray, X: np.ndarray, uv: np.ndarray, threshold: float,
              seed: int = 0) -> Tuple[Optional[np.ndarray], np.ndarray]:
    """Robust PnP + LM refinement → (T_wc or None, inlier mask [N]).

    The refined pose is kept when it still has :data:`MIN_POINTS` inliers,
    else the robust estimate's own pose and consensus.
    """
    inl = np.zeros(len(X), bool)
    if len(X) < MIN_POINTS:
        return None, inl
    try:
        if ROBUST == cv2.RANSAC:
            ok, rvec, tvec, idx = cv2.solvePnPRansac(
                X.reshape(-1, 1, 3).astype(np.float64), uv.reshape(-1, 1, 2).astype(np.float64),
                K, None, iterationsCount=500, reprojectionError=threshold, confidence=0.999,
                flags=cv2.SOLVEPNP_SQPNP)
        else:
            ok, rvec, tvec, idx = usac_pnp(X, uv, K, threshold, seed)
    except cv2.error:
        return None, inl
    if not ok or idx is None or len(idx) < MIN_POINTS:
        return None, inl
    inl[np.asarray(idx).ravel()] = True
    T_wc = inv_T(make_T(cv2.Rodrigues(rvec)[0], tvec))
    T, inl2 = refine_pose(K, X, uv, T_wc, threshold, inliers=inl)
    return (T, inl2) if T is not None else (T_wc, inl)


def pnp_covariance(cam: PinholeCamera, T_cw: np.ndarray, X: np.ndarray, uv: np.ndarray,
                   sigma: float) -> np.ndarray:
    """Gauss–Newton covariance [6,6] of a PnP pose: σ̂²(JᵀJ)⁻¹, body frame (rotation, translation).

    J [2N,6] is the reprojection Jacobian w.r.t. a left perturbation of
    T_cam_world, which is minus a right (body) perturbation of T_world_cam — the
    sign does not change JᵀJ.  σ̂ is the larger of ``sigma`` (px, the detector's
    noise floor) and the inliers' RMS residual per coordinate, so a poor fit
    reports a wide covariance.  A singular JᵀJ (collinear points) gives 10⁴·I.
    """
    Xc = X @ T_cw[:3, :3].T + T_cw[:3, 3]
    x, y, z = Xc[:, 0], Xc[:, 1], np.maximum(Xc[:, 2], 1e-6)
    Jp = np.zeros((len(X), 2, 3))
    Jp[:, 0, 0] = cam.fx / z
    Jp[:, 0, 2] = -cam.fx * x / z ** 2
    Jp[:, 1, 1] = cam.fy / z
    Jp[:, 1, 2] = -cam.fy * y / z ** 2
    dX = np.zeros((len(X), 3, 6))          # d(X_c) / d(ω, v) = [−[X_c]×  I]
    dX[:, :, :3] = -skew(Xc.reshape(-1, 3))
    dX[:, :, 3:] = np.eye(3)
    J = np.einsum("nij,njk->nik", Jp, dX).reshape(-1, 6)
    r = reprojection_errors(cam.K, T_cw, X, uv)
    s2 = max(sigma ** 2, float(np.mean(r ** 2)) / 2.0 if len(r) else sigma ** 2)
    try:
        return np.linalg.inv(J.T @ J) * s2
    except np.linalg.LinAlgError:
        return np.eye(6) * 1e4


__all__ = ["solve_pnp", "refine_pose", "usac_pnp", "pnp_covariance", "MIN_POINTS"]
