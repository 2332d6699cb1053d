"""goodpoint_ros: GoodPoint learned keypoints (Belikov & Potapov 2020) for ROS 2.

The core (model, keypoints, matching, backends, evaluation, bag replay) imports
and runs without ROS; only :mod:`goodpoint_ros.ros.node` needs rclpy.

Coordinate convention (``docs/conventions.md``): keypoints are ``(x, y)`` in
pixels of the original input image with pixel centres at integer coordinates.
"""
__version__ = "0.1.0"

__all__ = ["__version__", "GoodPointConfig", "FeatureExtractor", "Features",
           "match_features", "sample_descriptors"]


def __getattr__(name):  # lazy, so `import goodpoint_ros` stays cheap and torch-free
    if name == "GoodPointConfig":
        from goodpoint_ros.core.config import GoodPointConfig
        return GoodPointConfig
    if name == "FeatureExtractor":
        from goodpoint_ros.core.pipeline import FeatureExtractor
        return FeatureExtractor
    if name in ("Features", "sample_descriptors"):
        from goodpoint_ros.core import keypoints
        return getattr(keypoints, name)
    if name == "match_features":
        from goodpoint_ros.core.matching import match_features
        return match_features
    raise AttributeError(name)
