"""GoodPoint detector node for a SLAM front end.

    ros2 launch goodpoint_ros detector.launch.py image:=/camera/image_raw
    ros2 launch goodpoint_ros detector.launch.py mode:=stereo \
        left_image:=/stereo/left/image_rect right_image:=/stereo/right/image_rect \
        left_camera_info:=/stereo/left/camera_info right_camera_info:=/stereo/right/camera_info

Loads config/detector.yaml (or ``params_file:=...``); the arguments below
override it.  Outputs live under the node's private namespace:
``/<namespace>/goodpoint_detector/{keypoints,matches,debug_image,status}``
(stereo: ``left/keypoints``, ``right/keypoints``, ``stereo_matches``, ``matches``).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from goodpoint_ros.ros.params import SPECS


def generate_launch_description():
    arg = LaunchConfiguration
    arguments = [
        DeclareLaunchArgument("mode", default_value="mono", choices=["mono", "stereo"],
                              description="one camera, or a synchronised left/right pair"),
        DeclareLaunchArgument("image", default_value="image",
                              description="mono: input image topic"),
        DeclareLaunchArgument("camera_info", default_value="camera_info",
                              description="mono: camera_info topic (optional input)"),
        DeclareLaunchArgument("left_image", default_value="left/image_rect",
                              description="stereo: left image topic"),
        DeclareLaunchArgument("right_image", default_value="right/image_rect",
                              description="stereo: right image topic"),
        DeclareLaunchArgument("left_camera_info", default_value="left/camera_info",
                              description="stereo: left camera_info topic"),
        DeclareLaunchArgument("right_camera_info", default_value="right/camera_info",
                              description="stereo: right camera_info topic"),
        # the node's parameter table says which backends and precisions exist
        DeclareLaunchArgument("backend", default_value="auto",
                              choices=list(SPECS["backend"].choices),
                              description=SPECS["backend"].description),
        DeclareLaunchArgument("precision", default_value="auto",
                              choices=list(SPECS["precision"].choices),
                              description="network precision (auto: the fastest gated path, "
                                          "measured on this machine)"),
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([FindPackageShare("goodpoint_ros"), "config",
                                                "detector.yaml"]),
            description="ROS parameters file for the node"),
        DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              choices=["true", "false", "True", "False"],
                              description="use /clock (true when replaying a bag)"),
        DeclareLaunchArgument("log_level", default_value="info",
                              description="node log level (debug, info, warn, error)"),
    ]
    detector = Node(
        package="goodpoint_ros",
        executable="detector_node",
        name="goodpoint_detector",
        namespace=arg("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[
            arg("params_file"),
            {   # later entries override the file
                "mode": arg("mode"),
                "backend": arg("backend"),
                "precision": arg("precision"),
                "use_sim_time": ParameterValue(arg("use_sim_time"), value_type=bool),
            },
        ],
        # The node subscribes to the relative names below (its topic parameters'
        # defaults); remapping points them at the camera driver's topics.
        remappings=[
            ("image", arg("image")),
            ("camera_info", arg("camera_info")),
            ("left/image_rect", arg("left_image")),
            ("right/image_rect", arg("right_image")),
            ("left/camera_info", arg("left_camera_info")),
            ("right/camera_info", arg("right_camera_info")),
        ],
        arguments=["--ros-args", "--log-level", arg("log_level")],
    )
    return LaunchDescription(arguments + [detector])
