"""Plane geometry shared by evaluation, training, matching and the VO (one convention).

Pixel convention (``docs/conventions.md``): keypoints are (x, y) in pixels,
pixel centres at integers, so pixel (i, j) covers the half-open cell
[i − ½, i + ½) × [j − ½, j + ½) and a (W, H) image covers
[−½, W − ½) × [−½, H − ½).  :func:`in_frame` tests exactly that: every point
of the plane lies in at most one pixel (``round`` half-up picks it), and a
point on the outer right / bottom edge is outside.

numpy flavour: float64 [N,2] arrays.  torch flavour (``*_torch``): any
leading batch shape [..., N, 2], dtype kept; torch is imported only there
(an optional heavy dependency: the runtime needs none).
"""
from __future__ import annotations

from typing import Tuple

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
    import torch  # optional heavy dependency (training only)
    return torch.where(z.abs() < HORIZON_EPS, torch.full_like(z, HORIZON_EPS), z)


def warp_points_torch(H, pts):
    """Project points by a homography. H [3,3] or [B,3,3], pts [..., N, 2] → [..., N, 2].

    Division by :func:`safe_w_torch` (training: a point on the horizon must not
    make a NaN gradient); H is cast to the points' dtype.
    """
    import torch  # optional heavy dependency (training only)
    hom = torch.cat([pts, torch.ones_like(pts[..., :1])], dim=-1) @ H.transpose(-1, -2).to(pts.dtype)
    return hom[..., :2] / safe_w_torch(hom[..., 2:3])
