"""Photometric noise augmentation (paper §5.1).

Six filters in a fixed order, each skipped with p = 0.5; after each one, if
the image's variance fell below 10 % of the original image's variance the
filter is undone ("ruined" image, §5.1).  The paper names the filters but
gives no ranges; ours follow SuperPoint's photometric augmentation (the
authors' starting point), scaled to images in [0, 1].

All filters: float32 [H,W] in [0, 1] → float32 [H,W] in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Tuple

import cv2
import numpy as np


@dataclass
class NoiseConfig:
    """Filter ranges (paper silent → SuperPoint's values, in [0, 1] units)."""
    p_skip: float = 0.5                     # §5.1
    min_variance_ratio: float = 0.1         # §5.1: "ruined" below 10 % of the original
    gaussian_sigma: float = 10 / 255        # SuperPoint additive_gaussian_noise stddev ≤ 10
    brightness: float = 50 / 255            # SuperPoint random_brightness max_abs_change 50
    shade_transparency: Tuple[float, float] = (-0.5, 0.8)   # SuperPoint additive_shade
    shade_kernel: Tuple[int, int] = (50, 100)  # blur of the shade mask, px at a 256 crop
    salt_pepper: float = 0.0035             # SuperPoint additive_speckle_noise prob ≤ 0.0035
    motion_blur_max_kernel: int = 7         # SuperPoint motion_blur max_kernel_size (odd)
    contrast: Tuple[float, float] = (0.5, 1.5)  # SuperPoint random_contrast strength_range


def additive_gaussian(img, rng, cfg: NoiseConfig):
    sigma = rng.uniform(0, cfg.gaussian_sigma)
    return img + rng.normal(0, sigma, img.shape).astype(np.float32)


def random_brightness(img, rng, cfg: NoiseConfig):
    return img + np.float32(rng.uniform(-cfg.brightness, cfg.brightness))


def additive_shade(img, rng, cfg: NoiseConfig):
    """Darken / lighten blurred random ellipses (a soft shadow)."""
    h, w = img.shape
    mask = np.zeros((h, w), np.float32)
    dim = min(h, w)
    for _ in range(int(rng.integers(1, 6))):
        ax = (int(rng.integers(max(1, dim // 10), max(2, dim // 3))),
              int(rng.integers(max(1, dim // 10), max(2, dim // 3))))
        center = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.ellipse(mask, center, ax, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    k = int(rng.integers(*cfg.shade_kernel) * dim / 256) | 1
    mask = cv2.GaussianBlur(mask, (k, k), 0)
    t = rng.uniform(*cfg.shade_transparency)
    return img * (1 - t * mask)


def salt_and_pepper(img, rng, cfg: NoiseConfig):
    p = rng.uniform(0, cfg.salt_pepper)
    u = rng.random(img.shape)
    out = img.copy()
    out[u < p / 2] = 0.0
    out[u > 1 - p / 2] = 1.0
    return out


def motion_blur(img, rng, cfg: NoiseConfig):
    """Blur along a random direction with a line kernel of odd size 3..max."""
    if cfg.motion_blur_max_kernel < 3:     # a 1-px line kernel is the identity
        return img
    size = int(rng.integers(1, cfg.motion_blur_max_kernel // 2 + 1)) * 2 + 1
    kernel = np.zeros((size, size), np.float32)
    kernel[size // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2), float(rng.uniform(0, 180)), 1)
    kernel = cv2.warpAffine(kernel, rot, (size, size))
    kernel /= max(kernel.sum(), 1e-6)
    return cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT)


def random_contrast(img, rng, cfg: NoiseConfig):
    mean = img.mean()
    return (img - mean) * np.float32(rng.uniform(*cfg.contrast)) + mean


#: §5.1's order.
FILTERS: List[Callable] = [additive_gaussian, random_brightness, additive_shade,
                           salt_and_pepper, motion_blur, random_contrast]


def augment(img: np.ndarray, rng: np.random.Generator, cfg: NoiseConfig = NoiseConfig()) -> np.ndarray:
    """Apply §5.1's noise chain to one image. float32 [H,W] → float32 [H,W] in [0,1]."""
    out = img.astype(np.float32, copy=False)
    floor = cfg.min_variance_ratio * float(img.var())
    for f in FILTERS:
        if rng.random() < cfg.p_skip:
            continue
        candidate = np.clip(f(out, rng, cfg), 0.0, 1.0).astype(np.float32)
        if float(candidate.var()) >= floor:      # otherwise the filter ruined it: undo
            out = candidate
    return out
