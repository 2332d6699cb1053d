"""Keyframe visual odometry: stereo, RGB-D and mono, on any :class:`FeatureSource`.

    vo = VisualOdometry(VOConfig(mode="stereo"), goodpoint_source(), rig=rig)
    result = vo.process(stamp, left, right)             # OdometryResult
    vo = VisualOdometry(VOConfig(mode="rgbd"), source, camera=cam)
    result = vo.process(stamp, image, depth=depth)      # 16UC1 mm or 32FC1 m
    vo = VisualOdometry(VOConfig(mode="mono"), source, camera=cam)

Per frame: detect (and stereo-match or read depth), drop degenerate
keypoints (:mod:`.filtering`), match the local map — the landmarks of the
last ``window`` keyframes — to the frame, guided by the constant-velocity
prediction, PnP + RANSAC (OpenCV USAC/MAGSAC) and Levenberg–Marquardt
refinement, a second guided pass with the refined pose, then decide a
keyframe: new landmarks from stereo disparity, depth or (mono) two-view
triangulation, and a sliding-window bundle adjustment (:mod:`.bundle`).

Frames: the internal world is the first camera pose (optical axes); the odom
frame is the base frame at the first frame (REP-105), so
``T_odom_base(t) = T_base_cam · T_world_cam(t) · T_base_cam⁻¹`` and
``T_odom_camera = T_odom_base · T_base_cam``.

Mono scale: metric scale is unobservable; the first two keyframes'
distance is 1 unit, BA holds the two oldest keyframes of the window fixed
so the unit propagates.  A re-initialisation after LOST starts a new unit.

Lost track (too few PnP inliers, inliers bunched in few cells, a jump larger
than ``max_translation`` / ``max_rotation_deg``, no features): the frame
is LOST with an inflated covariance and the pose held; the map is rebuilt
from the next frame that can start one (state INITIALISING, pose still
held, so the odometry stays continuous).  Time going backwards (a looped
bag) resets to the origin with a warning.
"""
from __future__ import annotations

import enum
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Deque, Dict, Optional

import cv2
import numpy as np

from goodpoint_ros.core.geometry import (
    R_BASE_OPTICAL,
    conjugate_covariance,
    epipolar_distances,
    inv_T,
    make_T,
    median_parallax_deg,
    rot_trans_to_ros,
    rotation_angle,
    triangulate,
    twist,
)
from goodpoint_ros.core.image_msgs import to_uint8
from goodpoint_ros.core.keypoints import Features
from goodpoint_ros.core.matching import verify_essential
from goodpoint_ros.frontend.stereo import patch_disparities, refine_disparity
from goodpoint_ros.odometry import bundle
from goodpoint_ros.odometry.camera import (
    CalibrationError,
    PinholeCamera,
    StereoRig,
    depth_to_metres,
    sample_depth,
)
from goodpoint_ros.odometry.config import VOConfig
from goodpoint_ros.odometry.features import FeatureSource
from goodpoint_ros.odometry.filtering import (
    band_pairs,
    distinct_mask,
    pair_distances,
    radius_pairs,
    ratio_match,
    score_mask,
    sparse_ratio_match,
    spread_cells,
)
from goodpoint_ros.odometry.pose import pnp_covariance, refine_pose, solve_pnp

log = logging.getLogger(__name__)

#: Rectified stereo: rows agree to ±1 px (keypoints on whole pixels, rectification
#: sub-pixel); nothing nearer than 0.5 m bounds the disparity search.
STEREO_ROW_TOLERANCE = 1.0
MIN_STEREO_DEPTH = 0.5
#: A window keyframe with fewer shared observations than this is held fixed in BA.
BA_MIN_OBSERVATIONS = 10


class TrackingState(str, enum.Enum):
    INITIALISING = "INITIALISING"
    OK = "OK"
    LOST = "LOST"


@dataclass
class OdometryResult:
    """One frame's odometry.

    T_odom_camera / T_odom_base: 4×4; twist: (vx, vy, vz, wx, wy, wz) of the
    base in the base frame; pose_covariance / twist_covariance: 6×6 in ROS
    order (x, y, z, roll, pitch, yaw), pose in the odom frame, twist in the
    base frame; times: milliseconds — network (the detector), frontend (keypoint
    filtering, stereo matching / depth lookup), tracking (map matching, PnP,
    keyframes, triangulation), ba, total.
    """
    stamp: float
    state: TrackingState
    T_odom_camera: np.ndarray
    T_odom_base: np.ndarray
    twist: np.ndarray
    pose_covariance: np.ndarray
    twist_covariance: np.ndarray
    inliers: int = 0
    matches: int = 0
    keypoints: int = 0
    keyframe: bool = False
    landmarks: int = 0
    lost_count: int = 0
    resets: int = 0
    times: Dict[str, float] = field(default_factory=dict)
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.state == TrackingState.OK


@dataclass
class Keyframe:
    """kp [N,2], ur [N] (right-image u, NaN: none), desc [N,D], lm [N] landmark id (−1: none)."""
    T_wc: np.ndarray
    kp: np.ndarray
    ur: np.ndarray
    desc: np.ndarray
    lm: np.ndarray
    stamp: float
    gray: Optional[np.ndarray] = None      # uint8 image, the reference for KLT refinement


