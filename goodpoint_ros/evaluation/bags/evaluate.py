"""``goodpoint eval bag``: the paper's metrics on a rosbag2 replay with depth + poses.

Frames i and i + shift (default 5) of a bag (AirSim ROS 2 wrapper topics by
default) are paired; the ground-truth warp a→b comes from a's planar depth,
both camera poses and the intrinsics (paper §6.1, the AirSim village set).
``--no-depth`` evaluates an ordinary robot bag (matches, essential-matrix
inliers, relative-pose error against odometry, track length).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from goodpoint_ros.core.config import AIRSIM_TOPICS
from goodpoint_ros.core.matching import verify_essential
from goodpoint_ros.evaluation.bags.depth_warp import (
    apply_affine,
    pair_warps,
    relative_pose,
    roll_image,
    roll_matrix,
)
from goodpoint_ros.evaluation.bags.replay import BagError
from goodpoint_ros.evaluation.metrics import pair_metrics, rotation_error_deg, translation_error_deg
from goodpoint_ros.evaluation.scoring import FeatureCache, correct_matches, example_entry
from goodpoint_ros.frontend.tracking import TrackLengths

#: The default topics (defined once, core/config.py); these names stay for callers.
DEFAULT_IMAGE, DEFAULT_DEPTH = AIRSIM_TOPICS.image, AIRSIM_TOPICS.depth
DEFAULT_INFO, DEFAULT_POSE = AIRSIM_TOPICS.camera_info, AIRSIM_TOPICS.pose


# --------------------------------------------------------------------------- evaluation core

#: Ground-truth sanity check: SIFT matches consistent with the warp (≤ 5 px), at least.
GT_CHECK_MIN_AGREEMENT = 0.3
GT_CHECK_MIN_MATCHES = 20


@dataclass
class Timing:
    """Seconds spent per stage of a bag evaluation (the benchmark's split)."""
    decode: float = 0.0
    ground_truth: float = 0.0
    extraction: float = 0.0
    matching: float = 0.0
    pose: float = 0.0
    metrics: float = 0.0
    tracks: float = 0.0
    total: float = 0.0

    def to_dict(self) -> Dict[str, float]:
        d = {k: round(v, 4) for k, v in self.__dict__.items()}
        other = self.total - (self.decode + self.ground_truth + self.extraction + self.matching
                              + self.pose + self.metrics + self.tracks)
        d["other"] = round(max(other, 0.0), 4)
        return d


class _TimedWarp:
    """Wraps a warp and adds its run time to ``timing.ground_truth``."""

    def __init__(self, warp, timing: Timing):
        self.warp, self.timing = warp, timing

    def __call__(self, pts):
        t0 = time.perf_counter()
        out = self.warp(pts)
        self.timing.ground_truth += time.perf_counter() - t0
        return out


def relative_pose_errors(R_est, t_est, T_b_a: np.ndarray) -> Tuple[float, float, float]:
    """(rotation error°, translation direction error°, pose error = max of both).

    Failed estimation (None) → inf.  With a ground-truth baseline under 1 cm
    the translation direction is meaningless and only the rotation counts.
    """
    if R_est is None or t_est is None:
        return math.inf, math.inf, math.inf
    r = rotation_error_deg(R_est, T_b_a[:3, :3])
    if np.linalg.norm(T_b_a[:3, 3]) < 0.01:
        return r, float("nan"), r
    t = translation_error_deg(t_est, T_b_a[:3, 3])
    return r, t, max(r, t)


def estimate_pose(kpts_a, kpts_b, matches, K_a, K_b, dist_a=None, dist_b=None):
    """Essential matrix (USAC/MAGSAC, core matcher's verify_essential) → (R, t, inliers [K])."""
    d_a = dist_a if dist_a is not None and len(dist_a) and np.any(dist_a) else None
    d_b = dist_b if dist_b is not None and len(dist_b) and np.any(dist_b) else None
    E, R, t, inl = verify_essential(np.asarray(kpts_a, np.float64), np.asarray(kpts_b, np.float64),
                                    np.asarray(matches, np.int64).reshape(-1, 2), K_a, K_b, d_a, d_b)
    return (R, t, inl) if E is not None else (None, None, inl)


def gt_agreement(frame_a, frame_b, roll: float = 0.0, rel_tolerance: float = 0.05,
                 eps: float = 5.0) -> Tuple[float, int]:
    """Fraction of SIFT ratio-test matches that the depth+pose warp confirms (≤ eps px).

    → (agreement, number of SIFT matches whose a-keypoint the warp calls valid).
    A correct ground truth confirms most of them; a wrong extrinsic or pose
    topic confirms almost none.  Independent of the methods under test.
    """

    sift = cv2.SIFT_create(800)
    gray = lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2GRAY) if im.ndim == 3 else im
    img_b = roll_image(frame_b.image, roll) if roll else frame_b.image
    ka, da = sift.detectAndCompute(gray(frame_a.image), None)
    kb, db = sift.detectAndCompute(gray(img_b), None)
    if da is None or db is None or len(ka) < 2 or len(kb) < 2:
        return float("nan"), 0
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(da, db, k=2)
    good = [m[0] for m in knn if len(m) == 2 and m[0].distance < 0.75 * m[1].distance]
    if not good:
        return float("nan"), 0
    pa = np.array([ka[m.queryIdx].pt for m in good])
    pb = np.array([kb[m.trainIdx].pt for m in good])
    warp_ab, _ = pair_warps(frame_a, frame_b, roll, rel_tolerance)
    warped, valid = warp_ab(pa)
    n = int(valid.sum())
    if n == 0:
        return float("nan"), 0
    d = np.linalg.norm(warped[valid] - pb[valid], axis=1)
    return float(np.mean(d <= eps)), n


