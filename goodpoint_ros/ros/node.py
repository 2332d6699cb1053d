"""ROS 2 detector node: images in, GoodPoint keypoints / matches / status out.

The only module that imports rclpy, message_filters and cv_bridge.  It is thin
on purpose: it declares parameters (:mod:`.node_params`), converts messages
(:mod:`.image_decoding`, :mod:`.messages`) and schedules frames
(:mod:`.frame_scheduler`); the per-frame work is the ROS-free
:class:`~goodpoint_ros.frontend.frontend.Frontend` around the same
:class:`~goodpoint_ros.core.pipeline.FeatureExtractor` the CLI and evaluator use.

Threads: the executor thread only drops each frame into a latest-frame-only
slot; one worker thread decodes, runs the network, matches and publishes
(rclpy publishers are thread-safe).  A slow model therefore drops stale
frames (counted in ``~/status``) instead of building lag.

Topics (relative names, remappable; ``~`` is the node's private namespace):

=========================  =====================================================
mono in                    ``image`` (Image or CompressedImage), ``camera_info``
stereo in                  ``left/image_rect``, ``right/image_rect`` (approx. sync),
                           ``left/camera_info``, ``right/camera_info``
mono out                   ``~/keypoints``, ``~/matches`` (previous → current)
stereo out                 ``~/left/keypoints``, ``~/right/keypoints``,
                           ``~/stereo_matches`` (left → right), ``~/matches``
both                       ``~/debug_image`` (only drawn while subscribed),
                           ``~/status``, ``/diagnostics``
=========================  =====================================================
"""
from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

# Before numpy loads: OpenBLAS's pool would fight the network's threads (see cli/__init__.py).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import rclpy  # noqa: E402  (after the environment setting above)
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from goodpoint_ros.core.image_msgs import UnsupportedEncoding, decode_compressed, decode_image, encode_bgr8
from goodpoint_ros.frontend.frontend import Camera, Frontend, StereoOutput, debug_picture
from goodpoint_ros.frontend.scheduler import LatestFrameWorker
from goodpoint_ros.msg import Keypoints, Matches, Status
from goodpoint_ros.ros import messages
from goodpoint_ros.ros.params import (
    PARAMETERS,
    check_value,
    config_from_params,
    frontend_config_from_params,
    resize_from,
    validate_update,
)

try:  # Humble and later; older rclpy raised only KeyboardInterrupt
    from rclpy.executors import ExternalShutdownException
except ImportError:  # pragma: no cover
    class ExternalShutdownException(Exception):
        pass

NODE_NAME = "goodpoint_detector"
OUTPUT_QOS = 10        # reliable, keep last 10: a SLAM front end wants every output


class FatalError(RuntimeError):
    """The node cannot start (no backend loads, bad start-up parameter)."""


@dataclass
class Frame:
    """What the executor hands the worker: raw messages, decoded on the worker."""
    images: tuple                 # (msg,) or (left, right)
    cameras: tuple                # Camera or None per image, as known at arrival
    arrived: float                # time.perf_counter() at the callback