@dataclass
class FrameData:
    features: Features
    kp: np.ndarray
    desc: np.ndarray
    ur: np.ndarray
    gray: Optional[np.ndarray] = None


def default_T_base_camera() -> np.ndarray:
    """REP-103 optical → base rotation, camera at the base origin."""
    return make_T(R_BASE_OPTICAL, np.zeros(3))


class VisualOdometry:
    """Feed frames to :meth:`process`; see the module docstring."""

    def __init__(self, config: VOConfig, source: FeatureSource, rig: Optional[StereoRig] = None,
                 camera: Optional[PinholeCamera] = None,
                 T_base_camera: Optional[np.ndarray] = None):
        self.config = config.validate()
        self.source = source
        mode = self.config.mode
        if mode == "stereo":
            if rig is None:
                raise CalibrationError("stereo VO needs a rectified rig (left/right projection "
                                       "matrices with the baseline)")
            camera, self.baseline = rig.left, rig.baseline
        else:
            if camera is None:
                raise CalibrationError(f"{mode} VO needs the camera intrinsics (CameraInfo / "
                                       "calibration)")
            self.baseline = self.config.virtual_baseline if mode == "rgbd" else 0.0
        self.camera = camera
        self.K = camera.K
        self.T_bc = default_T_base_camera() if T_base_camera is None else np.asarray(T_base_camera)
        self.T_cb = inv_T(self.T_bc)
        self.lost_count = 0
        self.resets = 0
        self.reset(origin=True)

    # ------------------------------------------------------------------ state
    def reset(self, origin: bool = True) -> None:
        """Forget the map; ``origin``: also restart the odometry at identity."""
        if origin:
            self.T_wc = np.eye(4)
            self.last_stamp: Optional[float] = None
            self.last_T_wc = np.eye(4)
            self.last_dt = 0.0
        self.velocity = np.eye(4)
        self.keyframes: Deque[Keyframe] = deque()
        self.anchors: Deque[Keyframe] = deque()
        self.points: Dict[int, np.ndarray] = {}        # landmark id → world point
        self.descs: Dict[int, np.ndarray] = {}         # landmark id → latest descriptor
        self.next_lm = 0
        self.ref: Optional[FrameData] = None           # mono initialisation reference
        self.ref_T = np.eye(4)
        self.tracked_at_kf = 0
        self.since_kf = 0
        self.initialised = False
        # After a LOST the map restarts but the frame is still "lost", not "initialising".
        self.ever_initialised = getattr(self, "ever_initialised", False) and not origin

    # ------------------------------------------------------------------ per frame
    def process(self, stamp: float, image: np.ndarray, right: Optional[np.ndarray] = None,
                depth: Optional[np.ndarray] = None, depth_encoding: Optional[str] = None
                ) -> OdometryResult:
        """One frame → :class:`OdometryResult` (never raises on bad image content)."""
        t0 = time.perf_counter()
        cfg = self.config
        message = ""
        if self.last_stamp is not None and stamp < self.last_stamp:
            message = (f"time went backwards ({self.last_stamp:.3f} → {stamp:.3f} s): "
                       "odometry reset to the origin")
            log.warning(message)
            self.resets += 1
            self.reset(origin=True)
        net_ms = 0.0
        try:
            frame, net_ms = self._frame_data(image, right, depth, depth_encoding)
        except (ValueError, cv2.error) as exc:
            frame, message = None, f"frame rejected: {exc}"
        t1 = time.perf_counter()
        frontend_ms = (t1 - t0) * 1e3 - net_ms        # filtering, stereo matching, depth lookup
        ba_ms = 0.0
        inliers = matches = 0
        keyframe = False
        cov_body = None
        if frame is None or len(frame.kp) == 0:
            state = self._lose(message or "no features")
            message = message or "no features"
        elif not self.initialised:
            state, ba_ms, keyframe, message = self._initialise(frame, stamp, message)
        else:
            track = self._track(frame)
            if track is None:
                # The map restarts from the *next* frame: the one that failed may be
                # garbage (noise, a flash) and would seed a map of nothing.
                state = self._lose("tracking failed")
                message = message or "tracking failed"
            else:
                T_wc, idx_frame, lm_ids, inliers, matches, cov_body = track
                self.velocity = inv_T(self.T_wc) @ T_wc
                self.T_wc = T_wc
                state = TrackingState.OK
                self.since_kf += 1
                if self._want_keyframe(inliers, lm_ids):
                    keyframe = True
                    ba_cov, ba_ms = self._add_keyframe(frame, stamp, idx_frame, lm_ids)
                    if ba_cov is not None:
                        cov_body = ba_cov
        if state != TrackingState.OK or cov_body is None:
            # Nothing measured this frame (pose held): say so with a huge covariance.
            cov_body = np.eye(6) * cfg.lost_covariance
        return self._result(stamp, state, cov_body, frame, inliers, matches, keyframe,
                            {"network": net_ms, "frontend": frontend_ms,
                             "tracking": (time.perf_counter() - t1) * 1e3 - ba_ms,
                             "ba": ba_ms, "total": (time.perf_counter() - t0) * 1e3}, message)

    # ------------------------------------------------------------------ outputs
    def _result(self, stamp, state, cov_body, frame, inliers, matches, keyframe, times, message):
        T_wc = self.T_wc
        T_ob = self.T_bc @ T_wc @ self.T_cb
        T_oc = T_ob @ self.T_bc
        dt = stamp - self.last_stamp if self.last_stamp is not None else 0.0
        tw = twist(self.T_bc @ self.last_T_wc @ self.T_cb, T_ob, dt)
        pose_cov, tw_cov = odometry_covariances(self.T_bc, T_wc, cov_body, dt)
        if state != TrackingState.OK:
            tw_cov = np.eye(6) * self.config.lost_covariance
        self.last_stamp, self.last_T_wc = stamp, T_wc.copy()
        return OdometryResult(stamp, state, T_oc, T_ob, tw, pose_cov, tw_cov, int(inliers),
                              int(matches), 0 if frame is None else len(frame.kp), keyframe,
                              len(self.points), self.lost_count, self.resets, times, message)

    def _lose(self, why: str) -> TrackingState:
        """Drop the map (pose held); count the OK → LOST transition once."""
        if self.initialised:
            self.lost_count += 1
            log.info("visual odometry lost: %s", why)
            self.reset(origin=False)
        return TrackingState.LOST if self.ever_initialised else TrackingState.INITIALISING

    # ------------------------------------------------------------------ features
    def _frame_data(self, image, right, depth, depth_encoding):
        cfg = self.config
        feats = self.source.detect(image)
        net = self.source.last_ms
        keep = score_mask(feats.scores, cfg.min_score)
        keep &= distinct_mask(feats.descriptors, feats.keypoints, cfg.distinct_fraction,
                              cfg.ratio_exclusion)
        kp = feats.keypoints[keep].astype(np.float64)
        desc = feats.descriptors[keep]
        ur = np.full(len(kp), np.nan)
        if cfg.mode == "stereo" and cfg.stereo_matching == "patch":
            if right is None:
                raise ValueError("stereo VO needs the right image")
            ur = self._stereo_patches(kp, image, right)
        elif cfg.mode == "stereo":
            if right is None:
                raise ValueError("stereo VO needs the right image")
            rf = self.source.detect(right)
            net += self.source.last_ms
            rk = score_mask(rf.scores, cfg.min_score)
            rk &= distinct_mask(rf.descriptors, rf.keypoints, cfg.distinct_fraction,
                                cfg.ratio_exclusion)
            ur = self._stereo_match(kp, desc, rf.keypoints[rk].astype(np.float64),
                                    rf.descriptors[rk], image, right)
        elif cfg.mode == "rgbd":
            if depth is None:
                raise ValueError("RGB-D VO needs the depth image")
            z = sample_depth(depth_to_metres(depth, depth_encoding), kp)
            z[~(z <= cfg.max_depth)] = np.nan
            ur = kp[:, 0] - self.camera.fx * self.baseline / z
        gray = to_uint8(np.asarray(image), gray=True) if cfg.klt_refine else None
        return FrameData(feats, kp, desc, ur, gray), net

    def _stereo_patches(self, kp, left_img, right_img) -> np.ndarray:
        """Right-image u [N] by an NCC row search (the network never sees the right image)."""
        cfg = self.config
        left, right = _gray(left_img), _gray(right_img)
        if left.shape != right.shape:
            raise ValueError(f"left {left.shape} and right {right.shape} images differ in size")
        max_disp = min(self.camera.fx * self.baseline / MIN_STEREO_DEPTH, self.camera.width - 1.0)
        xr = patch_disparities(left, right, kp, cfg.min_disparity, max_disp, cfg.stereo_window)
        d = kp[:, 0] - xr
        with np.errstate(invalid="ignore", divide="ignore"):
            z = self.camera.fx * self.baseline / np.where(d > 0, d, np.nan)
        ok = (d >= cfg.min_disparity) & (z <= cfg.max_depth_baselines * self.baseline)
        return np.where(ok, xr, np.nan)

    def _stereo_match(self, kp, desc, rkp, rdesc, left_img, right_img) -> np.ndarray:
        """Row-constrained left → right matching → ur [N] (NaN: no match)."""
        cfg = self.config
        ur = np.full(len(kp), np.nan)
        if not len(kp) or not len(rkp):
            return ur
        # Candidates on the same row (±1 px) with a plausible disparity, as
        # goodpoint_ros.frontend.stereo's band, but only those pairs are compared.
        max_disp = min(self.camera.fx * self.baseline / MIN_STEREO_DEPTH, self.camera.width - 1.0)
        li, ri = band_pairs(kp, rkp, STEREO_ROW_TOLERANCE, cfg.min_disparity, max_disp)
        m, _ = sparse_ratio_match(li, ri, pair_distances(desc[li], rdesc[ri]),
                                  self.source.max_distance, cfg.ratio, rkp, cfg.ratio_exclusion)
        if not len(m):
            return ur
        xr = rkp[m[:, 1], 0].copy()
        if cfg.subpixel_stereo:
            xr = refine_disparity(_gray(left_img), _gray(right_img), kp[m[:, 0]], xr)
        d = kp[m[:, 0], 0] - xr
        z = self.camera.fx * self.baseline / np.where(d > 0, d, np.nan)
        ok = (d >= cfg.min_disparity) & (z <= cfg.max_depth_baselines * self.baseline)
        ur[m[ok, 0]] = xr[ok]
        return ur

    # ------------------------------------------------------------------ initialisation
    def _backproject(self, kp: np.ndarray, ur: np.ndarray, T_wc: np.ndarray) -> np.ndarray:
        """Stereo/depth keypoints [N,2] with ur [N] → world points [N,3]."""
        c = self.camera
        z = c.fx * self.baseline / (kp[:, 0] - ur)
        Xc = np.stack([(kp[:, 0] - c.cx) * z / c.fx, (kp[:, 1] - c.cy) * z / c.fy, z], 1)
        return Xc @ T_wc[:3, :3].T + T_wc[:3, 3]

    def _new_landmarks(self, kf: Keyframe, idx: np.ndarray, X: np.ndarray) -> None:
        for i, P in zip(idx, X):
            self.points[self.next_lm] = P
            self.descs[self.next_lm] = kf.desc[i]
            kf.lm[i] = self.next_lm
            self.next_lm += 1

    def _initialise(self, frame: FrameData, stamp: float, message: str):
        if self.config.mode == "mono":
            return self._initialise_mono(frame, stamp, message)
        good = np.nonzero(np.isfinite(frame.ur))[0]
        cfg = self.config
        spread = spread_cells(frame.kp[good], (self.camera.width, self.camera.height),
                              cfg.spread_grid)
        if len(good) < max(cfg.min_inliers * 2, 30) or spread < cfg.min_spread_cells:
            state = TrackingState.LOST if self.ever_initialised else TrackingState.INITIALISING
            return state, 0.0, False, message or f"initialising: {len(good)} stereo/depth points"
        kf = Keyframe(self.T_wc.copy(), frame.kp, frame.ur, frame.desc,
                      -np.ones(len(frame.kp), np.int64), stamp, frame.gray)
        self._new_landmarks(kf, good, self._backproject(frame.kp[good], frame.ur[good], self.T_wc))
        self.keyframes.append(kf)
        self.tracked_at_kf = len(good)
        self.since_kf = 0
        self.initialised = True
        self.ever_initialised = True
        self.velocity = np.eye(4)
        return TrackingState.INITIALISING, 0.0, True, message or f"map started with {len(good)} points"

    def _initialise_mono(self, frame: FrameData, stamp: float, message: str):
        cfg = self.config
        # after a LOST the frames that wait for a new map are still lost (as in stereo)
        waiting = TrackingState.LOST if self.ever_initialised else TrackingState.INITIALISING
        if self.ref is None or len(self.ref.kp) < 8:
            self._set_reference(frame, stamp)
            return waiting, 0.0, False, message or "mono: reference frame set"
        ref = self.ref
        dist = np.asarray(self.source.distances(ref.desc, frame.desc), np.float64)
        m, _ = ratio_match(dist, self.source.max_distance, cfg.ratio)
        if len(m) < 30:
            self._set_reference(frame, stamp)
            return waiting, 0.0, False, message or "mono: too few matches"
        flow = np.linalg.norm(ref.kp[m[:, 0]] - frame.kp[m[:, 1]], axis=1)
        if np.median(flow) < 0.02 * self.camera.width:
            return waiting, 0.0, False, message or "mono: waiting for parallax"
        E, R, t, inl = verify_essential(ref.kp, frame.kp, m, self.K, threshold=cfg.reprojection_threshold)
        if E is None or inl.sum() < 30:
            # The pair moved enough yet is no rigid motion: one of them is bad (noise, a
            # blurred or changed view).  Waiting on the same reference could wait forever.
            self._set_reference(frame, stamp)
            return waiting, 0.0, False, message or "mono: no essential matrix"
        T_10 = make_T(R, t / max(np.linalg.norm(t), 1e-12))   # first baseline = 1 unit
        mi = m[inl]
        X0, ok = triangulate(self.K, np.eye(4), T_10, ref.kp[mi[:, 0]], frame.kp[mi[:, 1]],
                             cfg.reprojection_threshold, cfg.min_parallax_deg)
        if ok.sum() < 30:
            return waiting, 0.0, False, message or "mono: too little parallax"
        T_w0 = self.ref_T
        T_w1 = T_w0 @ inv_T(T_10)
        kf0 = Keyframe(T_w0, ref.kp, ref.ur, ref.desc, -np.ones(len(ref.kp), np.int64),
                       self.ref_stamp, ref.gray)
        kf1 = Keyframe(T_w1, frame.kp, frame.ur, frame.desc, -np.ones(len(frame.kp), np.int64),
                       stamp, frame.gray)
        Xw = X0[ok] @ T_w0[:3, :3].T + T_w0[:3, 3]
        self._new_landmarks(kf1, mi[ok, 1], Xw)
        kf0.lm[mi[ok, 0]] = kf1.lm[mi[ok, 1]]
        self.keyframes.extend([kf0, kf1])
        ba_ms = self._init_bundle_adjust() if cfg.mono_init_ba else self._bundle_adjust()[1]
        dt = stamp - self.ref_stamp
        self.velocity = np.eye(4) if dt <= 0 else inv_T(T_w0) @ self.keyframes[-1].T_wc
        self.T_wc = self.keyframes[-1].T_wc.copy()
        self.tracked_at_kf = int(ok.sum())
        self.since_kf = 0
        self.initialised = self.ever_initialised = True
        self.ref = None
        return TrackingState.INITIALISING, ba_ms, True, message or f"mono: map of {int(ok.sum())} points"

    def _set_reference(self, frame: FrameData, stamp: float) -> None:
        """The frame the mono two-view initialisation measures its parallax from."""
        self.ref, self.ref_T, self.ref_stamp = frame, self.T_wc.copy(), stamp

    def _init_bundle_adjust(self) -> float:
        """Two-view BA of the new mono map with only the first keyframe fixed, then the
        baseline rescaled to 1 unit (ORB-SLAM's initial BA and normalisation): the
        essential matrix's relative pose is the least certain in the whole run, and held
        fixed as the window's gauge it would never be refined.  → ms."""
        kf0, kf1 = self.keyframes[-2], self.keyframes[-1]
        _, ms = self._bundle_adjust(gauge=1, want_covariance=False)
        T_01 = inv_T(kf0.T_wc) @ kf1.T_wc
        baseline = float(np.linalg.norm(T_01[:3, 3]))
        if not baseline > 1e-6:                 # collapsed (or NaN): keep the map as solved
            return ms
        s = 1.0 / baseline
        T_01[:3, 3] *= s
        kf1.T_wc = kf0.T_wc @ T_01
        c = kf0.T_wc[:3, 3]
        lms = np.concatenate([kf0.lm, kf1.lm])
        for lid in np.unique(lms[lms >= 0]):
            self.points[int(lid)] = c + s * (self.points[int(lid)] - c)
        return ms

    # ------------------------------------------------------------------ tracking
    def _local_map(self):
        ids = np.array(sorted(self.points), np.int64)
        if not len(ids):
            return ids, np.zeros((0, 3)), None
        return ids, np.stack([self.points[i] for i in ids]), np.stack([self.descs[i] for i in ids])

    def _project(self, T_wc, X):
        T_cw = inv_T(T_wc)
        Xc = X @ T_cw[:3, :3].T + T_cw[:3, 3]
        z = Xc[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = np.stack([self.camera.fx * Xc[:, 0] / z + self.camera.cx,
                           self.camera.fy * Xc[:, 1] / z + self.camera.cy], 1)
        c = self.camera
        vis = (z > 1e-3) & (uv[:, 0] >= -1) & (uv[:, 0] <= c.width) & (uv[:, 1] >= -1) & \
              (uv[:, 1] <= c.height)
        return uv, vis

    def _guided(self, T_wc, X, D, frame: FrameData, radius: float):
        """Landmarks (X [P,3], D [P,..]) → frame keypoints within ``radius`` of the
        projection. → matches [M,2] (landmark row, keypoint index)."""
        uv, vis = self._project(T_wc, X)
        rows = np.nonzero(vis)[0]
        if not len(rows) or not len(frame.kp):
            return np.zeros((0, 2), np.int64)
        qi, kj = radius_pairs(uv[rows], frame.kp, radius)
        qi = rows[qi]
        m, _ = sparse_ratio_match(qi, kj, pair_distances(D[qi], frame.desc[kj]),
                                  self.source.max_distance, self.config.ratio, frame.kp,
                                  self.config.ratio_exclusion)
        return m

    def _track(self, frame: FrameData):
        cfg = self.config
        ids, X, D = self._local_map()
        if not len(ids):
            return None
        pred = self.T_wc @ self.velocity
        m = self._guided(pred, X, D, frame, cfg.search_radius)
        if len(m) < 3 * cfg.min_inliers:      # prediction off (a jerk, a turn): search everywhere
            dist = np.asarray(self.source.distances(D, frame.desc), np.float64)
            m2, _ = ratio_match(dist, self.source.max_distance, cfg.ratio)
            if len(m2) > len(m):
                m = m2
        if len(m) < cfg.min_inliers:
            return None
        T_wc, inl = self._pnp(X[m[:, 0]], frame.kp[m[:, 1]], pred)
        if T_wc is None or inl.sum() < cfg.min_inliers:
            return None
        # Second pass with the refined pose: more landmarks, a tight window.
        m2 = self._guided(T_wc, X, D, frame, max(3.0 * cfg.reprojection_threshold, 4.0))
        if len(m2) >= inl.sum():
            T2, inl2 = self._refine(X[m2[:, 0]], frame.kp[m2[:, 1]], T_wc)
            if T2 is not None and inl2.sum() >= inl.sum():
                T_wc, inl, m = T2, inl2, m2
        if cfg.klt_refine and frame.gray is not None:
            # Detections are good to ~0.6 px (GoodPoint, measured on a generated bag; SIFT
            # ~0.2): align each tracked keypoint photometrically with the landmark's last
            # keyframe observation, so all observations of a landmark agree to KLT accuracy.
            if self._klt_refine(frame, ids[m[inl, 0]], m[inl, 1], T_wc):
                T2, inl2 = self._refine(X[m[:, 0]], frame.kp[m[:, 1]], T_wc)
                if T2 is not None and inl2.sum() >= cfg.min_inliers:
                    T_wc, inl = T2, inl2
        n_in = int(inl.sum())
        mi = m[inl]
        if n_in < cfg.min_inliers or spread_cells(frame.kp[mi[:, 1]], (self.camera.width,
                                                  self.camera.height), cfg.spread_grid) \
                < cfg.min_spread_cells:
            return None
        step = inv_T(self.T_wc) @ T_wc
        if np.linalg.norm(step[:3, 3]) > cfg.max_translation or \
                np.degrees(rotation_angle(step[:3, :3])) > cfg.max_rotation_deg:
            return None
        cov = pnp_covariance(self.camera, inv_T(T_wc), X[mi[:, 0]], frame.kp[mi[:, 1]],
                             cfg.pixel_sigma)
        return T_wc, mi[:, 1], ids[mi[:, 0]], n_in, len(m), cov

    def _klt_refine(self, frame: FrameData, lm_ids: np.ndarray, kp_idx: np.ndarray,
                    T_wc: np.ndarray) -> int:
        """Move frame keypoints ``kp_idx`` [M] (matched to landmarks ``lm_ids`` [M]) onto
        the KLT-aligned position of each landmark's newest keyframe observation.

        A shift is kept only if forward and backward flow agree (``klt_check`` px) and it
        stays within ``klt_max_shift`` of the detection (a wrong minimum otherwise); the
        right-image u moves with it (the disparity stays).  Returns how many moved.
        Only landmarks whose depth changed by ≤ ``klt_max_scale_change`` between the
        keyframe and ``T_wc`` (this frame's PnP pose) are refined.
        """
        cfg = self.config
        ref: Dict[int, tuple] = {}
        for k in range(len(self.keyframes) - 1, -1, -1):
            kf = self.keyframes[k]
            if kf.gray is None:
                continue
            for i in np.nonzero(kf.lm >= 0)[0]:
                ref.setdefault(int(kf.lm[i]), (k, i))
        moved = 0
        groups: Dict[int, list] = {}
        for j, lid in enumerate(lm_ids):
            if int(lid) in ref:
                groups.setdefault(ref[int(lid)][0], []).append(j)
        for k, js in groups.items():
            kf = self.keyframes[k]
            js = np.asarray(js)
            p0 = np.stack([kf.kp[ref[int(lm_ids[j])][1]] for j in js])
            p1, ok = self._lk(kf.gray, frame.gray, p0, frame.kp[kp_idx[js]])
            # Translation-only LK is biased under scale change (by ~ change × patch
            # radius): refine only where the landmark's depth ratio says the patch kept
            # its size; elsewhere (driving forward, near points) keep the detection.
            Xw = np.stack([self.points[int(lm_ids[j])] for j in js])
            z_ref = (Xw - kf.T_wc[:3, 3]) @ kf.T_wc[:3, 2]
            z_cur = (Xw - T_wc[:3, 3]) @ T_wc[:3, 2]
            with np.errstate(divide="ignore", invalid="ignore"):
                ok &= np.abs(z_ref / z_cur - 1.0) <= cfg.klt_max_scale_change
            idx = kp_idx[js[ok]]
            shift = p1[ok] - frame.kp[idx]
            frame.kp[idx] = p1[ok]
            frame.ur[idx] += shift[:, 0]             # NaN stays NaN
            moved += int(ok.sum())
        return moved

    def _lk(self, ref_gray, cur_gray, p0: np.ndarray, guess: np.ndarray):
        """Lucas–Kanade from ``p0`` [M,2] in ``ref_gray`` to ``cur_gray``, started at
        ``guess`` [M,2] → (positions [M,2], ok [M]: forward–backward agree within
        ``klt_check`` px and the move from ``guess`` ≤ ``klt_max_shift``)."""
        cfg = self.config
        ok = np.zeros(len(p0), bool)
        if not len(p0):
            return guess.astype(np.float64), ok
        win = (cfg.klt_window, cfg.klt_window)
        crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.01)
        a = p0.astype(np.float32).reshape(-1, 1, 2)
        g = guess.astype(np.float32).reshape(-1, 1, 2)
        try:
            p1, st, _ = cv2.calcOpticalFlowPyrLK(ref_gray, cur_gray, a, g.copy(), winSize=win,
                                                 maxLevel=1, criteria=crit,
                                                 flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
            pb, sb, _ = cv2.calcOpticalFlowPyrLK(cur_gray, ref_gray, p1, a.copy(), winSize=win,
                                                 maxLevel=1, criteria=crit,
                                                 flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
        except cv2.error:
            return guess.astype(np.float64), ok
        p1, pb = p1.reshape(-1, 2).astype(np.float64), pb.reshape(-1, 2)
        ok = (st.ravel() == 1) & (sb.ravel() == 1) & \
             (np.linalg.norm(pb - a.reshape(-1, 2), axis=1) <= cfg.klt_check) & \
             (np.linalg.norm(p1 - guess, axis=1) <= cfg.klt_max_shift)
        return np.where(ok[:, None], p1, guess), ok

    def _pnp(self, X, uv, T_guess):
        """Robust PnP + LM refinement → (T_world_cam or None, inliers [M]) (:mod:`.pose`)."""
        cfg = self.config
        return solve_pnp(self.K, X, uv, cfg.reprojection_threshold, cfg.ransac_seed)

    def _refine(self, X, uv, T_wc):
        """LM refinement on the matches within the threshold of ``T_wc``, re-thresholded."""
        return refine_pose(self.K, X, uv, T_wc, self.config.reprojection_threshold)

    # ------------------------------------------------------------------ keyframes
    def _want_keyframe(self, inliers: int, lm_ids: np.ndarray) -> bool:
        """A keyframe when tracking thins out, or when ``keyframe_gap`` frames have passed
        *and* the camera has moved: at rest a keyframe adds no parallax, only drift (EuRoC
        at rest, stereo: a keyframe every third frame turned 0.17° into 0.20° over 95 frames)."""
        cfg = self.config
        if inliers < cfg.keyframe_ratio * self.tracked_at_kf or inliers < cfg.keyframe_min_inliers:
            return True
        if self.since_kf < cfg.keyframe_gap:
            return False
        X = np.stack([self.points[int(i)] for i in lm_ids]) if len(lm_ids) else np.zeros((0, 3))
        return median_parallax_deg(X, self.keyframes[-1].T_wc[:3, 3],
                                   self.T_wc[:3, 3]) >= cfg.keyframe_min_parallax_deg

    def _add_keyframe(self, frame: FrameData, stamp, idx_frame, lm_ids):
        cfg = self.config
        kf = Keyframe(self.T_wc.copy(), frame.kp, frame.ur, frame.desc,
                      -np.ones(len(frame.kp), np.int64), stamp, frame.gray)
        kf.lm[idx_frame] = lm_ids
        for i, lid in zip(idx_frame, lm_ids):
            self.descs[int(lid)] = frame.desc[i]      # latest appearance matches best
        free = kf.lm < 0
        if cfg.mode == "mono":
            self._triangulate_mono(kf, free)
        else:
            new = np.nonzero(free & np.isfinite(frame.ur))[0]
            if len(new):
                self._new_landmarks(kf, new, self._backproject(frame.kp[new], frame.ur[new],
                                                               kf.T_wc))
        self.keyframes.append(kf)
        while len(self.keyframes) > cfg.window:
            self.anchors.append(self.keyframes.popleft())
        while len(self.anchors) > cfg.anchor_count:
            self.anchors.popleft()
        self._cull()
        cov, ms = self._bundle_adjust()
        self.T_wc = self.keyframes[-1].T_wc.copy()
        self.tracked_at_kf = len(lm_ids)
        self.since_kf = 0
        return cov, ms

    def _triangulate_mono(self, kf: Keyframe, free: np.ndarray) -> None:
        """New mono landmarks: unmatched keypoints of the new keyframe against those of
        the previous ``mono_triangulation_keyframes`` keyframes, newest first.

        Keyframes come every frame or two when inliers are few, so the newest pair
        alone often has too little parallax; an older keyframe gives the remaining
        keypoints a wider baseline (as ORB-SLAM triangulates against several
        neighbours)."""
        for prev in list(self.keyframes)[::-1][:self.config.mono_triangulation_keyframes]:
            self._triangulate_pair(prev, kf)

    def _triangulate_pair(self, prev: Keyframe, kf: Keyframe) -> None:
        cfg = self.config
        pf = np.nonzero(prev.lm < 0)[0]
        cf = np.nonzero(kf.lm < 0)[0]
        if not len(pf) or not len(cf):
            return
        dist = np.asarray(self.source.distances(prev.desc[pf], kf.desc[cf]), np.float64)
        T_10 = inv_T(kf.T_wc) @ prev.T_wc
        # The poses are known: candidates must lie near the epipolar line (as ORB-SLAM's
        # search for triangulation), so the ratio test compares only geometric rivals
        # and far more of the few keypoints a frame has become landmarks.
        dist[epipolar_distances(self.K, T_10, prev.kp[pf], kf.kp[cf])
             > cfg.epipolar_threshold] = np.inf
        m, _ = ratio_match(dist, self.source.max_distance, cfg.ratio)
        if not len(m):
            return
        uv1 = kf.kp[cf[m[:, 1]]]
        if cfg.klt_refine and prev.gray is not None and kf.gray is not None:
            uv1, _ = self._lk(prev.gray, kf.gray, prev.kp[pf[m[:, 0]]], uv1)
        X0, ok = triangulate(self.K, np.eye(4), T_10, prev.kp[pf[m[:, 0]]], uv1,
                             cfg.reprojection_threshold, cfg.min_parallax_deg)
        if not ok.any():
            return
        kf.kp[cf[m[ok, 1]]] = uv1[ok]                  # only triangulated ones move
        Xw = X0[ok] @ prev.T_wc[:3, :3].T + prev.T_wc[:3, 3]
        self._new_landmarks(kf, cf[m[ok, 1]], Xw)
        prev.lm[pf[m[ok, 0]]] = kf.lm[cf[m[ok, 1]]]

    def _cull(self) -> None:
        """Keep the landmarks some window keyframe observes; over ``max_landmarks``, drop
        those last seen longest ago (never by id alone: that would strip the fixed,
        oldest keyframe of its landmarks and leave the window's gauge free)."""
        newest: Dict[int, int] = {}
        for k, kf in enumerate(self.keyframes):
            for v in kf.lm[kf.lm >= 0]:
                newest[int(v)] = k
        for lid in [lid for lid in self.points if lid not in newest]:
            del self.points[lid], self.descs[lid]
        excess = len(self.points) - self.config.max_landmarks
        if excess > 0:
            for lid in sorted(self.points, key=lambda i: newest[i])[:excess]:
                del self.points[lid], self.descs[lid]
            for kf in self.keyframes:
                gone = np.array([v >= 0 and int(v) not in self.points for v in kf.lm], bool)
                kf.lm[gone] = -1

    def _bundle_adjust(self, gauge: Optional[int] = None, want_covariance: bool = True):
        """BA over the window; updates poses, points, drops outlier observations.

        ``gauge``: how many of the window's oldest keyframes are held fixed (None: one;
        mono two, which also fixes the scale).

        The anchors (``anchor_count`` keyframes that left the window) take part as fixed
        poses: their observations of the landmarks still in the map tie those to poses that
        no longer move, as ORB-SLAM's local BA holds the covisible keyframes outside its
        window fixed — without them each slide of the window re-fits the landmarks to the
        window alone, and in mono the scale drifts with it.

        Only landmarks seen by two or more of these keyframes enter (one observation says
        nothing about the poses); a keyframe left with fewer than ``BA_MIN_OBSERVATIONS``
        of them is held fixed with the oldest, so no part of the window floats free.
        """
        cfg = self.config
        na = len(self.anchors)
        kfs = list(self.anchors) + list(self.keyframes)
        if len(kfs) - na < 2 or not self.points:
            return None, 0.0
        if na:                        # the window's culling may have dropped their landmarks
            alive = np.fromiter(self.points, np.int64, len(self.points))
            for kf in self.anchors:
                kf.lm[(kf.lm >= 0) & ~np.isin(kf.lm, alive)] = -1
        obs_k = np.concatenate([np.full(int((kf.lm >= 0).sum()), k) for k, kf in enumerate(kfs)])
        obs_i = np.concatenate([np.nonzero(kf.lm >= 0)[0] for kf in kfs])
        obs_l = np.concatenate([kf.lm[kf.lm >= 0] for kf in kfs])
        ids, inverse, counts = np.unique(obs_l, return_inverse=True, return_counts=True)
        keep = counts[inverse] >= 2
        if not keep.any():
            return None, 0.0
        obs_k, obs_i, obs_l = obs_k[keep], obs_i[keep], obs_l[keep]
        lm_ids, obs_row = np.unique(obs_l, return_inverse=True)
        per_kf = np.bincount(obs_k, minlength=len(kfs))
        fixed = per_kf < BA_MIN_OBSERVATIONS
        # The anchors, then the window's oldest (mono: two oldest, the scale) hold the gauge.
        if gauge is None:
            gauge = 2 if cfg.mode == "mono" else 1
        fixed[:na + gauge] = True
        if fixed.all():
            return None, 0.0
        # gather per keyframe (obs_k is grouped by keyframe, in order)
        uv = np.concatenate([kfs[k].kp[obs_i[obs_k == k]] for k in range(len(kfs))])
        ur = np.concatenate([kfs[k].ur[obs_i[obs_k == k]] for k in range(len(kfs))])
        problem = bundle.BAProblem(np.stack([kf.T_wc for kf in kfs]), fixed,
                                   np.stack([self.points[int(lid)] for lid in lm_ids]),
                                   obs_k, obs_row, uv, ur, self.camera.fx, self.camera.fy,
                                   self.camera.cx, self.camera.cy, self.baseline)
        try:
            res = bundle.solve(problem, cfg.solver, cfg.pixel_sigma, cfg.huber, cfg.ba_iterations,
                               want_covariance=want_covariance)
        except (RuntimeError, ValueError) as exc:     # solver refused the window: keep PnP poses
            log.debug("bundle adjustment failed: %s", exc)
            return None, 0.0
        for k, kf in enumerate(kfs):
            kf.T_wc = res.poses[k]
        for lid, P in zip(lm_ids, res.points):
            self.points[int(lid)] = P
        bad = res.errors > 3.0 * cfg.reprojection_threshold
        for k, i in zip(obs_k[bad], obs_i[bad]):
            kfs[k].lm[i] = -1
        # the newest keyframe's marginal, unless it was held fixed (then PnP's stands)
        return (res.covariance if not fixed[-1] else None), res.ms


# --------------------------------------------------------------------------- helpers

def odometry_covariances(T_bc: np.ndarray, T_wc: np.ndarray, cov_body: np.ndarray,
                         dt: float):
    """nav_msgs/Odometry covariances [6,6] (ROS order x y z, rot x y z) of the base pose.

    ``cov_body``: covariance of a right (body) perturbation T_world_cam·exp(ξ), ξ =
    (rotation, translation).  The base moves by the body perturbation Ad(T_bc)·ξ
    (the camera's rotation swings the base through their lever arm).  Pose:
    PoseWithCovariance's parameters — the position in the odom frame and rotations
    about the odom frame's fixed axes — so the body errors are rotated by R_odom_base;
    not the adjoint of T_odom_base, whose [p]× term would report rotation uncertainty
    as position uncertainty growing with the distance from the odom origin.  Twist: in
    the base frame, the pose covariance there × 2/dt² (two independent poses: a
    documented approximation).
    """
    cov_base = conjugate_covariance(T_bc, cov_body)
    R_ob = (T_bc @ T_wc @ inv_T(T_bc))[:3, :3]
    Rot = np.kron(np.eye(2), R_ob)
    pose_cov = rot_trans_to_ros(Rot @ cov_base @ Rot.T)
    tw_cov = rot_trans_to_ros(cov_base) * (2.0 / dt ** 2 if dt > 0 else 1.0)
    return pose_cov, tw_cov


def _gray(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim == 3:
        a = cv2.cvtColor(a, cv2.COLOR_BGR2GRAY)
    return a.astype(np.float32)


__all__ = ["VisualOdometry", "OdometryResult", "TrackingState", "Keyframe",
           "default_T_base_camera", "odometry_covariances"]
