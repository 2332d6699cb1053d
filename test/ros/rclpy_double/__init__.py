"""A small test double of exactly the rclpy / message_filters surface that
goodpoint_ros.ros.node uses, so the node's wiring is tested without ROS 2.

    restore = rclpy_double.install()    # fake rclpy, message_filters, *_msgs, goodpoint_ros.msg
    ...                                  # import goodpoint_ros.ros.node afresh and test it
    restore()                            # put sys.modules back

The same tests run against the real rclpy when it is importable (see
test/ros/test_node_wiring.py); what the double cannot show (DDS discovery,
serialisation, executors in C) is left to the launch_testing test.
"""
from __future__ import annotations

import sys
import types
from pathlib import Path

from . import core, interfaces

MSG_DIR = Path(__file__).resolve().parents[3] / "msg"

#: modules replaced while the double is installed
MODULE_NAMES = ("rclpy", "rclpy.node", "rclpy.qos", "rclpy.parameter", "rclpy.executors",
                "rcl_interfaces", "rcl_interfaces.msg", "message_filters", "sensor_msgs",
                "sensor_msgs.msg", "std_msgs", "std_msgs.msg", "builtin_interfaces",
                "builtin_interfaces.msg", "diagnostic_msgs", "diagnostic_msgs.msg",
                "goodpoint_ros.msg", "goodpoint_ros.ros.node", "cv_bridge",
                "geometry_msgs", "geometry_msgs.msg", "nav_msgs", "nav_msgs.msg", "std_srvs",
                "std_srvs.srv", "tf2_ros", "goodpoint_ros.ros.runtime",
                "goodpoint_ros.ros.vo_node")


def _module(name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    m.__dict__["__rclpy_double__"] = True
    return m


def build_modules():
    msgs = interfaces.build(MSG_DIR)
    c = core
    mods = {
        "rclpy": _module("rclpy", init=c.init, ok=c.ok, shutdown=c.shutdown,
                         try_shutdown=c.try_shutdown, spin=c.spin, spin_once=c.spin_once),
        "rclpy.node": _module("rclpy.node", Node=c.Node),
        "rclpy.qos": _module("rclpy.qos", QoSProfile=c.QoSProfile,
                             ReliabilityPolicy=c.ReliabilityPolicy, HistoryPolicy=c.HistoryPolicy,
                             DurabilityPolicy=c.DurabilityPolicy,
                             qos_profile_sensor_data=c.qos_profile_sensor_data),
        "rclpy.parameter": _module("rclpy.parameter", Parameter=c.Parameter),
        "rclpy.executors": _module("rclpy.executors",
                                   ExternalShutdownException=c.ExternalShutdownException),
        "rcl_interfaces.msg": _module("rcl_interfaces.msg", ParameterDescriptor=c.ParameterDescriptor,
                                      FloatingPointRange=c.FloatingPointRange,
                                      IntegerRange=c.IntegerRange,
                                      SetParametersResult=c.SetParametersResult),
        "message_filters": _module("message_filters", Subscriber=c.MFSubscriber,
                                   ApproximateTimeSynchronizer=c.ApproximateTimeSynchronizer,
                                   SimpleFilter=c.SimpleFilter),
    }
    for pkg, classes in msgs.items():
        mods[f"{pkg}.msg"] = _module(f"{pkg}.msg", **classes)
        if pkg != "goodpoint_ros":
            mods[pkg] = _module(pkg, msg=mods[f"{pkg}.msg"])
    mods["rcl_interfaces"] = _module("rcl_interfaces", msg=mods["rcl_interfaces.msg"])
    mods["std_srvs.srv"] = _module("std_srvs.srv", Trigger=c.Trigger)
    mods["std_srvs"] = _module("std_srvs", srv=mods["std_srvs.srv"])
    for name in ("node", "qos", "parameter", "executors"):
        setattr(mods["rclpy"], name, mods[f"rclpy.{name}"])
    return mods


def install():
    """Swap the double into sys.modules; returns a function that restores them."""
    import goodpoint_ros
    saved = {name: sys.modules.get(name) for name in MODULE_NAMES}
    saved_attr = goodpoint_ros.__dict__.get("msg")
    for name in MODULE_NAMES:
        sys.modules.pop(name, None)
    mods = build_modules()
    sys.modules.update(mods)
    sys.modules["cv_bridge"] = None           # "not installed": the built-in decoder is used
    sys.modules["tf2_ros"] = None             # no wheel: the VO node says so and goes on
    goodpoint_ros.msg = mods["goodpoint_ros.msg"]

    def restore():
        for name, mod in saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod
        if saved_attr is None:
            goodpoint_ros.__dict__.pop("msg", None)
        else:
            goodpoint_ros.msg = saved_attr
        goodpoint_ros.__dict__.pop("node", None)

    return restore
