"""Replay a rosbag2 into the GoodPoint detector with simulated time.

    ros2 launch goodpoint_ros replay.launch.py bag:=/data/run1 image:=/cam0/image_raw

``ros2 bag play --clock`` publishes /clock from the bag's timestamps and the
node runs with ``use_sim_time``, so its outputs carry the recorded stamps.
Any argument of detector.launch.py (mode, left_image, backend, ...) passes
through.  Playback starts after ``start_delay`` seconds, once the model is loaded.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription, TimerAction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    arg = LaunchConfiguration
    arguments = [
        DeclareLaunchArgument("bag", description="rosbag2 folder (or .mcap / .db3 file) to play"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback rate"),
        DeclareLaunchArgument("start_delay", default_value="3.0",
                              description="seconds to wait for the model before playing"),
    ]
    detector_launch = PathJoinSubstitution([FindPackageShare("goodpoint_ros"), "launch",
                                            "detector.launch.py"])
    detector = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(detector_launch),
        # Launch configurations are global: detector.launch.py's arguments given on
        # this command line (image:=..., mode:=...) reach it unchanged.
        launch_arguments=[("use_sim_time", "true")],
    )
    play = ExecuteProcess(
        cmd=["ros2", "bag", "play", arg("bag"), "--rate", arg("rate"), "--clock"],
        output="screen",
    )
    return LaunchDescription(arguments + [detector,
                                          TimerAction(period=arg("start_delay"), actions=[play])])
