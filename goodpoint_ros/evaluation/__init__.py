"""``goodpoint eval``: the paper's metrics (§5.3, §6.1, §6.2) beside ORB, SIFT and AKAZE.

* :mod:`.metrics` — repeatability, precision, coverage, harmonic mean and the
  SLAM-oriented extras (corner error, pose AUC), pure numpy;
* :mod:`.methods` — the compared front ends and their matchers;
* :mod:`.aggregate` — per-pair numbers → the tables' numbers;
* :mod:`.homography` — HPatches / EVD / retina homography sets;
* :mod:`.report` — Markdown tables and PNG plots;
* :mod:`.bags` — rosbag2 replay with depth + pose ground truth.

May import every ROS-free layer; never ``ros`` or ``cli``. Heavy libraries (torch,
matplotlib, rosbags) are imported where used.
"""
