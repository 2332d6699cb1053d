"""Replay a rosbag2 recording as frames with ground truth (ROS-free, via ``rosbags``).

A :class:`Frame` is one camera image with, when the bag has them, its planar
depth, intrinsics and camera pose.  :func:`read_bag` reads ``.db3`` and
``.mcap`` bags with rosbags' ``AnyReader`` and

* associates image and depth by header stamp (nearest within a tolerance);
* interpolates the pose at the image stamp (linear position, slerp rotation)
  from ``nav_msgs/Odometry``, ``geometry_msgs/PoseStamped``,
  ``PoseWithCovarianceStamped`` or ``TransformStamped`` messages;
* turns the vehicle pose into the camera's optical pose with an extrinsic:
  ``tf_static`` (the bag's static transform from the body frame to the
  image's ``frame_id``), ``airsim`` (the AirSim mount, a pure axis rotation
  p_body(FRD) = (z, x, y)_optical) or ``optical`` (the pose topic already is
  the camera's optical pose); ``auto`` takes tf_static when it has the chain;
* resizes every image to the evaluation size, depth by nearest neighbour (no
  blending across depth edges), and scales K with the core's pixel-centre
  convention ``x' = (x + 0.5)·s − 0.5``.

Poses are 4×4 matrices ``T_world_cam`` mapping optical-camera coordinates
(x right, y down, z forward) to world coordinates.  Every failure a user can
cause raises :class:`BagError` with one readable line.
"""
from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Deque, Dict, Iterator, List, Optional, Tuple

import cv2
import numpy as np

from goodpoint_ros.core import image_msgs
from goodpoint_ros.core.geometry import quat_to_R
from goodpoint_ros.core.image_msgs import UnsupportedEncoding, decode_compressed, to_uint8
from goodpoint_ros.odometry.camera import CalibrationError, Undistorter, camera_from_info

#: AirSim's camera mount: p_body(FRD) = R · p_optical, i.e. p_body = (z, x, y)_optical.
R_BODY_OPTICAL = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])

EXTRINSICS = ("auto", "tf_static", "airsim", "optical")

POSE_TYPES = ("nav_msgs/msg/Odometry", "geometry_msgs/msg/PoseStamped",
              "geometry_msgs/msg/PoseWithCovarianceStamped", "geometry_msgs/msg/TransformStamped",
              "tf2_msgs/msg/TFMessage")
TF = "tf2_msgs/msg/TFMessage"
TRANSFORM = "geometry_msgs/msg/TransformStamped"

DEPTH_ENCODINGS = ("32FC1", "16UC1")


class BagError(ValueError):
    """A bag the evaluator cannot use; the message says why in one line."""


@dataclass
class Frame:
    """One image with its ground truth, at the evaluation size.

    image: uint8 [H,W] or [H,W,3] (BGR); depth: float32 [H,W] metres with NaN
    where invalid, or None; K: 3×3 at this size; dist: distortion
    coefficients (of ``distortion_model``); T_world_cam: 4×4 optical camera → world, or None.
    """
    index: int
    stamp: float
    image: np.ndarray
    K: np.ndarray
    dist: np.ndarray
    depth: Optional[np.ndarray] = None
    T_world_cam: Optional[np.ndarray] = None
    distortion_model: str = "plumb_bob"

    @property
    def size(self) -> Tuple[int, int]:
        return self.image.shape[1], self.image.shape[0]


@dataclass
class Replay:
    """What :func:`read_bag` found: frames, and how many lack ground truth and why."""
    frames: List[Frame]
    extrinsic: str
    topics: Dict[str, str]
    incomplete: Dict[str, int] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)
    native_size: Optional[Tuple[int, int]] = None


# --------------------------------------------------------------------------- rotations

#: Quaternion (x, y, z, w) → 3×3 rotation (normalised first): the one geometry module's.
quat_to_matrix = quat_to_R


def slerp(q0, q1, f: float) -> np.ndarray:
    """Spherical interpolation of unit quaternions (x, y, z, w), f ∈ [0, 1]."""
    q0, q1 = np.asarray(q0, np.float64), np.asarray(q1, np.float64)
    q0, q1 = q0 / np.linalg.norm(q0), q1 / np.linalg.norm(q1)
    d = float(q0 @ q1)
    if d < 0:                      # the shorter way round
        q1, d = -q1, -d
    if d > 0.9995:
        q = q0 + f * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(d)
    return (np.sin((1 - f) * theta) * q0 + np.sin(f * theta) * q1) / np.sin(theta)


