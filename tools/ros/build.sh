#!/usr/bin/env bash
# colcon build of this package against the PyPI ROS 2 wheels (Makefile ros-build).
# A copy of the package's files is built, outside the scanned checkout: CMake
# refuses to export include paths that lie inside the source tree (.venv-ros
# does), and colcon refuses a second package.xml under its base path.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/ros/env.sh build
src="$ROS_WS/src/goodpoint_ros"
start=$(date +%s)
rm -rf "$src" && mkdir -p "$src"
# tar keeps modification times, so an unchanged file is not rebuilt.
tar -c --exclude=__pycache__ --exclude='*.pyc' CMakeLists.txt package.xml msg goodpoint_ros launch config \
    | tar -x -C "$src"
cd "$ROS_WS"
# -DCMAKE_PROJECT_INCLUDE: corrects the wheels' exported build-machine include
# paths (cmake/ros_wheels_fixup.cmake; a no-op on a real ROS install).
# BUILD_TESTING=OFF: the tier runs pytest itself (launch_testing has no wheel).
if ! colcon --log-base log build --base-paths src --build-base build --install-base install \
        --event-handlers console_direct- --cmake-args \
        -DPython3_EXECUTABLE="$VENV_ROS/bin/python" -DBUILD_TESTING=OFF \
        -DCMAKE_PROJECT_INCLUDE="$OLDPWD/cmake/ros_wheels_fixup.cmake" \
        > build.log 2>&1; then
    tail -40 build.log >&2
    echo "ROS TIER: colcon build failed; full log: $ROS_WS/build.log" >&2
    exit 1
fi
echo $(( $(date +%s) - start )) > .built
echo "colcon build: $(cat .built) s ($ROS_WS/install)"
