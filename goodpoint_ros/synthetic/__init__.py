"""Synthetic data with exact ground truth: a ray–plane scene renderer and an AirSim-style
rosbag2 writer (``goodpoint make-sample-bag``).

May import :mod:`goodpoint_ros.core`; rosbags lazily. Never ``ros``, ``evaluation`` or ``cli``.
"""
