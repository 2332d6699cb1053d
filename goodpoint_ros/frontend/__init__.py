"""The ROS-free per-frame front end the node and the odometry share.

* :mod:`.frontend` — :class:`Frontend`: features, matches to the previous frame, verification;
* :mod:`.tracking` — persistent track ids from frame-to-frame matches;
* :mod:`.stereo` — left/right matching (row-constrained when rectified);
* :mod:`.scheduler` — the latest-frame-only worker that keeps a slow model from building lag.

May import :mod:`goodpoint_ros.core`. Never rclpy, ``ros``, ``evaluation`` or ``cli``.
"""
