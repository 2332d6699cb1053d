"""Random homographies for the training pairs (paper §4, §5.2).

A training pair is one crop seen through two homographies ``H_a`` (image I)
and ``H_b`` (image I_h); the network only ever needs their relative
homography ``H = H_b · H_a⁻¹`` (pixels of I → pixels of I_h).  One ``H`` is
shared by the whole mini-batch (§4), so everything here works on single 3×3
matrices; :mod:`goodpoint_training.targets` applies them to batched points.

Coordinates are pixels with pixel centres at integers (the package
convention, ``docs/conventions.md``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import cv2
import numpy as np

# one plane geometry for training and evaluation (docs/conventions.md); the name
# apply_homography is kept for the trainer's callers
from goodpoint_ros.core.geometry import in_frame, pixel_grid
from goodpoint_ros.core.geometry import warp_points as apply_homography


@dataclass
class HomographyConfig:
    """Ranges of the random homography applied to *each* image of a pair.

    Pixel amplitudes are given for a 256-px crop (the paper's size, §5) and
    scale with the crop, so a 128-px crop sees the same relative distortion.

    Attributes:
        corner_shift: each corner moves by U(±corner_shift) px in x and y
            (±14 px, §5.2).
        perspective_shift: a side's two end points move towards / away from
            each other by U(±perspective_shift) px (±85 px, §5.2).  Applied to
            the left/right sides and, with p = 0.5, to the top/bottom sides.
        rotation: in-plane rotation about the centre, U(±rotation) rad.  The
            paper uses ±0.08 (§5.2); the authors later trained with ±0.8 since
            ±0.08 leaves the model weak under rotation.
        scale: zoom about the centre, log-uniform in [scale[0], scale[1]]
            (the paper is silent; the authors later used 0.8–1.3).
        reference_crop: the crop size the pixel amplitudes refer to.
    """
    corner_shift: float = 14.0
    perspective_shift: float = 85.0
    rotation: float = 0.08
    scale: Tuple[float, float] = (1.0, 1.0)
    reference_crop: int = 256


def rotation_scale_about(center: Tuple[float, float], angle: float, scale: float) -> np.ndarray:
    """3×3 similarity rotating by ``angle`` rad and zooming by ``scale`` about ``center``."""
    cx, cy = center
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    return np.array([[c, -s, cx - c * cx + s * cy],
                     [s, c, cy - s * cx - c * cy],
                     [0, 0, 1]], dtype=np.float64)


def translation(tx: float, ty: float) -> np.ndarray:
    return np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], dtype=np.float64)


def corners(size: Tuple[int, int]) -> np.ndarray:
    """The 4 outer corners of a (W, H) image in pixel-centre coordinates → [4,2]."""
    w, h = size
    return np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]],
                    dtype=np.float64)


def sample_homography(rng: np.random.Generator, size: Tuple[int, int],
                      cfg: HomographyConfig) -> np.ndarray:
    """One random homography of a (W, H) image onto itself (§5.2).

    Built as a product of simple transformations: corner jitter and
    perspective pinch (as the 4-point map of the image corners), then a
    rotation + zoom about the image centre.  Returns a 3×3 float64.
    """
    w, h = size
    k = min(w, h) / float(cfg.reference_crop)
    src = corners(size)
    dst = src + rng.uniform(-1, 1, size=(4, 2)) * cfg.corner_shift * k
    # Perspective: pinch the left side and spread the right one (or vice versa);
    # half the time also top/bottom.  Each end point moves by d/2 so the side
    # changes length by up to ±perspective_shift.
    d = rng.uniform(-1, 1) * cfg.perspective_shift * k / 2
    dst[0, 1] += d; dst[3, 1] -= d; dst[1, 1] -= d; dst[2, 1] += d   # noqa: E702
    if rng.random() < 0.5:
        d = rng.uniform(-1, 1) * cfg.perspective_shift * k / 2
        dst[0, 0] += d; dst[1, 0] -= d; dst[3, 0] -= d; dst[2, 0] += d  # noqa: E702
    H = cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32))
    angle = rng.uniform(-cfg.rotation, cfg.rotation) if cfg.rotation > 0 else 0.0
    lo, hi = cfg.scale
    zoom = float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if hi > lo else float(lo)
    center = ((w - 1) / 2.0, (h - 1) / 2.0)
    H = rotation_scale_about(center, angle, zoom) @ H.astype(np.float64)
    return H / H[2, 2]


def warp_mask(src_size: Tuple[int, int], H: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """bool [H,W] of output pixels whose source (by ``H⁻¹``) lies inside ``src_size``."""
    w, h = size
    src = apply_homography(np.linalg.inv(H), pixel_grid(size))
    return in_frame(src, src_size).reshape(h, w)
