"""``goodpoint eval bag``: the paper's metrics on a rosbag2 replay with depth + poses.

Frames i and i + shift (default 5) of a bag (AirSim ROS 2 wrapper topics by
default) are paired; the ground-truth warp a→b comes from a's planar depth,
both camera poses and the intrinsics (paper §6.1, the AirSim village set).
``--no-depth`` evaluates an ordinary robot bag (matches, essential-matrix
inliers, relative-pose error against odometry, track length).
"""
from __future__ import annotations

import argparse

DEFAULT_IMAGE = "/airsim_node/drone_1/front_center/Scene"
DEFAULT_DEPTH = "/airsim_node/drone_1/front_center/DepthPlanar"
DEFAULT_INFO = "/airsim_node/drone_1/front_center/Scene/camera_info"
DEFAULT_POSE = "/airsim_node/drone_1/odom_local_ned"


def _size(text: str):
    from ..cli.common import parse_size
    return parse_size(text)


def add_bag_arguments(p: argparse.ArgumentParser) -> None:
    """Bag-specific options of ``goodpoint eval bag`` (methods/model options are A's)."""
    p.add_argument("bag", help="rosbag2 directory or file (.db3 / .mcap)")
    g = p.add_argument_group("bag")
    g.add_argument("--bag-b", default=None,
                   help="second bag of the same trajectory (other lighting): frame i of BAG is "
                        "paired with frame i+shift of BAG_B")
    g.add_argument("--image-topic", default=DEFAULT_IMAGE, help=f"image topic ({DEFAULT_IMAGE})")
    g.add_argument("--depth-topic", default=DEFAULT_DEPTH,
                   help=f"planar depth topic, 32FC1 metres ({DEFAULT_DEPTH})")
    g.add_argument("--camera-info-topic", default=DEFAULT_INFO,
                   help=f"sensor_msgs/CameraInfo topic ({DEFAULT_INFO})")
    g.add_argument("--pose-topic", default=DEFAULT_POSE,
                   help=f"Odometry / PoseStamped / TransformStamped topic ({DEFAULT_POSE})")
    g.add_argument("--extrinsic", default="auto", choices=["auto", "tf_static", "airsim", "optical"],
                   help="camera pose from the body pose: tf_static (body → image frame_id), airsim "
                        "(pure axis rotation p_body = (z, x, y)_optical), optical (pose topic is the "
                        "camera's optical pose); auto = tf_static when present, else airsim")
    g.add_argument("--shift", type=int, default=5, help="pair frame i with i+shift (default 5)")
    g.add_argument("--stride", type=int, default=1, help="use every k-th pair start (default 1)")
    g.add_argument("--max-pairs", type=int, default=0, help="evaluate at most N pairs (0 = all)")
    g.add_argument("--eval-size", type=_size, default=(320, 240),
                   help="images are resized to WxH with K scaled (default 320x240)")
    g.add_argument("--roll", type=float, default=0.0,
                   help="roll the second image by this many degrees (paper: 5); warp updated")
    g.add_argument("--depth-tolerance", type=float, default=0.05,
                   help="visibility: relative depth agreement in b (default 0.05 = 5%%)")
    g.add_argument("--sync-tolerance", type=float, default=0.02,
                   help="max |Δt| in seconds between image and depth stamps (default 0.02)")
    g.add_argument("--pose-tolerance", type=float, default=0.1,
                   help="max gap in seconds for pose interpolation (default 0.1)")
    g.add_argument("--coverage-radius", type=float, default=20.0,
                   help="coverage disc radius in pixels (default 20, paper §6.1)")
    g.add_argument("--no-depth", action="store_true",
                   help="robot bag without depth: matches, essential inlier ratio, relative pose "
                        "error vs odometry when present, track length")


def run_bag(args) -> int:
    """Entry point used by ``goodpoint eval bag``."""
    from ..cli.common import UserError
    raise UserError("goodpoint eval bag: being implemented (issue 3 part B)")
