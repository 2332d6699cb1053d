"""Sequences with ground truth for ``goodpoint eval vo``, layout detected from the path.

=============  ===============================================================
kitti          ``image_0/``, ``image_1/``, ``calib.txt`` (P0, P1), ``times.txt``,
               ``poses.txt`` (T_world_cam0, 3×4 row-major) — stereo, rectified
euroc          ``mav0/cam0|cam1/data.csv`` + ``sensor.yaml`` (radtan), ground truth
               CSV/TUM of the body — stereo, rectified here with OpenCV
tum            ``rgb.txt``, ``depth.txt``, ``groundtruth.txt`` — RGB-D (depth
               16-bit PNG, factor 5000) or mono; ``calibration.txt`` ``fx fy cx
               cy [d0..d4]``: distorted frames are undistorted here
bag            a rosbag2 (directory or .mcap/.db3) replayed with
               :mod:`goodpoint_ros.evaluation.bags.replay` — RGB-D or mono
=============  ===============================================================

Every loader returns a :class:`Sequence`: calibration (a rectified
:class:`~goodpoint_ros.odometry.camera.StereoRig` or a
:class:`~goodpoint_ros.odometry.camera.PinholeCamera`), frames read lazily,
and the ground-truth optical-camera poses ``T_world_cam`` by frame.
``size`` (W, H) resizes images (INTER_AREA) and scales the calibration.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

import cv2
import numpy as np
import yaml

from goodpoint_ros.core.config import AIRSIM_TOPICS
from goodpoint_ros.core.geometry import inv_T, make_T, quat_to_R
from goodpoint_ros.evaluation.bags.replay import BagError, read_bag
from goodpoint_ros.odometry.camera import CalibrationError, PinholeCamera, StereoRig, camera_from_info

LAYOUTS = ("kitti", "euroc", "tum", "bag")


class DatasetError(ValueError):
    """A path that is not a usable sequence (one line says why)."""


@dataclass
class VOFrame:
    """image: left / colour image; right: right image (stereo) or None; depth:
    metres float32 (NaN = none) or None; T_world_cam: ground truth or None."""
    index: int
    stamp: float
    image: np.ndarray
    right: Optional[np.ndarray] = None
    depth: Optional[np.ndarray] = None
    T_world_cam: Optional[np.ndarray] = None


@dataclass
class Sequence:
    name: str
    layout: str
    modes: Tuple[str, ...]               # what it can run: stereo / rgbd / mono
    size: Tuple[int, int]
    rig: Optional[StereoRig]
    camera: PinholeCamera
    stamps: np.ndarray                   # [N] seconds
    gt: List[Optional[np.ndarray]]       # [N] T_world_cam (4×4) or None
    read: Callable[[int], VOFrame]
    notes: List[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.stamps)

    def frames(self, limit: int = 0) -> Iterator[VOFrame]:
        n = len(self) if not limit else min(limit, len(self))
        for i in range(n):
            yield self.read(i)


def detect_layout(path) -> str:
    """Which loader fits ``path`` (raises :class:`DatasetError` if none)."""
    p = Path(path)
    if not p.exists():
        raise DatasetError(f"{p}: no such file or directory")
    if p.is_file() and p.suffix in (".mcap", ".db3"):
        return "bag"
    if p.is_dir():
        if (p / "image_0").is_dir() and (p / "image_1").is_dir():
            return "kitti"
        if (p / "mav0" / "cam0").is_dir():
            return "euroc"
        if (p / "rgb.txt").is_file():
            return "tum"
        if (p / "metadata.yaml").is_file() or glob.glob(str(p / "*.mcap")) or \
                glob.glob(str(p / "*.db3")):
            return "bag"
    raise DatasetError(f"{p}: not a KITTI (image_0/, image_1/), EuRoC (mav0/cam0/), "
                       "TUM RGB-D (rgb.txt) or rosbag2 layout")


def load_sequence(path, size: Optional[Tuple[int, int]] = None, scale: float = 1.0,
                  **bag_options) -> Sequence:
    """Load any supported layout; ``size`` (W, H) or ``scale`` resizes the images."""
    layout = detect_layout(path)
    loader = {"kitti": load_kitti, "euroc": load_euroc, "tum": load_tum, "bag": load_bag}[layout]
    if layout == "bag":
        return loader(path, size=size, scale=scale, **bag_options)
    return loader(path, size=size, scale=scale)


def _target(native: Tuple[int, int], size, scale) -> Tuple[int, int]:
    if size:
        return int(size[0]), int(size[1])
    if scale != 1.0:
        return int(round(native[0] * scale)), int(round(native[1] * scale))
    return native


def _resize(img: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    if (img.shape[1], img.shape[0]) == tuple(size):
        return img
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def _imread(path: str, flags=cv2.IMREAD_GRAYSCALE) -> np.ndarray:
    img = cv2.imread(path, flags)
    if img is None:
        raise DatasetError(f"cannot read image {path}")
    return img


# --------------------------------------------------------------------------- KITTI

def read_kitti_calib(path) -> Tuple[np.ndarray, np.ndarray]:
    """calib.txt → (P0, P1) 3×4."""
    rows = {}
    try:
        text = Path(path).read_text()
    except OSError:
        raise CalibrationError(f"{path}: missing calibration (calib.txt with P0 and P1)") from None
    for line in text.splitlines():
        if ":" in line:
            key, vals = line.split(":", 1)
            try:
                rows[key.strip()] = np.array([float(v) for v in vals.split()])
            except ValueError:
                continue
    if "P0" not in rows or "P1" not in rows or rows["P0"].size != 12 or rows["P1"].size != 12:
        raise CalibrationError(f"{path}: needs P0 and P1 rows of 12 numbers each")
    return rows["P0"].reshape(3, 4), rows["P1"].reshape(3, 4)


def load_kitti(path, size=None, scale: float = 1.0) -> Sequence:
    p = Path(path)
    left = sorted(glob.glob(str(p / "image_0" / "*.png")))
    right = sorted(glob.glob(str(p / "image_1" / "*.png")))
    if not left or len(left) != len(right):
        raise DatasetError(f"{p}: image_0/ and image_1/ must hold the same number of PNGs "
                           f"({len(left)} vs {len(right)})")
    P0, P1 = read_kitti_calib(p / "calib.txt")
    first = _imread(left[0])
    native = (first.shape[1], first.shape[0])
    target = _target(native, size, scale)
    rig = StereoRig.from_projections(P0, P1, native).scaled(target)
    n = len(left)
    times = p / "times.txt"
    stamps = np.loadtxt(times).reshape(-1)[:n] if times.is_file() else np.arange(n) * 0.1
    if len(stamps) < n:
        raise DatasetError(f"{times}: {len(stamps)} stamps for {n} frames")
    gt: List[Optional[np.ndarray]] = [None] * n
    poses = p / "poses.txt"
    if poses.is_file():
        rows = np.loadtxt(poses).reshape(-1, 12)
        for i in range(min(n, len(rows))):
            gt[i] = np.vstack([rows[i].reshape(3, 4), [0, 0, 0, 1]])

    def read(i: int) -> VOFrame:
        return VOFrame(i, float(stamps[i]), _resize(_imread(left[i]), target),
                       _resize(_imread(right[i]), target), T_world_cam=gt[i])

    return Sequence(p.name, "kitti", ("stereo", "mono"), target, rig, rig.left, stamps, gt, read)


# --------------------------------------------------------------------------- EuRoC

def _read_yaml_opencv(path: Path) -> dict:
    """EuRoC's sensor.yaml (``%YAML:1.0`` header that PyYAML rejects)."""
    text = path.read_text()
    text = "\n".join(line for line in text.splitlines() if not line.startswith("%YAML"))
    return yaml.safe_load(text)


