"""rosbag2 evaluation: replay (topics, TF chain, intrinsics, image/depth sync), the depth + pose
warp, and ``goodpoint eval bag``'s evaluator. Reads bags with rosbags; no ROS needed.
"""
