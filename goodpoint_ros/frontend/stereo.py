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

Disparities to a fraction of a pixel: :func:`refine_disparity` refines a
descriptor match by SAD patch matching along the row (an equiangular fit);
:func:`patch_disparities` finds the right position of a left keypoint with no
right detection at all (NCC row search: the detector on the left image only).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
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


def patch_disparities(left: np.ndarray, right: np.ndarray, kp_left: np.ndarray,
                      min_disparity: float, max_disparity: float, window: int = 11,
                      min_ncc: float = 0.7, uniqueness: float = 0.7,
                      lr_tolerance: float = 1.0) -> np.ndarray:
    """Right-image x [N] (NaN: none) of left keypoints [N,2] by a rectified row search.

    The detector then runs on the left image only: each keypoint's ``window``²
    patch (centred on the rounded position) is compared by zero-mean NCC
    (``cv2.matchTemplate``) with every right-image position on the same row at
    a disparity in [min, max]; the best is accepted if its NCC ≥ ``min_ncc``,
    its cost 1 − NCC is below ``uniqueness`` × that of the best rival more than
    one pixel away (repeated texture otherwise), and the right patch searched
    back along the left row lands within ``lr_tolerance`` px (left–right check).
    A parabola through the three NCC values around the peak gives the sub-pixel
    disparity; the keypoint's own fraction of a pixel is carried over, so the
    result is for the keypoint's (sub-pixel) x.  ``left`` / ``right``: grey
    float32 images of one size.
    """
    H, W = left.shape
    h = window // 2
    out = np.full(len(kp_left), np.nan)
    xs = np.rint(kp_left[:, 0]).astype(int)
    ys = np.rint(kp_left[:, 1]).astype(int)
    dmin = max(int(np.floor(min_disparity)), 0)
    for n, (x, y) in enumerate(zip(xs, ys)):
        if y - h < 0 or y + h >= H or x - h < 0 or x + h >= W:
            continue
        lo = max(x - int(np.ceil(max_disparity)), h)       # right x range searched
        hi = x - dmin
        if hi - lo < 2:
            continue
        tpl = left[y - h:y + h + 1, x - h:x + h + 1]
        strip = right[y - h:y + h + 1, lo - h:hi + h + 1]
        ncc = cv2.matchTemplate(strip, tpl, cv2.TM_CCOEFF_NORMED).ravel()   # [hi-lo+1]
        b = int(np.argmax(ncc))
        best = ncc[b]
        if not best >= min_ncc or b == 0 or b == len(ncc) - 1:
            continue
        near = ncc[b - 1:b + 2].copy()
        ncc[b - 1:b + 2] = -1.0                      # the rival lies > 1 px from the peak
        if (1.0 - best) >= uniqueness * (1.0 - ncc.max()):
            continue
        ncc[b - 1:b + 2] = near
        xr = lo + b
        # left-right check: the right patch searched back along the left row
        tpl_r = right[y - h:y + h + 1, xr - h:xr + h + 1]
        lo_l, hi_l = xr + dmin, min(xr + int(np.ceil(max_disparity)), W - 1 - h)
        if hi_l <= lo_l:
            continue
        back = cv2.matchTemplate(left[y - h:y + h + 1, lo_l - h:hi_l + h + 1], tpl_r,
                                 cv2.TM_CCOEFF_NORMED).ravel()
        if abs(lo_l + int(np.argmax(back)) - x) > lr_tolerance:
            continue
        c0, c1, c2 = ncc[b - 1], best, ncc[b + 1]
        denom = c0 - 2 * c1 + c2
        delta = 0.5 * (c0 - c2) / denom if denom < 0 else 0.0
        out[n] = xr + float(np.clip(delta, -0.5, 0.5)) + (kp_left[n, 0] - x)
    return out


def refine_disparity(left: np.ndarray, right: np.ndarray, kp_left: np.ndarray, xr: np.ndarray,
                     half: int = 5, reach: int = 2) -> np.ndarray:
    """Sub-pixel right-image x [M] by SAD patch matching along the row + an equiangular fit.

    A (2·half+1)² patch around each left keypoint (rounded) is compared with
    the right image at shifts −reach..reach around the matched x; a match whose
    best shift is at the edge of the search keeps its descriptor position.  The
    result is for the keypoint's own (sub-pixel) x: the disparity is
    ``x_left − result``.
    """
    H, W = left.shape
    xl = np.rint(kp_left[:, 0]).astype(int)
    y = np.rint(kp_left[:, 1]).astype(int)
    x0 = np.rint(xr).astype(int)
    ok = (y - half >= 0) & (y + half < H) & (xl - half >= 0) & (xl + half < W) & \
         (x0 - half - reach - 1 >= 0) & (x0 + half + reach + 1 < W)
    out = xr.astype(np.float64).copy()
    if not ok.any():
        return out
    idx = np.nonzero(ok)[0]
    off = np.arange(-half, half + 1)
    rows = y[idx, None, None] + off[None, :, None]
    pl = left[rows, xl[idx, None, None] + off[None, None, :]]
    pl = pl - pl.mean(axis=(1, 2), keepdims=True)
    shifts = np.arange(-reach - 1, reach + 2)
    cost = np.empty((len(idx), len(shifts)))
    for s, sh in enumerate(shifts):
        pr = right[rows, (x0[idx] + sh)[:, None, None] + off[None, None, :]]
        pr = pr - pr.mean(axis=(1, 2), keepdims=True)
        cost[:, s] = np.abs(pl - pr).sum(axis=(1, 2))
    inner = cost[:, 1:-1]
    b = inner.argmin(axis=1) + 1
    c0 = cost[np.arange(len(idx)), b - 1]
    c1 = cost[np.arange(len(idx)), b]
    c2 = cost[np.arange(len(idx)), b + 1]
    # SAD is V-shaped at its minimum: fit two lines of equal and opposite slope
    # (Shimizu & Okutomi 2005).  A parabola through the same three costs is pulled
    # towards whole pixels, by up to 0.09 px on a shifted photo (test/frontend/test_stereo.py).
    denom = 2 * (np.maximum(c0, c2) - c1)
    delta = np.where(denom > 0, (c0 - c2) / np.where(denom > 0, denom, 1), 0.0)
    at_edge = (b == 1) | (b == len(shifts) - 2)
    good = ~at_edge & (np.abs(delta) <= 1.0)
    # the patch was centred on the rounded left x: carry the keypoint's own fraction over
    frac = kp_left[idx[good], 0] - xl[idx[good]]
    out[idx[good]] = x0[idx[good]] + shifts[b[good]] + delta[good] + frac
    return out
