"""Left → right stereo matching of GoodPoint features.

Rectified pair: a scene point appears on the same image row in both images,
shifted left in the right image by its disparity d = x_left − x_right ≥ 0
(depth = f·B / d).  So matches are searched only among right keypoints on the
same row ± ``row_tolerance`` px with a disparity in
[``min_disparity``, ``max_disparity``]; inside that band the usual GoodPoint
matcher applies (mutual nearest neighbour under θ_desc, optional ratio test).
The row constraint *is* the geometric verification, so every accepted match
is an inlier and carries its disparity.

Unrectified pair: plain descriptor matching, verified with the essential
matrix when intrinsics are known (:func:`goodpoint_ros.core.matching.match_features`)
or else with the fundamental matrix (USAC/MAGSAC), in pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from goodpoint_ros.core.config import GoodPointConfig
from goodpoint_ros.core.keypoints import Features
from goodpoint_ros.core.matching import (
    MatchResult,
    descriptor_distances,
    match_features,
    mutual_nn_match,
)


@dataclass
class StereoParams:
    """Search band for rectified stereo, in pixels.

    row_tolerance: |y_left − y_right| allowed (1 px: keypoints sit on integer
        pixels, rectification is good to a fraction of a pixel).
    min_disparity / max_disparity: allowed x_left − x_right; ``None`` = no
        upper bound.  Negative disparities are impossible for points in front
        of a rectified rig.
    """
    row_tolerance: float = 1.0
    min_disparity: float = 0.0
    max_disparity: Optional[float] = None

    def validate(self) -> "StereoParams":
        if self.row_tolerance < 0:
            raise ValueError(f"row_tolerance must be >= 0, got {self.row_tolerance}")
        if self.max_disparity is not None and self.max_disparity < self.min_disparity:
            raise ValueError(f"max_disparity {self.max_disparity} < min_disparity {self.min_disparity}")
        return self


def epipolar_band_mask(kpts_left: np.ndarray, kpts_right: np.ndarray,
                       params: StereoParams) -> np.ndarray:
    """Allowed pairs for a rectified rig. [N0,2], [N1,2] → bool [N0,N1]."""
    dy = np.abs(kpts_left[:, None, 1] - kpts_right[None, :, 1])
    disparity = kpts_left[:, None, 0] - kpts_right[None, :, 0]
    ok = (dy <= params.row_tolerance) & (disparity >= params.min_disparity)
    if params.max_disparity is not None:
        ok &= disparity <= params.max_disparity
    return ok


def match_rectified(left: Features, right: Features, config: Optional[GoodPointConfig] = None,
                    params: Optional[StereoParams] = None) -> MatchResult:
    """Row-constrained matching. Returns a MatchResult with ``disparities`` [M] set.

    Impossible pairs get an infinite distance before mutual NN, so a keypoint's
    nearest neighbour is searched inside its band only (not matched globally
    and filtered afterwards, which would lose matches to repeated texture).
    """
    cfg = config or GoodPointConfig()
    params = (params or StereoParams()).validate()
    dist = descriptor_distances(left.descriptors, right.descriptors)
    if dist.size:
        dist = np.where(epipolar_band_mask(left.keypoints, right.keypoints, params), dist, np.inf)
    matches, distances = mutual_nn_match(dist, cfg.descriptor_threshold, cfg.ratio_test, cfg.mutual)
    finite = np.isfinite(distances)       # a row with no candidate at all
    matches, distances = matches[finite], distances[finite]
    result = MatchResult(matches, distances, np.ones(len(matches), bool))
    result.disparities = (left.keypoints[matches[:, 0], 0]
                          - right.keypoints[matches[:, 1], 0]).astype(np.float32)
    return result


def match_stereo(left: Features, right: Features, config: Optional[GoodPointConfig] = None,
                 rectified: bool = True, params: Optional[StereoParams] = None,
                 verify: bool = True, K_left=None, K_right=None, dist_left=None, dist_right=None,
                 ransac_threshold: float = 1.0) -> MatchResult:
    """Left → right matches: row-constrained when ``rectified``, else verified by E or F."""
    if rectified:
        return match_rectified(left, right, config, params)
    if not verify:
        return match_features(left, right, config, verify="none")
    if K_left is not None:
        return match_features(left, right, config, verify="essential", K0=K_left, K1=K_right,
                              dist0=dist_left, dist1=dist_right, ransac_threshold=ransac_threshold)
    return match_features(left, right, config, verify="fundamental", ransac_threshold=ransac_threshold)