def make_pose(position, quat) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = quat_to_matrix(quat)
    T[:3, 3] = position
    return T


@dataclass
class PoseTrack:
    """Time-sorted poses: stamps [N] (s), positions [N,3], quaternions [N,4] (x,y,z,w)."""
    stamps: np.ndarray
    positions: np.ndarray
    quats: np.ndarray
    frame_id: str = ""
    child_frame_id: str = ""

    def at(self, t: float, tolerance: float) -> Optional[np.ndarray]:
        """4×4 pose interpolated at t, or None when no pose lies within ``tolerance``.

        Between two poses at most 2·tolerance apart: interpolated; within
        ``tolerance`` of the first or last pose: that pose.
        """
        s = self.stamps
        if len(s) == 0:
            return None
        j = int(np.searchsorted(s, t))
        if j < len(s) and abs(s[j] - t) < 1e-9:
            return make_pose(self.positions[j], self.quats[j])
        if 0 < j < len(s):
            t0, t1 = s[j - 1], s[j]
            if t1 - t0 <= 2 * tolerance:
                f = (t - t0) / (t1 - t0)
                p = (1 - f) * self.positions[j - 1] + f * self.positions[j]
                return make_pose(p, slerp(self.quats[j - 1], self.quats[j], f))
        k = int(np.argmin(np.abs(s - t)))
        if abs(s[k] - t) <= tolerance:
            return make_pose(self.positions[k], self.quats[k])
        return None


# --------------------------------------------------------------------------- decoding

def _stamp(msg, fallback_ns: int) -> float:
    h = getattr(msg, "header", None)
    if h is not None and (h.stamp.sec or h.stamp.nanosec):
        return h.stamp.sec + h.stamp.nanosec * 1e-9
    return fallback_ns * 1e-9


def decode_image(msg, topic: str) -> np.ndarray:
    """sensor_msgs Image/CompressedImage (a rosbags message) → numpy ([H,W] or [H,W,C]).

    The node's decoder (:mod:`goodpoint_ros.core.image_msgs`: ~30 encodings incl.
    Bayer and YUV, ``step`` padding, big-endian): a bag the node reads, the replay
    reads.  Its one-line reason becomes a :class:`BagError` naming the topic.
    """
    try:
        if hasattr(msg, "format"):                     # CompressedImage
            return decode_compressed(msg.format, msg.data)
        return image_msgs.decode_image(msg.encoding, msg.height, msg.width, msg.step,
                                       bool(msg.is_bigendian), msg.data)
    except UnsupportedEncoding as exc:
        raise BagError(f"{topic}: {exc}") from None


def decode_depth(msg, topic: str) -> np.ndarray:
    """Depth Image → float32 metres, NaN where invalid (NaN, ±inf, ≤ 0).

    32FC1 is metres (AirSim DepthPlanar); 16UC1 is millimetres (OpenNI / RealSense).
    """
    if hasattr(msg, "format"):
        raise BagError(f"{topic}: compressed depth is not supported (use a raw 32FC1 topic)")
    if msg.encoding not in DEPTH_ENCODINGS:
        raise BagError(f"{topic}: depth encoding {msg.encoding!r} is not supported "
                       f"(expected {' or '.join(DEPTH_ENCODINGS)})")
    d = decode_image(msg, topic).astype(np.float32)
    if msg.encoding == "16UC1":
        d *= 0.001
    d[~np.isfinite(d) | (d <= 0)] = np.nan
    return d


def scale_intrinsics(K: np.ndarray, native: Tuple[int, int], target: Tuple[int, int]) -> np.ndarray:
    """K of a W×H image resized to W'×H' (pixel centres at integers)."""
    sx, sy = target[0] / native[0], target[1] / native[1]
    S = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
    return S @ K


# --------------------------------------------------------------------------- reading

def _pose_from_msg(msg, msgtype: str):
    """→ (position (3,), quat (4,), frame_id, child_frame_id)."""
    if msgtype == "geometry_msgs/msg/TransformStamped":
        tr = msg.transform
        return ((tr.translation.x, tr.translation.y, tr.translation.z),
                (tr.rotation.x, tr.rotation.y, tr.rotation.z, tr.rotation.w),
                msg.header.frame_id, msg.child_frame_id)
    pose = msg.pose.pose if msgtype in ("nav_msgs/msg/Odometry",
                                        "geometry_msgs/msg/PoseWithCovarianceStamped") else msg.pose
    child = getattr(msg, "child_frame_id", "")
    p, o = pose.position, pose.orientation
    return (p.x, p.y, p.z), (o.x, o.y, o.z, o.w), msg.header.frame_id, child


