"""The detector node's parameters, without ROS: names, defaults, ranges, checks.

One table (:data:`PARAMETERS`) drives everything: the node declares each entry
with its description and range (``ParameterDescriptor``), ``config/detector.yaml``
lists every one of them (a test checks), and the run-time parameter callback
validates a change with :func:`validate_update` before anything is applied.
Defaults are the paper's (GoodPointConfig, Belikov & Potapov 2020 §6.1) and
REP-2003's sensor-data QoS.

Conventions for "off" values, because ROS parameters have no null:
``keypoint_threshold = 0`` and ``nms_radius = -1`` → the weights' metadata; ``max_keypoints = 0``
→ all; ``ratio_test = 0`` → off; ``bucket_cols/rows = 0`` → no bucketing;
``resize_width/height = 0`` → native size; ``max_disparity = 0`` → unbounded;
empty ``weights`` / ``engine`` → bundled files.
"""
from __future__ import annotations

import array
import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Optional, Tuple

import yaml

from goodpoint_ros.backends import AUTO_ORDER, REGISTRY
from goodpoint_ros.backends import PRECISIONS as BACKEND_PRECISIONS
from goodpoint_ros.core.config import GoodPointConfig
from goodpoint_ros.frontend.frontend import FrontendConfig
from goodpoint_ros.frontend.stereo import StereoParams

MODES = ("mono", "stereo")
#: auto first, then the order auto tries, then the backends it never picks itself.
BACKENDS = ("auto", *AUTO_ORDER, *(b for b in REGISTRY if b not in AUTO_ORDER))
PRECISIONS = ("auto", *BACKEND_PRECISIONS)
DESCRIPTOR_ENCODINGS = ("float32", "uint8")
RELIABILITIES = ("best_effort", "reliable")


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter. ``default``'s Python type is its ROS type."""
    name: str
    default: Any
    description: str
    read_only: bool = False                   # fixed after start-up (topics, model...)
    choices: Optional[Tuple[str, ...]] = None
    range: Optional[Tuple[float, float]] = None  # inclusive, for int / double


P = ParamSpec


def from_field(cls, name: str, ros_name: str = "", *, off: str = "", default: Any = None,
               description: str = "", range: Optional[Tuple[float, float]] = None,
               choices: Optional[Tuple[str, ...]] = None, read_only: bool = False) -> ParamSpec:
    """A parameter that is a field of the settings dataclass ``cls`` (GoodPointConfig,
    FrontendConfig, StereoParams, VOConfig): the default is the field's, and its help,
    range and choices come from the field's metadata (``help`` / ``range`` / ``choices``,
    the one source, as core/config.py's ``_opt``).  ``description`` / ``range`` /
    ``choices`` here only stand in where a field has no metadata yet.

    ``off``: which ROS value stands for the field's None (ROS parameters have no null),
    e.g. ``"0 = off"``; ``default`` is then that value.  ``ros_name``: the parameter's name
    when it differs from the field's (``stereo_row_tolerance`` ← ``row_tolerance``).
    """
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    meta = dict(f.metadata)
    if default is None:
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    if default is None:
        raise ValueError(f"{cls.__name__}.{name} defaults to None: give its ROS 'off' value")
    help_ = meta.get("help") or description
    if not help_:
        raise ValueError(f"{cls.__name__}.{name}: no help in its metadata and none given")
    rng = meta.get("range") or range
    if rng is not None and isinstance(default, (int, float)) and not isinstance(default, bool):
        lo, hi = rng
        if off.startswith("-1"):
            lo = -1
        elif off.startswith("0 ="):     # the 'unset' value lies below the field's range
            lo = min(lo, 0)
        rng = (type(default)(lo), type(default)(hi))
    return ParamSpec(ros_name or name, default, help_ + (f"; ROS: {off}" if off else ""),
                     read_only, meta.get("choices") or choices, rng)


def _detection(name: str, default, off: str = "") -> ParamSpec:
    """A GoodPointConfig field (detection and matching)."""
    return from_field(GoodPointConfig, name, off=off, default=default)