class GroundTruthCheck:
    """Stops the run with one line when the ground truth disagrees with the images.

    Offered the pairs as they stream by, it scores ``samples`` of them
    ``spacing`` pairs apart with :func:`gt_agreement` and decides on the
    median; pairs with fewer than 20 judgeable SIFT matches do not count.
    """

    def __init__(self, roll: float, rel_tolerance: float, extrinsic: str, samples: int = 3,
                 spacing: int = 5):
        self.roll, self.rel_tolerance, self.extrinsic = roll, rel_tolerance, extrinsic
        self.samples, self.spacing = samples, max(1, spacing)
        self.scores: List[float] = []
        self.offered = 0
        self.agreement: Optional[float] = None
        self.done = False

    def offer(self, frame_a, frame_b) -> None:
        if self.done:
            return
        if self.offered % self.spacing == 0:
            agree, n = gt_agreement(frame_a, frame_b, self.roll, self.rel_tolerance)
            if n >= GT_CHECK_MIN_MATCHES:
                self.scores.append(agree)
        self.offered += 1
        if len(self.scores) >= self.samples:
            self.decide()

    def decide(self) -> Optional[float]:
        """Median agreement (None: nothing to judge); raises BagError when it is too low."""
        self.done = True
        if not self.scores:
            return None
        self.agreement = float(np.median(self.scores))
        if self.agreement < GT_CHECK_MIN_AGREEMENT:
            raise BagError(
                f"the depth + pose ground truth disagrees with the images: only "
                f"{self.agreement:.0%} of SIFT matches land within 5 px of their warp (extrinsic: "
                f"{self.extrinsic}); check --extrinsic (tf_static | airsim | optical), "
                "--pose-topic and the depth topic, or pass --no-gt-check")
        return self.agreement


@dataclass
class BagOptions:
    """Everything :func:`evaluate_bag` needs besides the frames and methods."""
    shift: int = 5
    stride: int = 1
    max_pairs: int = 0
    roll: float = 0.0
    depth_tolerance: float = 0.05
    coverage_radius: float = 20.0
    eps: Tuple[float, ...] = (3.0, 5.0)
    no_depth: bool = False
    keep_examples: int = 3
    progress: bool = True

    def validate(self) -> "BagOptions":
        if self.shift < 1:
            raise ValueError(f"--shift must be at least 1, got {self.shift}")
        if self.stride < 1:
            raise ValueError(f"--stride must be at least 1, got {self.stride}")
        return self


def make_pairs(n_a: int, n_b: int, opts: BagOptions) -> List[Tuple[int, int]]:
    """(i, i + shift) for i = 0, stride, … while both frames exist (capped by max_pairs).

    The pairs :func:`evaluate_bag` visits, for bags of n_a and n_b frames.
    """
    opts.validate()
    pairs = [(i, i + opts.shift) for i in range(0, n_a, opts.stride) if i + opts.shift < n_b]
    return pairs[:opts.max_pairs] if opts.max_pairs else pairs


def inlier_links(method, f0, f1, frame0, frame1) -> np.ndarray:
    """The essential-matrix inlier matches [K,2] of ``method`` between consecutive frames."""
    matches = method.match(f0, f1)
    _, _, inl = estimate_pose(f0.keypoints, f1.keypoints, matches, frame0.K, frame1.K,
                              frame0.dist, frame1.dist)
    return matches[inl] if len(matches) else matches


def _timed(frames: Iterable, timing: Timing) -> Iterator:
    """Iterate, adding the time spent producing each item (bag decoding) to ``timing.decode``."""
    it = iter(frames)
    while True:
        t0 = time.perf_counter()
        try:
            item = next(it)
        except StopIteration:
            timing.decode += time.perf_counter() - t0
            return
        timing.decode += time.perf_counter() - t0
        yield item