def static_chain(edges: Dict[Tuple[str, str], np.ndarray], src: str, dst: str) -> Optional[np.ndarray]:
    """T_src_dst through static transforms (parent, child) → T_parent_child, or None.

    Edges may be walked either way (the inverse for child → parent).
    """
    graph: Dict[str, List[Tuple[str, np.ndarray]]] = {}
    for (parent, child), T in edges.items():
        graph.setdefault(parent, []).append((child, T))
        graph.setdefault(child, []).append((parent, np.linalg.inv(T)))
    best = {src: np.eye(4)}
    queue = [src]
    while queue:
        node = queue.pop(0)
        if node == dst:
            return best[node]
        for nxt, T in graph.get(node, []):
            if nxt not in best:
                best[nxt] = best[node] @ T
                queue.append(nxt)
    return None


def _topic_list(reader) -> str:
    return ", ".join(f"{c.topic} [{c.msgtype}]" for c in
                     sorted({c.topic: c for c in reader.connections}.values(), key=lambda c: c.topic))


def _nearest(stamps: np.ndarray, t: float) -> Tuple[int, float]:
    j = int(np.searchsorted(stamps, t))
    cand = [k for k in (j - 1, j) if 0 <= k < len(stamps)]
    k = min(cand, key=lambda k: abs(stamps[k] - t))
    return k, abs(stamps[k] - t)


def read_bag(path, image_topic: str, camera_info_topic: str, depth_topic: Optional[str] = None,
             pose_topic: Optional[str] = None, extrinsic: str = "auto",
             eval_size: Optional[Tuple[int, int]] = (320, 240), sync_tolerance: float = 0.02,
             pose_tolerance: float = 0.1, require_pose: bool = True,
             max_frames: int = 0, undistort: bool = True) -> Replay:
    """Read a whole bag into a list of :class:`Frame` s (see :class:`BagStream`)."""
    with BagStream(path, image_topic, camera_info_topic, depth_topic, pose_topic, extrinsic,
                   eval_size, sync_tolerance, pose_tolerance, require_pose, max_frames,
                   undistort) as stream:
        frames = list(stream)
        return Replay(frames, stream.extrinsic, stream.topics, dict(stream.incomplete),
                      list(stream.warnings), stream.native_size)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _damage_hint(path: Path, exc: BaseException) -> str:
    """What to do about a bag that does not open: a truncated MCAP (a recording cut by
    power loss has no summary and no end magic, which rosbags needs) can be repaired."""
    files = [path] if path.is_file() else sorted(path.glob("*.mcap")) if path.is_dir() else []
    if "magic" in str(exc).lower() and any(f.suffix == ".mcap" for f in files):
        mcap = next(f for f in files if f.suffix == ".mcap")
        return (f"the MCAP file is truncated, e.g. an interrupted recording; recover its readable "
                f"messages with `mcap recover {mcap} -o recovered.mcap` (the mcap CLI) and "
                "evaluate that file")
    return "corrupt, truncated or not a rosbag2?"


def _connections(reader, topic: str, what: str, required: bool, types=None, hint: str = ""):
    conns = [c for c in reader.connections if c.topic == topic]
    if not conns:
        if required:
            raise BagError(f"{what} topic {topic} is not in the bag{hint}; topics: "
                           f"{_topic_list(reader)}")
        return []
    if types:
        bad = [c.msgtype for c in conns if c.msgtype not in types]
        if bad:
            raise BagError(f"{what} topic {topic} has type {bad[0]}; expected one of "
                           f"{', '.join(types)}")
    return conns


@dataclass
class BagTopics:
    """The connections a replay reads, checked: image, camera_info, depth (or none),
    pose (or none), /tf_static; ``topics`` as echoed in the settings."""
    image: list
    info: list
    depth: list
    pose: list
    tf_static: list
    pose_topic: Optional[str]
    topics: Dict[str, str]
    warnings: List[str]


