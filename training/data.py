"""Training data: any folder of images → mini-batches of homographic pairs.

* :func:`find_images` walks a folder recursively (jpg/png/ppm/pgm/bmp…).
* :func:`load_images` reads them as 8-bit grayscale; unreadable, tiny or
  near-duplicate-of-evaluation images are skipped and counted, never fatal.
* :class:`PairBatches` makes mini-batch ``i`` of a run deterministically from
  ``(seed, rank, i)``: resuming at step ``i`` sees exactly the data an
  uninterrupted run would have seen, and DDP ranks get different shards.

One mini-batch = ``B`` random crops, *one* homography pair (H_a, H_b) for all
of them (§4), noise applied independently to every image (§5.1).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .homography import HomographyConfig, sample_homography, translation
from .noise import NoiseConfig, augment

log = logging.getLogger("goodpoint_training")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp"}
PACKAGE_DIR = Path(__file__).resolve().parent
VALIDATION_SPLIT = PACKAGE_DIR / "validation_split.txt"


def find_images(root: Path) -> List[Path]:
    """All image files under ``root`` (recursive, sorted, by suffix)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def read_split(path: Optional[Path] = None) -> List[str]:
    """File names listed one per line (``#`` comments) → list of names."""
    p = Path(path) if path else VALIDATION_SPLIT
    lines = p.read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


@dataclass
class LoadReport:
    """What :func:`load_images` kept and why it skipped the rest."""
    kept: List[Path] = field(default_factory=list)
    unreadable: List[Path] = field(default_factory=list)
    tiny: List[Path] = field(default_factory=list)
    duplicates: List[Path] = field(default_factory=list)
    held_out: List[Path] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{len(self.kept)} training images; skipped {len(self.unreadable)} unreadable, "
                f"{len(self.tiny)} tiny, {len(self.duplicates)} near-duplicates of evaluation "
                f"images, {len(self.held_out)} held out for validation")


