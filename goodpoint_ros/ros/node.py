"""ROS 2 detector node: images in, GoodPoint keypoints / matches / status out.

With :mod:`.vo_node` and :mod:`.runtime`, the only code that imports rclpy,
message_filters and cv_bridge.  It is thin on purpose: it declares parameters
(:mod:`.params`), converts messages (:mod:`goodpoint_ros.core.image_msgs`,
:mod:`.messages`) and schedules frames (:mod:`goodpoint_ros.frontend.scheduler`);
the per-frame work is the ROS-free :class:`~goodpoint_ros.frontend.frontend.Frontend`
around the same :class:`~goodpoint_ros.core.pipeline.FeatureExtractor` the CLI and
evaluator use.

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
from typing import Any

# Before numpy loads: OpenBLAS's pool would fight the network's threads (see cli/__init__.py).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rcl_interfaces.msg import SetParametersResult  # noqa: E402
from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402

from goodpoint_ros.backends import BackendUnavailable, create_backend  # noqa: E402
from goodpoint_ros.backends.engine_cache import profile_for  # noqa: E402
from goodpoint_ros.core.image_msgs import (  # noqa: E402
    UnsupportedEncoding,
    decode_compressed,
    decode_image,
    encode_bgr8,
)
from goodpoint_ros.core.pipeline import FeatureExtractor  # noqa: E402
from goodpoint_ros.core.weights import WeightsError  # noqa: E402
from goodpoint_ros.frontend.frontend import Camera, Frontend, StereoOutput, debug_picture  # noqa: E402
from goodpoint_ros.frontend.scheduler import LatestFrameWorker  # noqa: E402
from goodpoint_ros.msg import Keypoints, Matches, Status  # noqa: E402
from goodpoint_ros.ros import messages  # noqa: E402
from goodpoint_ros.ros.params import (  # noqa: E402
    PARAMETERS,
    config_from_params,
    frontend_config_from_params,
    resize_from,
    validate_update,
)
from goodpoint_ros.ros.runtime import (  # noqa: E402
    ExternalShutdownException,
    FatalError,
    OnceLog,
    WorkerNode,
    declare_parameters,
    diagnostics_msg,
    input_qos,
    run,
)

NODE_NAME = "goodpoint_detector"
OUTPUT_QOS = 10        # reliable, keep last 10: a SLAM front end wants every output


@dataclass
class Frame:
    """What the executor hands the worker: raw messages, decoded on the worker."""
    images: tuple                 # (msg,) or (left, right)
    cameras: tuple                # Camera or None per image, as known at arrival
    arrived: float                # time.perf_counter() at the callback


@dataclass
class View:
    """One camera's output of a frame: its keypoints publisher and what goes on it."""
    publisher: Any
    header: Any
    features: Any
    track_ids: Any


