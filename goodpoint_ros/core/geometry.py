"""The one geometry module: plane warps and rigid motions shared by evaluation, training,
matching, the synthetic data and the VO (one convention each).

Pixel convention (``docs/conventions.md``): keypoints are (x, y) in pixels,
pixel centres at integers, so pixel (i, j) covers the half-open cell
[i − ½, i + ½) × [j − ½, j + ½) and a (W, H) image covers
[−½, W − ½) × [−½, H − ½).  :func:`in_frame` tests exactly that: every point
of the plane lies in at most one pixel (``round`` half-up picks it), and a
point on the outer right / bottom edge is outside.

numpy flavour: float64 [N,2] arrays.  torch flavour (``*_torch``): any
leading batch shape [..., N, 2], dtype kept; torch is imported only there
(an optional heavy dependency: the runtime needs none).

Rigid motions (the odometry's SE(3) helpers, 4×4 numpy matrices, OpenCV rotation
vectors): ``T_a_b`` maps coordinates in frame b to frame a
(p_a = T_a_b · p_b).  The camera frame is the optical frame (x right,
y down, z forward, REP-103 ``_optical``); the base frame is x forward,
y left, z up (REP-103).  6-vectors of a tangent space are ordered
(rotation, translation) inside the solver and (translation, rotation) in
ROS messages (nav_msgs/Odometry covariance: x, y, z, roll, pitch, yaw).
"""
from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np

#: |w| below this is treated as the line at infinity (torch flavour, training)
HORIZON_EPS = 1e-8


def in_frame(points, size: Tuple[int, int]):
    """Inside a (W, H) image: −½ ≤ x < W − ½ and −½ ≤ y < H − ½.

    points [..., 2] numpy array or torch tensor → bool [...] of the same kind.
    NaN is outside (every comparison with NaN is false), so is ±inf.
    """
    w, h = size
    x, y = points[..., 0], points[..., 1]
    with np.errstate(invalid="ignore"):
        return (x >= -0.5) & (x < w - 0.5) & (y >= -0.5) & (y < h - 0.5)


