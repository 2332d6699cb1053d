"""``goodpoint eval bag``: the paper's metrics on a rosbag2 replay with depth + poses.

Frames i and i + shift (default 5) of a bag (AirSim ROS 2 wrapper topics by
default) are paired; the ground-truth warp a→b comes from a's planar depth,
both camera poses and the intrinsics (paper §6.1, the AirSim village set).
``--no-depth`` evaluates an ordinary robot bag (matches, essential-matrix
inliers, relative-pose error against odometry, track length).
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

DEFAULT_IMAGE = "/airsim_node/drone_1/front_center/Scene"
DEFAULT_DEPTH = "/airsim_node/drone_1/front_center/DepthPlanar"
DEFAULT_INFO = "/airsim_node/drone_1/front_center/Scene/camera_info"
DEFAULT_POSE = "/airsim_node/drone_1/odom_local_ned"


def _size(text: str):
    from ..cli.common import parse_size
    return parse_size(text)


def add_bag_arguments(p: argparse.ArgumentParser) -> None:
    """Bag-specific options of ``goodpoint eval bag`` (methods/model options are A's)."""
    p.add_argument("bag", help="rosbag2 directory or file (.db3 / .mcap)")
    g = p.add_argument_group("bag")
    g.add_argument("--bag-b", default=None,
                   help="second bag of the same trajectory (other lighting): frame i of BAG is "
                        "paired with frame i+shift of BAG_B")
    g.add_argument("--image-topic", default=DEFAULT_IMAGE, help=f"image topic ({DEFAULT_IMAGE})")
    g.add_argument("--depth-topic", default=DEFAULT_DEPTH,
                   help=f"planar depth topic, 32FC1 metres or 16UC1 mm ({DEFAULT_DEPTH})")
    g.add_argument("--camera-info-topic", default=DEFAULT_INFO,
                   help=f"sensor_msgs/CameraInfo topic ({DEFAULT_INFO})")
    g.add_argument("--pose-topic", default=DEFAULT_POSE,
                   help=f"Odometry / PoseStamped / PoseWithCovarianceStamped / TransformStamped "
                        f"topic, or /tf ({DEFAULT_POSE}); with --no-depth it is optional and "
                        "/tf is used when it is missing")
    g.add_argument("--extrinsic", default="auto", choices=["auto", "tf_static", "airsim", "optical"],
                   help="camera pose from the body pose: tf_static (body → image frame_id), airsim "
                        "(pure axis rotation p_body = (z, x, y)_optical), optical (pose topic is the "
                        "camera's optical pose); auto = tf_static when present, else airsim")
    g.add_argument("--shift", type=int, default=5, help="pair frame i with i+shift (default 5)")
    g.add_argument("--stride", type=int, default=1, help="use every k-th pair start (default 1)")
    g.add_argument("--max-pairs", type=int, default=0, help="evaluate at most N pairs (0 = all)")
    g.add_argument("--eval-size", type=_size, default=(320, 240),
                   help="images are resized to WxH with K scaled (default 320x240)")
    g.add_argument("--roll", type=float, default=0.0,
                   help="roll the second image by this many degrees (paper: 5); warp updated")
    g.add_argument("--depth-tolerance", type=float, default=0.05,
                   help="visibility: relative depth agreement in b (default 0.05 = 5%%)")
    g.add_argument("--sync-tolerance", type=float, default=0.02,
                   help="max |Δt| in seconds between image and depth stamps (default 0.02)")
    g.add_argument("--pose-tolerance", type=float, default=0.1,
                   help="max gap in seconds for pose interpolation (default 0.1)")
    g.add_argument("--coverage-radius", type=float, default=20.0,
                   help="coverage disc radius in pixels (default 20, paper §6.1)")
    g.add_argument("--no-depth", action="store_true",
                   help="robot bag without depth: matches, essential inlier ratio, relative pose "
                        "error vs odometry when present, track length")
    g.add_argument("--no-gt-check", action="store_true",
                   help="skip the check that the ground truth agrees with SIFT matches (it catches "
                        "a wrong --extrinsic or pose topic)")


def check_bag_arguments(args) -> None:
    """One-line errors for option values that cannot work."""
    if args.depth_tolerance <= 0:
        raise ValueError(f"--depth-tolerance must be positive, got {args.depth_tolerance}")
    if args.sync_tolerance < 0 or args.pose_tolerance < 0:
        raise ValueError("--sync-tolerance and --pose-tolerance must be >= 0")
    if args.coverage_radius <= 0:
        raise ValueError(f"--coverage-radius must be positive, got {args.coverage_radius}")
    if not -90.0 <= args.roll <= 90.0:
        raise ValueError(f"--roll is in degrees within [-90, 90], got {args.roll}")
    if args.max_pairs < 0:
        raise ValueError(f"--max-pairs must be >= 0, got {args.max_pairs}")


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
    from .metrics import rotation_error_deg, translation_error_deg
    if R_est is None or t_est is None:
        return math.inf, math.inf, math.inf
    r = rotation_error_deg(R_est, T_b_a[:3, :3])
    if np.linalg.norm(T_b_a[:3, 3]) < 0.01:
        return r, float("nan"), r
    t = translation_error_deg(t_est, T_b_a[:3, 3])
    return r, t, max(r, t)


def estimate_pose(kpts_a, kpts_b, matches, K_a, K_b, dist_a=None, dist_b=None):
    """Essential matrix (USAC/MAGSAC, core matcher's verify_essential) → (R, t, inliers [K])."""
    from ..matching import verify_essential
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
    import cv2
    from .depth_warp import pair_warps, roll_image
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


def check_ground_truth(pairs: Sequence[Tuple], roll: float, rel_tolerance: float,
                       extrinsic: str, samples: int = 3) -> Optional[float]:
    """Raise a one-line error when the ground truth disagrees with the images.

    pairs: (frame_a, frame_b) with depth and pose.  Checks up to ``samples``
    pairs spread along the run; returns the median agreement (None when no
    pair had enough SIFT matches to judge).
    """
    from .bag_replay import BagError
    if not pairs:
        return None
    pick = sorted(set(np.linspace(0, len(pairs) - 1, min(samples, len(pairs))).round().astype(int)))
    scores = []
    for k in pick:
        agree, n = gt_agreement(*pairs[k], roll=roll, rel_tolerance=rel_tolerance)
        if n >= GT_CHECK_MIN_MATCHES:
            scores.append(agree)
    if not scores:
        return None
    med = float(np.median(scores))
    if med < GT_CHECK_MIN_AGREEMENT:
        raise BagError(
            f"the depth + pose ground truth disagrees with the images: only {med:.0%} of SIFT "
            f"matches land within 5 px of their warp (extrinsic: {extrinsic}); check --extrinsic "
            "(tf_static | airsim | optical), --pose-topic and the depth topic, or pass "
            "--no-gt-check")
    return med


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


def make_pairs(n_a: int, n_b: int, opts: BagOptions) -> List[Tuple[int, int]]:
    """(i, i + shift) for i = 0, stride, … while both frames exist (capped by max_pairs)."""
    if opts.shift < 1:
        raise ValueError(f"--shift must be at least 1, got {opts.shift}")
    if opts.stride < 1:
        raise ValueError(f"--stride must be at least 1, got {opts.stride}")
    pairs = [(i, i + opts.shift) for i in range(0, n_a, opts.stride) if i + opts.shift < n_b]
    return pairs[:opts.max_pairs] if opts.max_pairs else pairs


def evaluate_bag(frames_a, frames_b, methods: Dict[str, object], opts: BagOptions,
                 timing: Optional[Timing] = None):
    """Run every method on every pair → (per_pair records, skipped [(name, reason)], examples).

    frames_a/frames_b: :class:`~.bag_replay.Frame` lists (the same list for one
    bag).  Depth mode scores P, R, C at each ε plus relative-pose error; no-depth
    mode scores matches, essential inliers, pose error when poses exist.
    """
    from tqdm import tqdm
    from .depth_warp import apply_affine, pair_warps, relative_pose, roll_image, roll_matrix
    from .metrics import pair_metrics

    timing = timing or Timing()
    same = frames_a is frames_b
    pairs = make_pairs(len(frames_a), len(frames_b), opts)
    per_pair: List[Dict] = []
    skipped: List[Tuple[str, str]] = []
    examples: List[Dict] = []
    cache: Dict[Tuple, Tuple] = {}
    keep = set(np.linspace(0, len(pairs) - 1, opts.keep_examples).round().astype(int).tolist()) \
        if opts.keep_examples and pairs else set()

    def detect(name, method, bag, index, rolled, image):
        key = (name, bag, index, rolled)
        if key not in cache:
            t0 = time.perf_counter()
            feats = method.detect(image)
            dt = time.perf_counter() - t0
            timing.extraction += dt
            cache[key] = (feats, dt * 1e3)
        return cache[key]

    bar = tqdm(pairs, desc="eval bag", unit="pair", disable=not opts.progress, leave=False)
    for n, (i, j) in enumerate(bar):
        fa, fb = frames_a[i], frames_b[j]
        name = f"{fa.index}-{fb.index}"
        # Frames older than this pair's first are never needed again.
        for key in [k for k in cache if (k[1] == "a" or same) and k[2] < i]:
            del cache[key]
        for key in [k for k in cache if k[1] == "b" and not same and k[2] < j]:
            del cache[key]
        reason = _unusable(fa, fb, opts)
        if reason:
            skipped.append((name, reason))
            continue
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
        record = {"name": name, "split": None, "index": n, "frame_a": fa.index,
                  "frame_b": fb.index, "stamp_a": fa.stamp, "stamp_b": fb.stamp, "methods": {}}
        example = {"name": name, "image_a": fa.image, "image_b": img_b, "methods": {}}
        bag_b = "a" if same else "b"
        for mname, method in methods.items():
            feats_a, ms_a = detect(mname, method, "a", fa.index, False, fa.image)
            feats_b, ms_b = detect(mname, method, bag_b, fb.index, bool(opts.roll), img_b)
            t0 = time.perf_counter()
            matches = method.match(feats_a, feats_b)
            match_ms = (time.perf_counter() - t0) * 1e3
            timing.matching += match_ms / 1e3
            t0 = time.perf_counter()
            if warps is not None:
                rec = pair_metrics(feats_a.keypoints, feats_b.keypoints, matches, warps[0],
                                   warps[1], fa.size, fb.size, opts.eps, opts.coverage_radius)
            else:
                rec = {"matches": int(len(matches)),
                       "keypoints": (len(feats_a) + len(feats_b)) / 2.0,
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
            if n in keep and warps is not None:
                warped, valid = warps[0].warp(feats_a.keypoints)
                ok = np.zeros(len(matches), bool)
                if len(matches):
                    d = np.linalg.norm(warped[matches[:, 0]] - feats_b.keypoints[matches[:, 1]],
                                       axis=1)
                    with np.errstate(invalid="ignore"):
                        ok = valid[matches[:, 0]] & (d <= opts.eps[0])
                example["methods"][mname] = {"kpts_a": feats_a.keypoints,
                                             "kpts_b": feats_b.keypoints, "matches": matches,
                                             "correct": ok}
            elif n in keep:
                example["methods"][mname] = {"kpts_a": feats_a.keypoints,
                                             "kpts_b": feats_b.keypoints, "matches": matches,
                                             "correct": np.asarray(inl, bool)}
        per_pair.append(record)
        if n in keep:
            examples.append(example)
    bar.close()
    return per_pair, skipped, examples


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


def track_lengths(frames, method, max_frames: int = 0) -> Dict[str, float]:
    """Feature tracks through consecutive frames (robot-bag mode).

    Matches frame k to k+1 with the method's matcher, keeps essential-matrix
    inliers, and chains them: a track ends when its keypoint finds no inlier
    match in the next frame.  → mean and median track length (frames).
    """
    n = len(frames) if not max_frames else min(len(frames), max_frames)
    if n < 2:
        return {"mean": float("nan"), "median": float("nan"), "tracks": 0}
    prev = method.detect(frames[0].image)
    length = np.ones(len(prev), np.int64)
    finished: List[int] = []
    for k in range(1, n):
        cur = method.detect(frames[k].image)
        matches = method.match(prev, cur)
        _, _, inl = estimate_pose(prev.keypoints, cur.keypoints, matches, frames[k - 1].K,
                                  frames[k].K, frames[k - 1].dist, frames[k].dist)
        good = matches[inl] if len(matches) else matches
        new_len = np.ones(len(cur), np.int64)
        continued = np.zeros(len(prev), bool)
        if len(good):
            new_len[good[:, 1]] = length[good[:, 0]] + 1
            continued[good[:, 0]] = True
        finished += length[~continued].tolist()
        prev, length = cur, new_len
    finished += length.tolist()
    arr = np.asarray(finished, np.float64)
    arr = arr[arr > 1] if (arr > 1).any() else arr      # single-frame "tracks" are not tracks
    return {"mean": float(arr.mean()), "median": float(np.median(arr)), "tracks": int(len(arr))}


def _replay(args, path, need_depth: bool):
    from .bag_replay import read_bag
    return read_bag(path, args.image_topic, args.camera_info_topic,
                    None if not need_depth else args.depth_topic,
                    args.pose_topic, args.extrinsic, args.eval_size, args.sync_tolerance,
                    args.pose_tolerance, require_pose=need_depth)


def run_bag(args) -> int:
    """Entry point of ``goodpoint eval bag``: options from :func:`add_bag_arguments` plus
    the common ones of :mod:`goodpoint_ros.cli.eval` (methods, thresholds, outputs, model)."""
    import sys

    from ..cli.eval import common_settings, finish, methods_from_args
    from .aggregate import aggregate

    check_bag_arguments(args)
    t_start = time.perf_counter()
    timing = Timing()
    need_depth = not args.no_depth
    t0 = time.perf_counter()
    replay_a = _replay(args, args.bag, need_depth)
    replay_b = _replay(args, args.bag_b, need_depth) if args.bag_b else replay_a
    timing.decode = time.perf_counter() - t0
    frames_a, frames_b = replay_a.frames, replay_b.frames
    opts = BagOptions(shift=args.shift, stride=args.stride, max_pairs=args.max_pairs,
                      roll=args.roll, depth_tolerance=args.depth_tolerance,
                      coverage_radius=args.coverage_radius, eps=tuple(args.eps),
                      no_depth=args.no_depth,
                      keep_examples=args.pictures if args.report else 0,
                      progress=not args.no_progress and sys.stderr.isatty())
    pairs = make_pairs(len(frames_a), len(frames_b), opts)
    if not pairs:
        raise ValueError(f"no pairs: {len(frames_a)} usable frames"
                         + (f" (dropped: {replay_a.dropped})" if replay_a.dropped else "")
                         + f", fewer than --shift {opts.shift} + 1")
    agreement = None
    if need_depth and not args.no_gt_check:
        t0 = time.perf_counter()
        usable = [(frames_a[i], frames_b[j]) for i, j in pairs
                  if _unusable(frames_a[i], frames_b[j], opts) is None]
        agreement = check_ground_truth(usable, opts.roll, opts.depth_tolerance, replay_a.extrinsic)
        timing.ground_truth += time.perf_counter() - t0
    methods = methods_from_args(args)
    per_pair, skipped, examples = evaluate_bag(frames_a, frames_b, methods, opts, timing)
    if not per_pair:
        reasons = sorted({r for _, r in skipped})
        raise ValueError(f"no pair could be evaluated ({len(skipped)} skipped: "
                         f"{'; '.join(reasons)[:300]})")
    names = list(methods)
    result = aggregate(per_pair, names, by_split=False)
    result["splits"] = {}
    if args.no_depth:
        t0 = time.perf_counter()
        for name, method in methods.items():
            result["methods"][name]["track_length"] = track_lengths(frames_a, method)
        timing.tracks = time.perf_counter() - t0
    timing.total = time.perf_counter() - t_start
    n_frames = len({p["frame_a"] for p in per_pair} | {p["frame_b"] for p in per_pair})
    settings = common_settings(args, methods)
    settings.update(_settings(args, opts, replay_a, replay_b, agreement))
    result.update({
        "pairs": len(per_pair), "per_pair": per_pair,
        "skipped": len(skipped), "skipped_reasons": [f"{n}: {r}" for n, r in skipped],
        "timing_s": timing.to_dict(),
        "frames_per_second": n_frames / timing.total if timing.total > 0 else None,
        "settings": settings})
    title = f"goodpoint eval bag {args.bag}" + (" --no-depth" if args.no_depth else "")
    code = finish(result, args, examples, title=title)
    if args.no_depth:
        _print_no_depth(result)
    t = result["timing_s"]
    print(f"{result['frames_per_second'] or 0:.1f} frames/s; time split (s): decode {t['decode']:.2f}, "
          f"ground truth {t['ground_truth']:.2f}, extraction {t['extraction']:.2f}, matching "
          f"{t['matching']:.2f}, relative pose {t['pose']:.2f}, metrics {t['metrics']:.2f}, "
          + (f"tracks {t['tracks']:.2f}, " if args.no_depth else "")
          + f"other {t['other']:.2f}, total {t['total']:.2f}")
    return code


def _settings(args, opts: BagOptions, ra, rb, agreement) -> Dict:
    return {"mode": "bag-no-depth" if opts.no_depth else "bag", "bag": str(args.bag),
            "bag_b": str(args.bag_b) if args.bag_b else None, "topics": ra.topics,
            "extrinsic": ra.extrinsic, "shift": opts.shift, "stride": opts.stride,
            "max_pairs": opts.max_pairs,
            "eval_size": list(args.eval_size) if args.eval_size else None,
            "native_size": list(ra.native_size) if ra.native_size else None,
            "roll_deg": opts.roll, "depth_tolerance": opts.depth_tolerance,
            "sync_tolerance": args.sync_tolerance, "pose_tolerance": args.pose_tolerance,
            "coverage_radius": opts.coverage_radius,
            "frames": len(ra.frames), "frames_b": len(rb.frames) if rb is not ra else None,
            "dropped_frames": ra.dropped, "dropped_frames_b": rb.dropped if rb is not ra else None,
            "warnings": ra.warnings + (rb.warnings if rb is not ra else []),
            "gt_check_agreement": agreement}


def _print_no_depth(result: Dict) -> None:
    from .report import fmt
    print(f"\n{'method':10s} {'keypoints':>9s} {'matches':>8s} {'inlier ratio':>12s} "
          f"{'pose AUC@5/10/20':>17s} {'track length':>12s}")
    for name, s in result["methods"].items():
        auc = s.get("pose_auc", {})
        print(f"{name:10s} {fmt(s.get('keypoints'), 0):>9s} {fmt(s.get('matches'), 0):>8s} "
              f"{fmt(s.get('inlier_ratio')):>12s} "
              f"{'/'.join(fmt(auc.get(k)) for k in ('5', '10', '20')):>17s} "
              f"{fmt(s.get('track_length', {}).get('mean'), 1):>12s}")