def read_gray(path: Path) -> Optional[np.ndarray]:
    """uint8 [H,W] or ``None`` if OpenCV cannot decode the file."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
        img = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    except (OSError, cv2.error):
        return None
    return img


def load_images(paths: Sequence[Path], min_size: int = 32, exclude_names: Sequence[str] = (),
                guard=None) -> Tuple[List[np.ndarray], LoadReport]:
    """Read training images as uint8 gray; skip (and count) the bad ones.

    ``exclude_names``: file names held out (the validation split).  ``guard``:
    a :class:`goodpoint_training.guard.DuplicateGuard` or ``None``.
    """
    report = LoadReport()
    images = []
    excluded = set(exclude_names)
    for p in paths:
        if p.name in excluded:
            report.held_out.append(p)
            continue
        img = read_gray(p)
        if img is None:
            report.unreadable.append(p)
            continue
        if min(img.shape) < min_size:
            report.tiny.append(p)
            continue
        if guard is not None and guard.is_duplicate(img):
            report.duplicates.append(p)
            continue
        images.append(img)
        report.kept.append(p)
    for kind in ("unreadable", "tiny", "duplicates"):
        if getattr(report, kind):
            log.warning("skipped %d %s image(s), e.g. %s", len(getattr(report, kind)), kind,
                        getattr(report, kind)[0])
    return images, report


def crop_transform(rng: np.random.Generator, image_size: Tuple[int, int], crop: int,
                   scale_range: Tuple[float, float]) -> np.ndarray:
    """3×3 map from source-image pixels to a random ``crop``² window of it.

    The source is zoomed by a random factor from ``scale_range`` (never so
    small that the crop would not fit), then a window is chosen uniformly.
    """
    w, h = image_size
    lo, hi = scale_range
    s = float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if hi > lo else float(lo)
    s = max(s, crop / min(w, h))
    sw, sh = w * s, h * s
    ox = rng.uniform(0, max(sw - crop, 0))
    oy = rng.uniform(0, max(sh - crop, 0))
    # pixel centres: x' = (x + 0.5)·s − 0.5, then shift by the window origin
    S = np.array([[s, 0, 0.5 * s - 0.5], [0, s, 0.5 * s - 0.5], [0, 0, 1]], np.float64)
    return translation(-ox, -oy) @ S


def make_pair(image: np.ndarray, rng: np.random.Generator, crop: int, H_a: np.ndarray,
              H_b: np.ndarray, scale_range=(1.0, 1.0), noise: Optional[NoiseConfig] = NoiseConfig()):
    """One crop of ``image`` (uint8 [h,w]) seen through H_a and H_b.

    Returns img, img_h float32 [crop,crop] in [0,1] and masks bool [crop,crop]
    (pixels that come from inside the source image).  Content outside the
    crop window is real image content when available, so masks are mostly
    full.  Noise (§5.1) is applied to each image independently.
    """
    h, w = image.shape
    C = crop_transform(rng, (w, h), crop, scale_range)
    out = []
    src = image.astype(np.float32) * np.float32(1 / 255)
    ones = np.ones_like(src)
    for Hx in (H_a, H_b):
        M = Hx @ C
        img = cv2.warpPerspective(src, M, (crop, crop), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REFLECT)
        valid = cv2.warpPerspective(ones, M, (crop, crop), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=0) > 0.999
        if noise is not None:
            img = augment(img, rng, noise)
        out += [img, valid]
    return out[0], out[2], out[1], out[3]


class PairBatches:
    """Deterministic mini-batches of homographic pairs: ``batch(i)`` → dict of arrays.

    ``{"image": [B,1,S,S], "image_h": [B,1,S,S], "mask": [B,S,S], "mask_h": [B,S,S],
    "H": [3,3]}`` with ``H`` mapping pixels of ``image`` to pixels of ``image_h``.
    Usable as a map-style ``torch.utils.data.Dataset`` with ``batch_size=None``.
    With ``wide`` and ``wide_fraction`` > 0 that fraction of the batches draws
    its homographies from ``wide`` instead of ``homography``.
    """

    def __init__(self, images: List[np.ndarray], crop: int, batch_size: int,
                 homography: HomographyConfig = HomographyConfig(),
                 noise: Optional[NoiseConfig] = NoiseConfig(), scale_range=(1.0, 1.0),
                 seed: int = 0, rank: int = 0, length: int = 10 ** 9, start: int = 0,
                 wide: Optional[HomographyConfig] = None, wide_fraction: float = 0.0):
        if not images:
            raise ValueError("no usable training images")
        self.images, self.crop, self.batch_size = images, crop, batch_size
        self.homography, self.noise, self.scale_range = homography, noise, scale_range
        self.seed, self.rank, self.length, self.start = seed, rank, length, start
        self.wide, self.wide_fraction = wide, float(wide_fraction)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> Dict[str, np.ndarray]:
        return self.batch(self.start + i)

    def batch(self, step: int) -> Dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, self.rank, step])
        size = (self.crop, self.crop)
        ranges = self.homography
        # drawn only when mixing, so a run without wide batches keeps its old streams
        if self.wide is not None and self.wide_fraction > 0 and rng.random() < self.wide_fraction:
            ranges = self.wide
        H_a = sample_homography(rng, size, ranges)
        H_b = sample_homography(rng, size, ranges)
        H = H_b @ np.linalg.inv(H_a)
        picks = rng.integers(0, len(self.images), self.batch_size)
        imgs, imgs_h, masks, masks_h = [], [], [], []
        for k in picks:
            a, b, ma, mb = make_pair(self.images[k], rng, self.crop, H_a, H_b,
                                     self.scale_range, self.noise)
            imgs.append(a); imgs_h.append(b); masks.append(ma); masks_h.append(mb)  # noqa: E702
        return {"image": np.stack(imgs)[:, None], "image_h": np.stack(imgs_h)[:, None],
                "mask": np.stack(masks), "mask_h": np.stack(masks_h),
                "H": (H / H[2, 2]).astype(np.float32)}

