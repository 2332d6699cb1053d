"""The ROS 2 layer: the only code that imports rclpy and ROS message packages.

* :mod:`.node` — the detector node (``detector_node``);
* :mod:`.vo_node` — the visual-odometry node (``vo_node``: nav_msgs/Odometry, TF, ~/reset);
* :mod:`.params` / :mod:`.vo_params` — their parameter tables (generated from the
  settings dataclasses' fields where they are one) and validation, ROS-free;
* :mod:`.runtime` — what both nodes share on the rclpy side (declaring a table, input
  QoS, /diagnostics, ``main()``);
* :mod:`.messages` — Features / MatchResult ↔ ``goodpoint_ros/msg`` field helpers.

May import every ROS-free layer (core, frontend, odometry, backends). rclpy and the
message packages are imported by the node modules and :mod:`.runtime` only;
message_filters, tf2_ros and cv_bridge (no pip wheels) lazily, where they are used.
"""