PARAMETERS = (
    # ---- what to run
    P("mode", "mono", "mono: one camera; stereo: a synchronised left/right pair",
      True, MODES),
    from_field(FrontendConfig, "rectified", read_only=True),
    P("backend", "auto", f"inference backend; auto tries {' → '.join(AUTO_ORDER)}",
      True, BACKENDS),
    P("precision", "auto", "network precision; auto: with backend auto the fastest that passes "
      "the accuracy gate here (measured once, cached), else the backend's reference", True,
      PRECISIONS),
    P("weights", "", "GoodPoint weights (.safetensors or .onnx); empty: the bundled weights", True),
    P("engine", "", "TensorRT engine file; empty: built / cached by the tensorrt backend", True),
    P("device", "auto", "torch / onnxruntime device: auto, cpu, cuda, cuda:N", True),
    P("threads", 0, "CPU threads for the network (onnxruntime / torch); 0: all cores", True,
      range=(0, 256)),
    P("resize_width", 0, "width the network sees (keypoints are mapped back); 0: native",
      True, range=(0, 8192)),
    P("resize_height", 0, "height the network sees; 0: native", True, range=(0, 8192)),
    from_field(GoodPointConfig, "memory_budget_mb"),
    from_field(GoodPointConfig, "input_max"),
    # ---- inputs
    P("image_topic", "image", "mono input image topic (remappable)", True),
    P("camera_info_topic", "camera_info", "mono camera_info topic (optional input)", True),
    P("left_image_topic", "left/image_rect", "stereo left image topic", True),
    P("right_image_topic", "right/image_rect", "stereo right image topic", True),
    P("left_camera_info_topic", "left/camera_info", "stereo left camera_info topic", True),
    P("right_camera_info_topic", "right/camera_info", "stereo right camera_info topic", True),
    P("compressed", False, "subscribe sensor_msgs/CompressedImage (jpeg/png) instead of Image",
      True),
    from_field(FrontendConfig, "use_camera_info", read_only=True),
    P("qos_reliability", "best_effort", "input QoS reliability (sensor data: best_effort)",
      True, RELIABILITIES),
    P("qos_depth", 5, "input QoS history depth (sensor data: 5)", True, range=(1, 1000)),
    P("sync_queue_size", 10, "stereo ApproximateTimeSynchronizer queue size", True,
      range=(1, 1000)),
    P("sync_slop", 0.01, "stereo ApproximateTimeSynchronizer slop in seconds", True,
      range=(0.0, 1.0)),
    # ---- detection (run-time changeable)
    _detection("keypoint_threshold", 0.0, "0 = unset"),
    _detection("nms_radius", -1, "-1 = unset"),
    _detection("border", 4),
    _detection("max_keypoints", 1000),
    _detection("pyramid_levels", 0, "0 = unset"),
    _detection("pyramid_factor", 0.0, "0 = unset"),
    _detection("upsample_below", -1, "-1 = unset"),
    P("bucket_cols", 0, "grid bucketing columns for an even spread; 0: off", range=(0, 256)),
    P("bucket_rows", 0, "grid bucketing rows; 0: off", range=(0, 256)),
    P("max_per_bucket", 0, "max keypoints per grid cell when bucketing", range=(0, 100000)),
    # ---- matching and verification (run-time changeable)
    _detection("descriptor_threshold", 0.8),
    _detection("ratio_test", 0.0, "0 = off"),
    _detection("mutual", True),
    from_field(FrontendConfig, "match"),
    from_field(FrontendConfig, "verification"),
    from_field(FrontendConfig, "ransac_threshold"),
    from_field(StereoParams, "row_tolerance", "stereo_row_tolerance", range=(0.0, 20.0),
               description="rectified stereo: max |y_left - y_right| in pixels"),
    from_field(StereoParams, "min_disparity", range=(0.0, 8192.0),
               description="rectified stereo: min x_left - x_right in pixels"),
    from_field(StereoParams, "max_disparity", off="0 = unbounded", default=0.0,
               range=(0.0, 8192.0), description="rectified stereo: max disparity in pixels"),
    # ---- outputs (run-time changeable)
    P("descriptor_encoding", "float32", "Keypoints descriptors: float32, or uint8 "
      "(quantised, 4x smaller)", choices=DESCRIPTOR_ENCODINGS),
    P("debug_image", True, "publish ~/debug_image (drawn only while someone subscribes)"),
    P("diagnostics_period", 1.0, "seconds between /diagnostics messages", True,
      range=(0.1, 60.0)),
)
SPECS: Dict[str, ParamSpec] = {p.name: p for p in PARAMETERS}


def yaml_comment(spec: ParamSpec) -> str:
    """The line config/detector.yaml puts above ``spec``: what ``ros2 param describe``
    says of it (a test keeps the file to it)."""
    text = ("[start-up] " if spec.read_only else "") + spec.description
    if spec.choices:
        text += f" ({', '.join(spec.choices)})"
    if spec.range:
        text += f" [{spec.range[0]}, {spec.range[1]}]"
    return text


def defaults() -> Dict[str, Any]:
    return {p.name: p.default for p in PARAMETERS}


