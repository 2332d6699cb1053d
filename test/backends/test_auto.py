"""``--backend auto --precision auto``: the measured probe, its choice, its cache, the node's path.

Real backends (torch, ONNX Runtime) at tiny sizes; the only injected parts are
a backend made wrong on purpose (it must be refused) and a probe held back
by an event (the node must serve meanwhile).  No timing is asserted: the
choice is checked against the probe's own measurements.
"""
import json
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from goodpoint_ros.backends import (  # noqa: E402
    _factory,  # noqa: E402
    auto,
    create_backend,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ros"))
from test_node_wiring import Inbox, ros  # noqa: E402,F401 - the node fixture (rclpy double)

ROOT = Path(__file__).resolve().parents[2]

SIZE = (64, 48)
REAL = [("onnxruntime", "fp32"), ("torch", "fp32"), ("torch", "bf16")]


class Shifted:
    """A real backend whose confidence map is moved by 3 px: keypoints off by 3 px."""

    def __init__(self, inner):
        self.inner, self.name, self.precision = inner, "shifted", "bf16"
        self.metadata = inner.metadata

    def infer(self, x):
        prob, desc = self.inner.infer(x)
        return np.roll(prob, 3, axis=2), desc


class RecordedFail:
    """A model file whose export recorded a failed gate: never run, never timed."""
    name, precision, metadata = "recorded", "int8", {}
    export_info = {"gate": {"passed": False, "reason": "repeatability too low"}}

    def __init__(self):
        self.calls = 0

    def infer(self, x):
        self.calls += 1
        raise AssertionError("a recorded-failed model must not be run")


def real_factory(made=None):
    def factory(name, precision):
        if name == "shifted":
            return Shifted(_factory("torch")(device="cpu", precision="fp32"))
        if name == "recorded":
            made.append(RecordedFail())
            return made[-1]
        return _factory(name)(device="cpu", precision=precision)
    return factory


def test_probe_picks_the_fastest_path_that_passes_the_gate_and_refuses_the_rest():
    made = []
    cands = REAL + [("shifted", "bf16"), ("recorded", "int8"), ("torch", "fp16")]
    result = auto.run_probe(real_factory(made), cands, SIZE, frames=2)
    rows = {(r["backend"], r["precision"]): r for r in result["results"]}
    assert rows[("shifted", "bf16")]["status"] == "refused"
    assert rows[("shifted", "bf16")]["gate"]["passed"] is False
    assert rows[("recorded", "int8")]["status"] == "refused" and made[0].calls == 0
    assert rows[("torch", "fp16")]["status"] == "unavailable"        # needs CUDA
    assert rows[("torch", "bf16")]["gate"]["passed"] is True           # gated, not assumed
    ok = [r for r in result["results"] if r["status"] == "ok"]
    assert {(r["backend"], r["precision"]) for r in ok} == set(REAL)
    fastest = min(ok, key=lambda r: r["ms"])
    assert result["choice"] == [fastest["backend"], fastest["precision"]]
    line = result["line"]
    assert line.startswith(f"auto: {fastest['backend']} {fastest['precision']} ")
    assert "shifted bf16 refused by the gate" in line and "recorded int8 refused by the gate" in line
    assert "fp16" not in line                                          # unavailable: JSON only


def test_no_candidate_passing_means_no_choice():
    result = auto.run_probe(real_factory([]), [("recorded", "int8")], SIZE, frames=1)
    assert result["choice"] is None and auto.choose(result["results"]) is None


def test_probe_key_changes_with_cpu_libraries_weights_and_size(monkeypatch, tmp_path):
    from goodpoint_ros.core.weights import DEFAULT_WEIGHTS
    base = auto.probe_key(None, SIZE)
    assert auto.probe_key(None, SIZE) == base and base.digest() == auto.probe_key(None, SIZE).digest()
    assert auto.probe_key(None, (80, 48)).digest() != base.digest()
    assert auto.probe_key(None, SIZE, threads=1).digest() != base.digest()
    w = tmp_path / "w.safetensors"
    w.write_bytes(DEFAULT_WEIGHTS.read_bytes())
    other = auto.probe_key(w, SIZE)
    assert other.models_sha256 != base.models_sha256      # a different file name/set
    w.write_bytes(DEFAULT_WEIGHTS.read_bytes() + b" ")
    assert auto.probe_key(w, SIZE).models_sha256 != other.models_sha256
    (tmp_path / "w.int8.onnx").write_bytes(b"new calibration")   # int8 regenerated
    before = auto.probe_key(w, SIZE).models_sha256
    (tmp_path / "w.int8.onnx").write_bytes(b"another calibration")
    assert auto.probe_key(w, SIZE).models_sha256 != before
    monkeypatch.setattr(auto, "library_versions", lambda: {"torch": "9.9", "onnxruntime": "1.0"})
    assert auto.probe_key(None, SIZE).digest() != base.digest()
    monkeypatch.undo()
    cpuinfo = "model name\t: Some CPU\nflags\t\t: sse avx2 avx512f avx512_bf16\n"
    model, flags, _ = auto.cpu_signature(cpuinfo)
    assert model == "Some CPU" and flags == "avx2 avx512f avx512_bf16"
    assert auto.cpu_signature(cpuinfo.replace(" avx512_bf16", " amx_bf16"))[1] != flags
    monkeypatch.setattr(auto, "cpu_signature", lambda: ("Other CPU", flags, 2))
    assert auto.probe_key(None, SIZE).digest() != base.digest()


@pytest.fixture
def counted(monkeypatch, tmp_path):
    """ROS_HOME in tmp, a small candidate list, and a count of real probes."""
    monkeypatch.setenv("ROS_HOME", str(tmp_path))
    monkeypatch.delenv("GOODPOINT_AUTO", raising=False)
    monkeypatch.setattr(auto, "CANDIDATES", tuple(REAL))
    calls = []
    real = auto.run_probe

    def probe(factory, candidates, size, frames=auto.PROBE_FRAMES, keep=False):
        calls.append(tuple(size))
        return real(factory, candidates, size, frames=2, keep=keep)

    monkeypatch.setattr(auto, "run_probe", probe)
    return calls


def test_auto_probes_once_then_uses_the_cache_and_reprobes_when_the_key_changes(counted, tmp_path):
    b = create_backend("auto", device="cpu", precision="auto", size=SIZE)
    assert counted == [SIZE] and [b.name, b.precision] == b.auto_probe["choice"]
    files = list((tmp_path / "goodpoint" / "auto").glob("probe-*.json"))
    assert len(files) == 1
    stored = json.loads(files[0].read_text())
    assert stored["choice"] == b.auto_probe["choice"] and stored["key"]["size"] == list(SIZE)
    again = create_backend("auto", device="cpu", precision="auto", size=SIZE)
    assert counted == [SIZE] and again.auto_probe["choice"] == stored["choice"]   # cache hit
    create_backend("auto", device="cpu", precision="auto", size=(80, 48))          # new size
    assert counted == [SIZE, (80, 48)]
    files[0].write_text("{ not json")                                              # corrupt
    create_backend("auto", device="cpu", precision="auto", size=SIZE)
    assert counted == [SIZE, (80, 48), SIZE]
    assert json.loads(files[0].read_text())["choice"]                              # rewritten


def test_overrides_skip_the_probe(counted, monkeypatch):
    b = create_backend("auto", device="cpu", precision="fp32")        # explicit precision: static
    assert b.name == "onnxruntime" and b.precision == "fp32" and counted == []
    b = create_backend("torch", device="cpu", precision="auto")       # named backend: reference
    assert b.name == "torch" and b.precision == "fp32" and counted == []
    monkeypatch.setenv("GOODPOINT_AUTO", "static")
    b = create_backend("auto", device="cpu", precision="auto", size=SIZE)
    assert b.precision == "fp32" and counted == []
    monkeypatch.setenv("GOODPOINT_AUTO", "reprobe")
    create_backend("auto", device="cpu", precision="auto", size=SIZE)
    create_backend("auto", device="cpu", precision="auto", size=SIZE)
    assert counted == [SIZE, SIZE]
    monkeypatch.setenv("GOODPOINT_AUTO", "fastest")
    with pytest.raises(ValueError, match="GOODPOINT_AUTO"):
        create_backend("auto", device="cpu", precision="auto", size=SIZE)


def test_background_probe_serves_the_safe_default_then_switches(counted, monkeypatch):
    """The node's path: create_backend returns before the probe ends, frames are served by
    ONNX Runtime fp32 meanwhile, and the measured choice takes over between frames."""
    release, started = threading.Event(), threading.Event()
    probe = auto.run_probe

    def held(*a, **kw):
        started.set()
        assert release.wait(120)
        return probe(*a, **kw)

    monkeypatch.setattr(auto, "run_probe", held)
    b = create_backend("auto", device="cpu", precision="auto", size=SIZE, probe="background")
    assert started.wait(30) and not release.is_set()     # returned while the probe is held
    x = np.random.default_rng(0).random((1, 1, *SIZE[::-1]), dtype=np.float32)
    prob, desc = b.infer(x)
    assert b.state == "building" and (b.name, b.precision) == ("onnxruntime", "fp32")
    assert prob.shape == (1, SIZE[1], SIZE[0]) and desc.shape == (1, 256, SIZE[1] // 8, SIZE[0] // 8)
    release.set()
    assert b.wait(120)
    b.infer(x)
    assert b.state == "switched" and [b.name, b.precision] == b.auto_probe["choice"]
    assert counted == [SIZE]


def test_the_node_serves_frames_while_its_probe_runs(counted, monkeypatch, ros):  # noqa: F811
    """DetectorNode with backend auto / precision auto (the defaults): it starts and publishes
    keypoints with ONNX Runtime fp32 while the probe is held, then runs the measured choice."""
    release = threading.Event()
    probe = auto.run_probe
    monkeypatch.setattr(auto, "run_probe", lambda *a, **kw: (release.wait(120), probe(*a, **kw))[1])
    overrides = [ros.Parameter("image_topic", value="/cam/image"),
                 ros.Parameter("resize_width", value=SIZE[0]), ros.Parameter("resize_height", value=SIZE[1]),
                 ros.Parameter("keypoint_threshold", value=0.0157)]
    node = ros.node_mod.DetectorNode(parameter_overrides=overrides)
    ros.nodes.append(node)
    peer = ros.probe()
    pub = peer.create_publisher(ros.Image, "/cam/image", ros.sensor_qos)
    st = Inbox(ros, peer, "/goodpoint_detector/status", ros.Status)
    assert ros.spin_until(lambda: pub.get_subscription_count() > 0)
    img = cv2.imread(str(ROOT / "data" / "hpatches_v_churchill" / "1.png"), cv2.IMREAD_GRAYSCALE)
    pub.publish(ros.image_msg(img, 1))
    assert ros.spin_until(lambda: len(st.msgs) == 1, timeout=60)
    assert (st.msgs[0].backend, st.msgs[0].precision) == ("onnxruntime", "fp32")
    assert not release.is_set()
    release.set()
    backend = node.frontend.extractor.backend
    assert backend.wait(120)
    pub.publish(ros.image_msg(img, 2))
    assert ros.spin_until(lambda: len(st.msgs) == 2, timeout=60)
    assert [st.msgs[1].backend, st.msgs[1].precision] == backend.auto_probe["choice"]
    assert counted == [SIZE]
