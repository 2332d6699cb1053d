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

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

#: AirSim's camera mount: p_body(FRD) = R · p_optical, i.e. p_body = (z, x, y)_optical.
R_BODY_OPTICAL = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])

EXTRINSICS = ("auto", "tf_static", "airsim", "optical")

POSE_TYPES = ("nav_msgs/msg/Odometry", "geometry_msgs/msg/PoseStamped",
              "geometry_msgs/msg/PoseWithCovarianceStamped", "geometry_msgs/msg/TransformStamped",
              "tf2_msgs/msg/TFMessage")
TF = "tf2_msgs/msg/TFMessage"

#: Image encodings understood: name → (numpy dtype, channels).
ENCODINGS = {"mono8": ("u1", 1), "8UC1": ("u1", 1), "bgr8": ("u1", 3), "rgb8": ("u1", 3),
             "8UC3": ("u1", 3), "bgra8": ("u1", 4), "rgba8": ("u1", 4), "8UC4": ("u1", 4),
             "mono16": ("u2", 1), "16UC1": ("u2", 1), "32FC1": ("f4", 1)}
DEPTH_ENCODINGS = ("32FC1", "16UC1")


class BagError(ValueError):
    """A bag the evaluator cannot use; the message says why in one line."""


@dataclass
class Frame:
    """One image with its ground truth, at the evaluation size.

    image: uint8 [H,W] or [H,W,3] (BGR); depth: float32 [H,W] metres with NaN
    where invalid, or None; K: 3×3 at this size; dist: distortion
    coefficients; T_world_cam: 4×4 optical camera → world, or None.
    """
    index: int
    stamp: float
    image: np.ndarray
    K: np.ndarray
    dist: np.ndarray
    depth: Optional[np.ndarray] = None
    T_world_cam: Optional[np.ndarray] = None

    @property
    def size(self) -> Tuple[int, int]:
        return self.image.shape[1], self.image.shape[0]


@dataclass
class Replay:
    """What :func:`read_bag` found: frames plus a record of what was dropped and why."""
    frames: List[Frame]
    extrinsic: str
    topics: Dict[str, str]
    dropped: Dict[str, int] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)
    native_size: Optional[Tuple[int, int]] = None


# --------------------------------------------------------------------------- rotations

