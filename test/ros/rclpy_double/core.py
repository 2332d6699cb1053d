"""The rclpy surface the detector node uses, in-process (no DDS).

Publishing deep-copies the message (as serialisation would) and queues it
for every subscription on the same resolved topic whose QoS is compatible
(a best-effort publisher does not reach a reliable subscription, as in DDS);
``spin_once(node)`` runs one queued callback or due timer of that node.
Parameters follow rclpy's rules: declared with a descriptor, overrides from
``parameter_overrides``, read-only and range checks, then the
on-set-parameters callbacks, all or nothing.
"""
from __future__ import annotations

import copy
import enum
import threading
import time
from collections import deque

# --------------------------------------------------------------------------- context

_state = {"ok": False}
_bus_lock = threading.Condition()
_subscriptions = []          # all live Subscription objects


def init(args=None, context=None):
    _state["ok"] = True


def ok(context=None):
    return _state["ok"]


def shutdown(context=None):
    if not _state["ok"]:
        raise RuntimeError("rclpy.shutdown() called twice")
    try_shutdown()


def try_shutdown(context=None):
    with _bus_lock:
        _state["ok"] = False
        _bus_lock.notify_all()


class ExternalShutdownException(Exception):
    pass


def spin_once(node, *, executor=None, timeout_sec=None):
    node._spin_once(timeout_sec)


def spin(node, executor=None):
    while ok():
        node._spin_once(0.05)
    raise ExternalShutdownException()


# --------------------------------------------------------------------------- QoS

class ReliabilityPolicy(enum.Enum):
    RELIABLE = 1
    BEST_EFFORT = 2


class HistoryPolicy(enum.Enum):
    KEEP_LAST = 1
    KEEP_ALL = 2


class DurabilityPolicy(enum.Enum):
    TRANSIENT_LOCAL = 1
    VOLATILE = 2


class QoSProfile:
    def __init__(self, *, depth=10, history=HistoryPolicy.KEEP_LAST,
                 reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE):
        self.depth, self.history = depth, history
        self.reliability, self.durability = reliability, durability


qos_profile_sensor_data = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)


def _qos(q):
    if isinstance(q, int):
        return QoSProfile(depth=q)
    assert isinstance(q, QoSProfile), f"qos must be an int or QoSProfile, got {q!r}"
    return q


# --------------------------------------------------------------------------- parameters

class Parameter:
    class Type(enum.Enum):
        NOT_SET = 0
        BOOL = 1
        INTEGER = 2
        DOUBLE = 3
        STRING = 4

    def __init__(self, name, type_=None, value=None):
        self.name, self.value = name, value

    @property
    def type_(self):
        v = self.value
        return (Parameter.Type.BOOL if isinstance(v, bool) else Parameter.Type.INTEGER
                if isinstance(v, int) else Parameter.Type.DOUBLE if isinstance(v, float)
                else Parameter.Type.STRING if isinstance(v, str) else Parameter.Type.NOT_SET)


class ParameterDescriptor:
    def __init__(self, *, name="", type=0, description="", additional_constraints="",
                 read_only=False, dynamic_typing=False, floating_point_range=None,
                 integer_range=None):
        self.name, self.description = name, description
        self.additional_constraints, self.read_only = additional_constraints, read_only
        self.dynamic_typing = dynamic_typing
        self.floating_point_range = list(floating_point_range or [])
        self.integer_range = list(integer_range or [])


class FloatingPointRange:
    def __init__(self, *, from_value=0.0, to_value=0.0, step=0.0):
        self.from_value, self.to_value, self.step = from_value, to_value, step


class IntegerRange:
    def __init__(self, *, from_value=0, to_value=0, step=0):
        self.from_value, self.to_value, self.step = from_value, to_value, step


class SetParametersResult:
    def __init__(self, *, successful=False, reason=""):
        self.successful, self.reason = successful, reason


# --------------------------------------------------------------------------- node

class Logger:
    def __init__(self, name):
        self.name, self.records = name, []

    def _log(self, level, msg, **kw):
        self.records.append((level, str(msg)))

    def debug(self, msg, **kw): self._log("debug", msg)
    def info(self, msg, **kw): self._log("info", msg)
    def warning(self, msg, **kw): self._log("warning", msg)
    warn = warning
    def error(self, msg, **kw): self._log("error", msg)
    def fatal(self, msg, **kw): self._log("fatal", msg)