def check_value(name: str, value: Any, specs: Optional[Dict[str, ParamSpec]] = None) -> Any:
    """Type, choice and range check of one value against ``specs`` (default: the
    detector's); returns it (ints widened to float)."""
    spec = (SPECS if specs is None else specs).get(name)
    if spec is None:
        raise ValueError(f"unknown parameter {name!r}")
    kind = type(spec.default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is list:                        # double arrays (camera_xyz, ...): numbers only
        if not isinstance(value, (list, tuple, array.array)) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise ValueError(f"{name} must be a list of numbers, got {value!r}")
        return [float(v) for v in value]
    if type(value) is not kind:
        raise ValueError(f"{name} must be a {kind.__name__}, got {value!r}")
    if spec.choices and value not in spec.choices:
        raise ValueError(f"{name} must be one of {', '.join(spec.choices)}; got {value!r}")
    if spec.range and not (spec.range[0] <= value <= spec.range[1]):
        raise ValueError(f"{name} must be in [{spec.range[0]}, {spec.range[1]}], got {value}")
    return value


def config_from_params(values: Dict[str, Any]) -> GoodPointConfig:
    """Parameter values → validated GoodPointConfig (θ unset when keypoint_threshold is 0)."""
    cols, rows = int(values["bucket_cols"]), int(values["bucket_rows"])
    bucketing = cols > 0 and rows > 0
    cfg = GoodPointConfig(
        keypoint_threshold=float(values["keypoint_threshold"]) or None,
        nms_radius=int(values["nms_radius"]) if int(values["nms_radius"]) >= 0 else None,
        border=int(values["border"]),
        max_keypoints=int(values["max_keypoints"]) or None,
        pyramid_levels=int(values.get("pyramid_levels", 0)) or None,
        pyramid_factor=float(values.get("pyramid_factor", 0.0)) or None,
        upsample_below=(int(values["upsample_below"])
                        if int(values.get("upsample_below", -1)) >= 0 else None),
        bucket_cells=(cols, rows) if bucketing else None,
        max_per_bucket=int(values["max_per_bucket"]) if bucketing else 0,
        descriptor_threshold=float(values["descriptor_threshold"]),
        ratio_test=float(values["ratio_test"]) or None,
        mutual=bool(values["mutual"]),
        memory_budget_mb=float(values.get("memory_budget_mb", 4000.0)),
        input_max=float(values.get("input_max", 0.0)),
    )
    return cfg.validate()


def stereo_params_from(values: Dict[str, Any]) -> StereoParams:
    return StereoParams(float(values["stereo_row_tolerance"]), float(values["min_disparity"]),
                        float(values["max_disparity"]) or None).validate()


def frontend_config_from_params(values: Dict[str, Any]) -> FrontendConfig:
    """Parameter values → the frontend's typed settings (matching, verification, stereo)."""
    return FrontendConfig(match=bool(values["match"]), verification=str(values["verification"]),
                          ransac_threshold=float(values["ransac_threshold"]),
                          rectified=bool(values["rectified"]),
                          use_camera_info=bool(values["use_camera_info"]),
                          stereo=stereo_params_from(values)).validate()


def validate_update(current: Dict[str, Any], changes: Iterable[Tuple[str, Any]]) -> Dict[str, Any]:
    """The full parameter set after ``changes``, or ``ValueError`` saying why not.

    Checks each value, refuses read-only ones, and checks the combination
    (GoodPointConfig.validate, stereo band) so a half-valid update is never applied.
    """
    new = dict(current)
    for name, value in changes:
        spec = SPECS.get(name)
        if spec is None:
            continue          # not ours (use_sim_time, qos_overrides...): leave to rclpy
        if spec.read_only and value != current.get(name):
            raise ValueError(f"{name} is fixed at start-up (restart the node to change it)")
        new[name] = check_value(name, value)
    if new["bucket_cols"] > 0 and new["bucket_rows"] > 0 and new["max_per_bucket"] < 1:
        raise ValueError("bucketing (bucket_cols, bucket_rows > 0) needs max_per_bucket >= 1")
    config_from_params(new)
    frontend_config_from_params(new)
    return new


def resize_from(values: Dict[str, Any]) -> Optional[Tuple[int, int]]:
    w, h = int(values["resize_width"]), int(values["resize_height"])
    if (w > 0) != (h > 0):
        raise ValueError("set both resize_width and resize_height, or neither")
    if w > 0 and min(w, h) < 8:   # as the CLI's --resize: the network needs one 8x8 cell
        raise ValueError(f"resize_width/height {w}x{h} is too small (at least 8x8, or 0 for native)")
    return (w, h) if w > 0 else None


def load_yaml(path, node_name: str = "/**") -> Dict[str, Any]:
    """``ros__parameters`` of ``node_name`` (or the ``/**`` wildcard) from a ROS params file."""
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f) or {}
    for key in (node_name, node_name.lstrip("/"), "/**"):
        section = doc.get(key)
        if isinstance(section, dict) and "ros__parameters" in section:
            return dict(section["ros__parameters"])
    raise ValueError(f"{path}: no '{node_name}: ros__parameters:' section")