def _euroc_camera(d: Path):
    y = _read_yaml_opencv(d / "sensor.yaml")
    fu, fv, cu, cv = y["intrinsics"]
    K = np.array([[fu, 0, cu], [0, fv, cv], [0, 0, 1]], np.float64)
    D = np.asarray(y.get("distortion_coefficients", [0, 0, 0, 0]), np.float64)
    T_BS = np.asarray(y["T_BS"]["data"], np.float64).reshape(4, 4)
    size = tuple(int(v) for v in y["resolution"])
    return K, D, T_BS, size


def _euroc_index(d: Path):
    rows = []
    for line in (d / "data.csv").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        ns, name = line.split(",")[:2]
        rows.append((int(ns), name.strip()))
    return rows


def _read_tum_poses(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """TUM trajectory → (stamps [N], T [N,4,4])."""
    data = np.loadtxt(path, comments="#").reshape(-1, 8)
    T = np.stack([make_T(quat_to_R(r[4:8]), r[1:4]) for r in data])
    return data[:, 0], T


def _nearest_pose(stamps: np.ndarray, poses: np.ndarray, t: float, tol: float):
    if not len(stamps):
        return None
    i = int(np.argmin(np.abs(stamps - t)))
    return poses[i] if abs(stamps[i] - t) <= tol else None


def load_euroc(path, size=None, scale: float = 1.0) -> Sequence:
    p = Path(path)
    c0, c1 = p / "mav0" / "cam0", p / "mav0" / "cam1"
    for c in (c0, c1):
        if not (c / "sensor.yaml").is_file():
            raise CalibrationError(f"{c}: missing calibration sensor.yaml")
    K0, D0, T_B0, native = _euroc_camera(c0)
    K1, D1, T_B1, _ = _euroc_camera(c1)
    # cam1 from cam0: x1 = R x0 + t
    T_10 = inv_T(T_B1) @ T_B0
    R1, R2, P1, P2, _, _, _ = cv2.stereoRectify(K0, D0, K1, D1, native, T_10[:3, :3],
                                                T_10[:3, 3].reshape(3, 1),
                                                flags=cv2.CALIB_ZERO_DISPARITY, alpha=0)
    maps = [cv2.initUndistortRectifyMap(K0, D0, R1, P1, native, cv2.CV_32FC1),
            cv2.initUndistortRectifyMap(K1, D1, R2, P2, native, cv2.CV_32FC1)]
    target = _target(native, size, scale)
    rig = StereoRig.from_projections(P1, P2, native).scaled(target)
    left, right = _euroc_index(c0), _euroc_index(c1)
    right_by_ns = {ns: name for ns, name in right}
    pairs = [(ns, name, right_by_ns[ns]) for ns, name in left if ns in right_by_ns]
    if not pairs:
        raise DatasetError(f"{p}: no cam0/cam1 images share a timestamp")
    stamps = np.array([ns for ns, _, _ in pairs], np.float64) * 1e-9
    # Ground truth of the body → the rectified left camera: x_rect = R1 x_cam0.
    T_B_rect = T_B0 @ make_T(R1.T, np.zeros(3))
    gt: List[Optional[np.ndarray]] = [None] * len(pairs)
    notes = []
    cands = sorted(glob.glob(str(p / "gt" / "*cam_rate*.tum"))) + \
        sorted(glob.glob(str(p / "gt" / "*.tum"))) + \
        sorted(glob.glob(str(p / "mav0" / "state_groundtruth_estimate0" / "*.tum")))
    if cands:
        gs, gT = _read_tum_poses(Path(cands[0]))
        for i, t in enumerate(stamps):
            T = _nearest_pose(gs, gT, t, 0.01)
            gt[i] = None if T is None else T @ T_B_rect
        notes.append(f"ground truth: {Path(cands[0]).name} (body) · T_BS · R_rect")
    else:
        notes.append("no ground truth found")

    def read(i: int) -> VOFrame:
        ns, a, b = pairs[i]
        la = cv2.remap(_imread(str(c0 / "data" / a)), *maps[0], cv2.INTER_LINEAR)
        rb = cv2.remap(_imread(str(c1 / "data" / b)), *maps[1], cv2.INTER_LINEAR)
        return VOFrame(i, float(stamps[i]), _resize(la, target), _resize(rb, target),
                       T_world_cam=gt[i])

    return Sequence(p.name, "euroc", ("stereo", "mono"), target, rig, rig.left, stamps, gt, read,
                    notes)


# --------------------------------------------------------------------------- TUM RGB-D

#: TUM RGB-D Freiburg default intrinsics (ROS default, fr1/2/3 differ a little).
TUM_K = np.array([[525.0, 0, 319.5], [0, 525.0, 239.5], [0, 0, 1]])
TUM_DEPTH_FACTOR = 5000.0


def _tum_list(path: Path):
    out = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            t, name = line.split()[:2]
            out.append((float(t), name))
    return out


def load_tum(path, size=None, scale: float = 1.0) -> Sequence:
    p = Path(path)
    rgb = _tum_list(p / "rgb.txt")
    depth = _tum_list(p / "depth.txt") if (p / "depth.txt").is_file() else []
    if not rgb:
        raise DatasetError(f"{p}/rgb.txt lists no images")
    first = _imread(str(p / rgb[0][1]), cv2.IMREAD_COLOR)
    native = (first.shape[1], first.shape[0])
    K, D = TUM_K, np.zeros(0)
    # optional: "fx fy cx cy [d0 d1 d2 d3 d4]" on one line (TUM's per-camera table; fr1 / fr2
    # frames are distorted: with d0..d4 they are undistorted here, depth by the nearest pixel)
    calib = p / "calibration.txt"
    notes = []
    if calib.is_file():
        try:
            values = [float(v) for v in calib.read_text().split()]
        except ValueError:
            values = []
        if len(values) not in (4, 9):
            raise DatasetError(f"{calib}: expected 'fx fy cx cy [d0 d1 d2 d3 d4]', "
                               f"got {len(values)} numbers")
        fx, fy, cx, cy = values[:4]
        K, D = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]]), np.array(values[4:])
    else:
        notes.append("no calibration.txt: TUM default intrinsics 525/319.5/239.5")
    target = _target(native, size, scale)
    cam, undistorter = camera_from_info(K.ravel(), D, None, native)    # into K itself
    if undistorter is not None:
        notes.append(f"frames undistorted with d = {D.tolist()}")
    cam = cam.scaled(target)
    dts = np.array([t for t, _ in depth])
    pairs = []
    for t, name in rgb:
        dname = None
        if len(dts):
            j = int(np.argmin(np.abs(dts - t)))
            if abs(dts[j] - t) <= 0.02:
                dname = depth[j][1]
        pairs.append((t, name, dname))
    stamps = np.array([t for t, _, _ in pairs])
    gt: List[Optional[np.ndarray]] = [None] * len(pairs)
    if (p / "groundtruth.txt").is_file():
        gs, gT = _read_tum_poses(p / "groundtruth.txt")
        gt = [_nearest_pose(gs, gT, t, 0.02) for t in stamps]

    def read(i: int) -> VOFrame:
        t, name, dname = pairs[i]
        img = _imread(str(p / name), cv2.IMREAD_COLOR)
        if undistorter is not None:
            img = undistorter.image(img)
        img = _resize(img, target)
        d = None
        if dname is not None:
            raw = cv2.imread(str(p / dname), cv2.IMREAD_UNCHANGED)
            if raw is not None:
                d = raw.astype(np.float32) / TUM_DEPTH_FACTOR
                d[d <= 0] = np.nan
                if undistorter is not None:
                    d = undistorter.depth(d)
                d = cv2.resize(d, target, interpolation=cv2.INTER_NEAREST)
        return VOFrame(i, float(t), img, depth=d, T_world_cam=gt[i])

    return Sequence(p.name, "tum", ("rgbd", "mono"), target, None, cam, stamps, gt, read, notes)


