# Environment of the real-ROS 2 tier (PyPI ROS 2 Jazzy wheels in .venv-ros);
# sourced by build.sh, tier.sh and run.sh:  `. tools/ros/env.sh build|run`.
# Each variable is explained in docs/ros.md ("The ROS tier's environment").
# On a machine with ROS 2 installed none of this is needed: source
# /opt/ros/<distro>/setup.bash and install/setup.bash as usual.
_gp_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV_ROS=$(cd "$_gp_root" && realpath -m "${VENV_ROS:-.venv-ros}")
ROS_WS=$(cd "$_gp_root" && realpath -m "${ROS_WS:-build/ros}")
export VENV_ROS ROS_WS

# The venv's cmake, colcon and python3 first: detector_node's `#!/usr/bin/env python3`
# must start the interpreter that has rclpy.
export PATH="$VENV_ROS/bin:$PATH"
# Fast DDS is the only RMW the wheels ship; saying so avoids a search.
export RMW_IMPLEMENTATION=rmw_fastrtps_cpp
# DDS stays on this machine: no multicast, 127.0.0.1 and shared memory only.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( 100 + $$ % 100 ))}"
# rcl's log files go beside the build, not to ~/.ros.
export ROS_LOG_DIR="$ROS_WS/log/ros"

case "${1:-run}" in
build)
    # ament / rosidl find their CMake configs and resource index in the venv
    # ("No 'rosidl_typesupport_c' found" without AMENT_PREFIX_PATH); fastcdr's
    # config lies in lib/cmake, so the prefix is the venv itself, not its share/.
    export AMENT_PREFIX_PATH="$VENV_ROS"
    export CMAKE_PREFIX_PATH="$VENV_ROS"
    ;;
run)
    if [ ! -f "$ROS_WS/install/setup.sh" ]; then
        echo "tools/ros/env.sh: $ROS_WS/install/setup.sh missing: run make ros-build" >&2
        return 1
    fi
    # colcon's setup.sh prepends the install: PYTHONPATH (its site-packages, where
    # goodpoint_ros sits beside the generated goodpoint_ros/msg: it must come
    # before any source checkout), LD_LIBRARY_PATH (the generated typesupport
    # libraries; UnsupportedTypeSupport without), AMENT_PREFIX_PATH and
    # CMAKE_PREFIX_PATH (ros2 run / get_package_prefix find detector_node).
    # shellcheck disable=SC1091
    case $- in *u*) _gp_u=1; set +u ;; *) _gp_u= ;; esac   # colcon's scripts read unset vars
    COLCON_CURRENT_PREFIX="$ROS_WS/install" . "$ROS_WS/install/setup.sh"
    [ -n "$_gp_u" ] && set -u; unset _gp_u
    # The wheels' own packages stay findable in the ament index (share/ of the venv).
    export AMENT_PREFIX_PATH="$AMENT_PREFIX_PATH:$VENV_ROS"
    # The wheels' libraries (rcl, Fast DDS) need no LD_LIBRARY_PATH from us: the
    # ros_wheels_bootstrapper .pth re-executes every venv interpreter once with it set.
    ;;
esac
unset _gp_root
