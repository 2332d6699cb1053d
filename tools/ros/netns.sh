# Sourced: sets GP_NETNS (a command prefix) that runs a command in a private
# network namespace with only loopback up, so no DDS packet can leave the
# machine; empty (and GOODPOINT_NETNS unset) where the machine does not allow
# it (not root, no unshare): then LOCALHOST discovery alone keeps DDS local.
GP_NETNS=()
if command -v unshare >/dev/null && command -v ip >/dev/null \
        && unshare --net sh -c 'ip link set lo up' 2>/dev/null; then
    GP_NETNS=(unshare --net -- sh -c 'ip link set lo up && exec "$@"' sh)
    export GOODPOINT_NETNS=1
else
    unset GOODPOINT_NETNS
    echo "ROS TIER: WARNING: no private network namespace (needs root + unshare);" \
         "DDS kept local by ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST only" >&2
fi
