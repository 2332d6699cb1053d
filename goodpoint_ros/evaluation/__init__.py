"""Evaluation of keypoint front ends: the paper's metrics on homography sets and rosbag2 replays."""
