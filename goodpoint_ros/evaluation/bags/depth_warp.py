"""Ground-truth warp between two frames from depth, poses and intrinsics (§6.1).

A keypoint p of image a, with planar depth z (at its rounded pixel), is the
3D point ``X_a = z·K_a⁻¹ (p, 1)`` in camera a; camera b sees it at
``X_b = R_ba X_a + t_ba`` and pixel ``K_b X_b / z_b``.  The keypoint is

* **valid** when z is finite and positive, ``z_b > 0``, the pixel lies inside
  b, and it is **visible** in b: b's own depth at the rounded warped pixel
  agrees with ``z_b`` within a relative tolerance (5 %) — otherwise
  something nearer hides it (occlusion) or the depth is wrong.

The paper also rolls the second image by 5° (§6.1); an optional 2×3 affine
per image (``roll_matrix``) describes such an in-plane change, and the warp
composes with it: points of a transformed image are first mapped back to
its original pixels, and warped points are mapped forward into it.

Coordinates follow the core's convention (pixel centres at integers).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np

from goodpoint_ros.core.geometry import inside_image


def relative_pose(T_world_a: np.ndarray, T_world_b: np.ndarray) -> np.ndarray:
    """4×4 T_b_a taking camera-a coordinates to camera-b coordinates."""
    return np.linalg.inv(T_world_b) @ T_world_a


def roll_matrix(angle_deg: float, size: Tuple[int, int]) -> np.ndarray:
    """3×3 affine rotating an image of (W, H) by ``angle_deg`` about its centre.

    Same sense as ``cv2.getRotationMatrix2D`` (positive = counter-clockwise on
    screen); maps original pixels to rolled pixels.
    """
    w, h = size
    A = np.eye(3)
    A[:2] = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), float(angle_deg), 1.0)
    return A


def roll_image(image: np.ndarray, angle_deg: float, interpolation=cv2.INTER_LINEAR) -> np.ndarray:
    """The image rolled by ``angle_deg`` about its centre (black where nothing maps)."""
    h, w = image.shape[:2]
    A = roll_matrix(angle_deg, (w, h))
    return cv2.warpAffine(image, A[:2], (w, h), flags=interpolation,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def apply_affine(A: Optional[np.ndarray], points: np.ndarray) -> np.ndarray:
    """[N,2] points through a 3×3 affine (None = identity)."""
    p = np.asarray(points, np.float64).reshape(-1, 2)
    if A is None:
        return p
    return p @ A[:2, :2].T + A[:2, 2]


def depth_at(depth: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Depth at the rounded pixel of each point [N,2] → [N] (NaN outside or invalid)."""
    h, w = depth.shape
    p = np.asarray(points, np.float64).reshape(-1, 2)
    out = np.full(len(p), np.nan)
    ok = inside_image(p, (w, h))
    xi = np.clip(np.floor(p[ok, 0] + 0.5).astype(np.int64), 0, w - 1)
    yi = np.clip(np.floor(p[ok, 1] + 0.5).astype(np.int64), 0, h - 1)
    out[ok] = depth[yi, xi]
    out[~(out > 0)] = np.nan                  # 0, negative, NaN: invalid; inf stays and fails below
    return out


def warp_points(points_a: np.ndarray, depth_a: np.ndarray, K_a: np.ndarray, T_b_a: np.ndarray,
                K_b: np.ndarray, size_b: Tuple[int, int], depth_b: Optional[np.ndarray] = None,
                rel_tolerance: float = 0.05, A_a: Optional[np.ndarray] = None,
                A_b: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Warp keypoints of a into b → (warped [N,2], valid [N] bool).

    points_a [N,2] in (possibly transformed) image a; depth_a/depth_b [H,W]
    planar depth of the *original* images (NaN/inf/≤0 invalid); K_a, K_b 3×3;
    T_b_a 4×4; size_b (W,H); A_a/A_b: optional 3×3 affines original →
    transformed image (see :func:`roll_matrix`).  ``depth_b`` None skips the
    visibility test.
    """
    pa = np.asarray(points_a, np.float64).reshape(-1, 2)
    n = len(pa)
    if n == 0:
        return np.zeros((0, 2)), np.zeros(0, bool)
    if A_a is not None:
        pa = apply_affine(np.linalg.inv(A_a), pa)
    z = depth_at(depth_a, pa)
    valid = np.isfinite(z)
    z = np.where(valid, z, 1.0)
    rays = np.concatenate([pa, np.ones((n, 1))], axis=1) @ np.linalg.inv(K_a).T
    Xb = (rays * z[:, None]) @ T_b_a[:3, :3].T + T_b_a[:3, 3]
    zb = Xb[:, 2]
    valid &= zb > 1e-6
    with np.errstate(divide="ignore", invalid="ignore"):
        proj = Xb @ np.asarray(K_b, np.float64).T
        pb = proj[:, :2] / proj[:, 2:3]
    valid &= inside_image(pb, size_b)
    if depth_b is not None:
        db = depth_at(depth_b, pb)
        with np.errstate(invalid="ignore"):
            valid &= np.isfinite(db) & (np.abs(db - zb) <= rel_tolerance * zb)
    out = apply_affine(A_b, pb)
    if A_b is not None:
        valid &= inside_image(out, size_b)
    out[~valid] = np.nan
    return out, valid


@dataclass
class DepthWarp:
    """A ground-truth warp a → b in the evaluator's ``Warp`` form: kpts → (warped, valid)."""
    depth_a: np.ndarray
    K_a: np.ndarray
    T_b_a: np.ndarray
    K_b: np.ndarray
    size_b: Tuple[int, int]
    depth_b: Optional[np.ndarray] = None
    rel_tolerance: float = 0.05
    A_a: Optional[np.ndarray] = None
    A_b: Optional[np.ndarray] = None

    def __call__(self, points_a: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        return warp_points(points_a, self.depth_a, self.K_a, self.T_b_a, self.K_b, self.size_b,
                           self.depth_b, self.rel_tolerance, self.A_a, self.A_b)


def pair_warps(frame_a, frame_b, roll_deg: float = 0.0,
               rel_tolerance: float = 0.05) -> Tuple[DepthWarp, DepthWarp]:
    """Warps a → b and b → a for two :class:`~.bag_replay.Frame` s with depth and pose.

    ``roll_deg`` rolls image b (the warps then refer to the rolled b, made by
    :func:`roll_image`).
    """
    A_b = roll_matrix(roll_deg, frame_b.size) if roll_deg else None
    T_b_a = relative_pose(frame_a.T_world_cam, frame_b.T_world_cam)
    ab = DepthWarp(frame_a.depth, frame_a.K, T_b_a, frame_b.K, frame_b.size, frame_b.depth,
                   rel_tolerance, None, A_b)
    ba = DepthWarp(frame_b.depth, frame_b.K, np.linalg.inv(T_b_a), frame_a.K, frame_a.size,
                   frame_a.depth, rel_tolerance, A_b, None)
    return ab, ba
