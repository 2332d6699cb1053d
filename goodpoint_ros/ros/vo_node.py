"""``vo_node``: GoodPoint visual odometry → nav_msgs/Odometry + TF odom → base (REP-105).

Subscribes (``mode``):

* ``stereo``: ``left_image_topic`` + ``right_image_topic`` (approximate sync) and both
  CameraInfos — a rectified pair, the baseline from the right ``p`` (Tx = −fx·B);
* ``rgbd``: ``image_topic`` + ``depth_topic`` (16UC1 mm or 32FC1 m, registered) and
  ``camera_info_topic``;
* ``mono``: ``image_topic`` + ``camera_info_topic`` (up to scale: the first baseline is 1).

Publishes ``~/odometry`` (nav_msgs/Odometry: ``header.frame_id`` = ``odom_frame``,
``child_frame_id`` = ``base_frame``, the input image's stamp, pose and twist with
covariance; LOST frames carry the held pose with an inflated covariance), TF
odom → base when ``publish_tf`` (tf2_ros, imported lazily: without it the node says
so once and publishes odometry all the same), ``~/path`` (nav_msgs/Path) when
``publish_path``, the tracking state on ``/diagnostics``, and serves ``~/reset``
(std_srvs/Trigger: back to the origin).  The camera's optical frame sits in the
base frame at ``camera_xyz`` with the REP-103 optical → base rotation unless
``camera_quaternion`` (x, y, z, w of base ← optical) says otherwise.

Frames arriving before their CameraInfo are dropped (said once).  The VO core is
:mod:`goodpoint_ros.odometry`; this module only converts messages.
"""
from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field, fields
from typing import List, Optional

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # see goodpoint_ros/cli/__init__.py

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue  # noqa: E402
from geometry_msgs.msg import PoseStamped, TransformStamped  # noqa: E402
from nav_msgs.msg import Odometry, Path  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from goodpoint_ros.core.geometry import R_BASE_OPTICAL, make_T, quat_to_R, quaternion_xyzw  # noqa: E402
from goodpoint_ros.core.image_msgs import UnsupportedEncoding, decode_image  # noqa: E402
from goodpoint_ros.frontend.scheduler import LatestFrameWorker  # noqa: E402
from goodpoint_ros.odometry.camera import CalibrationError, PinholeCamera, StereoRig  # noqa: E402
from goodpoint_ros.odometry.config import VOConfig  # noqa: E402
from goodpoint_ros.odometry.vo import TrackingState, VisualOdometry  # noqa: E402

try:
    from rclpy.executors import ExternalShutdownException
except ImportError:          # older rclpy
    class ExternalShutdownException(Exception):
        pass

NODE_NAME = "goodpoint_vo"
OUTPUT_QOS = 10


