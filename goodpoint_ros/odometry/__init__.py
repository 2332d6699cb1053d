"""Visual odometry on GoodPoint (or any) features, without ROS.

What lives here:

* :mod:`.config` — :class:`VOConfig`, the one source of VO settings;
* :mod:`.camera` — pinhole intrinsics, stereo rigs from projection matrices
  (``CameraInfo.p`` / KITTI ``calib.txt``), depth decoding;
* SE(3) helpers (REP-103 optical → base rotation, twist, covariance frame changes)
  live in the one geometry module, :mod:`goodpoint_ros.core.geometry`;
* :mod:`.features` — the feature source a VO runs on (GoodPoint through the
  core's extractor, or any detector + distance, e.g. ORB/SIFT/AKAZE);
* :mod:`.filtering` — rejection of degenerate matches (flat sky) before PnP;
* :mod:`.bundle` — the sliding-window bundle adjustment (gtsam, or scipy);
* :mod:`.vo` — :class:`VisualOdometry`: stereo, RGB-D and mono tracking
  against a local map, keyframes, triangulation, lost-track handling.

Imports: numpy, OpenCV, gtsam (lazily, optional: the scipy solver is the
fallback), ``goodpoint_ros.core`` and ``goodpoint_ros.frontend`` only —
never ``goodpoint_ros.ros``, ``.cli`` or ``.evaluation``, so the node and
the evaluator both build on it.
"""
from goodpoint_ros.odometry.config import VOConfig
from goodpoint_ros.odometry.vo import OdometryResult, TrackingState, VisualOdometry

__all__ = ["VOConfig", "VisualOdometry", "OdometryResult", "TrackingState"]