def evaluate_bag(frames_a: Iterable, frames_b: Optional[Iterable], methods: Dict[str, object],
                 opts: BagOptions, timing: Optional[Timing] = None,
                 gt_check: Optional[GroundTruthCheck] = None):
    """Run every method on every pair → (per_pair records, skipped [(name, reason)], examples,
    track summaries {method: …} (no-depth mode) or {}).

    frames_a: :class:`~.bag_replay.Frame` s in order — a list or a streaming
    :class:`~.bag_replay.BagStream`; frames_b: the second bag's, or None to
    pair frames of the first.  Frames are held only while a pair still needs
    them (shift + 1 of them), so a long bag does not fill the memory.  Depth
    mode scores P, R, C at each ε plus relative-pose error; no-depth mode
    scores matches, essential inliers, pose error when poses exist, and tracks.
    """

    opts.validate()
    timing = timing or Timing()
    same = frames_b is None
    it_a = _timed(frames_a, timing)
    it_b = None if same else _timed(frames_b, timing)
    buf_a: Dict[int, object] = {}
    buf_b: Dict[int, object] = buf_a if same else {}
    per_pair: List[Dict] = []
    skipped: List[Tuple[str, str]] = []
    examples: List[Dict] = []
    trackers = {name: TrackLengths() for name in methods} if opts.no_depth else {}
    keep = {k * opts.shift for k in range(opts.keep_examples)}     # non-overlapping pairs
    bag_b = "a" if same else "b"

    def add_extraction(dt: float) -> None:
        timing.extraction += dt
    cache = FeatureCache(add_extraction)

    def detect(name, method, bag, frame, rolled, image):
        return cache.get((name, bag, frame.index, rolled), method, image)

    bar = tqdm(desc="eval bag", unit="pair", disable=not opts.progress, leave=False)
    n_pairs = 0
    prev_j = -1
    for fb in _second_frames(it_a, it_b, buf_a):
        buf_b[fb.index] = fb
        j = fb.index
        skipped += _missing_pairs_between(prev_j, j, opts)
        prev_j = j
        if trackers and j >= 1 and (j - 1) in buf_a:
            _track_step(trackers, methods, buf_a[j - 1], buf_a[j], detect, timing)
        i = j - opts.shift
        if i >= 0 and i % opts.stride == 0 and i not in buf_a:
            skipped.append((f"{i}-{j}", "frame a is missing from the bag"))
        if i >= 0 and i % opts.stride == 0 and i in buf_a:
            fa = buf_a[i]
            reason = _unusable(fa, fb, opts)
            if reason:
                skipped.append((f"{fa.index}-{fb.index}", reason))
            else:
                if gt_check is not None:
                    t0 = time.perf_counter()
                    gt_check.offer(fa, fb)
                    timing.ground_truth += time.perf_counter() - t0
                record, example = _score_pair(fa, fb, methods, opts, timing, detect, bag_b,
                                              n_pairs, keep_example=n_pairs in keep)
                per_pair.append(record)
                if example is not None:
                    examples.append(example)
                n_pairs += 1
                bar.update(1)
            if opts.max_pairs and n_pairs >= opts.max_pairs:
                break
        _evict(buf_a, buf_b, cache, low_a=i + 1, low_b=j if not same else i + 1)
    bar.close()
    if gt_check is not None and not gt_check.done:
        gt_check.decide()
    tracks = {name: t.summary() for name, t in trackers.items()}
    return per_pair, skipped, examples, tracks


def _second_frames(it_a: Iterator, it_b: Optional[Iterator], buf_a: Dict[int, object]):
    """The frames b of the pairs, in order: the first bag's own frames (``it_b`` None), or
    the second bag's, reading the first bag in step into ``buf_a``."""
    while True:
        try:
            fb = next(it_a) if it_b is None else next(it_b)
            if it_b is not None:
                newest_a = next(it_a)
                buf_a[newest_a.index] = newest_a
        except StopIteration:
            return
        yield fb


def _missing_pairs_between(prev_j: int, j: int, opts: BagOptions) -> List[Tuple[str, str]]:
    """Pairs whose frame b (numbers prev_j+1 … j-1) is lost in a damaged bag: frames keep
    their numbers (BagStream), so those pairs are skipped with a reason."""
    return [(f"{m - opts.shift}-{m}", "frame b is missing from the bag")
            for m in range(prev_j + 1, j)
            if m - opts.shift >= 0 and (m - opts.shift) % opts.stride == 0]


def _track_step(trackers, methods, f0, f1, detect, timing: Timing) -> None:
    """Track lengths (no-depth mode): one step between consecutive frames of the first bag."""
    for name, method in methods.items():
        d0, _ = detect(name, method, "a", f0, False, f0.image)
        d1, _ = detect(name, method, "a", f1, False, f1.image)
        t0 = time.perf_counter()
        trackers[name].update(len(d0), len(d1), inlier_links(method, d0, d1, f0, f1))
        timing.tracks += time.perf_counter() - t0