# --------------------------------------------------------------------------- rosbag2

def load_bag(path, size=None, scale: float = 1.0, image_topic: Optional[str] = None,
             camera_info_topic: Optional[str] = None, depth_topic: Optional[str] = None,
             pose_topic: Optional[str] = None, extrinsic: str = "auto",
             max_frames: int = 0) -> Sequence:
    """A rosbag2 through the bag replay (defaults: the AirSim topics of make-sample-bag)."""
    try:
        rep = read_bag(path, image_topic or AIRSIM_TOPICS.image,
                       camera_info_topic or AIRSIM_TOPICS.camera_info,
                       depth_topic or AIRSIM_TOPICS.depth,
                       pose_topic or AIRSIM_TOPICS.pose, extrinsic,
                       eval_size=None, max_frames=max_frames)
    except BagError as exc:
        raise DatasetError(str(exc)) from None
    frames = rep.frames
    if not frames:
        raise DatasetError(f"{path}: no frames")
    native = frames[0].size
    target = _target(native, size, scale)
    # the replay undistorts raw frames of a distorted camera_info into the pinhole K
    cam = PinholeCamera.from_K(frames[0].K, native).scaled(target)
    stamps = np.array([f.stamp for f in frames])
    gt = [f.T_world_cam for f in frames]

    def read(i: int) -> VOFrame:
        f = frames[i]
        d = None if f.depth is None else cv2.resize(f.depth, target, interpolation=cv2.INTER_NEAREST)
        return VOFrame(i, f.stamp, _resize(f.image, target), depth=d, T_world_cam=gt[i])

    name = os.path.basename(os.path.normpath(str(path)))
    return Sequence(name, "bag", ("rgbd", "mono"), target, None, cam, stamps, gt, read,
                    list(rep.warnings))
