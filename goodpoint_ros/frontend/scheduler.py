"""A worker thread fed by a latest-frame-only slot.

A camera publishes at its own rate whatever the network's speed.  Queueing
every frame behind a slow model builds lag without bound; a SLAM front end
wants the *newest* frame.  So the subscriber callback only drops the frame
into a one-place slot (replacing, and counting as dropped, a frame the worker
has not started yet) and returns at once; the worker thread takes whatever is
in the slot when it becomes free.

    worker = LatestFrameWorker(process)      # process(item) runs on the worker
    worker.submit(frame)                     # from any thread, never blocks
    worker.stats()                           # received / processed / dropped / failed
    worker.stop()                            # finishes the frame in hand, joins

Pure Python (threading), no ROS: the node and the tests use the same class.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Generic, Optional, TypeVar

LOG = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class SchedulerStats:
    received: int = 0    # frames submitted
    processed: int = 0   # frames the worker finished (successfully or not)
    dropped: int = 0     # frames replaced in the slot before the worker took them
    failed: int = 0      # frames whose processing raised (reported to on_error)


class LatestFrameWorker(Generic[T]):
    """Run ``process(item)`` on a thread, always on the newest submitted item.

    Args:
        process: called on the worker thread with one submitted item.
        on_error: called on the worker thread with ``(item, exception)`` when
            ``process`` raises; the worker keeps running.  Default: re-raise
            nothing, count it as failed.
        name: thread name (shows up in debuggers and py-spy).
    """

    def __init__(self, process: Callable[[T], Any],
                 on_error: Optional[Callable[[T, BaseException], Any]] = None,
                 name: str = "goodpoint-worker"):
        self._process = process
        self._on_error = on_error
        self._cond = threading.Condition()
        self._slot: Optional[T] = None
        self._has_item = False
        self._busy = False
        self._stopping = False
        self._received = self._processed = self._dropped = self._failed = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ producer side
    def submit(self, item: T) -> bool:
        """Put ``item`` in the slot; returns True if it replaced an unprocessed one."""
        with self._cond:
            if self._stopping:
                return False
            self._received += 1
            replaced = self._has_item
            if replaced:
                self._dropped += 1
            self._slot, self._has_item = item, True
            self._cond.notify()
            return replaced

    def stats(self) -> SchedulerStats:
        with self._cond:
            return SchedulerStats(self._received, self._processed, self._dropped, self._failed)

    def wait_idle(self, timeout: Optional[float] = None) -> bool:
        """Block until the slot is empty and the worker is not busy (tests, shutdown)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._has_item and not self._busy, timeout)

    def stop(self, timeout: Optional[float] = 5.0) -> None:
        """Stop taking frames, let the worker finish the one in hand, join it.

        A frame still waiting in the slot is discarded (not counted as
        dropped: nothing newer replaced it).
        """
        with self._cond:
            self._stopping = True
            self._slot, self._has_item = None, False
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # ------------------------------------------------------------------ worker side
    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._has_item or self._stopping)
                if self._stopping:
                    self._cond.notify_all()
                    return
                item, self._slot, self._has_item = self._slot, None, False
                self._busy = True
            failed = False
            try:
                self._process(item)
            except Exception as exc:  # a bad frame must not kill the worker
                failed = True
                if self._on_error is not None:
                    try:
                        self._on_error(item, exc)
                    except Exception as handler_exc:   # the worker lives on; both are said
                        LOG.error("error handler failed (%s: %s) on a frame that failed with "
                                  "%s: %s", type(handler_exc).__name__, handler_exc,
                                  type(exc).__name__, exc)
            with self._cond:
                self._busy = False
                self._processed += 1
                self._failed += int(failed)
                self._cond.notify_all()
