"""The per-frame pipeline: image → :class:`Features`, shared by CLI, node, evaluator.

    extractor = FeatureExtractor()                    # bundled weights, best backend
    feats = extractor(image)                          # any uint8/uint16/float image
    feats.keypoints, feats.scores, feats.descriptors

Preprocess (gray float in [0,1], optional resize, pad to ×8) → ``backend.infer``
→ :func:`goodpoint_ros.core.keypoints.postprocess` → keypoints mapped back to the
original image's pixels (see ``docs/conventions.md``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Dict, Optional, Tuple

import cv2
import numpy as np

from goodpoint_ros.backends import create_backend
from goodpoint_ros.core.config import GoodPointConfig
from goodpoint_ros.core.keypoints import (
    Features,
    pad_to_multiple,
    postprocess,
    scale_keypoints,
    to_gray_float,
)

MAX_SIDE = 8192


@dataclass
class StageTimes:
    """Milliseconds spent in each stage of the last call."""
    preprocess: float = 0.0
    network: float = 0.0
    postprocess: float = 0.0

    @property
    def total(self) -> float:
        return self.preprocess + self.network + self.postprocess


class FeatureExtractor:
    """GoodPoint features for one image at a time.

    Args:
        backend: a backend object, or a name for :func:`create_backend`
            (``auto``, ``torch``, ``onnxruntime``, ``tensorrt``).
        config: post-processing settings; unset θ_keypoint comes from the
            weights' metadata.
        resize: optional (W, H) the network sees; keypoints are mapped back.
        weights, device, precision: passed to the backend factory.
    """

    def __init__(self, backend="auto", config: Optional[GoodPointConfig] = None,
                 resize: Optional[Tuple[int, int]] = None, weights=None,
                 device: str = "auto", precision: str = "auto", **backend_kwargs):
        if isinstance(backend, str):
            if resize and "size" not in backend_kwargs:   # the auto probe measures this size
                backend_kwargs["size"] = tuple(resize)
            backend = create_backend(backend, weights=weights, device=device,
                                     precision=precision, **backend_kwargs)
        self.backend = backend
        self.metadata: Dict = getattr(backend, "metadata", {}) or {}
        self.config = (config or GoodPointConfig()).resolved(self.metadata)
        self.resize = tuple(resize) if resize else None
        self.times = StageTimes()

    def set_config(self, config: GoodPointConfig) -> None:
        """Swap thresholds at run time (validated first: a bad value leaves the old one)."""
        self.config = config.resolved(self.metadata)

    def preprocess(self, image: np.ndarray) -> Tuple[np.ndarray, Tuple[int, int], Tuple[float, float]]:
        """image → (net input [1,1,H',W'], network image size (W,H), scale net→original)."""
        gray = to_gray_float(image)
        h, w = gray.shape
        if max(h, w) > MAX_SIDE:
            raise ValueError(f"image is {w}x{h}; the largest side allowed is {MAX_SIDE} px "
                             "(downscale it first, or set a resize)")
        scale = (1.0, 1.0)
        if self.resize and (w, h) != self.resize:
            rw, rh = self.resize
            gray = cv2.resize(gray, (rw, rh), interpolation=cv2.INTER_AREA)
            scale = (w / rw, h / rh)
        size = (gray.shape[1], gray.shape[0])
        return pad_to_multiple(gray)[None, None], size, scale

    def __call__(self, image: np.ndarray) -> Features:
        t0 = time.perf_counter()
        x, size, scale = self.preprocess(image)
        t1 = time.perf_counter()
        prob, desc = self.backend.infer(np.ascontiguousarray(x, dtype=np.float32))
        t2 = time.perf_counter()
        feats = postprocess(prob, desc, size, self.config)
        if scale != (1.0, 1.0):
            orig = (int(round(size[0] * scale[0])), int(round(size[1] * scale[1])))
            feats = replace(feats, keypoints=scale_keypoints(feats.keypoints, *scale),
                            image_size=orig)
        t3 = time.perf_counter()
        self.times = StageTimes((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3)
        return feats
