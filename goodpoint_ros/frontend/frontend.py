"""What the detector node does per frame, without ROS.

    frontend = Frontend(FeatureExtractor(...), GoodPointConfig(), FrontendConfig())
    out = frontend.mono(image, camera)                 # MonoOutput
    out = frontend.stereo(left, right, cam_l, cam_r)   # StereoOutput

Per frame: the shared :class:`~goodpoint_ros.core.pipeline.FeatureExtractor`
(the same object the CLI and the evaluator use), previous → current matching
with :func:`~goodpoint_ros.core.matching.match_features` (or the fundamental
matrix), track ids (:mod:`.tracking`) and, in stereo, left → right matching
(:mod:`.stereo`).  The node only converts messages and schedules; everything
here is testable with plain arrays.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Optional

import cv2
import numpy as np

from goodpoint_ros.core.config import VIDEO, GoodPointConfig
from goodpoint_ros.core.keypoints import Features
from goodpoint_ros.core.matching import (
    UNCALIBRATED,
    VERIFICATIONS,
    MatchResult,
    match_features,
    resolve_verification,
)
from goodpoint_ros.core.pipeline import StageTimes
from goodpoint_ros.core.visualize import draw_keypoints
from goodpoint_ros.frontend.stereo import StereoParams, match_stereo
from goodpoint_ros.frontend.tracking import TrackIdAssigner


@dataclass(frozen=True)
class FrontendConfig:
    """What the frontend does after extraction (the node's matching parameters, typed).

    match: match each frame to the previous one (track ids need it).
    verification: previous → current: ``auto`` = essential with intrinsics,
        else ``uncalibrated`` (the one meaning of ``auto``,
        :func:`~goodpoint_ros.core.matching.resolve_verification`); ``none``,
        ``homography``, ``essential`` (falls back to ``uncalibrated`` while no
        intrinsics are known), ``fundamental``.
    ransac_threshold: USAC/MAGSAC inlier threshold in pixels (1 px:
        consecutive video frames, :data:`~goodpoint_ros.core.config.VIDEO`).
    uncalibrated: the model fitted without intrinsics (fundamental: a 3-D scene).
    rectified: stereo pair is rectified (row-constrained matching, disparities).
    use_camera_info: verify with the essential matrix when intrinsics are given.
    stereo: the rectified matcher's band (:class:`~.stereo.StereoParams`).
    """
    # metadata: the node's parameter help / range / choices (ros/params.py from_field)
    match: bool = field(default=True, metadata={
        "help": "match each frame to the previous one (~/matches, track ids)"})
    verification: str = field(default="auto", metadata={
        "help": "geometric verification of previous→current matches; auto: essential with "
                f"camera_info, else {VIDEO.uncalibrated}", "choices": VERIFICATIONS})
    ransac_threshold: float = field(default=VIDEO.ransac_threshold, metadata={
        "help": "USAC/MAGSAC inlier threshold in pixels", "range": (0.1, 50.0)})
    rectified: bool = field(default=True, metadata={
        "help": "stereo only: the pair is rectified, so left-right matches are searched on the "
                "same row (± stereo_row_tolerance px) and carry disparity"})
    use_camera_info: bool = field(default=True, metadata={
        "help": "use camera_info (when it arrives) for essential-matrix verification after "
                "undistortion"})
    stereo: StereoParams = field(default_factory=StereoParams)
    uncalibrated: str = VIDEO.uncalibrated

    def validate(self) -> "FrontendConfig":
        if self.verification not in VERIFICATIONS:
            raise ValueError(f"verification must be one of {', '.join(VERIFICATIONS)}, "
                             f"got {self.verification!r}")
        if not self.ransac_threshold > 0:
            raise ValueError(f"ransac_threshold must be > 0, got {self.ransac_threshold}")
        if self.uncalibrated not in UNCALIBRATED:
            raise ValueError(f"uncalibrated must be homography or fundamental, "
                             f"got {self.uncalibrated!r}")
        self.stereo.validate()
        return self


@dataclass(frozen=True)
class Camera:
    """Intrinsics from sensor_msgs/CameraInfo: K [3,3] and distortion D (plumb_bob...)."""
    K: np.ndarray
    D: Optional[np.ndarray] = None

    @staticmethod
    def problem(k, d=()) -> Optional[str]:
        """Why CameraInfo.k / .d cannot be used for the essential matrix, or None.

        Uncalibrated (all-zero K, the ROS convention), NaN / inf anywhere, or a
        focal length that is not positive: the caller falls back to the
        fundamental matrix (and says so once) instead of verifying with
        garbage — a NaN K once gave 0 inliers on every frame, silently.
        """
        K = np.asarray(k, np.float64).reshape(-1)
        if K.size != 9:
            return f"K has {K.size} values, not 9"
        if not np.any(K):
            return "K is all zero (uncalibrated camera)"
        if not np.isfinite(K).all():
            return f"K holds non-finite values {K.tolist()}"
        if K[0] <= 0 or K[4] <= 0:
            return f"focal lengths fx={K[0]:g}, fy={K[4]:g} are not positive"
        D = np.asarray(d, np.float64).reshape(-1)
        if D.size and not np.isfinite(D).all():
            return f"distortion D holds non-finite values {D.tolist()}"
        return None

    @classmethod
    def from_camera_info(cls, k, d) -> Optional["Camera"]:
        """CameraInfo.k (9 values, row-major) and .d → Camera, or None when
        :meth:`problem` finds it unusable (uncalibrated, NaN, fx ≤ 0...)."""
        if cls.problem(k, d) is not None:
            return None
        K = np.asarray(k, np.float64).reshape(3, 3)
        D = np.asarray(d, np.float64).reshape(-1)
        return cls(K, D if D.size else None)


@dataclass
class MonoOutput:
    features: Features
    track_ids: np.ndarray
    matches: Optional[MatchResult]           # previous → current, None on the first frame
    previous: Optional[Features] = None
    times: Any = None                        # StageTimes of the extractor


@dataclass
class StereoOutput:
    left: Features
    right: Features
    left_ids: np.ndarray
    right_ids: np.ndarray                    # a right keypoint matched to the left shares its id
    stereo_matches: MatchResult              # left → right
    matches: Optional[MatchResult]           # left previous → left current
    previous: Optional[Features] = None
    times: Any = None                        # network etc. summed over both images


def _add_times(a, b):
    return StageTimes(a.preprocess + b.preprocess, a.network + b.network,
                      a.postprocess + b.postprocess)


class Frontend:
    """Extract, match to the previous frame, assign track ids (and stereo-match).

    ``config``: detection and descriptor matching (:class:`GoodPointConfig`);
    ``settings``: what happens after extraction (:class:`FrontendConfig`).  Call
    :meth:`update` to change either at run time — it takes effect from the
    next frame.  (The node builds both from its parameters, ``ros/params.py``.)
    """

    def __init__(self, extractor, config: Optional[GoodPointConfig] = None,
                 settings: Optional[FrontendConfig] = None):
        self.extractor = extractor
        self._lock = threading.Lock()          # one frame at a time
        self._pending_lock = threading.Lock()  # update() comes from another thread
        self._pending = None
        self.update(config or extractor.config, settings or FrontendConfig())
        self._apply_pending()
        self.tracker = TrackIdAssigner()
        self._previous: Optional[Features] = None

    def update(self, config: GoodPointConfig, settings: FrontendConfig) -> None:
        """Validate and queue new settings (raises ValueError, changing nothing).

        Never waits for a frame in progress: the settings are swapped in
        when the next frame starts, so a frame never mixes old and new ones.
        """
        config.resolved(self.extractor.metadata)
        settings.validate()
        with self._pending_lock:
            self._pending = (settings, config)

    def _apply_pending(self) -> None:
        with self._pending_lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            self.settings, config = pending
            self.extractor.set_config(config)

    def reset(self) -> None:
        """Forget the previous frame (time jumped back, e.g. a bag restarted)."""
        with self._lock:
            self._previous = None
            self.tracker.reset()

    # ------------------------------------------------------------------ per frame
    def mono(self, image: np.ndarray, camera: Optional[Camera] = None) -> MonoOutput:
        with self._lock:
            self._apply_pending()
            feats = self.extractor(image)
            times = self.extractor.times
            matches = self._temporal(feats, camera)
            ids = self.tracker.assign(len(feats), None if matches is None else matches.matches,
                                      None if matches is None else self._track_mask(matches))
            previous, self._previous = self._previous, feats
        return MonoOutput(feats, ids, matches, previous, times)

    def stereo(self, left_image: np.ndarray, right_image: np.ndarray,
               left_camera: Optional[Camera] = None,
               right_camera: Optional[Camera] = None) -> StereoOutput:
        with self._lock:
            self._apply_pending()
            left = self.extractor(left_image)
            t_left = self.extractor.times
            right = self.extractor(right_image)
            times = _add_times(t_left, self.extractor.times)
            s = self.settings
            use_k = s.use_camera_info and left_camera is not None
            stereo = match_stereo(
                left, right, self.extractor.config, rectified=s.rectified,
                params=s.stereo, verify=s.verification != "none",
                K_left=left_camera.K if use_k else None,
                K_right=right_camera.K if use_k and right_camera is not None else None,
                dist_left=left_camera.D if use_k else None,
                dist_right=right_camera.D if use_k and right_camera is not None else None,
                ransac_threshold=s.ransac_threshold)
            stereo.verified = s.rectified or s.verification != "none"
            matches = self._temporal(left, left_camera)
            left_ids = self.tracker.assign(len(left), None if matches is None else matches.matches,
                                           None if matches is None else self._track_mask(matches))
            right_ids = np.zeros(len(right), np.uint64)
            sm = stereo.matches[self._track_mask(stereo)]
            right_ids[sm[:, 1]] = left_ids[sm[:, 0]]
            unmatched = np.ones(len(right), bool)
            unmatched[sm[:, 1]] = False
            right_ids[unmatched] = self.tracker.fresh(int(unmatched.sum()))
            previous, self._previous = self._previous, left
        return StereoOutput(left, right, left_ids, right_ids, stereo, matches, previous, times)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _track_mask(result: MatchResult) -> np.ndarray:
        """Which matches carry an identity: the inliers when verification was asked
        for (none if it failed), every descriptor match when it is off."""
        if getattr(result, "verified", True):
            return np.asarray(result.inliers, bool)
        return np.ones(len(result.matches), bool)

    def _temporal(self, feats: Features, camera: Optional[Camera]) -> Optional[MatchResult]:
        """Previous → current matches, verified as the ``verification`` parameter says."""
        s = self.settings
        if not s.match or self._previous is None:
            return None
        prev, cfg = self._previous, self.extractor.config
        # a Camera built by hand with a NaN / non-positive K is no camera either
        have_k = s.use_camera_info and camera is not None and Camera.problem(
            camera.K, () if camera.D is None else camera.D) is None
        verify = resolve_verification(s.verification, have_k, s.uncalibrated)
        if verify == "essential" and not have_k:
            verify = s.uncalibrated       # documented fallback: no intrinsics yet
        if verify == "essential":
            result = match_features(prev, feats, cfg, verify="essential", K0=camera.K, K1=camera.K,
                                    dist0=camera.D, dist1=camera.D,
                                    ransac_threshold=s.ransac_threshold)
        else:
            result = match_features(prev, feats, cfg, verify=verify,
                                    ransac_threshold=s.ransac_threshold)
        result.verified = verify != "none"
        return result


def debug_picture(image: np.ndarray, output) -> np.ndarray:
    """BGR uint8 picture for ~/debug_image: keypoints, and matches from the
    previous frame drawn as motion tracks (inliers green, outliers red)."""

    feats = output.left if isinstance(output, StereoOutput) else output.features
    pic = draw_keypoints(image, feats.keypoints, feats.scores)
    if output.matches is not None and output.previous is not None:
        m = output.matches
        for (i, j), ok in zip(m.matches, m.inliers):
            p0 = tuple(int(v) for v in np.round(output.previous.keypoints[i]))
            p1 = tuple(int(v) for v in np.round(feats.keypoints[j]))
            cv2.line(pic, p0, p1, (60, 200, 60) if ok else (40, 40, 230), 1, cv2.LINE_AA)
    return pic

