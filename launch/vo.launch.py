"""GoodPoint visual odometry: nav_msgs/Odometry and TF odom → base_link.

    ros2 launch goodpoint_ros vo.launch.py \
        left_image:=/stereo/left/image_rect right_image:=/stereo/right/image_rect \
        left_camera_info:=/stereo/left/camera_info right_camera_info:=/stereo/right/camera_info
    ros2 launch goodpoint_ros vo.launch.py mode:=rgbd image:=/camera/color/image_raw \
        depth:=/camera/aligned_depth_to_color/image_raw camera_info:=/camera/color/camera_info

Loads config/vo.yaml (or ``params_file:=...``).  Outputs:
``/<namespace>/goodpoint_vo/odometry`` (and ``path``), TF, ``/diagnostics``; the
``~/reset`` service (std_srvs/Trigger) restarts at the origin.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    arg = LaunchConfiguration
    topics = {"image": "image", "camera_info": "camera_info", "depth": "depth",
              "left_image": "left/image_rect", "right_image": "right/image_rect",
              "left_camera_info": "left/camera_info", "right_camera_info": "right/camera_info"}
    arguments = [
        DeclareLaunchArgument("mode", default_value="stereo", choices=["stereo", "rgbd", "mono"],
                              description="stereo pair, image + depth, or one camera (up to scale)"),
        *[DeclareLaunchArgument(k, default_value=v, description=f"input topic ({k})")
          for k, v in topics.items()],
        DeclareLaunchArgument("publish_tf", default_value="true", choices=["true", "false"],
                              description="broadcast TF odom → base_link"),
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([FindPackageShare("goodpoint_ros"), "config",
                                                "vo.yaml"]),
            description="ROS parameters file for the node"),
        DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              choices=["true", "false", "True", "False"],
                              description="use /clock (true when replaying a bag)"),
    ]
    vo = Node(
        package="goodpoint_ros",
        executable="vo_node",
        name="goodpoint_vo",
        namespace=arg("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[
            arg("params_file"),
            {"mode": arg("mode"),
             "publish_tf": ParameterValue(arg("publish_tf"), value_type=bool),
             "use_sim_time": ParameterValue(arg("use_sim_time"), value_type=bool)},
        ],
        # the node subscribes to the relative names of its topic parameters' defaults
        remappings=[(v, arg(k)) for k, v in topics.items()],
    )
    return LaunchDescription(arguments + [vo])
