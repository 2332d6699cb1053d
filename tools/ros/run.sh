#!/usr/bin/env bash
# Run a command in the ROS tier's environment (built workspace sourced, DDS kept
# on this machine): `bash tools/ros/run.sh python tools/ros/demo.py`.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/ros/env.sh run
. tools/ros/netns.sh 2>/dev/null
exec "${GP_NETNS[@]}" "$@"
