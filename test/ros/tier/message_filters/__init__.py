"""Test-only stand-in for ROS 2 ``message_filters`` (it has no pip wheel).

Exactly the surface goodpoint_ros/ros/node.py uses in stereo mode, on real
rclpy subscriptions: ``Subscriber(node, msg_type, topic, qos_profile=...)`` and
``ApproximateTimeSynchronizer(subscribers, queue_size, slop)`` with
``registerCallback``.  Only the ROS tier puts this folder on PYTHONPATH
(tools/ros/tier.sh); it is never installed with the package, and on a ROS
machine the real message_filters is used.

Synchronisation rule (a simplification of the real approximate-time policy,
enough for pairs that a stereo driver stamps alike): when a message arrives,
every other queue's message nearest in stamp is taken if it lies within
``slop`` seconds; a complete set is delivered in subscriber order and it and
everything older leave the queues.  Each queue keeps the newest
``queue_size`` messages.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Callable, List, Sequence

__all__ = ["Subscriber", "ApproximateTimeSynchronizer"]


def _stamp_ns(msg) -> int:
    s = msg.header.stamp
    return int(s.sec) * 1_000_000_000 + int(s.nanosec)


class Subscriber:
    """One input of a synchroniser: a real ``node.create_subscription``."""

    def __init__(self, node, msg_type, topic: str, qos_profile=10, **kwargs):
        self._callbacks: List[Callable] = []
        self.sub = node.create_subscription(msg_type, topic, self._deliver, qos_profile, **kwargs)

    def registerCallback(self, cb: Callable, *args) -> None:  # noqa: N802 (the real API's name)
        self._callbacks.append(lambda msg: cb(msg, *args))

    def _deliver(self, msg) -> None:
        for cb in self._callbacks:
            cb(msg)


class ApproximateTimeSynchronizer:
    """Pairs (or n-tuples) of messages whose stamps differ by at most ``slop`` s."""

    def __init__(self, fs: Sequence[Subscriber], queue_size: int, slop: float,
                 allow_headerless: bool = False):
        if allow_headerless:
            raise NotImplementedError("the stand-in synchronises on header stamps only")
        self._queues = [deque(maxlen=int(queue_size)) for _ in fs]
        self._slop_ns = int(round(float(slop) * 1e9))
        self._callbacks: List[Callable] = []
        self._lock = threading.Lock()     # a multi-threaded executor may call in parallel
        for i, f in enumerate(fs):
            f.registerCallback(self._add, i)

    def registerCallback(self, cb: Callable, *args) -> None:  # noqa: N802
        self._callbacks.append(lambda *msgs: cb(*msgs, *args))

    def _add(self, msg, index: int) -> None:
        with self._lock:
            self._queues[index].append(msg)
            t = _stamp_ns(msg)
            chosen = []
            for i, q in enumerate(self._queues):
                if i == index:
                    chosen.append(msg)
                    continue
                best = min(q, key=lambda m: abs(_stamp_ns(m) - t), default=None)
                if best is None or abs(_stamp_ns(best) - t) > self._slop_ns:
                    return
                chosen.append(best)
            for q, m in zip(self._queues, chosen):
                limit = _stamp_ns(m)
                while q and _stamp_ns(q[0]) <= limit:
                    q.popleft()
        for cb in self._callbacks:
            cb(*chosen)