class _Time:
    def __init__(self, ns):
        self.nanoseconds = ns

    def to_msg(self):
        from . import interfaces
        Time = interfaces.REGISTRY["builtin_interfaces/Time"]
        return Time(sec=int(self.nanoseconds // 10**9), nanosec=int(self.nanoseconds % 10**9))


class Clock:
    def now(self):
        return _Time(time.time_ns())


class Publisher:
    def __init__(self, node, msg_type, topic, qos):
        self.node, self.msg_type, self.topic, self.qos = node, msg_type, topic, qos

    def publish(self, msg):
        if not isinstance(msg, self.msg_type):
            raise TypeError(f"expected {self.msg_type.__name__}, got {type(msg).__name__}")
        msg = copy.deepcopy(msg)
        with _bus_lock:
            for sub in _subscriptions:
                if sub.topic == self.topic and _compatible(self.qos, sub.qos):
                    sub.node._queue.append((sub.callback, msg))
            _bus_lock.notify_all()

    def get_subscription_count(self):
        with _bus_lock:
            return sum(1 for s in _subscriptions if s.topic == self.topic)


def _compatible(pub_qos, sub_qos):
    return not (pub_qos.reliability == ReliabilityPolicy.BEST_EFFORT
                and sub_qos.reliability == ReliabilityPolicy.RELIABLE)


class Subscription:
    def __init__(self, node, msg_type, topic, callback, qos):
        self.node, self.msg_type, self.topic = node, msg_type, topic
        self.callback, self.qos = callback, qos


class Trigger:
    """std_srvs/srv/Trigger: an empty request; a response with success and message."""

    class Request:
        pass

    class Response:
        def __init__(self, success=False, message=""):
            self.success, self.message = success, message


class Service:
    """A service server; tests call it directly: ``service.call(Request())``."""

    def __init__(self, srv_type, name, callback):
        self.srv_type, self.name, self.callback = srv_type, name, callback

    def call(self, request=None):
        return self.callback(request or self.srv_type.Request(), self.srv_type.Response())


class Timer:
    def __init__(self, period, callback):
        self.period, self.callback = period, callback
        self.next = time.monotonic() + period
        self.cancelled = False

    def cancel(self):
        self.cancelled = True


class Node:
    def __init__(self, node_name, *, namespace=None, parameter_overrides=None, **kwargs):
        self._name = node_name
        self._namespace = "/" + (namespace or "").strip("/") if namespace else ""
        self._overrides = {p.name: p.value for p in (parameter_overrides or [])}
        self._params, self._descriptors, self._callbacks = {}, {}, []
        self._publishers, self._subs, self._timers = [], [], []
        self._services = []
        self._queue = deque()
        self._logger = Logger(node_name)
        self._clock = Clock()
        self._params["use_sim_time"] = False
        self._descriptors["use_sim_time"] = ParameterDescriptor()

    # names
    def get_name(self):
        return self._name

    def get_namespace(self):
        return self._namespace or "/"

    def resolve_topic_name(self, topic):
        if topic.startswith("/"):
            return topic
        if topic.startswith("~"):
            return f"{self._namespace}/{self._name}{topic[1:]}"
        return f"{self._namespace}/{topic}"

    def get_logger(self):
        return self._logger

    def get_clock(self):
        return self._clock

    # parameters
    def declare_parameter(self, name, value=None, descriptor=None, ignore_override=False):
        if name in self._params:
            raise RuntimeError(f"parameter {name!r} already declared")
        descriptor = descriptor or ParameterDescriptor()
        if isinstance(value, (list, tuple)) and not value:
            # real rclpy: an empty list has no element type (declared BYTE_ARRAY; a params
            # file's `[]` reads back as None) -- the VO node died on it in the ROS tier
            raise TypeError(f"parameter {name!r}: an empty list default has no ROS type")
        if name in self._overrides and not ignore_override:
            override = self._overrides[name]
            if type(override) is not type(value) and value is not None:
                raise TypeError(f"parameter {name!r}: override {override!r} has the wrong type")
            value = override
        reason = _check_descriptor(descriptor, value, value)
        if reason:
            raise ValueError(f"parameter {name!r}: {reason}")
        self._params[name], self._descriptors[name] = value, descriptor
        return Parameter(name, value=value)

    def get_parameter(self, name):
        if name not in self._params:
            raise KeyError(f"parameter {name!r} not declared")
        return Parameter(name, value=self._params[name])

    def add_on_set_parameters_callback(self, callback):
        self._callbacks.insert(0, callback)

    def set_parameters(self, parameters):
        return [self.set_parameters_atomically([p]) for p in parameters]

    def set_parameters_atomically(self, parameters):
        for p in parameters:
            if p.name not in self._params:
                return SetParametersResult(successful=False, reason=f"{p.name} not declared")
            d = self._descriptors[p.name]
            if d.read_only:
                return SetParametersResult(successful=False,
                                           reason=f"Trying to set a read-only parameter: {p.name}")
            old = self._params[p.name]
            if type(p.value) is not type(old) and not d.dynamic_typing:
                return SetParametersResult(successful=False,
                                           reason=f"Wrong parameter type for {p.name}")
            reason = _check_descriptor(d, p.value, old)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        for cb in self._callbacks:
            result = cb(list(parameters))
            if not result.successful:
                return result
        for p in parameters:
            self._params[p.name] = p.value
        return SetParametersResult(successful=True)

    # entities
    def create_publisher(self, msg_type, topic, qos_profile, **kwargs):
        pub = Publisher(self, msg_type, self.resolve_topic_name(topic), _qos(qos_profile))
        self._publishers.append(pub)
        return pub

    def create_subscription(self, msg_type, topic, callback, qos_profile, **kwargs):
        sub = Subscription(self, msg_type, self.resolve_topic_name(topic), callback,
                           _qos(qos_profile))
        with _bus_lock:
            _subscriptions.append(sub)
        self._subs.append(sub)
        return sub

    def create_service(self, srv_type, name, callback, **kwargs):
        srv = Service(srv_type, self.resolve_topic_name(name), callback)
        self._services.append(srv)
        return srv

    def create_timer(self, timer_period_sec, callback, **kwargs):
        t = Timer(timer_period_sec, callback)
        self._timers.append(t)
        return t

    def destroy_node(self):
        with _bus_lock:
            for s in self._subs:
                if s in _subscriptions:
                    _subscriptions.remove(s)
        self._subs, self._publishers, self._timers = [], [], []
        self._queue.clear()

    # execution
    def _spin_once(self, timeout_sec):
        deadline = time.monotonic() + (timeout_sec if timeout_sec is not None else 3600)
        while True:
            now = time.monotonic()
            for t in self._timers:
                if not t.cancelled and now >= t.next:
                    t.next = now + t.period
                    t.callback()
                    return
            with _bus_lock:
                if self._queue:
                    callback, msg = self._queue.popleft()
                else:
                    callback = None
                    if now >= deadline or not _state["ok"]:
                        return
                    _bus_lock.wait(min(0.01, max(deadline - now, 0)))
            if callback is not None:
                callback(msg)
                return


def _check_descriptor(d, value, old):
    if d.floating_point_range and isinstance(value, float):
        r = d.floating_point_range[0]
        if not (r.from_value <= value <= r.to_value):
            return f"Parameter {value} out of range [{r.from_value}, {r.to_value}]"
    if d.integer_range and isinstance(value, int) and not isinstance(value, bool):
        r = d.integer_range[0]
        if not (r.from_value <= value <= r.to_value):
            return f"Parameter {value} out of range [{r.from_value}, {r.to_value}]"
    return ""


# --------------------------------------------------------------------------- message_filters

class SimpleFilter:
    def __init__(self):
        self._callbacks = []

    def registerCallback(self, cb, *args):
        self._callbacks.append((cb, args))

    def signalMessage(self, *msgs):
        for cb, args in self._callbacks:
            cb(*(msgs + args))


class MFSubscriber(SimpleFilter):
    """message_filters.Subscriber: qos_profile defaults to 10 (reliable), as in the real one."""

    def __init__(self, node, msg_type, topic, **kwargs):
        super().__init__()
        kwargs.setdefault("qos_profile", 10)
        self.node, self.topic = node, topic
        self.sub = node.create_subscription(msg_type, topic, self.signalMessage, **kwargs)


class ApproximateTimeSynchronizer(SimpleFilter):
    """Pairs messages whose header stamps differ by at most ``slop`` seconds."""

    def __init__(self, fs, queue_size, slop, allow_headerless=False):
        super().__init__()
        self.queues = [deque(maxlen=queue_size) for _ in fs]
        self.slop = slop
        self.lock = threading.Lock()
        for i, f in enumerate(fs):
            f.registerCallback(self._add, i)

    @staticmethod
    def _t(msg):
        return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9

    def _add(self, msg, index):
        with self.lock:
            self.queues[index].append(msg)
            picks = []
            t = self._t(msg)
            for i, q in enumerate(self.queues):
                if i == index:
                    picks.append(msg)
                    continue
                best = min(q, key=lambda m: abs(self._t(m) - t), default=None)
                if best is None or not abs(self._t(best) - t) < self.slop:   # strict, as upstream
                    return
                picks.append(best)
            for q, m in zip(self.queues, picks):
                while q and self._t(q[0]) <= self._t(m):
                    q.popleft()
        self.signalMessage(*picks)