def inside_image(points: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """[N,2] (any array-like) → [N] bool: :func:`in_frame` on float64 points, finite only."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return np.isfinite(p).all(axis=1) & in_frame(p, size)


def to_homogeneous(points: np.ndarray) -> np.ndarray:
    """[N,2] → [N,3] float64 with a trailing 1."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return np.concatenate([p, np.ones((len(p), 1))], axis=1)


def warp_points(H: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Project [N,2] points by a 3×3 ``H`` → [N,2] float64 (plain perspective division)."""
    hom = to_homogeneous(points) @ np.asarray(H, np.float64).T
    return hom[:, :2] / hom[:, 2:3]


def apply_homography(H: np.ndarray, points: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Project [N,2] points by a 3×3 H → ([N,2] points, [N] bool in front: w > 0).

    Points mapped through or behind the line at infinity (w ≤ 1e-12) come back NaN.
    """
    ph = to_homogeneous(points) @ np.asarray(H, np.float64).T
    w = ph[:, 2]
    front = w > 1e-12
    with np.errstate(divide="ignore", invalid="ignore"):
        out = ph[:, :2] / np.where(front, w, np.nan)[:, None]
    return out, front


def compose(*Hs: np.ndarray) -> np.ndarray:
    """Homographies applied right to left, as written: ``compose(A, B) = A @ B`` (B first).

    Returns the float64 product, not normalised (callers that need H[2,2] = 1
    divide; the product of exact homographies stays exact).
    """
    out = np.asarray(Hs[0], np.float64)
    for H in Hs[1:]:
        out = out @ np.asarray(H, np.float64)
    return out


def normalise_homography(H: np.ndarray) -> np.ndarray:
    """H / H[2,2] (the same map, the usual scale)."""
    H = np.asarray(H, np.float64)
    return H / H[2, 2]


def pixel_grid(size: Tuple[int, int]) -> np.ndarray:
    """Every pixel centre of a (W, H) image, row by row → [H·W, 2] int (x, y)."""
    w, h = size
    ys, xs = np.mgrid[0:h, 0:w]
    return np.stack([xs.ravel(), ys.ravel()], 1)


# --------------------------------------------------------------------------- torch flavour

def safe_w_torch(z):
    """Replace |w| < :data:`HORIZON_EPS` by +HORIZON_EPS (points on the horizon stay finite)."""
    import torch  # lazy: torch is optional (training only)
    return torch.where(z.abs() < HORIZON_EPS, torch.full_like(z, HORIZON_EPS), z)


def warp_points_torch(H, pts):
    """Project points by a homography. H [3,3] or [B,3,3], pts [..., N, 2] → [..., N, 2].

    Division by :func:`safe_w_torch` (training: a point on the horizon must not
    make a NaN gradient); H is cast to the points' dtype.
    """
    import torch  # lazy: torch is optional (training only)
    hom = torch.cat([pts, torch.ones_like(pts[..., :1])], dim=-1) @ H.transpose(-1, -2).to(pts.dtype)
    return hom[..., :2] / safe_w_torch(hom[..., 2:3])


# --------------------------------------------------------------------------- rigid motions (SE(3))
#: REP-103: base x = optical z, base y = −optical x, base z = −optical y.
R_BASE_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def make_T(R: np.ndarray, t) -> np.ndarray:
    """3×3 rotation + 3-vector → 4×4."""
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = np.asarray(t, np.float64).reshape(3)
    return T


def inv_T(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4×4 transform."""
    R, t = T[:3, :3], T[:3, 3]
    return make_T(R.T, -R.T @ t)


def T_from_rvec(rvec, tvec) -> np.ndarray:
    """OpenCV (rvec, tvec) (world → camera, as solvePnP returns) → 4×4 T_cam_world."""
    R, _ = cv2.Rodrigues(np.asarray(rvec, np.float64).reshape(3, 1))
    return make_T(R, tvec)


def rvec_from_T(T: np.ndarray):
    """4×4 → (rvec [3], tvec [3]) for OpenCV."""
    rvec, _ = cv2.Rodrigues(np.ascontiguousarray(T[:3, :3]))
    return rvec.reshape(3), T[:3, 3].copy()


def rotation_angle(R: np.ndarray) -> float:
    """Angle of a rotation matrix in radians."""
    return float(np.arccos(np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0)))


def skew(v) -> np.ndarray:
    """Cross-product matrix [v]× [3,3] of a 3-vector (any shape of 3 values), or [N,3,3]
    of the rows of v [N,3]."""
    v = np.asarray(v, np.float64)
    v = v.reshape(3) if v.size == 3 else v
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    o = np.zeros_like(x)
    return np.stack([np.stack([o, -z, y], -1), np.stack([z, o, -x], -1),
                     np.stack([-y, x, o], -1)], -2)


def so3_left_jacobian(phi) -> np.ndarray:
    """Left Jacobian [3,3] of SO(3) at the rotation vector ``phi`` [3]:
    Rodrigues(φ + δ) = exp([J_l(φ)·δ]×)·Rodrigues(φ) to first order in δ."""
    phi = np.asarray(phi, np.float64).reshape(3)
    th = float(np.linalg.norm(phi))
    W = skew(phi)
    if th < 1e-6:
        return np.eye(3) + 0.5 * W
    return (np.eye(3) + (1 - np.cos(th)) / th ** 2 * W
            + (th - np.sin(th)) / th ** 3 * W @ W)


def adjoint(T: np.ndarray) -> np.ndarray:
    """6×6 adjoint of T for tangent vectors ordered (rotation, translation)."""
    R, t = T[:3, :3], T[:3, 3]
    A = np.zeros((6, 6))
    A[:3, :3] = R
    A[3:, 3:] = R
    A[3:, :3] = skew(t) @ R
    return A


def conjugate_covariance(T_ab: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Body covariance of X (rotation, translation) → body covariance of T_ab·X·T_ab⁻¹."""
    A = adjoint(T_ab)
    return A @ cov @ A.T


def rot_trans_to_ros(cov: np.ndarray) -> np.ndarray:
    """Reorder a 6×6 covariance from (rotation, translation) to ROS (translation, rotation)."""
    order = [3, 4, 5, 0, 1, 2]
    return cov[np.ix_(order, order)]


def quaternion_xyzw(R: np.ndarray) -> np.ndarray:
    """Rotation matrix → unit quaternion (x, y, z, w) with w ≥ 0."""
    m = np.asarray(R, np.float64)
    tr = np.trace(m)
    if tr > 0:
        s = np.sqrt(tr + 1.0) * 2
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = [0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = [(m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


def quat_to_R(q_xyzw) -> np.ndarray:
    """Unit quaternion (x, y, z, w) → rotation matrix."""
    x, y, z, w = np.asarray(q_xyzw, np.float64) / np.linalg.norm(q_xyzw)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def twist(T_prev: np.ndarray, T_cur: np.ndarray, dt: float) -> np.ndarray:
    """Body-frame twist (vx, vy, vz, wx, wy, wz) between two poses T_world_body, dt seconds apart.

    Zero when dt ≤ 0 (no rate can be formed)."""
    if not dt > 0:
        return np.zeros(6)
    D = inv_T(T_prev) @ T_cur
    rvec, _ = cv2.Rodrigues(np.ascontiguousarray(D[:3, :3]))
    return np.concatenate([D[:3, 3] / dt, rvec.reshape(3) / dt])


# --------------------------------------------------------------------------- pinhole cameras

def reprojection_errors(K, T_cw, X, uv) -> np.ndarray:
    """Pixel distance of X [M,3] (world) projected by T_cw (camera from world) to uv [M,2]
    → [M]; points behind the camera get 1e9."""
    Xc = X @ T_cw[:3, :3].T + T_cw[:3, 3]
    z = np.where(Xc[:, 2] > 1e-6, Xc[:, 2], np.nan)
    u = K[0, 0] * Xc[:, 0] / z + K[0, 2]
    v = K[1, 1] * Xc[:, 1] / z + K[1, 2]
    return np.nan_to_num(np.hypot(u - uv[:, 0], v - uv[:, 1]), nan=1e9)


def epipolar_distances(K, T_10, uv0: np.ndarray, uv1: np.ndarray) -> np.ndarray:
    """Pixel distance of every uv1 [N1,2] to the epipolar line of every uv0 [N0,2]
    → [N0,N1]; T_10: camera 1 from camera 0 (4×4), one intrinsic matrix K."""
    Ki = np.linalg.inv(K)
    F = Ki.T @ skew(T_10[:3, 3]) @ T_10[:3, :3] @ Ki
    h0 = np.c_[uv0, np.ones(len(uv0))]
    h1 = np.c_[uv1, np.ones(len(uv1))]
    lines = h0 @ F.T                                  # [N0,3] lines in image 1
    norm = np.maximum(np.linalg.norm(lines[:, :2], axis=1), 1e-12)
    return np.abs(lines @ h1.T) / norm[:, None]


def median_parallax_deg(X: np.ndarray, c0: np.ndarray, c1: np.ndarray) -> float:
    """Median angle (degrees) between the rays from camera centres c0 [3] and c1 [3] to
    the points X [N,3]; 0 without points."""
    if not len(X):
        return 0.0
    r0 = X - c0
    r1 = X - c1
    cos = np.sum(r0 * r1, axis=1) / np.maximum(
        np.linalg.norm(r0, axis=1) * np.linalg.norm(r1, axis=1), 1e-12)
    return float(np.degrees(np.median(np.arccos(np.clip(cos, -1.0, 1.0)))))


def triangulate(K, T_0, T_1, uv0, uv1, max_error: float, min_parallax_deg: float):
    """Two-view triangulation. T_i: camera-i from frame-0 (4×4); uv [M,2] →
    (points in frame 0 [M,3], ok [M]: in front of both, reprojection ≤ max_error,
    ray angle ≥ min_parallax_deg)."""
    P0 = K @ T_0[:3]
    P1 = K @ T_1[:3]
    Xh = cv2.triangulatePoints(P0, P1, uv0.T.astype(np.float64), uv1.T.astype(np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        X = (Xh[:3] / Xh[3]).T
    ok = np.all(np.isfinite(X), axis=1)
    X = np.where(ok[:, None], X, 0.0)
    e0 = reprojection_errors(K, T_0, X, uv0)
    e1 = reprojection_errors(K, T_1, X, uv1)
    c0 = inv_T(T_0)[:3, 3]
    c1 = inv_T(T_1)[:3, 3]
    r0, r1 = X - c0, X - c1
    cosang = np.sum(r0 * r1, 1) / np.maximum(np.linalg.norm(r0, axis=1) * np.linalg.norm(r1, axis=1),
                                             1e-12)
    ok &= (e0 <= max_error) & (e1 <= max_error)
    ok &= cosang <= np.cos(np.radians(min_parallax_deg))
    return X, ok
