"""The ROS 2 layer: the only code that imports rclpy and ROS message packages.

* :mod:`.node` — the detector node (``detector_node``);
* :mod:`.params` — its parameter table and validation;
* :mod:`.messages` — Features / MatchResult ↔ ``goodpoint_ros/msg`` field helpers.

May import every ROS-free layer (core, frontend, odometry, backends). rclpy, message_filters
and tf2_ros are imported in the node modules only.
"""