def validate_topics(reader, image_topic: str, info_topic: str, depth_topic: Optional[str],
                    pose_topic: Optional[str], require_pose: bool) -> BagTopics:
    """Check the topics exist with usable types and messages (:class:`BagError` naming
    the topic otherwise); a robot bag without the pose topic falls back to /tf."""
    warnings: List[str] = []
    img_c = _connections(reader, image_topic, "image", True,
                         ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"))
    info_c = _connections(reader, info_topic, "camera_info", True, ("sensor_msgs/msg/CameraInfo",))
    depth_c = _connections(reader, depth_topic, "depth", True, ("sensor_msgs/msg/Image",),
                           " (set --depth-topic, or --no-depth for a bag without depth)") \
        if depth_topic else []
    pose_c = _connections(reader, pose_topic, "pose", require_pose, POSE_TYPES,
                          " (set --pose-topic, or --no-depth)") if pose_topic else []
    if not pose_c and not require_pose:
        # A robot bag: no odometry topic by that name, but maybe the /tf tree.
        pose_c = [c for c in reader.connections if c.topic == "/tf" and c.msgtype == TF]
        if pose_c:
            warnings.append(f"pose topic {pose_topic} not in the bag: using /tf")
            pose_topic = "/tf"
    tf_c = [c for c in reader.connections if c.topic == "/tf_static" and c.msgtype == TF]
    topics = {"image": image_topic, "camera_info": info_topic}
    if depth_c:
        topics["depth"] = depth_topic
    if pose_c:
        topics["pose"] = pose_topic
    if sum(c.msgcount for c in img_c) == 0:
        raise BagError(f"image topic {image_topic} has no messages")
    if depth_c and sum(c.msgcount for c in depth_c) == 0:
        raise BagError(f"depth topic {depth_topic} has no messages")
    return BagTopics(img_c, info_c, depth_c, pose_c, tf_c, pose_topic, topics, warnings)


def read_pose_source(reader, t: BagTopics, path):
    """The small topics, read once at opening: → (first camera_info or None, poses
    [(stamp, position, quat)], their (frame_id, child_frame_id), dynamic /tf
    transforms by (parent, child), static transforms T_parent_child, the first
    image message)."""
    info = None
    poses: List[Tuple[float, tuple, tuple]] = []
    pose_frames = ("", "")
    dynamic: Dict[Tuple[str, str], List[Tuple[float, tuple, tuple]]] = {}
    static: Dict[Tuple[str, str], np.ndarray] = {}
    try:
        for conn, ns, raw in reader.messages(connections=t.info + t.pose + t.tf_static):
            msg = reader.deserialize(raw, conn.msgtype)
            if conn in t.info:
                info = info if info is not None else msg
            elif conn in t.tf_static:
                for tr in msg.transforms:
                    pos, q, parent, child = _pose_from_msg(tr, TRANSFORM)
                    static[(parent, child)] = make_pose(pos, q)
            elif conn.msgtype == TF:
                for tr in msg.transforms:
                    pos, q, parent, child = _pose_from_msg(tr, TRANSFORM)
                    dynamic.setdefault((parent, child), []).append((_stamp(tr, ns), pos, q))
            else:
                pos, q, parent, child = _pose_from_msg(msg, conn.msgtype)
                poses.append((_stamp(msg, ns), pos, q))
                pose_frames = (parent, child)
        first = None
        for conn, ns, raw in reader.messages(connections=t.image):
            first = reader.deserialize(raw, conn.msgtype)
            break
    except BagError:
        raise
    except Exception as exc:
        raise BagError(f"cannot read bag {path}: {_one_line(exc)} (corrupt or "
                       "truncated?)") from None
    return info, poses, pose_frames, dynamic, static, first


class FrameNumbers:
    """A frame's number in the recording, from its stamp.

    One more than the last frame's, or more when the stamps jump by whole frame
    periods (images lost in a damaged bag), so that pair i-(i+shift) always spans
    ``shift`` recorded frames.  The period is the median of the earlier stamp
    steps (at least two of them; a jump is not counted as a step).
    """

    def __init__(self):
        self.last: Optional[Tuple[int, float]] = None     # (number, stamp) of the last frame
        self.steps: List[float] = []

    def number(self, t: float) -> Tuple[int, Optional[str]]:
        """→ (number, warning or None) for the frame at stamp ``t``."""
        if self.last is None:
            self.last = (0, t)
            return 0, None
        dt, skip, warning = t - self.last[1], 1, None
        if len(self.steps) >= 2 and dt > 0:
            period = float(np.median(self.steps))
            skip = max(1, int(round(dt / period))) if period > 0 else 1
        if skip > 1:
            warning = (f"stamps jump by {dt:.3f} s after frame {self.last[0]} ({skip - 1} "
                       "frame(s) missing); frames keep their numbers, pairs with a missing "
                       "frame are skipped")
        else:
            self.steps.append(dt)
        self.last = (self.last[0] + skip, t)
        return self.last[0], warning


class BagStream:
    """A bag's frames, decoded lazily in stamp order: memory holds a few frames, not the bag.

    Opening checks the topics and reads the small ones — camera_info, the
    poses, ``/tf_static`` and the first image's header — so a bag that cannot
    work fails at once with a :class:`BagError`.  Iterating decodes image and
    depth messages one at a time, pairs each image with the depth of nearest
    stamp (once a later depth shows none can come closer; stamps are assumed
    to grow per topic, as a recorder writes them), attaches the interpolated
    camera pose and yields :class:`Frame` s.  A frame without its depth or
    pose is still yielded (so indices keep their time spacing) with that
    field None, and counted in ``incomplete``; if no frame is complete, the
    end of the iteration raises a :class:`BagError` saying why.

    ``depth_topic`` None: no depth (robot-bag mode).  ``require_pose`` False:
    the pose topic may be missing (``/tf`` is then used when present, else
    frames get ``T_world_cam = None``).  ``max_frames``: stop after this many
    images (0 = all).  ``undistort``: a camera_info with a non-zero ``d`` means raw
    frames of a distorted lens; they are undistorted (depth by the nearest pixel) into the
    pinhole camera K, and ``Frame.dist`` is empty — false: frames as recorded, with ``d``.
    """

    def __init__(self, path, image_topic: str, camera_info_topic: str,
                 depth_topic: Optional[str] = None, pose_topic: Optional[str] = None,
                 extrinsic: str = "auto", eval_size: Optional[Tuple[int, int]] = (320, 240),
                 sync_tolerance: float = 0.02, pose_tolerance: float = 0.1,
                 require_pose: bool = True, max_frames: int = 0, undistort: bool = True):
        from rosbags.highlevel import AnyReader  # lazy: rosbags costs ~0.15 s at import
        from rosbags.typesys import Stores, get_typestore

        if extrinsic not in EXTRINSICS:
            raise BagError(f"unknown extrinsic {extrinsic!r} (choose from {', '.join(EXTRINSICS)})")
        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"bag not found: {self.path}")
        if self.path.is_dir() and not (self.path / "metadata.yaml").is_file():
            files = sorted(f.name for f in self.path.iterdir() if f.suffix in (".mcap", ".db3"))
            hint = (f"; pass the file itself: {self.path / files[0]}" if len(files) == 1 else
                    f"; pass one of its files: {', '.join(files[:3])}" if files else "")
            raise BagError(f"{self.path} is not a rosbag2 folder (no metadata.yaml in it{hint})")
        self.image_topic, self.info_topic = image_topic, camera_info_topic
        self.depth_topic, self.pose_topic = depth_topic, pose_topic
        self.extrinsic = extrinsic
        self.target = tuple(eval_size) if eval_size else None
        self.sync_tol, self.pose_tol = float(sync_tolerance), float(pose_tolerance)
        self.max_frames = int(max_frames or 0)
        self.undistort = bool(undistort)
        self.incomplete: Counter = Counter()      # frames without ground truth, by reason
        self.complete = 0
        self.warnings: List[str] = []
        self.topics: Dict[str, str] = {}
        self.native_size: Optional[Tuple[int, int]] = None
        self.frames_read = 0
        self.K = np.eye(3)
        self.dist = np.zeros(0)
        self.distortion_model = "plumb_bob"
        self.undistorter: Optional[Undistorter] = None
        self.track: Optional[PoseTrack] = None
        self.T_pose_cam = np.eye(4)
        # A directory or a bare .mcap/.db3 file: AnyReader takes either.
        try:
            self.reader = AnyReader([self.path],
                                    default_typestore=get_typestore(Stores.ROS2_HUMBLE))
            self.reader.open()
        except Exception as exc:  # rosbags raises several types for a damaged bag
            raise BagError(f"cannot open bag {self.path}: {_one_line(exc)} "
                           f"({_damage_hint(self.path, exc)})") from None
        try:
            self._scan(require_pose)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ context
    def close(self) -> None:
        try:
            self.reader.close()
        except Exception:
            pass

    def __enter__(self) -> "BagStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ opening
    def _scan(self, require_pose: bool) -> None:
        """Topics, intrinsics, poses and extrinsic: everything but the images themselves."""
        reader = self.reader
        t = validate_topics(reader, self.image_topic, self.info_topic, self.depth_topic,
                            self.pose_topic, require_pose)
        self.img_c, self.depth_c, self.topics, self.pose_topic = t.image, t.depth, t.topics, t.pose_topic
        pose_c, tf_c = t.pose, t.tf_static
        self.warnings += t.warnings
        info, poses, pose_frames, dynamic, static, first = read_pose_source(reader, t, self.path)
        if info is None:
            raise BagError(f"camera_info topic {self.info_topic} has no messages")
        img0 = decode_image(first, self.image_topic)
        self.native_size = (img0.shape[1], img0.shape[0])
        image_frame = first.header.frame_id
        self._intrinsics(info)
        if dynamic:
            poses, pose_frames = _tf_track(dynamic, static, image_frame)
        self.T_pose_cam = _extrinsic(self, self.extrinsic, static, pose_frames, image_frame,
                                     bool(pose_c))
        if poses:
            poses.sort(key=lambda p: p[0])
            self.track = PoseTrack(np.array([p[0] for p in poses]),
                                   np.array([p[1] for p in poses]),
                                   np.array([p[2] for p in poses]), *pose_frames)
        elif require_pose and pose_c:
            if any(c in tf_c for c in pose_c):
                n = sum(c.msgcount for c in pose_c)
                raise BagError(f"pose topic {self.pose_topic} holds only static transforms ({n} "
                               "TFMessage, nothing that moves): pass the moving pose, e.g. an "
                               "Odometry / PoseStamped topic or /tf")
            raise BagError(f"pose topic {self.pose_topic} has no messages")

    def _intrinsics(self, info) -> None:
        K = np.array(info.k, np.float64).reshape(3, 3)
        if K[0, 0] <= 0 or K[1, 1] <= 0:
            raise BagError(f"{self.info_topic}: K has no focal length ({K[0, 0]}, {K[1, 1]}): "
                           "the camera is not calibrated")
        native = self.native_size
        info_size = (int(info.width), int(info.height)) if info.width and info.height else native
        if info_size != native:
            self.warnings.append(f"camera_info is for {info_size[0]}x{info_size[1]} but images "
                                 f"are {native[0]}x{native[1]}: K scaled to the images")
            K = scale_intrinsics(K, info_size, native)
        if self.target:
            K = scale_intrinsics(K, native, self.target)
        self.K = K
        self.dist = np.array(info.d, np.float64) if len(info.d) else np.zeros(0)
        self.distortion_model = str(info.distortion_model or "plumb_bob")
        if self.undistort and np.any(self.dist):
            # Raw frames of a distorted lens: undistorted here into the pinhole camera K, so
            # every consumer (depth warps, pose checks, the VO) sees pinhole frames.
            try:
                _, self.undistorter = camera_from_info(
                    K.ravel(), self.dist, None,
                    self.target or native, self.distortion_model)
            except CalibrationError as exc:
                raise BagError(f"{self.info_topic}: {exc}") from None
            self.warnings.append(f"camera_info has {self.distortion_model} distortion "
                                 f"d = {self.dist.tolist()}: frames and depth are undistorted")
            self.dist = np.zeros(0)

    # ------------------------------------------------------------------ iterating
    def _fit(self, img: np.ndarray, interpolation: int, topic: str) -> np.ndarray:
        size = (img.shape[1], img.shape[0])
        if size != self.native_size:
            raise BagError(f"{topic}: image size {size[0]}x{size[1]} differs from the first "
                           f"image's {self.native_size[0]}x{self.native_size[1]}")
        if self.target and size != self.target:
            img = cv2.resize(img, self.target, interpolation=interpolation)
        return img

    def __iter__(self) -> Iterator[Frame]:
        reader = self.reader
        self.frames_read = 0                   # a second pass starts over
        self.complete = 0
        self._numbers = FrameNumbers()
        self.incomplete.clear()
        pending: Deque[Tuple[float, np.ndarray]] = deque()      # images waiting for depth
        depths: Deque[Tuple[float, np.ndarray]] = deque()
        seen = {"images": 0, "depths": 0, "valid_depths": 0, "img_t": [], "depth_t": []}
        last_image_t = -np.inf
        try:
            for conn, ns, raw in reader.messages(connections=self.img_c + self.depth_c):
                msg = reader.deserialize(raw, conn.msgtype)
                t = _stamp(msg, ns)
                if conn in self.img_c:
                    if self.max_frames and seen["images"] >= self.max_frames:
                        if not self.depth_c or (depths and depths[-1][0] > last_image_t
                                                + self.sync_tol):
                            break
                        continue
                    img = self._fit(to_uint8(decode_image(msg, conn.topic)), cv2.INTER_AREA,
                                    conn.topic)
                    pending.append((t, img))
                    seen["images"] += 1
                    _extend_range(seen["img_t"], t)
                    last_image_t = max(last_image_t, t)
                else:
                    d = decode_depth(msg, conn.topic)
                    if (d.shape[1], d.shape[0]) != self.native_size:
                        raise BagError(f"{conn.topic}: depth is {d.shape[1]}x{d.shape[0]} but "
                                       f"images are {self.native_size[0]}x{self.native_size[1]}")
                    if self.target and (d.shape[1], d.shape[0]) != self.target:
                        d = cv2.resize(d, self.target, interpolation=cv2.INTER_NEAREST)
                    depths.append((t, d))
                    seen["depths"] += 1
                    seen["valid_depths"] += bool(np.isfinite(d).any())
                    _extend_range(seen["depth_t"], t)
                yield from self._finalise(pending, depths, last_image_t, final=False)
        except BagError:
            raise
        except Exception as exc:
            if seen["images"] < 2:
                raise BagError(f"cannot read bag {self.path}: {_one_line(exc)} (corrupt or "
                               "truncated?)") from None
            self.warnings.append(f"bag is damaged after {seen['images']} images "
                                 f"({_one_line(exc)}); evaluated what was read")
            self.warnings.append("the frames after the damage are missing")
        yield from self._finalise(pending, depths, last_image_t, final=True)
        self._check_counts(seen)
        if self.frames_read == 0 or (self.depth_c and self.complete == 0):
            raise self._why_nothing(seen)
        if self.track is not None and self.complete == 0:
            self.warnings.append(f"no image stamp lies within the pose stamps of "
                                 f"{self.pose_topic}: no pose errors")

    def _finalise(self, pending, depths, last_image_t: float, final: bool) -> Iterator[Frame]:
        """Emit the pending images whose depth partner is settled."""
        while pending:
            t, img = pending[0]
            if self.depth_c and not final and not (depths and depths[-1][0] >= t + self.sync_tol):
                break                   # a closer depth may still come
            pending.popleft()
            yield self._complete(t, img, depths)
        # Depth older than every image still to come is never needed again.
        horizon = (pending[0][0] if pending else last_image_t) - self.sync_tol
        while len(depths) > 1 and depths[0][0] < horizon and depths[1][0] <= horizon:
            depths.popleft()

    def _complete(self, t: float, img: np.ndarray, depths) -> Frame:
        """The frame at stamp t with whatever ground truth it has.

        A frame that lacks depth or pose stays in the sequence (so frame i + shift
        is still shift frames later) with ``depth``/``T_world_cam`` None; the
        reason is counted in ``incomplete`` and its pairs are skipped.
        """
        depth, missing = None, None
        if self.depth_c:
            k, gap = _nearest(np.array([d[0] for d in depths]), t) if depths else (0, np.inf)
            if gap > self.sync_tol:
                missing = "no depth within sync tolerance"
            elif not np.isfinite(depths[k][1]).any():
                missing = "all-invalid depth"
            else:
                depth = depths[k][1]
        T = None
        if self.track is not None:
            Tb = self.track.at(t, self.pose_tol)
            if Tb is None:
                missing = missing or "no pose within tolerance"
            else:
                T = Tb @ self.T_pose_cam
        if missing:
            self.incomplete[missing] += 1
        elif self.depth_c or self.track is not None:
            self.complete += 1
        if self.undistorter is not None:
            img = self.undistorter.image(img)
            depth = None if depth is None else self.undistorter.depth(depth)
        frame = Frame(self._frame_number(t), t, img, self.K.copy(), self.dist, depth, T,
                      self.distortion_model)
        self.frames_read += 1
        return frame

    def _frame_number(self, t: float) -> int:
        number, warning = self._numbers.number(t)
        if warning:
            self.warnings.append(f"{self.image_topic}: {warning}")
        return number

    def _check_counts(self, seen) -> None:
        """Warn when fewer images / depth maps were read than the bag's summary lists
        (damaged chunks the reader passed over without an error)."""
        if self.max_frames:
            return
        for what, conns, n in (("image", self.img_c, seen["images"]),
                               ("depth", self.depth_c, seen["depths"])):
            listed = sum(c.msgcount for c in conns)
            if conns and n < listed:
                self.warnings.append(f"{what} topic {conns[0].topic}: read {n} of {listed} messages "
                                     "the bag's index lists (the bag is damaged)")

    def _why_nothing(self, seen) -> BagError:
        """The one-line reason no frame could be completed."""
        if self.depth_c and seen["depths"] and seen["valid_depths"] == 0:
            return BagError(f"depth topic {self.depth_topic}: every depth map is invalid "
                            "(NaN, inf or 0 everywhere)")
        if self.incomplete.get("no depth within sync tolerance"):
            (i0, i1), (d0, d1) = seen["img_t"] or (0, 0), seen["depth_t"] or (0, 0)
            return BagError(f"no image of {self.image_topic} has a depth map of "
                            f"{self.depth_topic} within {self.sync_tol} s (image stamps "
                            f"{i0:.3f}–{i1:.3f}, depth stamps {d0:.3f}–{d1:.3f}); raise "
                            "--sync-tolerance?")
        if self.incomplete.get("no pose within tolerance") and self.track is not None:
            i0, i1 = seen["img_t"] or (0, 0)
            return BagError(f"no image stamp lies within the pose stamps of {self.pose_topic} "
                            f"({self.track.stamps[0]:.3f}–{self.track.stamps[-1]:.3f}, images "
                            f"{i0:.3f}–{i1:.3f}); raise --pose-tolerance?")
        return BagError(f"no usable frame in {self.path} (without ground truth: "
                        f"{dict(self.incomplete)})")