def _evict(buf_a: Dict[int, object], buf_b: Dict[int, object], cache: FeatureCache,
           low_a: int, low_b: int) -> None:
    """Drop frames (and their features) no later pair needs: the next pair is (i + 1, j + 1)
    and the next track step needs j, which is ≥ i + 1 since shift ≥ 1."""
    for buf, low in ((buf_a, low_a), (buf_b, low_b)):
        for k in [k for k in buf if k < low]:
            del buf[k]
    cache.evict(lambda k: (k[1] == "a" and k[2] < low_a) or (k[1] == "b" and k[2] < low_b))


def _score_pair(fa, fb, methods, opts: BagOptions, timing: Timing, detect, bag_b: str,
                index: int, keep_example: bool):
    """One pair, every method → (per-pair record, example for the report or None)."""

    name = f"{fa.index}-{fb.index}"
    t0 = time.perf_counter()
    img_b = roll_image(fb.image, opts.roll) if opts.roll else fb.image
    A_b = roll_matrix(opts.roll, fb.size) if opts.roll else None
    has_pose = fa.T_world_cam is not None and fb.T_world_cam is not None
    T_b_a = relative_pose(fa.T_world_cam, fb.T_world_cam) if has_pose else None
    warps = None
    if not opts.no_depth:
        ab, ba = pair_warps(fa, fb, opts.roll, opts.depth_tolerance)
        warps = (_TimedWarp(ab, timing), _TimedWarp(ba, timing))
    timing.ground_truth += time.perf_counter() - t0
    record = {"name": name, "split": None, "index": index, "frame_a": fa.index,
              "frame_b": fb.index, "stamp_a": fa.stamp, "stamp_b": fb.stamp, "methods": {}}
    example = {"name": name, "image_a": fa.image, "image_b": img_b, "methods": {}} \
        if keep_example else None
    for mname, method in methods.items():
        feats_a, ms_a = detect(mname, method, "a", fa, False, fa.image)
        feats_b, ms_b = detect(mname, method, bag_b, fb, bool(opts.roll), img_b)
        t0 = time.perf_counter()
        matches = method.match(feats_a, feats_b)
        match_ms = (time.perf_counter() - t0) * 1e3
        timing.matching += match_ms / 1e3
        t0 = time.perf_counter()
        if warps is not None:
            rec = pair_metrics(feats_a.keypoints, feats_b.keypoints, matches, warps[0], warps[1],
                               fa.size, fb.size, opts.eps, opts.coverage_radius)
        else:
            rec = {"matches": int(len(matches)), "keypoints": (len(feats_a) + len(feats_b)) / 2.0,
                   "keypoints_a": int(len(feats_a)), "keypoints_b": int(len(feats_b))}
        timing.metrics += time.perf_counter() - t0
        # Relative pose from the matches (b's keypoints taken back to the unrolled image).
        t0 = time.perf_counter()
        kb = apply_affine(np.linalg.inv(A_b), feats_b.keypoints) if A_b is not None \
            else feats_b.keypoints
        R, t, inl = estimate_pose(feats_a.keypoints, kb, matches, fa.K, fb.K, fa.dist, fb.dist)
        timing.pose += time.perf_counter() - t0
        rec["inliers"] = int(inl.sum())
        rec["inlier_ratio"] = float(inl.mean()) if len(inl) else float("nan")
        if T_b_a is not None:
            r_err, t_err, p_err = relative_pose_errors(R, t, T_b_a)
            rec["rotation_error_deg"], rec["translation_error_deg"] = r_err, t_err
            rec["pose_error_deg"] = p_err
        rec["detect_ms"] = (ms_a + ms_b) / 2.0
        rec["match_ms"] = match_ms
        record["methods"][mname] = rec
        if example is not None:
            if warps is not None:
                warped, valid = warps[0].warp(feats_a.keypoints)
                ok = correct_matches(warped, valid, feats_b.keypoints, matches, opts.eps[0])
                eps = opts.eps[0]
            else:                       # no ground truth for the pair: RANSAC's verdict
                ok, eps = np.asarray(inl, bool), None
            example["methods"][mname] = example_entry(feats_a.keypoints, feats_b.keypoints,
                                                      matches, ok, eps)
    return record, example


def _unusable(fa, fb, opts: BagOptions) -> Optional[str]:
    """Why a pair cannot be scored, or None."""
    if opts.no_depth:
        return None
    for tag, f in (("a", fa), ("b", fb)):
        if f.depth is None:
            return f"frame {tag} has no depth"
        if f.T_world_cam is None:
            return f"frame {tag} has no pose"
        if not np.isfinite(f.depth).any():
            return f"frame {tag} has no valid depth"
    return None
