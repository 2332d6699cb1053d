"""Pieces both evaluations share (homography sets and bags): the feature cache and
the report pictures' match correctness.

A frame is detected once per method however many pairs use it; the examples
the report draws mark a match correct when a's keypoint warps (ground truth)
to within ε of b's.
"""
from __future__ import annotations

import time
from typing import Callable, Dict, Hashable, Optional, Tuple

import numpy as np


class FeatureCache:
    """``get(key, method, image) → (features, milliseconds)``: ``method.detect`` once per key.

    ``on_extract(seconds)`` is told each real extraction's time (the run's timing
    split); :meth:`evict` drops the entries no later pair needs.
    """

    def __init__(self, on_extract: Optional[Callable[[float], None]] = None):
        self.entries: Dict[Hashable, Tuple[object, float]] = {}
        self.on_extract = on_extract

    def get(self, key: Hashable, method, image: np.ndarray) -> Tuple[object, float]:
        if key not in self.entries:
            t0 = time.perf_counter()
            feats = method.detect(image)
            dt = time.perf_counter() - t0
            if self.on_extract is not None:
                self.on_extract(dt)
            self.entries[key] = (feats, dt * 1e3)
        return self.entries[key]

    def evict(self, drop: Callable[[Hashable], bool]) -> None:
        for key in [k for k in self.entries if drop(k)]:
            del self.entries[key]


def correct_matches(warped_a: np.ndarray, valid_a: np.ndarray, kpts_b: np.ndarray,
                    matches: np.ndarray, eps: float) -> np.ndarray:
    """[M] bool: match (i, j) is correct when a's keypoint i warps validly to within
    ``eps`` px of b's keypoint j.  warped_a [N,2], valid_a [N], kpts_b [K,2], matches [M,2]."""
    ok = np.zeros(len(matches), bool)
    if len(matches):
        d = np.linalg.norm(warped_a[matches[:, 0]] - kpts_b[matches[:, 1]], axis=1)
        with np.errstate(invalid="ignore"):
            ok = valid_a[matches[:, 0]] & (d <= eps)
    return ok


def example_entry(kpts_a: np.ndarray, kpts_b: np.ndarray, matches: np.ndarray,
                  correct: np.ndarray, eps: Optional[float]) -> Dict[str, np.ndarray]:
    """One method's part of a report picture (``report.write_report`` draws it);
    ``correct`` [M] by ground truth within ``eps`` px, or (``eps`` None: no ground truth)
    the robust fit's inliers."""
    return {"kpts_a": kpts_a, "kpts_b": kpts_b, "matches": matches, "correct": correct,
            "eps": eps}
