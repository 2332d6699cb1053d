"""Latest-frame-only worker: a slow model drops stale frames instead of building lag."""
import threading
import time

from goodpoint_ros.frontend.scheduler import LatestFrameWorker


class SlowModel:
    """Blocks on the first frame until released, records what it processed."""

    def __init__(self):
        self.started = threading.Event()
        self.release = threading.Event()
        self.seen = []

    def __call__(self, frame):
        self.seen.append(frame)
        self.started.set()
        assert self.release.wait(10)


def test_latest_frame_wins_and_drops_are_counted():
    model = SlowModel()
    worker = LatestFrameWorker(model)
    try:
        assert worker.submit(0) is False
        assert model.started.wait(5)                  # frame 0 is in the "network"
        replaced = [worker.submit(i) for i in range(1, 10)]
        assert replaced == [False] + [True] * 8       # 1 fills the slot, 2..9 each replace one
        model.release.set()
        assert worker.wait_idle(5)
        assert model.seen == [0, 9]                   # the newest frame, not the queue
        s = worker.stats()
        assert (s.received, s.processed, s.dropped, s.failed) == (10, 2, 8, 0)
    finally:
        model.release.set()
        worker.stop()
    assert not worker.alive


def test_fast_model_drops_nothing():
    seen = []
    worker = LatestFrameWorker(seen.append)
    for i in range(20):
        worker.submit(i)
        assert worker.wait_idle(5)
    worker.stop()
    assert seen == list(range(20))
    assert worker.stats().dropped == 0


def test_a_failing_frame_is_reported_and_the_worker_survives():
    errors = []

    def process(frame):
        if frame == "bad":
            raise ValueError("corrupt frame")

    worker = LatestFrameWorker(process, on_error=lambda item, exc: errors.append((item, str(exc))))
    worker.submit("bad")
    assert worker.wait_idle(5)
    worker.submit("good")
    assert worker.wait_idle(5)
    worker.stop()
    assert errors == [("bad", "corrupt frame")]
    s = worker.stats()
    assert (s.processed, s.failed) == (2, 1)


def test_stop_finishes_the_frame_in_hand_and_refuses_new_ones():
    model = SlowModel()
    worker = LatestFrameWorker(model)
    worker.submit("a")
    assert model.started.wait(5)
    worker.submit("b")                                 # waiting in the slot
    t = threading.Thread(target=worker.stop)
    t.start()
    time.sleep(0.05)
    assert t.is_alive()                                # stop waits for "a" to finish
    model.release.set()
    t.join(5)
    assert not worker.alive
    assert model.seen == ["a"]                         # "b" was discarded, not processed
    assert worker.submit("c") is False and worker.stats().received == 2


def test_an_error_handler_that_fails_is_logged_not_swallowed(caplog):
    """The node's handler publishes a status; if that raises, the frame's error and the
    handler's were both lost without a word."""
    def process(frame):
        raise ValueError("corrupt frame")

    def handler(item, exc):
        raise RuntimeError("status publisher gone")

    worker = LatestFrameWorker(process, on_error=handler)
    with caplog.at_level("ERROR"):
        worker.submit("bad")
        assert worker.wait_idle(5)
    worker.stop()
    assert worker.stats().failed == 1 and worker.alive is False
    text = caplog.text
    assert "status publisher gone" in text and "corrupt frame" in text
