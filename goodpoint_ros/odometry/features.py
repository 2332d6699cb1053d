"""What the VO runs on: a detector and a descriptor distance.

:class:`FeatureSource` bundles ``detect(image) → Features`` with the matching
distance of its descriptors, so the same back end runs GoodPoint (the core's
:class:`~goodpoint_ros.core.pipeline.FeatureExtractor`, unit descriptors, L2
≤ θ_desc) and classical features (the evaluator wraps ORB/SIFT/AKAZE from
``goodpoint_ros.evaluation.methods`` in one of these).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from goodpoint_ros.core.config import GoodPointConfig
from goodpoint_ros.core.keypoints import Features
from goodpoint_ros.core.matching import descriptor_distances
from goodpoint_ros.core.pipeline import FeatureExtractor
from goodpoint_ros.odometry.config import VO_PYRAMID_LEVELS


@dataclass
class FeatureSource:
    """detect: image → Features; distances: descriptors [N0,D], [N1,D] → [N0,N1];
    max_distance: accept no association farther than this (None: any)."""
    name: str
    detect_fn: Callable[[np.ndarray], Features]
    distances: Callable[[np.ndarray, np.ndarray], np.ndarray]
    max_distance: Optional[float] = None
    last_ms: float = 0.0          # network/detector time of the last detect()

    def detect(self, image: np.ndarray) -> Features:
        t0 = time.perf_counter()
        feats = self.detect_fn(image)
        self.last_ms = (time.perf_counter() - t0) * 1e3
        return feats


def vo_goodpoint_config(**overrides) -> GoodPointConfig:
    """GoodPoint settings for the VO: the weights' thresholds and small-frame doubling
    (``upsample_below``: a 320×240 camera's 8-px cells are coarse; on the RGB-D and mono
    tuning bags doubling took GoodPoint from 0.48 to 0.19 % and 0.87 to 0.69 % of the
    path, docs/odometry.md), but :data:`VO_PYRAMID_LEVELS` levels, whatever the weights
    recommend for still pairs."""
    return GoodPointConfig(**{"pyramid_levels": VO_PYRAMID_LEVELS, **overrides})


def goodpoint_source(extractor=None) -> FeatureSource:
    """GoodPoint through the core's extractor (default: bundled weights, default backend,
    :data:`VO_PYRAMID_LEVELS` levels whatever the weights recommend for still pairs; a
    given extractor keeps its own config)."""
    if extractor is None:
        extractor = FeatureExtractor(config=vo_goodpoint_config())
    return FeatureSource("goodpoint", extractor, descriptor_distances,
                         extractor.config.descriptor_threshold)
