"""Trajectory metrics: ATE after Umeyama, RPE, KITTI segments, end-point drift; TUM files.

All functions take poses as 4×4 ``T_world_cam`` arrays [N,4,4], estimate and
ground truth index-aligned (the caller associates by timestamp).

* ATE — RMSE of the position differences after aligning the estimate to the
  ground truth with Umeyama (1991): SE(3) for stereo / RGB-D, Sim(3) for
  mono (the scale is unobservable).  Same definition as ``evo_ape -a`` /
  ``-as`` with the default translation part.
* RPE — frame-to-frame relative error E_i = (G_i⁻¹G_{i+1})⁻¹(P_i⁻¹P_{i+1}):
  translation RMSE (m per frame) and rotation RMSE (° per frame), as
  ``evo_rpe`` with ``--delta 1 --delta_unit f``; and per metre: the summed
  errors over the summed ground-truth motion (% and °/m).  For mono the
  estimate's translations are scaled by the Sim(3) scale first.
* KITTI — the devkit segment metric (lengths 100…800 m, every 10th start
  frame): t_err %, r_err °/100 m; None when the path is shorter than 100 m.
* End-point drift — with both trajectories expressed from their first pose
  (no alignment), |p_est(N) − p_gt(N)| / ground-truth path length, in %.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from goodpoint_ros.core.geometry import inv_T, make_T, quat_to_R, quaternion_xyzw, rotation_angle
from goodpoint_ros.core.weights import atomic_write_bytes

KITTI_LENGTHS = (100, 200, 300, 400, 500, 600, 700, 800)


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool) -> Tuple[np.ndarray, np.ndarray, float]:
    """Least-squares (R, t, s) with dst ≈ s·R·src + t.  src, dst [N,3] → (R [3,3], t [3], s)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if len(src) < 2:
        return np.eye(3), (dst.mean(0) - src.mean(0)) if len(src) else np.zeros(3), 1.0
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    U, D, Vt = np.linalg.svd(cov)
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1
    R = U @ S @ Vt
    var_s = (xs ** 2).sum() / len(src)
    s = float(np.trace(np.diag(D) @ S) / var_s) if with_scale and var_s > 0 else 1.0
    t = mu_d - s * R @ mu_s
    return R, t, s


def align(est: np.ndarray, gt: np.ndarray, with_scale: bool) -> Tuple[np.ndarray, float]:
    """Estimate [N,4,4] aligned onto the ground truth → (aligned [N,4,4], scale)."""
    R, t, s = umeyama(est[:, :3, 3], gt[:, :3, 3], with_scale)
    out = est.copy()
    out[:, :3, :3] = R @ est[:, :3, :3]
    out[:, :3, 3] = (s * (R @ est[:, :3, 3].T)).T + t
    return out, s


def ate(est: np.ndarray, gt: np.ndarray, with_scale: bool = False) -> Dict[str, float]:
    """ATE after Umeyama: rmse, mean, median, max (m) and the scale used."""
    aligned, s = align(est, gt, with_scale)
    e = np.linalg.norm(aligned[:, :3, 3] - gt[:, :3, 3], axis=1)
    return {"rmse": float(np.sqrt(np.mean(e ** 2))), "mean": float(e.mean()),
            "median": float(np.median(e)), "max": float(e.max()), "scale": s,
            "errors": e.tolist()}


def path_length(T: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(T[:, :3, 3], axis=0), axis=1).sum()) if len(T) > 1 else 0.0


def rpe(est: np.ndarray, gt: np.ndarray, scale: float = 1.0) -> Dict[str, float]:
    """Frame-to-frame relative pose error (see the module docstring)."""
    if len(est) < 2:
        return {"trans_rmse": None, "rot_rmse_deg": None, "trans_pct": None, "rot_deg_per_m": None}
    te, re, dist = [], [], []
    for i in range(len(est) - 1):
        dg = inv_T(gt[i]) @ gt[i + 1]
        de = inv_T(est[i]) @ est[i + 1]
        de[:3, 3] *= scale
        E = inv_T(dg) @ de
        te.append(np.linalg.norm(E[:3, 3]))
        re.append(np.degrees(rotation_angle(E[:3, :3])))
        dist.append(np.linalg.norm(dg[:3, 3]))
    te, re, dist = np.array(te), np.array(re), np.array(dist)
    total = dist.sum()
    return {"trans_rmse": float(np.sqrt(np.mean(te ** 2))),
            "trans_median": float(np.median(te)),
            "rot_rmse_deg": float(np.sqrt(np.mean(re ** 2))),
            "trans_pct": float(100 * te.sum() / total) if total > 0 else None,
            "rot_deg_per_m": float(re.sum() / total) if total > 0 else None,
            "trans_errors": te.tolist()}