class DetectorNode(Node):
    """GoodPoint keypoints and matches for a mono camera or a stereo pair.

    ``extractor``: a ready :class:`FeatureExtractor` (tests inject one with a
    fake backend); by default one is built from the parameters.
    """

    def __init__(self, extractor=None, **node_kwargs):
        super().__init__(NODE_NAME, **node_kwargs)
        self._declare_parameters()
        try:
            values = {p.name: check_value(p.name, self.get_parameter(p.name).value)
                      for p in PARAMETERS}
            values = validate_update(values, [])
            resize = resize_from(values)
        except ValueError as exc:
            raise FatalError(f"bad parameter: {exc}") from None
        self.values = values
        self.stereo_mode = values["mode"] == "stereo"
        if extractor is None:
            extractor = self._load_extractor(values, resize)
        self.frontend = Frontend(extractor, config_from_params(values),
                                 frontend_config_from_params(values))
        self.get_logger().info(
            "GoodPoint %s mode, backend %s (%s, %s), θ_keypoint %.4f"
            % (values["mode"], *self.backend_info, extractor.config.keypoint_threshold))

        self._lock = threading.Lock()          # camera models, previous header, counters
        self._cameras = [None, None]
        self._previous_header = None
        self._skipped = 0
        self._last_status = None
        self._warned = set()
        self._create_publishers()
        self.worker = LatestFrameWorker(self._process, on_error=self._on_worker_error,
                                        name="goodpoint-detector")
        self._create_subscriptions()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._diag_timer = self.create_timer(values["diagnostics_period"], self._publish_diagnostics)

    @property
    def backend_info(self):
        """(backend, precision, device) now in use: a TensorRT backend that builds its
        engine in the background serves with ONNX Runtime first, then switches."""
        b = self.frontend.extractor.backend
        return (str(getattr(b, "name", type(b).__name__)),
                str(getattr(b, "precision", self.values["precision"])),
                str(getattr(b, "device", self.values["device"])))

    # ------------------------------------------------------------------ set-up
    def _declare_parameters(self) -> None:
        for p in PARAMETERS:
            descriptor = ParameterDescriptor(description=p.description, read_only=p.read_only)
            if p.choices:
                descriptor.additional_constraints = "one of: " + ", ".join(p.choices)
            if p.range and isinstance(p.default, float):
                descriptor.floating_point_range = [FloatingPointRange(
                    from_value=float(p.range[0]), to_value=float(p.range[1]), step=0.0)]
            elif p.range and isinstance(p.default, int) and not isinstance(p.default, bool):
                descriptor.integer_range = [IntegerRange(
                    from_value=int(p.range[0]), to_value=int(p.range[1]), step=1)]
            try:
                self.declare_parameter(p.name, p.default, descriptor)
            except Exception as exc:  # e.g. `sync_slop: 0` (an int) in a params file
                raise FatalError(f"parameter {p.name}: {type(exc).__name__}: {exc} "
                                 f"(expected a {type(p.default).__name__})") from None

    def _load_extractor(self, values, resize):
        """The model loads once, here; the fallback chain is logged."""
        from goodpoint_ros.backends import BackendUnavailable, create_backend
        from goodpoint_ros.core.pipeline import FeatureExtractor
        from goodpoint_ros.core.weights import WeightsError
        kwargs = {"weights": values["weights"] or None, "device": values["device"],
                  "precision": values["precision"]}
        if values["engine"]:
            kwargs["engine"] = values["engine"]
        if values["threads"]:
            kwargs["threads"] = values["threads"]
        if values["backend"] == "auto":
            # the auto probe (fastest gated path) runs in a thread; ONNX Runtime serves meanwhile
            kwargs["probe"] = "background"
        if resize is not None:
            # a TensorRT engine built for the size the network will actually see
            from goodpoint_ros.backends.engine_cache import profile_for
            kwargs["profile"] = profile_for(resize)
        try:
            backend = create_backend(values["backend"], **kwargs)
        except (BackendUnavailable, WeightsError, ValueError, OSError) as exc:
            raise FatalError(f"no inference backend could load: {exc}") from None
        except Exception as exc:      # a backend library failing in its own way
            raise FatalError(f"no inference backend could load: {type(exc).__name__}: {exc}") \
                from None
        for name, reason in getattr(backend, "fallback_log", []):
            self.get_logger().warning(f"backend {name} unavailable, falling back: {reason}")
        try:
            # a frame over memory_budget_mb is downscaled (said once), never an OOM kill
            return FeatureExtractor(backend=backend, config=config_from_params(values),
                                    resize=resize, oversize="downscale")
        except ValueError as exc:
            raise FatalError(f"bad detection settings: {exc}") from None

    def _input_qos(self) -> QoSProfile:
        v = self.values
        if v["qos_reliability"] == "best_effort" and v["qos_depth"] == 5:
            return qos_profile_sensor_data               # REP-2003
        return QoSProfile(
            depth=v["qos_depth"], history=HistoryPolicy.KEEP_LAST,
            durability=DurabilityPolicy.VOLATILE,
            reliability=(ReliabilityPolicy.BEST_EFFORT if v["qos_reliability"] == "best_effort"
                         else ReliabilityPolicy.RELIABLE))

    def _create_publishers(self) -> None:
        pub = self.create_publisher
        if self.stereo_mode:
            self.pub_keypoints = pub(Keypoints, "~/left/keypoints", OUTPUT_QOS)
            self.pub_right_keypoints = pub(Keypoints, "~/right/keypoints", OUTPUT_QOS)
            self.pub_stereo = pub(Matches, "~/stereo_matches", OUTPUT_QOS)
        else:
            self.pub_keypoints = pub(Keypoints, "~/keypoints", OUTPUT_QOS)
        self.pub_matches = pub(Matches, "~/matches", OUTPUT_QOS)
        self.pub_debug = pub(Image, "~/debug_image", 1)
        self.pub_status = pub(Status, "~/status", OUTPUT_QOS)
        self.pub_diagnostics = pub(DiagnosticArray, "/diagnostics", 1)

    def _create_subscriptions(self) -> None:
        v, qos = self.values, self._input_qos()
        image_type = CompressedImage if v["compressed"] else Image
        if self.stereo_mode:
            # Lazy: only stereo needs message_filters, and it has no pip wheel (mono
            # runs wherever it is missing; docs/ros.md).
            import message_filters
            # message_filters.Subscriber defaults to reliable QoS: pass the sensor profile.
            self._subs = [message_filters.Subscriber(self, image_type, v[topic], qos_profile=qos)
                          for topic in ("left_image_topic", "right_image_topic")]
            self._sync = message_filters.ApproximateTimeSynchronizer(
                self._subs, v["sync_queue_size"], v["sync_slop"])
            self._sync.registerCallback(self._on_stereo)
            info_topics = ("left_camera_info_topic", "right_camera_info_topic")
        else:
            self._subs = [self.create_subscription(image_type, v["image_topic"], self._on_image,
                                                   qos)]
            info_topics = ("camera_info_topic",)
        if v["use_camera_info"]:
            for i, topic in enumerate(info_topics):
                self.create_subscription(CameraInfo, v[topic],
                                         lambda msg, i=i: self._on_camera_info(i, msg), qos)

    # ------------------------------------------------------------------ callbacks (executor)
    def _on_image(self, msg) -> None:
        with self._lock:
            cams = (self._cameras[0],)
        self.worker.submit(Frame((msg,), cams, time.perf_counter()))

    def _on_stereo(self, left, right) -> None:
        with self._lock:
            cams = tuple(self._cameras)
        self.worker.submit(Frame((left, right), cams, time.perf_counter()))

    def _on_camera_info(self, index: int, msg) -> None:
        camera = Camera.from_camera_info(msg.k, msg.d)
        if camera is None:
            problem = Camera.problem(msg.k, msg.d)
            self._log_once(f"camera_info {index}: {problem}: verifying with the fundamental "
                           "matrix instead of the essential matrix")
        with self._lock:
            self._cameras[index] = camera

    def _on_set_parameters(self, params) -> SetParametersResult:
        """Validate the whole new set first: a bad value changes nothing."""
        try:
            new = validate_update(self.values, [(p.name, p.value) for p in params])
            self.frontend.update(config_from_params(new), frontend_config_from_params(new))
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        self.values = new
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ per frame (worker)
    def _decode(self, msg):
        if hasattr(msg, "format"):                                   # CompressedImage
            return decode_compressed(msg.format, msg.data)
        try:
            return decode_image(msg.encoding, msg.height, msg.width, msg.step,
                                bool(msg.is_bigendian), msg.data)
        except UnsupportedEncoding:
            bridge = _cv_bridge()
            if bridge is None or msg.height * msg.width == 0:
                raise
            try:
                return bridge.imgmsg_to_cv2(msg, desired_encoding="passthrough")
            except Exception as exc:
                raise UnsupportedEncoding(f"cv_bridge cannot convert {msg.encoding!r}: {exc}") \
                    from None

    def _process(self, frame: Frame) -> None:
        try:
            images = [self._decode(m) for m in frame.images]
        except UnsupportedEncoding as exc:
            with self._lock:
                self._skipped += 1
            self._warn_once(str(exc))
            return
        header = frame.images[0].header
        with self._lock:
            previous_header = self._previous_header
            if previous_header is not None and _stamp(header) < _stamp(previous_header):
                # Time went backwards (a bag looped): old tracks do not continue.
                self.frontend.reset()
                previous_header = None
        try:
            if self.stereo_mode:
                out = self.frontend.stereo(images[0], images[1], *frame.cameras)
            else:
                out = self.frontend.mono(images[0], frame.cameras[0])
        except ValueError as exc:                  # e.g. an image over the size limit
            with self._lock:
                self._skipped += 1
            self._warn_once(f"frame skipped: {exc}")
            return
        pop_notes = getattr(self.frontend.extractor, "pop_notes", None)
        for note in pop_notes() if pop_notes else ():   # downscaled frames, input range: once
            self._log_once(note)
        enc = self.values["descriptor_encoding"]
        stereo = isinstance(out, StereoOutput)
        main_feats = out.left if stereo else out.features
        main_ids = out.left_ids if stereo else out.track_ids
        self.pub_keypoints.publish(self._keypoints_msg(header, main_feats, main_ids, enc))
        if stereo:
            right_header = frame.images[1].header
            self.pub_right_keypoints.publish(
                self._keypoints_msg(right_header, out.right, out.right_ids, enc))
            self.pub_stereo.publish(self._matches_msg(header, header, right_header,
                                                      out.stereo_matches))
        if out.matches is not None and previous_header is not None:
            self.pub_matches.publish(self._matches_msg(header, previous_header, header,
                                                       out.matches))
        with self._lock:
            self._previous_header = header
        if self.values["debug_image"] and self.pub_debug.get_subscription_count() > 0:
            pic = debug_picture(images[0], out)
            msg = messages.fill(Image(), encode_bgr8(pic))
            msg.header = header
            self.pub_debug.publish(msg)
        self._publish_status(header, frame, out)

    def _keypoints_msg(self, header, feats, ids, encoding):
        msg = messages.fill(Keypoints(), messages.keypoints_fields(feats, ids, encoding))
        msg.header = header
        return msg

    def _matches_msg(self, header, query_header, train_header, result):
        msg = messages.fill(Matches(), messages.matches_fields(result))
        msg.header, msg.query_header, msg.train_header = header, query_header, train_header
        return msg

    def _publish_status(self, header, frame: Frame, out) -> None:
        m = out.matches
        stats = self.worker.stats()
        with self._lock:
            skipped = self._skipped
        feats = out.left if isinstance(out, StereoOutput) else out.features
        fields = messages.status_fields(
            *self.backend_info, out.times, (time.perf_counter() - frame.arrived) * 1e3,
            # this frame is done but the worker counts it after we return; skipped frames
            # are not "processed", so that received = processed + dropped + skipped
            stats.__class__(stats.received, stats.processed + 1 - skipped, stats.dropped,
                            stats.failed),
            skipped, len(feats), 0 if m is None else len(m),
            0 if m is None else int(m.inliers.sum()))
        msg = messages.fill(Status(), fields)
        msg.header = header
        self._last_status = fields
        self.pub_status.publish(msg)

    def _publish_diagnostics(self) -> None:
        stats = self.worker.stats()
        with self._lock:
            skipped = self._skipped
        last = self._last_status or {}
        status = DiagnosticStatus()
        status.name = f"{self.get_name()}: GoodPoint detector"
        status.hardware_id = self.backend_info[0]
        healthy = self.worker.alive and stats.failed == 0
        status.level = DiagnosticStatus.OK if healthy else DiagnosticStatus.WARN
        status.message = "running" if healthy else "worker failed on some frames"
        values = {"backend": self.backend_info[0], "precision": self.backend_info[1],
                  "device": self.backend_info[2], "frames_received": stats.received,
                  "frames_processed": stats.processed - skipped, "frames_dropped": stats.dropped,
                  "frames_skipped": skipped, "frames_failed": stats.failed,
                  "network_ms": round(last.get("network_ms", 0.0), 2),
                  "callback_ms": round(last.get("callback_ms", 0.0), 2)}
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [status]
        self.pub_diagnostics.publish(array)

    def _on_worker_error(self, frame, exc) -> None:
        if not rclpy.ok():            # publishing raced with Ctrl-C: nothing to report
            return
        self.get_logger().error(f"frame failed: {type(exc).__name__}: {exc}",
                                throttle_duration_sec=5.0)

    def _log_once(self, text: str) -> None:
        """A warning said once per distinct text (camera_info arrives at 30 Hz too)."""
        if text not in self._warned:
            self._warned.add(text)
            self.get_logger().warning(text)

    def _warn_once(self, text: str) -> None:
        """Log each distinct problem once (a wrong encoding would otherwise flood at 30 Hz)."""
        if text not in self._warned:
            self._warned.add(text)
            self.get_logger().warning(text + " (frames with this problem are skipped)")

    # ------------------------------------------------------------------ shutdown
    def destroy_node(self):
        worker = getattr(self, "worker", None)
        if worker is not None:
            worker.stop()
        return super().destroy_node()


def _stamp(header):
    return (header.stamp.sec, header.stamp.nanosec)


_BRIDGE: Any = False


def _cv_bridge():
    """cv_bridge.CvBridge for encodings the built-in decoder lacks, if installed."""
    global _BRIDGE
    if _BRIDGE is False:
        try:
            from cv_bridge import CvBridge
            _BRIDGE = CvBridge()
        except Exception:         # not installed, or built against another numpy
            _BRIDGE = None
    return _BRIDGE


def main(args=None) -> int:
    """``detector_node`` / ``ros2 run goodpoint_ros detector_node``: spin until Ctrl-C."""
    rclpy.init(args=args)
    node: Optional[DetectorNode] = None
    code = 0
    try:
        node = DetectorNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except FatalError as exc:
        print(f"[{NODE_NAME}] fatal: {exc}", file=sys.stderr)
        code = 1
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
