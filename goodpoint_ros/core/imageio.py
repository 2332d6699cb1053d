"""Reading images from disk with one-line errors instead of tracebacks."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from goodpoint_ros.core.config import MAX_SIDE


class ImageError(ValueError):
    """An image file cannot be used; the message says why in one line."""


def read_image(path) -> np.ndarray:
    """Read an image file as stored (uint8 or uint16; gray, BGR or BGRA).

    16-bit files keep their depth (the extractor scales them ÷ 65535); colour is
    converted to gray by the extractor.  Raises :class:`ImageError` for a
    missing, unreadable, empty or absurdly large (> 65500 px side) file; whether
    the network can take it is the extractor's memory budget (after any resize).
    """
    p = Path(path)
    if not p.exists():
        raise ImageError(f"{p}: no such file")
    if p.is_dir():
        raise ImageError(f"{p}: is a directory, not an image")
    if p.stat().st_size == 0:
        raise ImageError(f"{p}: file is empty")
    data = np.fromfile(str(p), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageError(f"{p}: not an image OpenCV can decode")
    if img.size == 0 or img.shape[0] == 0 or img.shape[1] == 0:
        raise ImageError(f"{p}: image has zero size")
    if max(img.shape[:2]) > MAX_SIDE:
        raise ImageError(f"{p}: image is {img.shape[1]}x{img.shape[0]}; the largest side decoded "
                         f"is {MAX_SIDE} px")
    if img.dtype not in (np.uint8, np.uint16, np.float32):
        raise ImageError(f"{p}: unsupported pixel type {img.dtype}")
    return img


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Any stored image → 8-bit BGR for drawing."""
    img = image
    if img.dtype == np.uint16:
        img = (img / 257).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = (np.clip(np.nan_to_num(img), 0, 1) * 255).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return img