def kitti_segments(est: np.ndarray, gt: np.ndarray, step: int = 10,
                   lengths=KITTI_LENGTHS) -> Optional[Dict[str, float]]:
    """KITTI devkit metric → {t_err_pct, r_err_deg_per_100m, segments} or None if too short."""
    d = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(gt[:, :3, 3], axis=0), axis=1))])
    t_errs, r_errs = [], []
    for first in range(0, len(gt), step):
        for L in lengths:
            last = np.searchsorted(d, d[first] + L)
            if last >= len(gt):
                continue
            dg = inv_T(gt[first]) @ gt[last]
            de = inv_T(est[first]) @ est[last]
            E = inv_T(de) @ dg
            t_errs.append(np.linalg.norm(E[:3, 3]) / L)
            r_errs.append(rotation_angle(E[:3, :3]) / L)
    if not t_errs:
        return None
    return {"t_err_pct": float(100 * np.mean(t_errs)),
            "r_err_deg_per_100m": float(np.degrees(np.mean(r_errs)) * 100),
            "segments": len(t_errs)}


def endpoint_drift(est: np.ndarray, gt: np.ndarray, scale: float = 1.0) -> Optional[float]:
    """End-point drift in % of the ground-truth path, both from their first pose."""
    L = path_length(gt)
    if len(est) < 2 or L <= 0:
        return None
    e = inv_T(est[0]) @ est[-1]
    g = inv_T(gt[0]) @ gt[-1]
    return float(100 * np.linalg.norm(scale * e[:3, 3] - g[:3, 3]) / L)


def trajectory_metrics(est: np.ndarray, gt: np.ndarray, sim3: bool) -> Dict:
    """Everything above for one trajectory pair."""
    a = ate(est, gt, with_scale=sim3)
    scale = a["scale"] if sim3 else 1.0
    motion_t = est[-1][:3, 3] - est[0][:3, 3] if len(est) else np.zeros(3)
    return {"frames": int(len(est)), "path_length_m": path_length(gt),
            "ate": a, "rpe": rpe(est, gt, scale), "kitti": kitti_segments(est, gt),
            "endpoint_drift_pct": endpoint_drift(est, gt, scale),
            "alignment": "Sim(3)" if sim3 else "SE(3)",
            "estimated_motion_m": float(np.linalg.norm(motion_t)),
            "estimated_rotation_deg": float(np.degrees(rotation_angle(
                (inv_T(est[0]) @ est[-1])[:3, :3]))) if len(est) else 0.0}


# --------------------------------------------------------------------------- TUM files

def tum_lines(stamps, poses) -> List[str]:
    """TUM format: ``t tx ty tz qx qy qz qw`` per pose."""
    out = []
    for t, T in zip(stamps, poses):
        q = quaternion_xyzw(T[:3, :3])
        out.append(f"{t:.9f} " + " ".join(f"{v:.9f}" for v in (*T[:3, 3], *q)))
    return out


def write_tum(path, stamps, poses, header: str = "") -> None:
    """Write a TUM trajectory atomically."""
    lines = ([f"# {header}"] if header else []) + tum_lines(stamps, poses)
    atomic_write_bytes(str(path), ("\n".join(lines) + "\n").encode())


def read_tum(path) -> Tuple[np.ndarray, np.ndarray]:
    """TUM file → (stamps [N], poses [N,4,4])."""
    data = np.loadtxt(Path(path), comments="#").reshape(-1, 8)
    return data[:, 0], np.stack([make_T(quat_to_R(r[4:]), r[1:4]) for r in data])
