"""What both nodes share on the rclpy side: declaring a :class:`~.params.ParamSpec`
table, the input QoS, "say it once" logging, the frame worker's error and shutdown
handling, /diagnostics and ``main()`` (spin until Ctrl-C).

Imports rclpy at module level: only ``ros/`` may, and only the node modules import this.
"""
from __future__ import annotations

import sys
from typing import Callable, Dict, Iterable, Optional

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

from goodpoint_ros.ros.params import ParamSpec, check_value

try:  # Humble and later; older rclpy raised only KeyboardInterrupt
    from rclpy.executors import ExternalShutdownException
except ImportError:  # pragma: no cover
    class ExternalShutdownException(Exception):
        pass


class FatalError(RuntimeError):
    """The node cannot start (no backend loads, bad start-up parameter)."""


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """The ``ros2 param describe`` view of one spec: description, read-only, range, choices."""
    d = ParameterDescriptor(description=spec.description, read_only=spec.read_only)
    if spec.choices:
        d.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.range and isinstance(spec.default, float):
        d.floating_point_range = [FloatingPointRange(
            from_value=float(spec.range[0]), to_value=float(spec.range[1]), step=0.0)]
    elif spec.range and isinstance(spec.default, int) and not isinstance(spec.default, bool):
        d.integer_range = [IntegerRange(from_value=int(spec.range[0]), to_value=int(spec.range[1]),
                                        step=1)]
    return d


def declare_parameters(node, specs: Iterable[ParamSpec]) -> Dict:
    """Declare every spec on ``node``; {name: checked value} (FatalError on a bad one)."""
    specs = list(specs)
    table = {s.name: s for s in specs}
    for s in specs:
        try:
            node.declare_parameter(s.name, s.default, descriptor(s))
        except Exception as exc:  # e.g. `sync_slop: 0` (an int) in a params file
            raise FatalError(f"parameter {s.name}: {type(exc).__name__}: {exc} "
                             f"(expected a {type(s.default).__name__})") from None
    try:
        return {s.name: check_value(s.name, node.get_parameter(s.name).value, table)
                for s in specs}
    except ValueError as exc:
        raise FatalError(f"bad parameter: {exc}") from None


def input_qos(reliability: str, depth: int) -> QoSProfile:
    """The inputs' QoS: REP-2003's sensor-data profile unless the parameters say otherwise."""
    if reliability == "best_effort" and depth == 5:
        return qos_profile_sensor_data
    return QoSProfile(
        depth=depth, history=HistoryPolicy.KEEP_LAST, durability=DurabilityPolicy.VOLATILE,
        reliability=(ReliabilityPolicy.BEST_EFFORT if reliability == "best_effort"
                     else ReliabilityPolicy.RELIABLE))


class OnceLog:
    """Warnings said once per distinct text (camera_info and bad frames arrive at 30 Hz)."""

    def __init__(self, logger):
        self.logger = logger
        self.said = set()

    def __call__(self, text: str) -> bool:
        if text in self.said:
            return False
        self.said.add(text)
        self.logger.warning(text)
        return True


class WorkerNode:
    """Mixed into a node whose frames run on ``self.worker`` (a LatestFrameWorker): a
    failed frame is one throttled error line, and destroying the node stops the worker
    after the frame in hand."""

    def _on_frame_error(self, _item, exc: BaseException) -> None:
        if rclpy.ok():            # not when publishing raced with Ctrl-C: nothing to report
            self.get_logger().error(f"frame failed: {type(exc).__name__}: {exc}",
                                    throttle_duration_sec=5.0)

    def destroy_node(self):
        worker = getattr(self, "worker", None)       # None when __init__ failed early
        if worker is not None:
            worker.stop()
        return super().destroy_node()


def diagnostics_msg(stamp, name: str, hardware_id: str, ok: bool, message: str,
                    values: Dict) -> DiagnosticArray:
    """/diagnostics with one status: OK or WARN, ``values`` as key/value strings."""
    status = DiagnosticStatus()
    status.name, status.hardware_id, status.message = name, hardware_id, message
    status.level = DiagnosticStatus.OK if ok else DiagnosticStatus.WARN
    status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
    array = DiagnosticArray()
    array.header.stamp = stamp
    array.status = [status]
    return array


def run(factory: Callable[[], object], name: str, args=None) -> int:
    """``main()`` of a node: init, build it, spin until Ctrl-C / shutdown; exit code.

    A :class:`FatalError` at start-up is one line on stderr and exit 1,
    never a traceback; Ctrl-C stops the worker after the frame in hand and exits 0.
    """
    rclpy.init(args=args)
    node: Optional[object] = None
    code = 0
    try:
        node = factory()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except FatalError as exc:
        print(f"[{name}] fatal: {exc}", file=sys.stderr)
        code = 1
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code
