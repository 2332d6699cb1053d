"""The VO node's parameters, without ROS: one table, as :mod:`.params` is the detector's.

The VO settings (``mode``, ``solver``, ``window``, ``min_inliers``, ``stereo_matching``,
``pnp_threshold``, ``keyframe_max_gap``, ``keyframe_min_parallax_deg``,
``anchor_keyframes``) are fields of
:class:`~goodpoint_ros.odometry.config.VOConfig` and ``max_keypoints`` one of
:class:`~goodpoint_ros.core.config.GoodPointConfig`: their defaults (and, where the
dataclass has it, help and range) come from there (:func:`.params.from_field`).
``config/vo.yaml`` lists every entry with its default (a test checks).  All are
read once at start-up.
"""
from __future__ import annotations

from typing import Any, Dict

import numpy as np

from goodpoint_ros.core.config import GoodPointConfig
from goodpoint_ros.core.geometry import R_BASE_OPTICAL, make_T, quat_to_R, quaternion_xyzw
from goodpoint_ros.odometry.config import VO_PYRAMID_LEVELS, VOConfig
from goodpoint_ros.ros.params import BACKENDS, PRECISIONS, RELIABILITIES, ParamSpec, check_value, from_field

P = ParamSpec

#: REP-103: the optical frame (z forward, x right, y down) in a base frame (x forward,
#: y left, z up); x, y, z, w of base ← optical.
REP103_QUATERNION = [float(v) for v in quaternion_xyzw(R_BASE_OPTICAL)]

VO_PARAMETERS = (
    # ---- what to run
    from_field(VOConfig, "mode", read_only=True),
    P("backend", "onnxruntime", "inference backend (onnxruntime: the shipped ONNX model)",
      True, BACKENDS),
    P("precision", "fp32", "network precision: fp32 (the reference) or int8 (the shipped "
      "gated int8 model on onnxruntime, ~2x faster)", True, PRECISIONS),
    P("weights", "", "GoodPoint weights (.safetensors or .onnx); empty: the bundled weights",
      True),
    P("threads", 0, "CPU threads for the network; 0: all cores", True, range=(0, 256)),
    from_field(GoodPointConfig, "max_keypoints", read_only=True),
    from_field(GoodPointConfig, "pyramid_levels", default=VO_PYRAMID_LEVELS, read_only=True),
    P("resize_scale", 1.0, "the VO runs on the frames scaled by this (0.5: half resolution, "
      "~4x faster); the calibration is scaled with them", True, range=(0.1, 1.0)),
    P("network_scale", 0.0, "GoodPoint sees each (resized) frame scaled by this: 2 doubles it "
      "as SIFT's first octave does, more and finer keypoints from small images at 4x the "
      "network time; 0: the weights' rule (frames under their upsample_below, 480 px, "
      "doubled), 1: every frame as it is (fastest)", True, range=(0.0, 2.0)),
    from_field(VOConfig, "solver", read_only=True),
    from_field(VOConfig, "window", read_only=True),
    from_field(VOConfig, "anchor_keyframes", off="-1 = the mode's", default=-1, read_only=True),
    from_field(VOConfig, "min_inliers", read_only=True),
    from_field(VOConfig, "stereo_matching", read_only=True),
    from_field(VOConfig, "pnp_threshold", off="0 = the mode's", default=0.0, read_only=True),
    from_field(VOConfig, "keyframe_max_gap", off="0 = the mode's", default=0, read_only=True),
    from_field(VOConfig, "keyframe_min_parallax_deg", read_only=True),
    # ---- inputs
    P("image_topic", "image", "rgbd / mono image topic", True),
    P("camera_info_topic", "camera_info", "rgbd / mono camera_info topic", True),
    P("depth_topic", "depth", "rgbd depth topic (registered to the image)", True),
    P("undistort", True, "rgbd / mono: true, the frames are raw (image_raw): with a non-zero "
      "camera_info d they are undistorted here into the camera of camera_info.p, as "
      "image_proc's image_rect (depth by the nearest pixel); false, they are already "
      "rectified (image_rect) and the camera of p is used", True),
    P("rectify_stereo", False, "stereo: false, the pair is rectified (image_rect; the rig from "
      "the two camera_info p); true, the frames are raw and each is rectified here with its "
      "camera_info k, d, r and p, as image_proc's stereo rectification", True),
    P("left_image_topic", "left/image_rect", "stereo left image topic", True),
    P("right_image_topic", "right/image_rect", "stereo right image topic", True),
    P("left_camera_info_topic", "left/camera_info", "stereo left camera_info topic", True),
    P("right_camera_info_topic", "right/camera_info", "stereo right camera_info topic", True),
    P("qos_reliability", "best_effort", "input QoS reliability (sensor data: best_effort)",
      True, RELIABILITIES),
    P("qos_depth", 5, "input QoS history depth (sensor data: 5)", True, range=(1, 1000)),
    P("sync_slop", 0.02, "ApproximateTimeSynchronizer slop of the pair in seconds", True,
      range=(0.0, 1.0)),
    P("sync_queue_size", 10, "ApproximateTimeSynchronizer queue size", True, range=(1, 1000)),
    # ---- outputs (REP-105)
    P("odom_frame", "odom", "nav_msgs/Odometry header.frame_id; TF parent", True),
    P("base_frame", "base_link", "nav_msgs/Odometry child_frame_id; TF child", True),
    P("publish_tf", True, "broadcast TF odom → base (tf2_ros)", True),
    P("publish_path", False, "publish ~/path (nav_msgs/Path)", True),
    P("path_length", 2000, "poses kept in ~/path", True, range=(1, 1000000)),
    P("camera_xyz", [0.0, 0.0, 0.0], "the camera's optical frame in the base frame: "
      "position x, y, z (m)", True),
    P("camera_quaternion", REP103_QUATERNION, "the camera's optical frame in the base frame: "
      "rotation x, y, z, w of base ← optical (default: REP-103, camera looking along base x)",
      True),
    P("diagnostics_period", 1.0, "seconds between /diagnostics messages", True,
      range=(0.1, 60.0)),
)
VO_SPECS: Dict[str, ParamSpec] = {p.name: p for p in VO_PARAMETERS}


