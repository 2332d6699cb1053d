"""Run the odometry back end over a :class:`~.datasets.Sequence` with one feature method.

GoodPoint and the classical features (ORB / SIFT / AKAZE from
:mod:`goodpoint_ros.evaluation.methods`, with their own descriptor distance)
go through the *same* :class:`~goodpoint_ros.odometry.vo.VisualOdometry`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
from tqdm import tqdm

from goodpoint_ros.evaluation.methods import OpenCVMethod, hamming_distances, l2_distances, make_method
from goodpoint_ros.evaluation.vo.datasets import Sequence
from goodpoint_ros.evaluation.vo.metrics import trajectory_metrics
from goodpoint_ros.odometry.config import VOConfig
from goodpoint_ros.odometry.features import FeatureSource, goodpoint_source, vo_goodpoint_config
from goodpoint_ros.odometry.vo import VisualOdometry

#: AKAZE's response threshold in the VO.  At OpenCV's default (0.001) a 320x240 frame
#: keeps ~80 PnP inliers and misses the 1 %-of-path goal; 1e-4 lets the keypoint budget
#: pick the strongest, as ORB's does (mean RGB-D ATE 0.74 % -> 0.41 % of the path on
#: generated bags of seeds 1-2, cruise and turns: not the reported ones, nor KITTI).
VO_AKAZE_THRESHOLD = 1e-4


def method_source(name: str, max_keypoints: int = 2000, extractor=None) -> FeatureSource:
    """A :class:`FeatureSource` for ``goodpoint``, ``orb``, ``sift`` or ``akaze``."""
    if name == "goodpoint":
        if extractor is None:
            method = make_method("goodpoint", max_keypoints, config=vo_goodpoint_config())
            extractor = method.extractor
        return goodpoint_source(extractor)
    method = make_method(name, max_keypoints, akaze_threshold=VO_AKAZE_THRESHOLD)
    assert isinstance(method, OpenCVMethod)
    return FeatureSource(name, method.detect, hamming_distances if method.binary else l2_distances)


def gt_from_first(gt: List[Optional[np.ndarray]]) -> List[Optional[np.ndarray]]:
    """Ground truth [N] (4×4 or None) → the same poses relative to the first one there is
    (the estimates start at the first camera), None kept."""
    first = next(g for g in gt if g is not None)
    return [None if g is None else np.linalg.inv(first) @ g for g in gt]


#: Frames at the start left out of the time figures (start-up, not per-frame cost).
TIMING_WARMUP = 2


@dataclass
class RunResult:
    method: str
    mode: str
    stamps: np.ndarray
    poses: np.ndarray                  # [N,4,4] estimated T_cam0_cam (camera optical frames)
    states: List[str]
    times: Dict[str, List[float]]
    lost_count: int
    resets: int
    inliers: List[int]
    gt: List[Optional[np.ndarray]]
    wall_s: float
    messages: List[str] = field(default_factory=list)
    keyframes: List[bool] = field(default_factory=list)

    @property
    def posed(self) -> np.ndarray:
        """[N] bool: the frames the VO has a pose for — all but those before its first map
        (INITIALISING and not the keyframe that starts the map: a mono VO holds the origin
        there while the camera moves).  LOST frames count: their held pose is the output."""
        return np.array([s != "INITIALISING" or k for s, k in zip(self.states, self.keyframes)],
                        bool)

    def scored(self) -> List[int]:
        """Indices of the frames the metrics and trajectory files cover: posed, with ground
        truth where the sequence has any."""
        have_gt = any(g is not None for g in self.gt)
        return [i for i in np.nonzero(self.posed)[0].tolist()
                if not have_gt or self.gt[i] is not None]

    def metrics(self) -> Optional[Dict]:
        """Trajectory metrics on the posed frames that have ground truth (None if < 2)."""
        idx = self.scored()
        if len(idx) < 2 or not any(g is not None for g in self.gt):
            return None
        est = self.poses[idx]
        rel = gt_from_first(self.gt)
        gt = np.stack([rel[i] for i in idx])
        m = trajectory_metrics(est, gt, sim3=self.mode == "mono")
        m["frames_without_pose"] = int((~self.posed).sum())
        # Start-up is not a frame's cost: the first network call (graph compilation: 342 ms
        # against 24 for OpenVINO int8 at KITTI half) and the first tracking / BA (lazy
        # imports: 213 / 91 ms against 12 / 11) are left out of the time figures.
        times = {k: v[TIMING_WARMUP:] if len(v) > 2 * TIMING_WARMUP else v
                 for k, v in self.times.items()}
        med = {k: float(np.median(v)) if v else 0.0 for k, v in times.items()}
        # Rate and shares from means: BA runs on keyframes only, so with fewer than half
        # of the frames keyframes its median is 0 and a median-based share leaves it out.
        mean = {k: float(np.mean(v)) if v else 0.0 for k, v in times.items()}
        m.update({"lost_count": self.lost_count, "resets": self.resets,
                  "states": {s: self.states.count(s) for s in dict.fromkeys(self.states)},
                  "time_ms_median": med,
                  "time_ms_mean": mean,
                  "hz": 1e3 / mean["total"] if mean.get("total") else None,
                  "backend_share": (mean["tracking"] + mean["ba"]) / mean["total"]
                  if mean.get("total") else None,
                  "median_inliers": float(np.median(self.inliers)) if self.inliers else 0.0})
        return m


def run_sequence(seq: Sequence, source: FeatureSource, config: VOConfig, limit: int = 0,
                 progress: bool = False) -> RunResult:
    """Feed every frame (or the first ``limit``) to a fresh VO."""
    mode = config.mode
    if mode not in seq.modes:
        raise ValueError(f"{seq.name} ({seq.layout}) supports --mode {', '.join(seq.modes)}, "
                         f"not {mode}")
    vo = VisualOdometry(config, source, rig=seq.rig if mode == "stereo" else None,
                        camera=seq.camera)
    T_cb = np.linalg.inv(vo.T_bc)
    stamps, poses, states, inl, msgs, kfs = [], [], [], [], [], []
    times: Dict[str, List[float]] = {"network": [], "frontend": [], "tracking": [], "ba": [],
                                     "total": []}
    frames = seq.frames(limit)
    if progress:
        frames = tqdm(frames, total=min(limit or len(seq), len(seq)), desc=source.name,
                      unit="frame")
    t0 = time.perf_counter()
    for f in frames:
        r = vo.process(f.stamp, f.image, right=f.right if mode == "stereo" else None,
                       depth=f.depth if mode == "rgbd" else None)
        stamps.append(f.stamp)
        poses.append(T_cb @ r.T_odom_camera)           # first camera → camera (optical)
        states.append(r.state.value)
        inl.append(r.inliers)
        kfs.append(r.keyframe)
        for k in times:
            times[k].append(r.times.get(k, 0.0))
        if r.message:
            msgs.append(f"{f.index}: {r.message}")
    n = len(stamps)
    return RunResult(source.name, mode, np.array(stamps), np.stack(poses) if n else np.zeros((0, 4, 4)),
                     states, times, vo.lost_count, vo.resets, inl, seq.gt[:n],
                     time.perf_counter() - t0, msgs, kfs)
