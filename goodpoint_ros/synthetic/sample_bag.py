"""Write a rosbag2 of the rendered village with exact ground truth (AirSim topics).

The bag looks like a recording of the AirSim ROS 2 wrapper (the paper's
village setting, §6.1), so ``goodpoint eval bag`` runs on it with its
defaults:

* ``/airsim_node/drone_1/front_center/Scene``: ``sensor_msgs/Image`` bgr8;
* ``…/DepthPlanar``: 32FC1 planar depth in metres (``inf`` = sky);
* ``…/Scene/camera_info``: K (90° horizontal field of view), no distortion — or,
  with ``distortion``, the plumb_bob ``d`` the frames were distorted with (raw
  frames of a real lens, to test that consumers undo it; ``p`` is then K);
* ``/airsim_node/drone_1/odom_local_ned``: ``nav_msgs/Odometry`` of the body
  (FRD) in the NED world, at 50 Hz and offset from the frames, so the
  evaluator must interpolate;
* ``/tf_static``: body → ``front_center_optical`` (the AirSim mount rotation
  plus a small forward offset).

Images and depth are rendered exactly by :mod:`.scene`; the same seed gives
the same bag, and ``day``/``night`` of one seed share the trajectory (for
``--bag-b``).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from goodpoint_ros.core.config import AIRSIM_TOPICS
from goodpoint_ros.core.geometry import quaternion_xyzw
from goodpoint_ros.synthetic import scene as sc

WORLD_FRAME = "world_ned"
BODY_FRAME = "drone_1"
CAMERA_FRAME = "front_center_optical"
#: Camera mount in the body (metres, FRD): a little ahead of the body origin.
CAMERA_OFFSET = np.array([0.25, 0.0, 0.05])
START_NS = 1_700_000_000 * 10**9
#: Seconds of odometry recorded before the first frame.
LEAD_S = 0.2


@dataclass
class SampleBagSpec:
    """What to render. ``fps``: image rate; ``pose_rate``: odometry rate (Hz)."""
    frames: int = 30
    size: Tuple[int, int] = (320, 240)
    lighting: str = "day"
    storage: str = "mcap"
    fps: float = 10.0
    pose_rate: float = 50.0
    speed: float = 1.5
    seed: int = 0
    motion: str = "cruise"          # or "turns": speed changes and ±25° heading (scene.trajectory)
    distortion: Tuple[float, ...] = ()   # plumb_bob k1 k2 p1 p2 k3: frames written raw, as that lens sees


def camera_extrinsic() -> np.ndarray:
    """4×4 T_body_camera(optical) of the generated bag."""
    T = np.eye(4)
    T[:3, :3] = sc.R_BODY_OPTICAL
    T[:3, 3] = CAMERA_OFFSET
    return T


def body_pose(t: float, speed: float, motion: str = "cruise") -> np.ndarray:
    """4×4 T_world_body (NED, FRD) at time t seconds."""
    R, p = sc.trajectory(np.array([t]), speed, motion)
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R[0], p[0]
    return T


class Messages:
    """Builds the ROS 2 messages with a rosbags typestore."""

    def __init__(self):
        from rosbags.typesys import Stores, get_typestore  # lazy: rosbags costs ~0.1 s
        self.store = get_typestore(Stores.ROS2_HUMBLE)
        self.T = self.store.types

    def header(self, ns: int, frame: str):
        T = self.T
        return T["std_msgs/msg/Header"](
            stamp=T["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9),
            frame_id=frame)

    def image(self, ns, frame, array: np.ndarray, encoding: str):
        h, w = array.shape[:2]
        data = np.ascontiguousarray(array).view(np.uint8).ravel()
        return self.T["sensor_msgs/msg/Image"](
            header=self.header(ns, frame), height=h, width=w, encoding=encoding,
            is_bigendian=0, step=data.size // h, data=data)

    def camera_info(self, ns, frame, K: np.ndarray, size, d=()):
        w, h = size
        P = np.zeros((3, 4))
        P[:3, :3] = K
        T = self.T
        dist = np.zeros(5)
        dist[:len(d)] = d
        return T["sensor_msgs/msg/CameraInfo"](
            header=self.header(ns, frame), height=h, width=w, distortion_model="plumb_bob",
            d=dist, k=K.ravel().astype(np.float64), r=np.eye(3).ravel(),
            p=P.ravel(), binning_x=0, binning_y=0,
            roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0,
                                                      width=0, do_rectify=False))

    def pose(self, Tm: np.ndarray):
        T = self.T
        q = quaternion_xyzw(Tm[:3, :3])
        return T["geometry_msgs/msg/Pose"](
            position=T["geometry_msgs/msg/Point"](x=Tm[0, 3], y=Tm[1, 3], z=Tm[2, 3]),
            orientation=T["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3]))

    def odometry(self, ns, Tm: np.ndarray):
        T = self.T
        vec = T["geometry_msgs/msg/Vector3"]
        return T["nav_msgs/msg/Odometry"](
            header=self.header(ns, WORLD_FRAME), child_frame_id=BODY_FRAME,
            pose=T["geometry_msgs/msg/PoseWithCovariance"](pose=self.pose(Tm),
                                                           covariance=np.zeros(36)),
            twist=T["geometry_msgs/msg/TwistWithCovariance"](
                twist=T["geometry_msgs/msg/Twist"](linear=vec(x=0.0, y=0.0, z=0.0),
                                                   angular=vec(x=0.0, y=0.0, z=0.0)),
                covariance=np.zeros(36)))

    def tf_static(self, ns, Tm: np.ndarray):
        T = self.T
        q = quaternion_xyzw(Tm[:3, :3])
        tr = T["geometry_msgs/msg/Transform"](
            translation=T["geometry_msgs/msg/Vector3"](x=Tm[0, 3], y=Tm[1, 3], z=Tm[2, 3]),
            rotation=T["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3]))
        ts = T["geometry_msgs/msg/TransformStamped"](header=self.header(ns, BODY_FRAME),
                                                     child_frame_id=CAMERA_FRAME, transform=tr)
        return T["tf2_msgs/msg/TFMessage"](transforms=[ts])


def distortion_maps(K: np.ndarray, d, size: Tuple[int, int]):
    """(map_x, map_y) [H,W] float32 that turn an ideal pinhole frame K into the raw frame of
    the same camera with plumb_bob distortion ``d``: each raw pixel reads the ideal frame
    where its ray lands (``cv2.undistortPoints``)."""
    w, h = size
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    dist = np.zeros(5)
    dist[:len(d)] = d
    src = cv2.undistortPoints(np.c_[gx.ravel(), gy.ravel()].reshape(-1, 1, 2), K, dist, P=K)
    src = src.reshape(h, w, 2).astype(np.float32)
    return src[..., 0].copy(), src[..., 1].copy()


def write_sample_bag(out: Path, spec: Optional[SampleBagSpec] = None, progress: bool = False) -> Path:
    """Render ``spec.frames`` frames and write the bag to ``out`` (must not exist).

    A failed or interrupted run removes the half-written bag, so nothing that
    looks like a finished bag is left behind.
    """
    from rosbags.rosbag2 import StoragePlugin  # lazy: ~0.1 s, and `goodpoint --help` imports this

    spec = spec or SampleBagSpec()
    if spec.frames < 2:
        raise ValueError(f"--frames must be at least 2, got {spec.frames}")
    if spec.motion not in sc.MOTIONS:
        raise ValueError(f"--motion must be one of {', '.join(sc.MOTIONS)}, got {spec.motion!r}")
    if spec.storage not in ("mcap", "sqlite3"):
        raise ValueError(f"--storage must be mcap or sqlite3, got {spec.storage!r}")
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists already; rosbag2 writers never overwrite "
                              "(remove it or pick another name)")

    world = sc.village(seed=spec.seed)
    K = sc.intrinsics(spec.size)
    T_bc = camera_extrinsic()
    msgs = Messages()
    plugin = StoragePlugin.MCAP if spec.storage == "mcap" else StoragePlugin.SQLITE3
    frames = range(spec.frames)
    if progress:
        frames = tqdm(frames, desc="rendering", unit="frame")
    try:
        _write(out, plugin, spec, world, K, T_bc, msgs, frames)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return out


def _write(out, plugin, spec, world, K, T_bc, msgs, frames) -> None:
    from rosbags.rosbag2 import Writer  # lazy: see write_sample_bag

    frame_times = np.arange(spec.frames) / spec.fps
    raw_maps = distortion_maps(K, spec.distortion, spec.size) if any(spec.distortion) else None
    # Odometry from a little before the first frame to a little after the last,
    # offset by 7 ms so no pose coincides with a frame.
    pose_times = np.arange(-0.1, frame_times[-1] + 0.1, 1.0 / spec.pose_rate) + 0.007

    def stamp(t: float) -> int:
        return START_NS + int(round((t + LEAD_S) * 1e9))

    with Writer(out, version=9, storage_plugin=plugin) as writer:
        store = msgs.store
        topics = AIRSIM_TOPICS
        c_img = writer.add_connection(topics.image, "sensor_msgs/msg/Image", typestore=store)
        c_depth = writer.add_connection(topics.depth, "sensor_msgs/msg/Image", typestore=store)
        c_info = writer.add_connection(topics.camera_info, "sensor_msgs/msg/CameraInfo",
                                       typestore=store)
        c_odom = writer.add_connection(topics.pose, "nav_msgs/msg/Odometry", typestore=store)
        c_tf = writer.add_connection("/tf_static", "tf2_msgs/msg/TFMessage", typestore=store)

        def put(conn, ns, msg):
            writer.write(conn, ns, store.serialize_cdr(msg, conn.msgtype))

        put(c_tf, START_NS, msgs.tf_static(START_NS, T_bc))
        events = [(stamp(t), "pose", t) for t in pose_times]
        events += [(stamp(t), "frame", i) for i, t in enumerate(frame_times)]
        events.sort(key=lambda e: e[0])
        # Render lazily as frame events come up, in stamp order.
        frame_iter = iter(frames)
        for ns, kind, value in events:
            if kind == "pose":
                put(c_odom, ns, msgs.odometry(ns, body_pose(value, spec.speed, spec.motion)))
                continue
            next(frame_iter)
            T_wc = body_pose(frame_times[value], spec.speed, spec.motion) @ T_bc
            bgr, depth = sc.render(world, K, T_wc, spec.size, spec.lighting, seed=spec.seed * 7919 + value)
            if raw_maps is not None:
                bgr = cv2.remap(bgr, *raw_maps, cv2.INTER_LINEAR)
                depth = cv2.remap(depth, *raw_maps, cv2.INTER_NEAREST, borderValue=float("inf"))
            put(c_img, ns, msgs.image(ns, CAMERA_FRAME, bgr, "bgr8"))
            put(c_depth, ns, msgs.image(ns, CAMERA_FRAME, depth.astype("<f4"), "32FC1"))
            put(c_info, ns, msgs.camera_info(ns, CAMERA_FRAME, K, spec.size, spec.distortion))
        for _ in frame_iter:       # lets a progress bar finish
            pass