def _extend_range(rng: list, t: float) -> None:
    """Keep [min, max] of the stamps seen in a two-element list."""
    if not rng:
        rng.extend([t, t])
    else:
        rng[0], rng[1] = min(rng[0], t), max(rng[1], t)


def _tf_track(dynamic, static, image_frame: str):
    """From /tf: the moving transform (parent → F) whose child F reaches the image frame
    through static transforms (the odometry of the robot carrying the camera)."""
    best = None
    for (parent, child), msgs in dynamic.items():
        if child == image_frame or static_chain(static, child, image_frame) is not None:
            if best is None or len(msgs) > len(dynamic[best]):
                best = (parent, child)
    if best is None:
        have = ", ".join(f"{p}→{c}" for p, c in dynamic) or "none"
        raise BagError(f"/tf has no transform that reaches the image frame {image_frame!r} "
                       f"through /tf_static (moving transforms: {have})")
    return dynamic[best], best


def _extrinsic(owner, extrinsic: str, static, pose_frames, image_frame: str,
               have_pose: bool) -> np.ndarray:
    """4×4 T_pose_cam: optical camera in the frame the pose topic describes."""
    T_air = np.eye(4)
    T_air[:3, :3] = R_BODY_OPTICAL
    if not have_pose:
        owner.extrinsic = "none"
        return np.eye(4)
    _, body = pose_frames
    if extrinsic == "optical":
        return np.eye(4)
    if extrinsic == "airsim":
        return T_air
    chain = None
    if body and body == image_frame:
        chain = np.eye(4)
    elif static:
        if body:
            chain = static_chain(static, body, image_frame)
        else:                                   # PoseStamped: no child frame; use the tree's root
            children = {c for _, c in static}
            roots = [p for p, _ in static if p not in children]
            for root in roots:
                chain = static_chain(static, root, image_frame)
                if chain is not None:
                    break
    if extrinsic == "tf_static":
        if chain is None:
            have = ", ".join(f"{p}→{c}" for p, c in static) or "none"
            raise BagError(f"--extrinsic tf_static: no /tf_static chain from body frame "
                           f"{body or '?'} to image frame {image_frame!r} (static transforms: "
                           f"{have})")
        owner.extrinsic = "tf_static"
        return chain
    if chain is not None:
        owner.extrinsic = "tf_static"
        return chain
    owner.extrinsic = "airsim"
    return T_air