@dataclass
class VONodeParams:
    """The node's parameters (config/vo.yaml); VO settings come from :class:`VOConfig`."""
    mode: str = "stereo"
    image_topic: str = "image"
    camera_info_topic: str = "camera_info"
    depth_topic: str = "depth"
    left_image_topic: str = "left/image_rect"
    right_image_topic: str = "right/image_rect"
    left_camera_info_topic: str = "left/camera_info"
    right_camera_info_topic: str = "right/camera_info"
    sync_slop: float = 0.02
    sync_queue_size: int = 10
    odom_frame: str = "odom"
    base_frame: str = "base_link"
    publish_tf: bool = True
    publish_path: bool = False
    path_length: int = 2000
    camera_xyz: List[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    camera_quaternion: List[float] = field(default_factory=list)   # empty: REP-103 rotation
    backend: str = "onnxruntime"
    weights: str = ""
    max_keypoints: int = 1000
    resize_scale: float = 1.0
    solver: str = "gtsam"
    window: int = 6
    min_inliers: int = 12
    diagnostics_period: float = 1.0

    def T_base_camera(self) -> np.ndarray:
        if len(self.camera_xyz) != 3:
            raise ValueError(f"camera_xyz needs 3 numbers, got {self.camera_xyz}")
        if self.camera_quaternion:
            if len(self.camera_quaternion) != 4 or not np.linalg.norm(self.camera_quaternion) > 0:
                raise ValueError("camera_quaternion needs x, y, z, w (non-zero)")
            R = quat_to_R(self.camera_quaternion)
        else:
            R = R_BASE_OPTICAL
        return make_T(R, self.camera_xyz)

    def vo_config(self) -> VOConfig:
        return VOConfig(mode=self.mode, solver=self.solver, window=self.window,
                        min_inliers=self.min_inliers).validate()


class VONode(Node):
    """See the module docstring. ``source``: a ready FeatureSource (tests inject one)."""

    def __init__(self, source=None, **node_kwargs):
        super().__init__(NODE_NAME, **node_kwargs)
        p = VONodeParams()
        for f in fields(VONodeParams):
            default = getattr(p, f.name)
            value = self.declare_parameter(f.name, default).value
            setattr(p, f.name, list(value) if isinstance(default, list) else value)
        self.params = p
        self.config = p.vo_config()                 # ValueError on a bad setting
        self.T_bc = p.T_base_camera()
        if source is None:
            source = self._load_source(p)
        self.source = source
        self._lock = threading.Lock()
        self._infos: List[Optional[CameraInfo]] = [None, None]
        self.vo: Optional[VisualOdometry] = None
        self._said = set()
        self._last = None
        self._path = Path()
        self._path.header.frame_id = p.odom_frame
        self.pub_odom = self.create_publisher(Odometry, "~/odometry", OUTPUT_QOS)
        self.pub_path = self.create_publisher(Path, "~/path", 1) if p.publish_path else None
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 1)
        self.tf = self._tf_broadcaster() if p.publish_tf else None
        self.reset_service = self.create_service(Trigger, "~/reset", self._on_reset)
        self.worker = LatestFrameWorker(self._process, on_error=self._on_error,
                                        name="goodpoint-vo")
        self._subscribe()
        self.create_timer(p.diagnostics_period, self._publish_diagnostics)
        self.get_logger().info(f"GoodPoint VO, {p.mode} mode, {p.odom_frame} → {p.base_frame}")

    # ------------------------------------------------------------------ set-up
    def _load_source(self, p: VONodeParams):
        from goodpoint_ros.core.config import GoodPointConfig
        from goodpoint_ros.core.pipeline import FeatureExtractor
        from goodpoint_ros.odometry.features import goodpoint_source
        ex = FeatureExtractor(p.backend, GoodPointConfig(max_keypoints=p.max_keypoints),
                              weights=p.weights or None)
        return goodpoint_source(ex)

    def _tf_broadcaster(self):
        try:
            import tf2_ros  # lazy: no pip wheel; a ROS install has it
            return tf2_ros.TransformBroadcaster(self)
        except ImportError:
            self._say_once("tf2_ros is not available: TF odom → base is not broadcast "
                           "(odometry is published all the same)")
            return None

    def _subscribe(self) -> None:
        p, qos = self.params, qos_profile_sensor_data
        if p.mode == "mono":
            self.create_subscription(Image, p.image_topic, lambda m: self._submit((m,)), qos)
            infos = (p.camera_info_topic,)
        else:
            import message_filters  # lazy: only the synchronised modes need it
            topics = ((p.left_image_topic, p.right_image_topic) if p.mode == "stereo"
                      else (p.image_topic, p.depth_topic))
            self._subs = [message_filters.Subscriber(self, Image, t, qos_profile=qos) for t in topics]
            self._sync = message_filters.ApproximateTimeSynchronizer(self._subs, p.sync_queue_size,
                                                                     p.sync_slop)
            self._sync.registerCallback(lambda a, b: self._submit((a, b)))
            infos = ((p.left_camera_info_topic, p.right_camera_info_topic) if p.mode == "stereo"
                     else (p.camera_info_topic,))
        for i, topic in enumerate(infos):
            self.create_subscription(CameraInfo, topic, lambda m, i=i: self._on_info(i, m), qos)

    # ------------------------------------------------------------------ callbacks
    def _on_info(self, index: int, msg) -> None:
        with self._lock:
            self._infos[index] = msg

    def _submit(self, msgs) -> None:
        self.worker.submit(msgs)

    def _on_reset(self, request, response):
        with self._lock:
            if self.vo is not None:
                self.vo.reset(origin=True)
            self._path.poses = []
        response.success = True
        response.message = "visual odometry reset to the origin"
        self.get_logger().info(response.message)
        return response

    # ------------------------------------------------------------------ per frame (worker)
    def _build_vo(self, size) -> Optional[VisualOdometry]:
        """The VO once the CameraInfo(s) arrived; None (said once) while waiting or unusable."""
        p = self.params
        with self._lock:
            infos = list(self._infos)
        need = 2 if p.mode == "stereo" else 1
        if any(i is None for i in infos[:need]):
            self._say_once("waiting for camera_info (" + ", ".join(
                t for t, i in zip((p.left_camera_info_topic, p.right_camera_info_topic)
                                  if p.mode == "stereo" else (p.camera_info_topic,), infos)
                if i is None) + "): frames are dropped until it arrives")
            return None
        try:
            if p.mode == "stereo":
                rig = StereoRig.from_projections(infos[0].p, infos[1].p, size)
                vo = VisualOdometry(self.config, self.source, rig=rig, T_base_camera=self.T_bc)
            else:
                cam = PinholeCamera.from_K(infos[0].k, size)
                vo = VisualOdometry(self.config, self.source, camera=cam, T_base_camera=self.T_bc)
        except CalibrationError as exc:
            self._say_once(f"camera_info unusable: {exc}")
            return None
        self.get_logger().info("camera calibration received: visual odometry starts")
        return vo

    def _process(self, msgs) -> None:
        p = self.params
        header = msgs[0].header
        try:
            images = [decode_image(m.encoding, m.height, m.width, m.step, bool(m.is_bigendian),
                                   m.data) for m in msgs]
        except (UnsupportedEncoding, ValueError) as exc:
            self._say_once(f"frame skipped: {exc}")
            return
        size = (images[0].shape[1], images[0].shape[0])
        if self.vo is None:
            self.vo = self._build_vo(size)
            if self.vo is None:
                return
        stamp = header.stamp.sec + header.stamp.nanosec * 1e-9
        kw = {}
        if p.mode == "stereo":
            kw["right"] = images[1]
        elif p.mode == "rgbd":
            kw["depth"], kw["depth_encoding"] = images[1], msgs[1].encoding
        with self._lock:
            r = self.vo.process(stamp, images[0], **kw)
        if r.message and "backwards" in r.message:
            self.get_logger().warning(r.message)
            self._path.poses = []
        self._last = r
        self._publish(header, r)

    def _publish(self, header, r) -> None:
        p = self.params
        T = r.T_odom_base
        q = quaternion_xyzw(T[:3, :3])
        odom = Odometry()
        odom.header.stamp = header.stamp
        odom.header.frame_id = p.odom_frame
        odom.child_frame_id = p.base_frame
        pose = odom.pose.pose
        pose.position.x, pose.position.y, pose.position.z = (float(v) for v in T[:3, 3])
        pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = \
            (float(v) for v in q)
        odom.pose.covariance = [float(v) for v in r.pose_covariance.ravel()]
        tw = odom.twist.twist
        tw.linear.x, tw.linear.y, tw.linear.z = (float(v) for v in r.twist[:3])
        tw.angular.x, tw.angular.y, tw.angular.z = (float(v) for v in r.twist[3:])
        odom.twist.covariance = [float(v) for v in r.twist_covariance.ravel()]
        self.pub_odom.publish(odom)
        if self.tf is not None:
            t = TransformStamped()
            t.header.stamp = header.stamp
            t.header.frame_id = p.odom_frame
            t.child_frame_id = p.base_frame
            tr = t.transform
            tr.translation.x, tr.translation.y, tr.translation.z = (float(v) for v in T[:3, 3])
            tr.rotation.x, tr.rotation.y, tr.rotation.z, tr.rotation.w = (float(v) for v in q)
            self.tf.sendTransform(t)
        if self.pub_path is not None:
            ps = PoseStamped()
            ps.header = odom.header
            ps.pose = odom.pose.pose
            self._path.header.stamp = header.stamp
            self._path.poses = (list(self._path.poses) + [ps])[-p.path_length:]
            self.pub_path.publish(self._path)

    def _publish_diagnostics(self) -> None:
        r = self._last
        status = DiagnosticStatus()
        status.name = f"{self.get_name()}: GoodPoint visual odometry"
        status.hardware_id = self.params.mode
        if r is None:
            status.level, status.message = DiagnosticStatus.WARN, "no frame processed yet"
            values = {}
        else:
            status.level = DiagnosticStatus.OK if r.state == TrackingState.OK else DiagnosticStatus.WARN
            status.message = r.state.value
            values = {"state": r.state.value, "inliers": r.inliers, "keypoints": r.keypoints,
                      "landmarks": r.landmarks, "lost_count": r.lost_count, "resets": r.resets,
                      **{f"{k}_ms": round(v, 2) for k, v in r.times.items()}}
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [status]
        self.pub_diag.publish(arr)

    def _on_error(self, msgs, exc) -> None:
        if rclpy.ok():
            self.get_logger().error(f"frame failed: {type(exc).__name__}: {exc}",
                                    throttle_duration_sec=5.0)

    def _say_once(self, text: str) -> None:
        if text not in self._said:
            self._said.add(text)
            self.get_logger().warning(text)

    def destroy_node(self):
        worker = getattr(self, "worker", None)
        if worker is not None:
            worker.stop()
        return super().destroy_node()


def main(args=None) -> int:
    """``vo_node`` / ``ros2 run goodpoint_ros vo_node``: spin until Ctrl-C."""
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = VONode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ValueError as exc:                     # a bad parameter: one line, exit 1
        print(f"[{NODE_NAME}] fatal: bad parameter: {exc}", file=sys.stderr)
        code = 1
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["VONode", "VONodeParams", "main"]
