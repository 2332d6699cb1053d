"""pip-installable GoodPoint core (ROS-free use).

On a ROS 2 machine build with colcon instead (CMakeLists.txt generates the
messages and installs this same Python package): a pip-installed copy in a
sourced ROS environment would shadow the generated ``goodpoint_ros.msg``.
"""
from setuptools import find_packages, setup

setup(
    name="goodpoint_ros",
    version="0.1.0",
    description="GoodPoint learned keypoints and matches for ROS 2 (Belikov & Potapov 2020)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["goodpoint_ros", "goodpoint_ros.*"])
    + ["goodpoint_training"],
    # training/ is installed as goodpoint_training: a bare top-level `training`
    # package would shadow other projects' modules.
    package_dir={"goodpoint_training": "training"},
    package_data={"goodpoint_ros": ["weights/*.safetensors", "weights/*.onnx", "weights/*.json",
                                    "deploy/gate_images/*.png"],
                  "goodpoint_training": ["*.yaml", "*.md", "*.txt"]},
    install_requires=[
        "numpy>=1.22",
        "opencv-contrib-python-headless>=4.5",
        "safetensors>=0.4",
        "tqdm>=4.60",
        "matplotlib>=3.5",
        "pyyaml>=5.4",
        "rosbags>=0.10",
        "rosbags-image>=0.9",
        # the default runtime: the bundled ONNX model, no torch needed (docs/deployment.md)
        "onnxruntime>=1.16",
    ],
    extras_require={
        # Pinned so the CPU wheel 2.13.0 satisfies it; a bare `torch` pulls a CUDA build.
        "torch": ["torch>=2.1,<=2.13.0"],
        "onnx": ["onnx>=1.14", "onnxruntime>=1.16"],
        # the fastest CPU runtime measured here (goodpoint_ros/backends/openvino_backend.py)
        "openvino": ["openvino>=2024.0"],
        "train": ["torch>=2.1,<=2.13.0", "tensorboard>=2.12", "scikit-image>=0.21"],
        "tensorrt": ["tensorrt>=8.6", "cuda-python>=12"],
        # visual odometry (goodpoint_ros/odometry): gtsam for the sliding-window BA
        # (docs/odometry.md: measured against scipy); scipy for KD-trees and the fallback BA
        "odometry": ["gtsam>=4.2,<5", "scipy>=1.8"],
        "test": ["pytest>=7", "catkin_pkg>=0.5", "scikit-image>=0.21"],
    },
    entry_points={"console_scripts": [
        "goodpoint = goodpoint_ros.cli:main",
        "detector_node = goodpoint_ros.ros.node:main",
        "vo_node = goodpoint_ros.ros.vo_node:main",
    ]},
    classifiers=["Programming Language :: Python :: 3", "License :: OSI Approved :: MIT License",
                 "Topic :: Scientific/Engineering :: Image Recognition"],
)
