"""Intrinsics, stereo rigs and depth images for the odometry.

A rectified stereo pair is fully described by the left camera's pinhole
intrinsics and the baseline, both read from the rectified projection
matrices (``sensor_msgs/CameraInfo.p``, KITTI ``calib.txt``):
``P_right[0,3] = −fx·B`` (relative to ``P_left[0,3]``), so
``B = −(P_right[0,3] − P_left[0,3]) / fx``.

A mono or RGB-D camera's ``CameraInfo`` describes its raw frames (``k``, ``d``)
and the ideal pinhole camera they rectify to (``p``, what image_proc's
``image_rect`` is in).  The odometry works in that ideal camera:
:func:`camera_from_info` gives it, with an :class:`Undistorter` when the frames
are raw and distorted.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np


class CalibrationError(ValueError):
    """Missing or unusable calibration (one line says why)."""


@dataclass(frozen=True)
class PinholeCamera:
    """Undistorted (rectified) pinhole intrinsics in pixels, pixel centres at integers."""
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @classmethod
    def from_K(cls, K, size: Tuple[int, int]) -> "PinholeCamera":
        K = np.asarray(K, np.float64).reshape(3, 3)
        if not (K[0, 0] > 0 and K[1, 1] > 0) or not np.all(np.isfinite(K)):
            raise CalibrationError(f"invalid intrinsics (fx={K[0, 0]}, fy={K[1, 1]}): "
                                   "the camera is not calibrated")
        return cls(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]),
                   int(size[0]), int(size[1]))

    def scaled(self, size: Tuple[int, int]) -> "PinholeCamera":
        """The same camera for images resized to ``size`` (W, H): x' = (x + 0.5)·s − 0.5."""
        sx, sy = size[0] / self.width, size[1] / self.height
        return PinholeCamera(self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5,
                             (self.cy + 0.5) * sy - 0.5, int(size[0]), int(size[1]))


@dataclass(frozen=True)
class StereoRig:
    """A rectified stereo pair: left intrinsics and baseline (metres, > 0)."""
    left: PinholeCamera
    baseline: float

    @classmethod
    def from_projections(cls, P_left, P_right, size: Tuple[int, int]) -> "StereoRig":
        """Rectified 3×4 projection matrices (CameraInfo.p or calib.txt rows) → rig."""
        P0 = np.asarray(P_left, np.float64).reshape(3, 4)
        P1 = np.asarray(P_right, np.float64).reshape(3, 4)
        cam = PinholeCamera.from_K(P0[:, :3], size)
        baseline = -(P1[0, 3] - P0[0, 3]) / P1[0, 0] if P1[0, 0] > 0 else 0.0
        if not baseline > 0:
            raise CalibrationError(f"stereo baseline from the projection matrices is {baseline:.4g} m: "
                                   "the right camera's P must carry Tx = −fx·B (rectified pair)")
        return cls(cam, float(baseline))

    def scaled(self, size: Tuple[int, int]) -> "StereoRig":
        return StereoRig(self.left.scaled(size), self.baseline)


def depth_to_metres(depth: np.ndarray, encoding: Optional[str] = None) -> np.ndarray:
    """A depth image → float32 metres [H,W], NaN where there is no depth.

    ``16UC1`` / uint16: millimetres, 0 = none (REP-118); ``32FC1`` / float:
    metres, NaN, ±inf and ≤ 0 = none.
    """
    d = np.asarray(depth)
    if d.ndim == 3 and d.shape[2] == 1:
        d = d[:, :, 0]
    if d.ndim != 2:
        raise ValueError(f"depth must be one channel [H,W], got shape {d.shape}")
    if encoding == "16UC1" or d.dtype == np.uint16:
        out = d.astype(np.float32) * np.float32(1e-3)
    elif encoding in (None, "32FC1") and np.issubdtype(d.dtype, np.floating):
        out = d.astype(np.float32, copy=True)
    else:
        raise ValueError(f"unsupported depth {encoding or d.dtype} (use 16UC1 mm or 32FC1 m)")
    out[~np.isfinite(out) | (out <= 0)] = np.nan
    return out