class DetectorNode(WorkerNode, Node):
    """GoodPoint keypoints and matches for a mono camera or a stereo pair.

    ``extractor``: a ready :class:`FeatureExtractor` (tests inject one with a
    fake backend); by default one is built from the parameters.
    """

    def __init__(self, extractor=None, **node_kwargs):
        super().__init__(NODE_NAME, **node_kwargs)
        self.values, resize = self._read_parameters()
        values = self.values
        self.stereo_mode = values["mode"] == "stereo"
        if extractor is None:
            extractor = self._load_extractor(values, resize)
        self.frontend = Frontend(extractor, config_from_params(values),
                                 frontend_config_from_params(values))
        c = extractor.config
        # the weights' detection defaults favour quality (pyramid, doubled small frames):
        # say what they cost and how to trade them for speed
        sizes = (f"frames under {c.upsample_below} px doubled" if c.upsample_below
                 else "frames at their size")
        self.get_logger().info(
            "GoodPoint %s mode, backend %s (%s, %s), θ_keypoint %.4f, %d pyramid level(s), %s "
            "(pyramid_levels 1 and upsample_below 0: fastest)"
            % (values["mode"], *self.backend_info, c.keypoint_threshold, c.pyramid_levels, sizes))

        self._lock = threading.Lock()          # camera models, previous header, counters
        self._cameras = [None, None]
        self._previous_header = None
        self._skipped = 0
        self._last_status = None
        self._say_once = OnceLog(self.get_logger())
        self._create_publishers()
        self.worker = LatestFrameWorker(self._process, on_error=self._on_frame_error,
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
    def _read_parameters(self):
        """(checked values, network input size or None); FatalError on a bad one."""
        values = declare_parameters(self, PARAMETERS)
        try:
            return validate_update(values, []), resize_from(values)
        except ValueError as exc:
            raise FatalError(f"bad parameter: {exc}") from None

    def _load_extractor(self, values, resize):
        """The model loads once, here; the fallback chain is logged."""
        backend = self._load_backend(values, resize)
        for name, reason in getattr(backend, "fallback_log", []):
            self.get_logger().warning(f"backend {name} unavailable, falling back: {reason}")
        try:
            # a frame over memory_budget_mb is downscaled (said once), never an OOM kill
            return FeatureExtractor(backend=backend, config=config_from_params(values),
                                    resize=resize, oversize="downscale")
        except ValueError as exc:
            raise FatalError(f"bad detection settings: {exc}") from None

    @staticmethod
    def _load_backend(values, resize):
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
            kwargs["profile"] = profile_for(resize)
        try:
            return create_backend(values["backend"], **kwargs)
        except (BackendUnavailable, WeightsError, ValueError, OSError) as exc:
            raise FatalError(f"no inference backend could load: {exc}") from None
        except Exception as exc:      # a backend library failing in its own way
            raise FatalError(f"no inference backend could load: {type(exc).__name__}: {exc}") \
                from None

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
        v = self.values
        qos = input_qos(v["qos_reliability"], v["qos_depth"])
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
            self._sync.registerCallback(self._on_images)
            info_topics = ("left_camera_info_topic", "right_camera_info_topic")
        else:
            self._subs = [self.create_subscription(image_type, v["image_topic"], self._on_images,
                                                   qos)]
            info_topics = ("camera_info_topic",)
        if v["use_camera_info"]:
            for i, topic in enumerate(info_topics):
                self.create_subscription(CameraInfo, v[topic],
                                         lambda msg, i=i: self._on_camera_info(i, msg), qos)

    # ------------------------------------------------------------------ callbacks (executor)
    def _on_images(self, *msgs) -> None:
        """One image (mono) or a synchronised (left, right) pair."""
        with self._lock:
            cams = tuple(self._cameras[:len(msgs)])
        self.worker.submit(Frame(msgs, cams, time.perf_counter()))

    def _on_camera_info(self, index: int, msg) -> None:
        camera = Camera.from_camera_info(msg.k, msg.d)
        if camera is None:
            problem = Camera.problem(msg.k, msg.d)
            self._say_once(f"camera_info {index}: {problem}: verifying with the fundamental "
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
    def _process(self, frame: Frame) -> None:
        """The one per-frame path, mono or stereo: decode, frontend, publish."""
        header = frame.images[0].header
        try:
            images = [self._decode(m) for m in frame.images]
            previous = self._previous_header_for(header)
            out = self._run_frontend(images, frame.cameras)
        except (UnsupportedEncoding, ValueError) as exc:   # ValueError: e.g. over the size limit
            with self._lock:
                self._skipped += 1
            self._say_once(f"{exc} (frames with this problem are skipped)")
            return
        with self._lock:
            self._previous_header = header
        for note in getattr(self.frontend.extractor, "pop_notes", list)():
            self._say_once(note)                       # downscaled frames, input range: once
        for view in self._views(frame, out):
            view.publisher.publish(self._keypoints_msg(view.header, view.features, view.track_ids))
        if isinstance(out, StereoOutput):
            self.pub_stereo.publish(self._matches_msg(header, header, frame.images[1].header,
                                                      out.stereo_matches))
        if out.matches is not None and previous is not None:
            self.pub_matches.publish(self._matches_msg(header, previous, header, out.matches))
        self._publish_debug(header, images[0], out)
        self._publish_status(header, frame, out)

    def _decode(self, msg):
        if hasattr(msg, "format"):                                   # CompressedImage
            return decode_compressed(msg.format, msg.data)
        try:
            return decode_image(msg.encoding, msg.height, msg.width, msg.step,
                                bool(msg.is_bigendian), msg.data)
        except UnsupportedEncoding as exc:
            return _cv_bridge_decode(msg, exc)

    def _run_frontend(self, images, cameras):
        if self.stereo_mode:
            return self.frontend.stereo(images[0], images[1], *cameras)
        return self.frontend.mono(images[0], cameras[0])

    def _previous_header_for(self, header):
        """The previous frame's header; None on the first frame, or when time went
        backwards (a bag looped: old tracks do not continue, the frontend restarts)."""
        with self._lock:
            previous = self._previous_header
        if previous is not None and _stamp(header) < _stamp(previous):
            self.frontend.reset()
            return None
        return previous

    def _views(self, frame: Frame, out):
        if isinstance(out, StereoOutput):
            return [View(self.pub_keypoints, frame.images[0].header, out.left, out.left_ids),
                    View(self.pub_right_keypoints, frame.images[1].header, out.right,
                         out.right_ids)]
        return [View(self.pub_keypoints, frame.images[0].header, out.features, out.track_ids)]

    def _keypoints_msg(self, header, feats, ids):
        fields = messages.keypoints_fields(feats, ids, self.values["descriptor_encoding"])
        msg = messages.fill(Keypoints(), fields)
        msg.header = header
        return msg

    def _matches_msg(self, header, query_header, train_header, result):
        msg = messages.fill(Matches(), messages.matches_fields(result))
        msg.header, msg.query_header, msg.train_header = header, query_header, train_header
        return msg

    def _publish_debug(self, header, image, out) -> None:
        if self.values["debug_image"] and self.pub_debug.get_subscription_count() > 0:
            msg = messages.fill(Image(), encode_bgr8(debug_picture(image, out)))
            msg.header = header
            self.pub_debug.publish(msg)

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
        backend, precision, device = self.backend_info
        healthy = self.worker.alive and stats.failed == 0
        values = {"backend": backend, "precision": precision, "device": device,
                  "frames_received": stats.received,
                  "frames_processed": stats.processed - skipped, "frames_dropped": stats.dropped,
                  "frames_skipped": skipped, "frames_failed": stats.failed,
                  "network_ms": round(last.get("network_ms", 0.0), 2),
                  "callback_ms": round(last.get("callback_ms", 0.0), 2)}
        self.pub_diagnostics.publish(diagnostics_msg(
            self.get_clock().now().to_msg(), f"{self.get_name()}: GoodPoint detector", backend,
            healthy, "running" if healthy else "worker failed on some frames", values))


def _stamp(header):
    return (header.stamp.sec, header.stamp.nanosec)


_BRIDGE: Any = False


def _cv_bridge_decode(msg, error: UnsupportedEncoding):
    """cv_bridge for encodings the built-in decoder lacks, if installed; else ``error``."""
    global _BRIDGE
    if _BRIDGE is False:
        try:
            from cv_bridge import CvBridge  # lazy: optional, no pip wheel
            _BRIDGE = CvBridge()
        except Exception:         # not installed, or built against another numpy
            _BRIDGE = None
    if _BRIDGE is None or msg.height * msg.width == 0:
        raise error
    try:
        return _BRIDGE.imgmsg_to_cv2(msg, desired_encoding="passthrough")
    except Exception as exc:
        raise UnsupportedEncoding(f"cv_bridge cannot convert {msg.encoding!r}: {exc}") from None


def main(args=None) -> int:
    """``detector_node`` / ``ros2 run goodpoint_ros detector_node``: spin until Ctrl-C."""
    return run(DetectorNode, NODE_NAME, args)


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["DetectorNode", "ExternalShutdownException", "FatalError", "main"]
