"""SE(3) helpers for the odometry (4×4 numpy matrices, OpenCV rotation vectors).

Conventions: ``T_a_b`` maps coordinates in frame b to frame a
(p_a = T_a_b · p_b).  The camera frame is the optical frame (x right,
y down, z forward, REP-103 ``_optical``); the base frame is x forward,
y left, z up (REP-103).  6-vectors of a tangent space are ordered
(rotation, translation) inside the solver and (translation, rotation) in
ROS messages (nav_msgs/Odometry covariance: x, y, z, roll, pitch, yaw).
"""
from __future__ import annotations

import cv2
import numpy as np

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
    x, y, z = np.asarray(v, np.float64).reshape(3)
    return np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])


def adjoint(T: np.ndarray) -> np.ndarray:
    """6×6 adjoint of T for tangent vectors ordered (rotation, translation)."""
    R, t = T[:3, :3], T[:3, 3]
    A = np.zeros((6, 6))
    A[:3, :3] = R
    A[3:, 3:] = R
    A[3:, :3] = skew(t) @ R
    return A


def body_to_world_covariance(T_world_body: np.ndarray, cov_body: np.ndarray) -> np.ndarray:
    """Covariance of a right perturbation T·exp(ξ) (rotation, translation) →
    that of a left perturbation exp(η)·T, i.e. expressed in the world frame."""
    A = adjoint(T_world_body)
    return A @ cov_body @ A.T


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