def sample_depth(depth_m: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """Depth at keypoints [N,2] (nearest pixel; NaN outside or invalid) → [N] metres."""
    h, w = depth_m.shape
    out = np.full(len(keypoints), np.nan, np.float32)
    if not len(keypoints):
        return out
    x = np.rint(keypoints[:, 0]).astype(int)
    y = np.rint(keypoints[:, 1]).astype(int)
    ok = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    out[ok] = depth_m[y[ok], x[ok]]
    return out


#: CameraInfo.distortion_model values OpenCV can undistort (REP-104 names).
DISTORTION_MODELS = ("plumb_bob", "rational_polynomial", "equidistant")


@dataclass
class Undistorter:
    """Raw frames of a distorted camera → frames of the ideal pinhole ``camera``.

    ``map_x`` / ``map_y`` [H,W] give, for every pixel of the ideal image, where it
    lies in the raw frame (``cv2.initUndistortRectifyMap``).  Images are
    interpolated bilinearly; depth by the nearest pixel (a blend of two surfaces
    is a depth neither has), 0 / NaN (no depth) outside the raw frame.

    ``R``: the rectification rotation the frames pass through (X_rect = R·X_raw; None:
    none).  Under it a point's depth z along the raw optical axis becomes
    z / (R[:, 2] · ray) along the new one, ray = K⁻¹·(u, v, 1) of the ideal pixel
    (:attr:`depth_scale`, made on the first depth frame: a stereo pair never needs it).
    """
    camera: PinholeCamera
    map_x: np.ndarray
    map_y: np.ndarray
    R: Optional[np.ndarray] = None

    @functools.cached_property
    def depth_scale(self) -> Optional[np.ndarray]:
        """[H,W] factor from raw-axis to rectified-axis depth (None without a rotation)."""
        if self.R is None or np.allclose(self.R, np.eye(3)):
            return None
        c, R = self.camera, self.R
        h, w = self.map_x.shape
        u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
        along = R[0, 2] * (u - c.cx) / c.fx + R[1, 2] * (v - c.cy) / c.fy + R[2, 2]
        return (1.0 / along).astype(np.float32)

    def image(self, img: np.ndarray) -> np.ndarray:
        return cv2.remap(img, self.map_x, self.map_y, cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def depth(self, depth: np.ndarray) -> np.ndarray:
        floating = np.issubdtype(np.asarray(depth).dtype, np.floating)
        out = cv2.remap(depth, self.map_x, self.map_y, cv2.INTER_NEAREST,
                        borderMode=cv2.BORDER_CONSTANT, borderValue=float("nan") if floating else 0)
        if self.depth_scale is None:
            return out
        if floating:
            return (out * self.depth_scale).astype(out.dtype)
        # integer millimetres (16UC1): 0 stays "no depth"
        top = np.iinfo(out.dtype).max
        return np.clip(np.rint(out * self.depth_scale), 0, top).astype(out.dtype)


def _raw_camera(k, d, size: Tuple[int, int], check_k: bool = True):
    """CameraInfo k and d of raw frames → (K [3,3], D [n]); CalibrationError if unusable."""
    K = np.asarray(k, np.float64).reshape(3, 3)
    D = np.asarray(d, np.float64).reshape(-1)
    if not np.all(np.isfinite(D)):
        raise CalibrationError(f"distortion D holds non-finite values {D.tolist()}")
    if check_k:
        PinholeCamera.from_K(K, size)
    return K, D


def camera_from_info(k: Sequence[float], d: Sequence[float], p: Optional[Sequence[float]],
                     size: Tuple[int, int], distortion_model: str = "plumb_bob",
                     frames_are_raw: bool = True,
                     r: Optional[Sequence[float]] = None) -> Tuple[PinholeCamera, Optional[Undistorter]]:
    """A mono / RGB-D CameraInfo → (the camera the odometry works in, undistorter or None).

    * frames already rectified (``frames_are_raw`` false, image_proc's ``image_rect``):
      the camera of ``p[:3,:3]`` (``k`` when ``p`` is unset), no undistorter — ``k``
      and ``d`` describe the raw frames, not these;
    * raw frames (a driver's ``image_raw``) of an ideal camera (``d`` empty or all zero,
      no rectification rotation): ``k``, frames as they come;
    * raw frames of a distorted camera: the camera of ``p[:3,:3]`` and an
      :class:`Undistorter` into it.

    ``p`` None (or all zero): undistort into the camera ``k`` itself.  ``r``: the
    rectification rotation (identity when unset, as for a mono camera; depth is
    then re-measured along the rectified optical axis).  Raises
    :class:`CalibrationError` for an unusable K / P or a distortion model OpenCV
    cannot undo.
    """
    K, D = _raw_camera(k, d, size, check_k=frames_are_raw)
    P = np.zeros(0) if p is None else np.asarray(p, np.float64).reshape(-1)
    Kp = P.reshape(3, 4)[:, :3] if P.size == 12 and np.any(P) else K
    R = _rectification(r)
    if not frames_are_raw:
        return PinholeCamera.from_K(Kp, size), None
    if not np.any(D) and np.allclose(R, np.eye(3)):
        return PinholeCamera.from_K(K, size), None
    camera = PinholeCamera.from_K(Kp, size)
    return camera, undistorter_into(camera, K, D, R, size, distortion_model)


def undistorter_into(camera: PinholeCamera, K: np.ndarray, D: np.ndarray, R: np.ndarray,
                     size: Tuple[int, int], distortion_model: str = "plumb_bob") -> Undistorter:
    """The :class:`Undistorter` from raw frames of (K [3,3], D, model) through the
    rectification rotation R [3,3] into ``camera`` — image_proc's remap, for one camera
    of a stereo pair too."""
    D = np.asarray(D, np.float64).reshape(-1)
    wh = tuple(int(v) for v in size)
    if distortion_model in ("plumb_bob", "rational_polynomial"):
        mx, my = cv2.initUndistortRectifyMap(K, D if D.size else np.zeros(5), R, camera.K, wh,
                                             cv2.CV_32FC1)
    elif distortion_model == "equidistant":
        D4 = np.zeros(4)
        D4[:min(4, D.size)] = D[:4]
        mx, my = cv2.fisheye.initUndistortRectifyMap(K, D4, R, camera.K, wh, cv2.CV_32FC1)
    else:
        raise CalibrationError(
            f"distortion model {distortion_model!r} cannot be undone here ({', '.join(DISTORTION_MODELS)} "
            "can): feed rectified frames (image_proc's image_rect) and set undistort false")
    return Undistorter(camera, mx, my, np.asarray(R, np.float64))


def _rectification(r: Optional[Sequence[float]]) -> np.ndarray:
    """CameraInfo r → R [3,3]; unset (None or all zero, as for a mono camera): identity."""
    return np.eye(3) if r is None or not np.any(r) else np.asarray(r, np.float64).reshape(3, 3)


def stereo_rectifiers(infos, size: Tuple[int, int]) -> Tuple[StereoRig, Tuple[Undistorter, Undistorter]]:
    """A raw stereo pair's two CameraInfos (k, d, r, p each) → (the rectified rig of the two
    p, the remap of each camera into it): image_proc's stereo rectification."""
    rig = StereoRig.from_projections(infos[0].p, infos[1].p, size)
    maps = []
    for info in infos:
        K, D = _raw_camera(info.k, info.d, size)
        P = np.asarray(info.p, np.float64).reshape(3, 4)
        maps.append(undistorter_into(PinholeCamera.from_K(P[:, :3], size), K, D,
                                     _rectification(info.r), size,
                                     str(info.distortion_model or "plumb_bob")))
    return rig, (maps[0], maps[1])
