"""The paper's evaluation metrics as pure numpy functions (§5.3, §6.1, §6.2).

For a pair of images (a, b) with a ground-truth warp a → b:

* a keypoint of a is **valid** when its warp lands inside b (and, for depth
  data, has a usable depth and is visible in b — the depth warps decide that);
* **repeatability** a→b: fraction of valid keypoints of a whose warped
  position is within ε px of some keypoint of b;
* **precision** a→b: among descriptor matches whose a-keypoint is valid, the
  fraction whose warped a-keypoint lands within ε px of the matched b-keypoint;
* **coverage** a→b: area of the union of discs of radius r around the
  correctly matched keypoints of a, over a's image area;
* per pair each metric is the mean of a→b and b→a; the harmonic mean
  summarises P, R and C in one number.

Coordinates follow the core's convention: (x, y) pixels, pixel centres at
integers, so an image of width W spans x ∈ [−0.5, W − 0.5).

A quantity with nothing to count (no valid keypoint, no valid match) is
``nan`` — "undefined", not "zero" — and aggregation skips it; coverage is
always defined (no correct match covers nothing: 0).
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, Optional, Sequence, Tuple

import cv2
import numpy as np

# the plane geometry (in-frame test, homography warp) is the core's, one convention
from goodpoint_ros.core.geometry import apply_homography, inside_image

#: keypoints of a [N,2] → (positions in b [N,2], valid [N] bool).
Warp = Callable[[np.ndarray], Tuple[np.ndarray, np.ndarray]]

#: The three metrics the paper's tables report, in table order.
METRICS = ("precision", "repeatability", "coverage")

# numpy 2 renamed trapz; support both (numpy >= 1.23 on Python 3.10).
_trapezoid = getattr(np, "trapezoid", None) or getattr(np, "trapz")


# --------------------------------------------------------------------------- warps

def homography_warp(H: np.ndarray, size_b: Tuple[int, int]) -> Warp:
    """The ground-truth warp of a homography H (pixels of a → pixels of b).

    A keypoint is valid when it lands inside b's (W, H) (and in front: a point
    mapped through the line at infinity is not).
    """
    H = np.asarray(H, dtype=np.float64)
    if H.shape != (3, 3) or not np.isfinite(H).all():
        raise ValueError(f"homography must be a finite 3x3 matrix, got shape {H.shape}")

    def warp(points: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        out, front = apply_homography(H, points)
        return out, front & inside_image(out, size_b)

    return warp


# --------------------------------------------------------------------------- nearest keypoints

def nearest_distance(points: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """[N,2], [M,2] → [N] distance from each point to its nearest target (inf if M = 0).

    Brute force in OpenCV (``batchDistance``, K = 1): exact, and a 1000 × 1000
    query takes a few ms.  Non-finite points get inf.
    """
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    t = np.asarray(targets, dtype=np.float64).reshape(-1, 2)
    out = np.full(len(p), np.inf)
    t = t[np.isfinite(t).all(axis=1)]
    ok = np.isfinite(p).all(axis=1)
    if len(t) == 0 or not ok.any():
        return out
    # centre both sets so float32 keeps sub-pixel precision on large images
    origin = t.mean(axis=0)
    dist, _ = cv2.batchDistance(np.ascontiguousarray(p[ok] - origin, np.float32),
                                np.ascontiguousarray(t - origin, np.float32),
                                cv2.CV_32F, normType=cv2.NORM_L2, K=1)
    out[ok] = dist.reshape(-1)
    return out


# --------------------------------------------------------------------------- metrics

def repeatability(warped_a: np.ndarray, valid_a: np.ndarray, kpts_b: np.ndarray,
                  eps: float) -> float:
    """Fraction of valid keypoints of a whose warp is within ε px of a keypoint of b.

    warped_a [N,2], valid_a [N] bool, kpts_b [M,2] → float in [0, 1], nan when
    no keypoint of a is valid.
    """
    valid = np.asarray(valid_a, bool).reshape(-1)
    if not valid.any():
        return float("nan")
    d = nearest_distance(np.asarray(warped_a).reshape(-1, 2)[valid], kpts_b)
    return float(np.mean(d <= eps))


def match_correctness(warped_a: np.ndarray, valid_a: np.ndarray, kpts_b: np.ndarray,
                      matches: np.ndarray, eps: float) -> Tuple[float, np.ndarray]:
    """Precision of matches and which are correct.

    warped_a [N,2], valid_a [N], kpts_b [M,2], matches [K,2] (index in a, in b)
    → (precision, correct [K] bool).  A match is correct when its a-keypoint is
    valid and warps within ε px of its b-keypoint; precision counts only
    matches with a valid a-keypoint (nan when there are none).
    """
    m = np.asarray(matches, dtype=np.int64).reshape(-1, 2)
    if len(m) == 0:
        return float("nan"), np.zeros(0, bool)
    valid = np.asarray(valid_a, bool).reshape(-1)[m[:, 0]]
    pa = np.asarray(warped_a, np.float64).reshape(-1, 2)[m[:, 0]]
    pb = np.asarray(kpts_b, np.float64).reshape(-1, 2)[m[:, 1]]
    with np.errstate(invalid="ignore"):
        close = np.linalg.norm(pa - pb, axis=1) <= eps
    correct = valid & close
    if not valid.any():
        return float("nan"), correct
    return float(correct.sum() / valid.sum()), correct


def coverage(kpts_a: np.ndarray, correct_a_idx: Iterable[int], image_size: Tuple[int, int],
             radius: float) -> float:
    """Union of discs of ``radius`` around the given keypoints of a, over a's area.

    kpts_a [N,2], correct_a_idx [K] indices into kpts_a, image_size (W, H) → [0, 1].
    A pixel is covered when its centre lies within ``radius`` of a keypoint
    (keypoints rounded to the nearest pixel).
    """
    w, h = (int(v) for v in image_size)
    if w <= 0 or h <= 0:
        raise ValueError(f"image size must be positive, got {image_size}")
    idx = np.unique(np.asarray(list(correct_a_idx) if not isinstance(correct_a_idx, np.ndarray)
                               else correct_a_idx, dtype=np.int64).reshape(-1))
    if len(idx) == 0:
        return 0.0
    pts = np.round(np.asarray(kpts_a, np.float64).reshape(-1, 2)[idx]).astype(np.int64)
    # One disc stamp, OR-ed at each keypoint's nearest pixel: a pixel is
    # covered when its centre is within r of that pixel (cv2.circle's
    # rasterisation overshoots the disc area by ~10%).
    r = int(np.floor(radius))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    stamp = (xx * xx + yy * yy) <= radius * radius
    pad = 2 * r                                        # stamps never need clipping
    mask = np.zeros((h + 2 * pad, w + 2 * pad), bool)
    for x, y in pts:
        if -r <= x < w + r and -r <= y < h + r:        # farther out cannot reach the image
            mask[y + pad - r:y + pad + r + 1, x + pad - r:x + pad + r + 1] |= stamp
    mask = mask[pad:pad + h, pad:pad + w]
    return float(np.count_nonzero(mask)) / float(w * h)


def harmonic_mean(values: Iterable[float]) -> float:
    """n / Σ 1/xᵢ: 0 if any value is 0, else nan if any is nan or there are none.

    A zero dominates an undefined value: a method that finds no keypoint has
    undefined P and R but zero coverage, and must rank last (0), not vanish.
    """
    v = np.asarray(list(values), dtype=np.float64).reshape(-1)
    if len(v) == 0:
        return float("nan")
    if (v < 0).any():
        raise ValueError("harmonic mean of negative values is not defined here")
    if (v == 0).any():
        return 0.0
    if np.isnan(v).any():
        return float("nan")
    return float(len(v) / np.sum(1.0 / v))


def _mean2(a: float, b: float) -> float:
    """Mean of the two directions; one undefined direction leaves the other."""
    v = [x for x in (a, b) if not np.isnan(x)]
    return float(np.mean(v)) if v else float("nan")


def _one_direction(kpts_a, kpts_b, matches, warp_ab: Warp, size_a, eps_list, radius):
    kpts_a = np.asarray(kpts_a, np.float64).reshape(-1, 2)
    warped, valid = warp_ab(kpts_a) if len(kpts_a) else (np.zeros((0, 2)), np.zeros(0, bool))
    valid = np.asarray(valid, bool).reshape(-1)
    # nearest b-keypoint of each valid warped keypoint, once for every ε
    nearest = nearest_distance(np.asarray(warped).reshape(-1, 2)[valid], kpts_b)
    out = {}
    for eps in eps_list:
        prec, correct = match_correctness(warped, valid, kpts_b, matches, eps)
        cov = coverage(kpts_a, np.asarray(matches, np.int64).reshape(-1, 2)[correct, 0],
                       size_a, radius)
        rep = float(np.mean(nearest <= eps)) if valid.any() else float("nan")
        out[eps] = {"precision": prec, "repeatability": rep,
                    "coverage": cov, "correct": int(correct.sum())}
    out["valid_keypoints"] = int(valid.sum())
    out["valid_matches"] = int(valid[np.asarray(matches, np.int64).reshape(-1, 2)[:, 0]].sum()) \
        if len(matches) else 0
    return out


def pair_metrics(kpts_a: np.ndarray, kpts_b: np.ndarray, matches: np.ndarray,
                 warp_ab: Warp, warp_ba: Warp, size_a: Tuple[int, int], size_b: Tuple[int, int],
                 eps_list: Sequence[float] = (3, 5), coverage_radius: float = 25.0) -> Dict:
    """P, R, C of one pair, each the mean of a→b and b→a.

    kpts_a [N,2], kpts_b [M,2], matches [K,2] (index in a, index in b), the two
    ground-truth warps, image sizes (W, H).  Returns::

        {"precision", "repeatability", "coverage", "harmonic_mean",   # at eps_list[0]
         "eps5": {...same four...},                                   # one key per further ε
         "matches": K, "correct_matches": at eps_list[0], "keypoints": (N + M) / 2,
         "keypoints_a": N, "keypoints_b": M, "valid_keypoints": ..., "valid_matches": ...}

    The harmonic mean of a pair is that of its own P, R, C (a plot along a
    sequence); the tables aggregate differently (see ``aggregate``).
    """
    kpts_a = np.asarray(kpts_a, np.float64).reshape(-1, 2)
    kpts_b = np.asarray(kpts_b, np.float64).reshape(-1, 2)
    m = np.asarray(matches, np.int64).reshape(-1, 2)
    if len(m) and ((m[:, 0] >= len(kpts_a)).any() or (m[:, 1] >= len(kpts_b)).any()
                   or (m < 0).any()):
        raise ValueError("matches index keypoints that do not exist")
    eps_list = tuple(eps_list)
    if not eps_list:
        raise ValueError("eps_list must hold at least one tolerance")
    ab = _one_direction(kpts_a, kpts_b, m, warp_ab, size_a, eps_list, coverage_radius)
    ba = _one_direction(kpts_b, kpts_a, m[:, ::-1], warp_ba, size_b, eps_list, coverage_radius)
    out: Dict = {}
    for k, eps in enumerate(eps_list):
        block = {name: _mean2(ab[eps][name], ba[eps][name]) for name in METRICS}
        block["harmonic_mean"] = harmonic_mean([block[n] for n in METRICS])
        block["correct_matches"] = (ab[eps]["correct"] + ba[eps]["correct"]) / 2.0
        if k == 0:
            out.update(block)
        else:
            out[eps_key(eps)] = block
    out["matches"] = int(len(m))
    out["keypoints"] = (len(kpts_a) + len(kpts_b)) / 2.0
    out["keypoints_a"] = int(len(kpts_a))
    out["keypoints_b"] = int(len(kpts_b))
    out["valid_keypoints"] = (ab["valid_keypoints"] + ba["valid_keypoints"]) / 2.0
    out["valid_matches"] = (ab["valid_matches"] + ba["valid_matches"]) / 2.0
    return out


def eps_key(eps: float) -> str:
    """JSON key of a further tolerance: 5 → ``"eps5"``, 2.5 → ``"eps2.5"``."""
    return f"eps{float(eps):g}"


# --------------------------------------------------------------------------- what SLAM users care about

def corner_error(H_est: Optional[np.ndarray], H_gt: np.ndarray, size_a: Tuple[int, int]) -> float:
    """Mean distance (px) between a's four corners warped by H_est and by H_gt.

    The HPatches "homography estimation" criterion (SuperPoint §7.3); inf when
    no homography was estimated.  Corners are the outer pixel centres.
    """
    if H_est is None:
        return float("inf")
    w, h = size_a
    corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)
    pe, fe = apply_homography(H_est, corners)
    pg, _ = apply_homography(H_gt, corners)
    if not fe.all() or not np.isfinite(pe).all():
        return float("inf")
    return float(np.linalg.norm(pe - pg, axis=1).mean())


def accuracy_at(errors: Iterable[float], thresholds: Sequence[float] = (1, 3, 5)) -> Dict[str, float]:
    """Fraction of errors ≤ each threshold (inf counts as a failure) → {"1": …, "3": …}."""
    e = np.asarray(list(errors), np.float64)
    e = e[~np.isnan(e)]
    return {f"{t:g}": (float(np.mean(e <= t)) if len(e) else float("nan")) for t in thresholds}


def rotation_error_deg(R_est: np.ndarray, R_gt: np.ndarray) -> float:
    """Angle (degrees) of R_est · R_gtᵀ."""
    c = (np.trace(np.asarray(R_est) @ np.asarray(R_gt).T) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def translation_error_deg(t_est: np.ndarray, t_gt: np.ndarray) -> float:
    """Angle (degrees) between translation directions (sign-agnostic is NOT applied:
    recoverPose resolves the sign with cheirality)."""
    a, b = np.asarray(t_est, np.float64).ravel(), np.asarray(t_gt, np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na < 1e-12 or nb < 1e-12:
        return float("nan")
    return float(np.degrees(np.arccos(np.clip(a @ b / (na * nb), -1.0, 1.0))))


def pose_auc(errors_deg: Iterable[float], thresholds: Sequence[float] = (5, 10, 20)) -> Dict[str, float]:
    """Area under the recall-vs-error curve up to each threshold (SuperGlue's pose AUC).

    The curve is linear between the sorted errors, starting at (0, 0), as in
    SuperGlue's evaluation code, and normalised by the threshold.

    errors_deg: per pair max(rotation, translation) error; inf/nan = failure.
    """
    e = np.asarray(list(errors_deg), np.float64)
    e = np.where(np.isnan(e), np.inf, e)
    out = {}
    if len(e) == 0:
        return {f"{t:g}": float("nan") for t in thresholds}
    e = np.sort(e)
    recall = (np.arange(len(e)) + 1) / len(e)
    e = np.concatenate([[0.0], e])
    recall = np.concatenate([[0.0], recall])
    for t in thresholds:
        last = np.searchsorted(e, t)
        x = np.concatenate([e[:last], [t]])
        y = np.concatenate([recall[:last], [recall[last - 1]]])
        out[f"{t:g}"] = float(_trapezoid(y, x) / t)
    return out
