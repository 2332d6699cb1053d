"""Refuse training images that are near-duplicates of evaluation images.

A model that has seen an evaluation image cannot be judged on it.  Each
image is reduced to a 64×64 grayscale thumbnail, zero-mean and unit-norm, so
the dot product of two thumbnails is their correlation; > 0.95 against any
image under ``../shared/data`` means "duplicate".  The evaluation thumbnails
are cached in an ``.npz`` keyed by the file list and modification times, so
the guard costs one small matrix product per training image.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from goodpoint_ros.core.weights import atomic_write_bytes

from .data import find_images, read_gray

log = logging.getLogger("goodpoint_training")

THUMB = 64
THRESHOLD = 0.95
#: ``../shared/data`` beside the repository root.
DEFAULT_EVAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"


def thumbnail(gray: np.ndarray) -> np.ndarray:
    """uint8/float [H,W] → float32 [64·64] zero-mean unit-norm vector."""
    t = cv2.resize(np.asarray(gray, np.float32), (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    t = t.ravel() - t.mean()
    n = np.linalg.norm(t)
    return (t / n if n > 1e-6 else t).astype(np.float32)


class DuplicateGuard:
    """``is_duplicate(gray)`` → True when correlated > 0.95 with an evaluation image."""

    def __init__(self, thumbs: np.ndarray, threshold: float = THRESHOLD):
        self.thumbs = np.asarray(thumbs, np.float32).reshape(-1, THUMB * THUMB)
        self.threshold = threshold

    def correlation(self, gray: np.ndarray) -> float:
        if len(self.thumbs) == 0:
            return 0.0
        return float((self.thumbs @ thumbnail(gray)).max())

    def is_duplicate(self, gray: np.ndarray) -> bool:
        return self.correlation(gray) > self.threshold

    @classmethod
    def from_folder(cls, folder: Path = DEFAULT_EVAL_DIR, cache_dir: Optional[Path] = None,
                    threshold: float = THRESHOLD) -> "DuplicateGuard":
        """Thumbnails of every image under ``folder`` (cached); empty if it is absent."""
        folder = Path(folder)
        if not folder.is_dir():
            return cls(np.zeros((0, THUMB * THUMB), np.float32), threshold)
        paths = find_images(folder)
        key = hashlib.sha1("\n".join(f"{p}:{p.stat().st_mtime_ns}" for p in paths)
                           .encode()).hexdigest()[:16]
        cache_dir = Path(cache_dir or os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) \
            / "goodpoint"
        cache = cache_dir / f"eval_thumbs_{key}.npz"
        if cache.is_file():
            try:
                return cls(np.load(cache)["thumbs"], threshold)
            except (OSError, ValueError, KeyError):
                pass
        thumbs = [thumbnail(img) for img in (read_gray(p) for p in paths) if img is not None]
        arr = np.stack(thumbs) if thumbs else np.zeros((0, THUMB * THUMB), np.float32)
        try:
            buf = io.BytesIO()
            np.savez(buf, thumbs=arr)
            atomic_write_bytes(cache, buf.getvalue())
        except OSError as exc:   # a read-only home only costs the cache
            log.warning("could not cache evaluation thumbnails: %s", exc)
        return cls(arr, threshold)