def vo_defaults() -> Dict[str, Any]:
    return {p.name: p.default for p in VO_PARAMETERS}


def check_vo_values(values: Dict[str, Any]) -> Dict[str, Any]:
    """Every value checked (type, choice, range) and the combination built once:
    ``ValueError`` with a readable line on a bad one."""
    out = {name: check_value(name, values[name], VO_SPECS) for name in VO_SPECS}
    vo_config(out)
    T_base_camera(out)
    return out


def vo_config(values: Dict[str, Any]) -> VOConfig:
    return VOConfig(mode=values["mode"], solver=values["solver"], window=values["window"],
                    min_inliers=values["min_inliers"],
                    stereo_matching=values["stereo_matching"],
                    # ROS parameters have no null: 0 stands for the mode's value
                    pnp_threshold=float(values["pnp_threshold"]) or None,
                    keyframe_max_gap=int(values["keyframe_max_gap"]) or None,
                    keyframe_min_parallax_deg=float(values["keyframe_min_parallax_deg"]),
                    # here 0 is a value (no anchors): -1 stands for the mode's
                    anchor_keyframes=None if int(values["anchor_keyframes"]) < 0
                    else int(values["anchor_keyframes"]),
                    ).validate()


def T_base_camera(values: Dict[str, Any]) -> np.ndarray:
    """The camera's optical frame in the base frame [4,4] (``camera_xyz`` + quaternion)."""
    xyz, q = values["camera_xyz"], values["camera_quaternion"]
    if len(xyz) != 3:
        raise ValueError(f"camera_xyz needs 3 numbers, got {list(xyz)}")
    if len(q) != 4 or not np.linalg.norm(q) > 0:
        raise ValueError(f"camera_quaternion needs x, y, z, w (non-zero), got {list(q)}")
    return make_T(quat_to_R(q), xyz)