def quat_to_matrix(q) -> np.ndarray:
    """Quaternion (x, y, z, w) → 3×3 rotation (normalised first)."""
    x, y, z, w = np.asarray(q, np.float64) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


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
    """sensor_msgs Image/CompressedImage → numpy ([H,W] or [H,W,C]), honouring ``step``."""
    if hasattr(msg, "format"):                         # CompressedImage
        img = cv2.imdecode(np.frombuffer(msg.data, np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise BagError(f"{topic}: cannot decode a CompressedImage (format {msg.format!r})")
        return img
    enc = msg.encoding
    if enc not in ENCODINGS:
        raise BagError(f"{topic}: unsupported image encoding {enc!r} "
                       f"(supported: {', '.join(ENCODINGS)}, or CompressedImage)")
    kind, ch = ENCODINGS[enc]
    dtype = np.dtype(kind).newbyteorder(">" if msg.is_bigendian else "<")
    row = msg.width * ch * dtype.itemsize
    data = np.asarray(msg.data, np.uint8)
    if msg.height == 0 or msg.width == 0 or msg.step < row or data.size < msg.step * msg.height:
        raise BagError(f"{topic}: image buffer does not match its header "
                       f"({msg.width}x{msg.height} {enc}, step {msg.step}, {data.size} bytes)")
    rows = data[:msg.step * msg.height].reshape(msg.height, msg.step)[:, :row]
    img = np.ascontiguousarray(rows).view(dtype).astype(dtype.newbyteorder("="))
    img = img.reshape(msg.height, msg.width, ch) if ch > 1 else img.reshape(msg.height, msg.width)
    if enc.startswith("rgb"):
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR if ch == 3 else cv2.COLOR_RGBA2BGRA)
    return img


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Colour or gray → uint8 BGR/gray.  16-bit images are scaled by their maximum."""
    if img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if img.dtype == np.uint8:
        return img
    f = img.astype(np.float32)
    top = float(np.nanmax(f)) if f.size else 0.0
    return np.clip(f * (255.0 / max(top, 1e-6)), 0, 255).astype(np.uint8)


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
             max_frames: int = 0) -> Replay:
    """Read a bag into :class:`Frame` s (see the module docstring).

    ``depth_topic`` None: no depth (robot-bag mode).  ``require_pose`` False:
    a missing pose topic is allowed (frames get ``T_world_cam = None``).
    Frames that cannot be completed (no depth within ``sync_tolerance``, no
    pose, all-invalid depth) are dropped and counted in ``Replay.dropped``.
    """
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    if extrinsic not in EXTRINSICS:
        raise BagError(f"unknown extrinsic {extrinsic!r} (choose from {', '.join(EXTRINSICS)})")
    path = Path(path)
    if not path.exists():
        raise BagError(f"bag not found: {path}")
    # A directory, a metadata-less .mcap/.db3 file: AnyReader takes either.
    try:
        reader = AnyReader([path], default_typestore=get_typestore(Stores.ROS2_HUMBLE))
        reader.open()
    except Exception as exc:  # rosbags raises several types for a damaged bag
        raise BagError(f"cannot open bag {path}: {_one_line(exc)} (corrupt, truncated or not a "
                       "rosbag2?)") from None
    try:
        return _read(reader, path, image_topic, camera_info_topic, depth_topic, pose_topic,
                     extrinsic, eval_size, sync_tolerance, pose_tolerance, require_pose,
                     max_frames)
    finally:
        try:
            reader.close()
        except Exception:
            pass


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _connections(reader, topic: str, what: str, required: bool, types=None):
    conns = [c for c in reader.connections if c.topic == topic]
    if not conns:
        if required:
            raise BagError(f"{what} topic {topic} is not in the bag; topics: {_topic_list(reader)}")
        return []
    if types:
        bad = [c.msgtype for c in conns if c.msgtype not in types]
        if bad:
            raise BagError(f"{what} topic {topic} has type {bad[0]}; expected one of "
                           f"{', '.join(types)}")
    return conns


def _read(reader, path, image_topic, info_topic, depth_topic, pose_topic, extrinsic,
          eval_size, sync_tol, pose_tol, require_pose, max_frames) -> Replay:
    img_c = _connections(reader, image_topic, "image", True,
                         ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"))
    info_c = _connections(reader, info_topic, "camera_info", True, ("sensor_msgs/msg/CameraInfo",))
    depth_c = _connections(reader, depth_topic, "depth", True, ("sensor_msgs/msg/Image",)) \
        if depth_topic else []
    pose_c = _connections(reader, pose_topic, "pose", require_pose, POSE_TYPES) \
        if pose_topic else []
    notes = []
    if not pose_c and not require_pose:
        # A robot bag: no odometry topic by that name, but maybe the /tf tree.
        pose_c = [c for c in reader.connections if c.topic == "/tf" and c.msgtype == TF]
        if pose_c:
            notes.append(f"pose topic {pose_topic} not in the bag: using /tf")
            pose_topic = "/tf"
    tf_c = [c for c in reader.connections if c.topic == "/tf_static"
            and c.msgtype == "tf2_msgs/msg/TFMessage"]
    topics = {"image": image_topic, "camera_info": info_topic}
    if depth_topic:
        topics["depth"] = depth_topic
    if pose_c:
        topics["pose"] = pose_topic
    replay = Replay([], extrinsic, topics, warnings=notes)
    dropped: Counter = Counter()

    images: List[Tuple[float, np.ndarray, str]] = []
    depths: List[Tuple[float, np.ndarray]] = []
    poses: List[Tuple[float, tuple, tuple]] = []
    pose_frames = ("", "")
    dynamic: Dict[Tuple[str, str], List[Tuple[float, tuple, tuple]]] = {}
    static: Dict[Tuple[str, str], np.ndarray] = {}
    info = None
    native = None
    target = tuple(eval_size) if eval_size else None

    def fit(img, interpolation):
        nonlocal native
        size = (img.shape[1], img.shape[0])
        if native is None:
            native = size
        elif size != native:
            raise BagError(f"{image_topic}: image size changed from {native[0]}x{native[1]} "
                           f"to {size[0]}x{size[1]}")
        if target and size != target:
            img = cv2.resize(img, target, interpolation=interpolation)
        return img

    conns = img_c + info_c + depth_c + pose_c + tf_c
    try:
        for conn, ns, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            t = _stamp(msg, ns)
            if conn in img_c:
                if max_frames and len(images) >= max_frames:
                    continue
                images.append((t, fit(to_uint8(decode_image(msg, conn.topic)), cv2.INTER_AREA),
                               msg.header.frame_id))
            elif conn in depth_c:
                d = decode_depth(msg, conn.topic)
                if target and (d.shape[1], d.shape[0]) != target:
                    d = cv2.resize(d, target, interpolation=cv2.INTER_NEAREST)
                depths.append((t, d))
            elif conn in info_c:
                if info is None:
                    info = msg
            elif conn in pose_c and conn.msgtype == TF:
                for tr in msg.transforms:
                    pos, q, fid, child = _pose_from_msg(tr, "geometry_msgs/msg/TransformStamped")
                    dynamic.setdefault((fid, child), []).append((_stamp(tr, ns), pos, q))
            elif conn in pose_c:
                pos, q, fid, child = _pose_from_msg(msg, conn.msgtype)
                poses.append((t, pos, q))
                pose_frames = (fid, child)
            elif conn in tf_c:
                for tr in msg.transforms:
                    T = make_pose((tr.transform.translation.x, tr.transform.translation.y,
                                   tr.transform.translation.z),
                                  (tr.transform.rotation.x, tr.transform.rotation.y,
                                   tr.transform.rotation.z, tr.transform.rotation.w))
                    static[(tr.header.frame_id, tr.child_frame_id)] = T
    except BagError:
        raise
    except Exception as exc:
        if len(images) < 2:
            raise BagError(f"cannot read bag {path}: {_one_line(exc)} (corrupt or truncated?)") \
                from None
        replay.warnings.append(f"bag is damaged after {len(images)} images ({_one_line(exc)}); "
                               "evaluating what was read")
        dropped["unreadable tail"] += 1

    if not images:
        raise BagError(f"image topic {image_topic} has no messages")
    if info is None:
        raise BagError(f"camera_info topic {info_topic} has no messages")
    K = np.array(info.k, np.float64).reshape(3, 3)
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise BagError(f"{info_topic}: K has no focal length ({K[0, 0]}, {K[1, 1]}): "
                       "the camera is not calibrated")
    info_size = (int(info.width), int(info.height)) if info.width and info.height else native
    if info_size != native:
        replay.warnings.append(f"camera_info is for {info_size[0]}x{info_size[1]} but images are "
                               f"{native[0]}x{native[1]}: K scaled to the images")
        K = scale_intrinsics(K, info_size, native)
    replay.native_size = native
    if target:
        K = scale_intrinsics(K, native, target)
    dist = np.array(info.d, np.float64) if len(info.d) else np.zeros(0)
    if depth_c and np.any(dist):
        replay.warnings.append("camera_info has distortion: the depth warp assumes a rectified "
                               "pinhole image")

    # ---- extrinsic: vehicle pose → optical camera pose
    image_frame = images[0][2]
    if dynamic:
        poses, pose_frames = _tf_track(dynamic, static, image_frame)
    T_pose_cam = _extrinsic(replay, extrinsic, static, pose_frames, image_frame, bool(pose_c))

    track = None
    if poses:
        poses.sort(key=lambda p: p[0])
        track = PoseTrack(np.array([p[0] for p in poses]), np.array([p[1] for p in poses]),
                          np.array([p[2] for p in poses]), *pose_frames)
    if depth_c:
        if not depths:
            raise BagError(f"depth topic {depth_topic} has no messages")
        depths.sort(key=lambda d: d[0])
        d_stamps = np.array([d[0] for d in depths])
        if all(not np.isfinite(d[1]).any() for d in depths):
            raise BagError(f"depth topic {depth_topic}: every depth map is invalid "
                           "(NaN, inf or 0 everywhere)")

    images.sort(key=lambda m: m[0])
    matched_depth = 0
    for t, img, _ in images:
        depth = None
        if depth_c:
            k, gap = _nearest(d_stamps, t)
            if gap > sync_tol:
                dropped["no depth within sync tolerance"] += 1
                continue
            matched_depth += 1
            depth = depths[k][1]
            if not np.isfinite(depth).any():
                dropped["all-invalid depth"] += 1
                continue
        T = None
        if track is not None:
            Tb = track.at(t, pose_tol)
            if Tb is None:
                dropped["no pose within tolerance"] += 1
                continue
            T = Tb @ T_pose_cam
        replay.frames.append(Frame(len(replay.frames), t, img, K.copy(), dist, depth, T))
    if depth_c and matched_depth == 0:
        raise BagError(f"no image of {image_topic} has a depth map of {depth_topic} within "
                       f"{sync_tol} s (image stamps {images[0][0]:.3f}–{images[-1][0]:.3f}, "
                       f"depth stamps {d_stamps[0]:.3f}–{d_stamps[-1]:.3f}); "
                       "raise --sync-tolerance?")
    if track is not None and not replay.frames and dropped.get("no pose within tolerance"):
        raise BagError(f"no image stamp lies within the pose stamps of {pose_topic} "
                       f"({track.stamps[0]:.3f}–{track.stamps[-1]:.3f}, images "
                       f"{images[0][0]:.3f}–{images[-1][0]:.3f}); raise --pose-tolerance?")
    replay.dropped = dict(dropped)
    return replay


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


def _extrinsic(replay: Replay, extrinsic: str, static, pose_frames, image_frame: str,
               have_pose: bool) -> np.ndarray:
    """4×4 T_pose_cam: optical camera in the frame the pose topic describes."""
    T_air = np.eye(4)
    T_air[:3, :3] = R_BODY_OPTICAL
    if not have_pose:
        replay.extrinsic = "none"
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
        replay.extrinsic = "tf_static"
        return chain
    if chain is not None:
        replay.extrinsic = "tf_static"
        return chain
    replay.extrinsic = "airsim"
    return T_air
