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
(std_srvs/Trigger: the map is dropped and the odometry restarts at the origin with
the next frame; ``~/path`` restarts too).  The camera's optical frame sits in the
base frame at ``camera_xyz``, rotated by ``camera_quaternion`` (x, y, z, w of
base ← optical; default REP-103's).  ``resize_scale`` < 1 runs the VO on smaller
frames (the calibration is scaled with them); the poses stay metric.

Parameters: :mod:`.vo_params` (config/vo.yaml), all read once at start-up.

Frames arriving before their CameraInfo are dropped (said once).  The VO core is
:mod:`goodpoint_ros.odometry`; this module only converts messages.
"""
from __future__ import annotations

import os
import sys
import threading
from typing import Callable, List, Optional, Tuple

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # see goodpoint_ros/cli/__init__.py

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import PoseStamped, TransformStamped  # noqa: E402
from nav_msgs.msg import Odometry, Path  # noqa: E402
from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from goodpoint_ros.backends import BackendUnavailable  # noqa: E402
from goodpoint_ros.core.geometry import quaternion_xyzw  # noqa: E402
from goodpoint_ros.core.image_msgs import UnsupportedEncoding, decode_image  # noqa: E402
from goodpoint_ros.core.pipeline import FeatureExtractor  # noqa: E402
from goodpoint_ros.core.weights import WeightsError  # noqa: E402
from goodpoint_ros.frontend.scheduler import LatestFrameWorker  # noqa: E402
from goodpoint_ros.odometry.camera import (  # noqa: E402
    CalibrationError,
    StereoRig,
    camera_from_info,
    stereo_rectifiers,
)
from goodpoint_ros.odometry.features import goodpoint_source, vo_goodpoint_config  # noqa: E402
from goodpoint_ros.odometry.vo import OdometryResult, TrackingState, VisualOdometry  # noqa: E402
from goodpoint_ros.ros.runtime import (  # noqa: E402
    FatalError,
    OnceLog,
    WorkerNode,
    declare_parameters,
    diagnostics_msg,
    input_qos,
    run,
)
from goodpoint_ros.ros.vo_params import VO_PARAMETERS, T_base_camera, check_vo_values, vo_config  # noqa: E402

NODE_NAME = "goodpoint_vo"
OUTPUT_QOS = 10


class VONode(WorkerNode, Node):
    """See the module docstring. ``source``: a ready FeatureSource (tests inject one)."""

    def __init__(self, source=None, **node_kwargs):
        super().__init__(NODE_NAME, **node_kwargs)
        try:
            self.values = check_vo_values(declare_parameters(self, VO_PARAMETERS))
        except ValueError as exc:
            raise FatalError(f"bad parameter: {exc}") from None
        v = self.values
        self.config = vo_config(v)
        self.T_bc = T_base_camera(v)
        self.source = source if source is not None else self._load_source(v)
        self._lock = threading.Lock()               # camera infos, VO, path
        self._infos: List[Optional[CameraInfo]] = [None, None]
        self.vo: Optional[VisualOdometry] = None
        # raw frames → the calibrated pinhole camera(s), one remap per input image, or None
        self._remaps: Optional[List[Callable[[np.ndarray], np.ndarray]]] = None
        self._native: Optional[Tuple[int, int]] = None
        self._say_once = OnceLog(self.get_logger())
        self._last: Optional[OdometryResult] = None
        self._path = Path()
        self._path.header.frame_id = v["odom_frame"]
        self.pub_odom = self.create_publisher(Odometry, "~/odometry", OUTPUT_QOS)
        self.pub_path = self.create_publisher(Path, "~/path", 1) if v["publish_path"] else None
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 1)
        self.tf = self._tf_broadcaster() if v["publish_tf"] else None
        self.reset_service = self.create_service(Trigger, "~/reset", self._on_reset)
        self.worker = LatestFrameWorker(self._process, on_error=self._on_frame_error,
                                        name="goodpoint-vo")
        self._subscribe()
        self.create_timer(v["diagnostics_period"], self._publish_diagnostics)
        self.get_logger().info(f"GoodPoint VO, {v['mode']} mode, {v['odom_frame']} → "
                               f"{v['base_frame']}, solver {self.config.solver}")

    # ------------------------------------------------------------------ set-up
    @staticmethod
    def _load_source(v):
        kwargs = {"threads": v["threads"]} if v["threads"] else {}
        try:
            ex = FeatureExtractor(v["backend"], vo_goodpoint_config(
                max_keypoints=v["max_keypoints"], pyramid_levels=v["pyramid_levels"]),
                                  weights=v["weights"] or None, precision=v["precision"],
                                  scale=v["network_scale"] or None, **kwargs)
        except (BackendUnavailable, WeightsError, ValueError, OSError) as exc:
            raise FatalError(f"no inference backend could load: {exc}") from None
        return goodpoint_source(ex)

    def _tf_broadcaster(self):
        try:
            import tf2_ros  # lazy: no pip wheel; a ROS install has it
        except ImportError:
            self._say_once("tf2_ros is not available: TF odom → base is not broadcast "
                           "(odometry is published all the same)")
            return None
        return tf2_ros.TransformBroadcaster(self)

    def _topics(self):
        """(image topics, camera_info topics) of the mode."""
        v = self.values
        if v["mode"] == "stereo":
            return ((v["left_image_topic"], v["right_image_topic"]),
                    (v["left_camera_info_topic"], v["right_camera_info_topic"]))
        images = (v["image_topic"], v["depth_topic"]) if v["mode"] == "rgbd" else (v["image_topic"],)
        return images, (v["camera_info_topic"],)

    def _subscribe(self) -> None:
        v = self.values
        qos = input_qos(v["qos_reliability"], v["qos_depth"])
        images, infos = self._topics()
        if len(images) == 1:
            self.create_subscription(Image, images[0], lambda m: self.worker.submit((m,)), qos)
        else:
            import message_filters  # lazy: only the synchronised modes need it (no pip wheel)
            self._subs = [message_filters.Subscriber(self, Image, t, qos_profile=qos) for t in images]
            self._sync = message_filters.ApproximateTimeSynchronizer(
                self._subs, v["sync_queue_size"], v["sync_slop"])
            self._sync.registerCallback(lambda a, b: self.worker.submit((a, b)))
        for i, topic in enumerate(infos):
            self.create_subscription(CameraInfo, topic, lambda m, i=i: self._on_info(i, m), qos)

    # ------------------------------------------------------------------ callbacks (executor)
    def _on_info(self, index: int, msg) -> None:
        with self._lock:
            self._infos[index] = msg

    def _on_reset(self, request, response):
        with self._lock:
            if self.vo is not None:
                self.vo.reset(origin=True)
            self._path.poses = []
        response.success = True
        response.message = "visual odometry reset: the next frame starts at the origin"
        self.get_logger().info(response.message)
        return response

    # ------------------------------------------------------------------ per frame (worker)
    def _process(self, msgs) -> None:
        """The one per-frame path: decode, scale, (build the VO), track, publish."""
        try:
            images = [self._decode(m) for m in msgs]
        except (UnsupportedEncoding, ValueError) as exc:
            self._say_once(f"frame skipped: {exc}")
            return
        native = (images[0].shape[1], images[0].shape[0])
        if self.vo is None:
            self._native = native
            self.vo = self._build_vo(native, self._scaled_size(native))
            if self.vo is None:
                return
        if self._remaps is not None:
            if (images[0].shape[1], images[0].shape[0]) != self._native:
                self._say_once("frame skipped: its size differs from the first frame's")
                return
            images = [remap(img) for remap, img in zip(self._remaps, images)]
        images = self._scaled(images)
        header = msgs[0].header
        kw = {}
        if self.values["mode"] == "stereo":
            kw["right"] = images[1]
        elif self.values["mode"] == "rgbd":
            kw["depth"], kw["depth_encoding"] = images[1], msgs[1].encoding
        with self._lock:
            r = self.vo.process(header.stamp.sec + header.stamp.nanosec * 1e-9, images[0], **kw)
            if r.message and "backwards" in r.message:
                self._path.poses = []
        if r.message and "backwards" in r.message:
            self.get_logger().warning(r.message)
        self._last = r
        self._publish(header, r)

    @staticmethod
    def _decode(m) -> np.ndarray:
        return decode_image(m.encoding, m.height, m.width, m.step, bool(m.is_bigendian), m.data)

    def _scaled_size(self, native):
        s = self.values["resize_scale"]
        return native if s == 1.0 else (max(8, round(native[0] * s)), max(8, round(native[1] * s)))

    def _scaled(self, images):
        """``resize_scale``: images by area averaging, depth by nearest (no mixed depths)."""
        if self.values["resize_scale"] == 1.0:
            return images
        size = self._scaled_size((images[0].shape[1], images[0].shape[0]))
        depth = self.values["mode"] == "rgbd"
        return [cv2.resize(img, size, interpolation=cv2.INTER_NEAREST if depth and i == 1
                           else cv2.INTER_AREA) for i, img in enumerate(images)]

    def _build_vo(self, native, size) -> Optional[VisualOdometry]:
        """The VO once the CameraInfo(s) arrived; None (said once) while waiting or unusable.
        The calibration is for the ``native`` frames, the VO sees them at ``size``."""
        with self._lock:
            infos = list(self._infos)
        topics = self._topics()[1]
        missing = [t for t, i in zip(topics, infos) if i is None]
        if missing:
            self._say_once(f"waiting for camera_info ({', '.join(missing)}): frames are dropped "
                           "until it arrives")
            return None
        try:
            if self.values["mode"] == "stereo" and self.values["rectify_stereo"]:
                rig, (left, right) = stereo_rectifiers(infos, native)
                self._remaps = [left.image, right.image]
                self.get_logger().info("rectify_stereo: the raw pair is rectified here with each "
                                       "camera_info's k, d, r and p")
                vo = VisualOdometry(self.config, self.source, rig=rig.scaled(size),
                                    T_base_camera=self.T_bc)
            elif self.values["mode"] == "stereo":
                rig = StereoRig.from_projections(infos[0].p, infos[1].p, native).scaled(size)
                vo = VisualOdometry(self.config, self.source, rig=rig, T_base_camera=self.T_bc)
            else:
                info = infos[0]
                cam, und = camera_from_info(
                    info.k, info.d, info.p, native, info.distortion_model,
                    frames_are_raw=self.values["undistort"], r=info.r)
                if und is not None:
                    self._remaps = [und.image, und.depth]   # depth: the nearest pixel
                    self.get_logger().info(
                        f"camera_info carries {info.distortion_model} distortion: the frames are "
                        "undistorted here into the camera of its p (undistort false if they are "
                        "image_rect already)")
                vo = VisualOdometry(self.config, self.source, camera=cam.scaled(size),
                                    T_base_camera=self.T_bc)
        except CalibrationError as exc:
            self._say_once(f"camera_info unusable: {exc}")
            return None
        frame_scale = getattr(self.source.detect_fn, "frame_scale", None)
        net = ""
        if frame_scale is not None and frame_scale(size) != 1.0:
            net = (f", GoodPoint sees {frame_scale(size):g}x the frame (network_scale 1: "
                   "every frame as it is, the fastest)")
        self.get_logger().info(f"camera calibration received: visual odometry starts "
                               f"({size[0]}x{size[1]}{net}; reprojection threshold "
                               f"{self.config.reprojection_threshold:g} px, a keyframe at the latest every "
                               f"{self.config.keyframe_gap} frames)")
        return vo

    def _publish(self, header, r: OdometryResult) -> None:
        v = self.values
        odom = odometry_msg(header, r, v["odom_frame"], v["base_frame"])
        self.pub_odom.publish(odom)
        if self.tf is not None:
            self.tf.sendTransform(transform_msg(odom))
        if self.pub_path is not None:
            ps = PoseStamped()
            ps.header = odom.header
            ps.pose = odom.pose.pose
            with self._lock:
                self._path.header.stamp = header.stamp
                self._path.poses = (list(self._path.poses) + [ps])[-v["path_length"]:]
                self.pub_path.publish(self._path)

    def _publish_diagnostics(self) -> None:
        r = self._last
        if r is None:
            ok, message, values = False, "no frame processed yet", {}
        else:
            ok, message = r.state == TrackingState.OK, r.state.value
            values = {"state": r.state.value, "inliers": r.inliers, "keypoints": r.keypoints,
                      "landmarks": r.landmarks, "lost_count": r.lost_count, "resets": r.resets,
                      **{f"{k}_ms": round(t, 2) for k, t in r.times.items()}}
        self.pub_diag.publish(diagnostics_msg(
            self.get_clock().now().to_msg(), f"{self.get_name()}: GoodPoint visual odometry",
            self.values["mode"], ok, message, values))



def odometry_msg(header, r: OdometryResult, odom_frame: str, base_frame: str) -> Odometry:
    """nav_msgs/Odometry of one result: the input's stamp, REP-105 frames, ROS-order covariances."""
    T = r.T_odom_base
    odom = Odometry()
    odom.header.stamp = header.stamp
    odom.header.frame_id = odom_frame
    odom.child_frame_id = base_frame
    pose = odom.pose.pose
    pose.position.x, pose.position.y, pose.position.z = (float(x) for x in T[:3, 3])
    q = pose.orientation
    q.x, q.y, q.z, q.w = (float(x) for x in quaternion_xyzw(T[:3, :3]))
    odom.pose.covariance = [float(x) for x in r.pose_covariance.ravel()]
    tw = odom.twist.twist
    tw.linear.x, tw.linear.y, tw.linear.z = (float(x) for x in r.twist[:3])
    tw.angular.x, tw.angular.y, tw.angular.z = (float(x) for x in r.twist[3:])
    odom.twist.covariance = [float(x) for x in r.twist_covariance.ravel()]
    return odom


def transform_msg(odom: Odometry) -> TransformStamped:
    """The TF odom → base of an Odometry message (REP-105)."""
    t = TransformStamped()
    t.header = odom.header
    t.child_frame_id = odom.child_frame_id
    p, q = odom.pose.pose.position, odom.pose.pose.orientation
    t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = p.x, p.y, p.z
    t.transform.rotation = q
    return t


def main(args=None) -> int:
    """``vo_node`` / ``ros2 run goodpoint_ros vo_node``: spin until Ctrl-C."""
    return run(VONode, NODE_NAME, args)


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["VONode", "main", "odometry_msg", "transform_msg"]
