"""Engine cache and background build + hot switch, with fake engines and builders (no GPU)."""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from goodpoint_ros.backends.engine_cache import (
    DEFAULT_PROFILE,
    EngineCache,
    EngineKey,
    HotSwapBackend,
    cache_root,
    engine_dir,
    parse_profile,
    profile_for,
)

KEY = EngineKey("ab" * 32, "10.3.0", "NVIDIA Jetson AGX Orin", "8.7", "fp16", DEFAULT_PROFILE)


def test_cache_root_prefers_ros_home_then_xdg_then_home(tmp_path):
    assert cache_root({"ROS_HOME": "/r", "XDG_CACHE_HOME": "/x", "HOME": "/h"}) == \
        __import__("pathlib").Path("/r/goodpoint")
    assert str(cache_root({"XDG_CACHE_HOME": "/x", "HOME": "/h"})) == "/x/goodpoint"
    assert str(cache_root({"HOME": "/h"})) == "/h/.cache/goodpoint"
    assert str(engine_dir({"ROS_HOME": "/r"})) == "/r/goodpoint/engines"


def test_key_digest_depends_on_every_field():
    import dataclasses
    seen = {KEY.digest()}
    for field, value in [("onnx_sha256", "cd" * 32), ("trt_version", "8.6.2"),
                         ("gpu_name", "NVIDIA H100"), ("compute_capability", "9.0"),
                         ("precision", "int8"), ("profile", ((64, 64), (240, 320), (1088, 1920)))]:
        d = dataclasses.replace(KEY, **{field: value}).digest()
        assert d not in seen, field
        seen.add(d)
    assert EngineKey.from_dict(json.loads(json.dumps(KEY.to_dict()))) == KEY


def test_profiles():
    assert parse_profile("640x480") == (480, 640)
    with pytest.raises(ValueError):
        parse_profile("641x480")
    lo, opt, hi = profile_for((321, 240))
    assert opt == (240, 328) and lo == DEFAULT_PROFILE[0] and hi == DEFAULT_PROFILE[2]
    assert profile_for((4096, 2048))[2] == (2048, 4096)


def test_store_load_round_trip(tmp_path):
    cache = EngineCache(tmp_path)
    assert cache.load(KEY) is None
    cache.store(KEY, b"engine-bytes", build_seconds=1.0)
    assert cache.load(KEY) == b"engine-bytes"
    engine, side = cache.paths(KEY)
    assert engine.read_bytes() == b"engine-bytes"      # raw: trtexec --loadEngine reads it
    assert json.loads(side.read_text())["key"]["gpu_name"] == KEY.gpu_name


@pytest.mark.parametrize("damage", ["flip_bytes", "truncate_sidecar", "other_key", "no_sidecar",
                                    "no_engine", "old_version"])
def test_corrupt_or_mismatched_entries_are_discarded_never_used(tmp_path, damage):
    cache = EngineCache(tmp_path)
    cache.store(KEY, b"good-engine")
    engine, side = cache.paths(KEY)
    info = json.loads(side.read_text())
    if damage == "flip_bytes":
        engine.write_bytes(b"bad-engine!")
    elif damage == "truncate_sidecar":
        side.write_text(side.read_text()[:20])
    elif damage == "other_key":         # e.g. a copy from a machine with another GPU
        info["key"]["gpu_name"] = "NVIDIA GeForce RTX 3060"
        side.write_text(json.dumps(info))
    elif damage == "no_sidecar":
        side.unlink()
    elif damage == "no_engine":
        engine.unlink()
    elif damage == "old_version":
        info["version"] = 0
        side.write_text(json.dumps(info))
    assert cache.load(KEY) is None
    assert not engine.exists() and not side.exists()
    built = []
    assert cache.get_or_build(KEY, lambda: built.append(1) or b"rebuilt") == b"rebuilt"
    assert built == [1] and cache.load(KEY) == b"rebuilt"


def test_get_or_build_builds_once_across_concurrent_callers(tmp_path):
    calls = []

    def build():
        calls.append(threading.get_ident())
        time.sleep(0.2)                 # long enough for the others to queue on the lock
        return b"engine"

    results = []
    threads = [threading.Thread(target=lambda: results.append(
        EngineCache(tmp_path).get_or_build(KEY, build))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [b"engine"] * 3 and len(calls) == 1


class Fake:
    def __init__(self, name, value):
        self.name, self.precision, self.metadata, self.value = name, "fp16", {"v": value}, value
        self.calls = 0

    def infer(self, image):
        self.calls += 1
        h, w = image.shape[2:]
        return np.full((1, h, w), self.value, np.float32), np.zeros((1, 256, h // 8, w // 8), np.float32)


X = np.zeros((1, 1, 16, 16), np.float32)


def test_hot_swap_serves_fallback_while_building_then_switches():
    release = threading.Event()
    fallback, fast = Fake("onnxruntime", 0.1), Fake("tensorrt", 0.2)

    def make():
        release.wait(5)
        return b"engine"

    opened = []
    hs = HotSwapBackend(fallback, make, lambda data: opened.append(data) or fast,
                        accept=lambda b: (True, "ok"), heartbeat_s=0.05)
    for _ in range(3):
        assert hs.infer(X)[0][0, 0, 0] == np.float32(0.1)
    assert hs.name == "onnxruntime" and hs.state == "building"
    release.set()
    assert hs.wait(5)
    assert hs.infer(X)[0][0, 0, 0] == np.float32(0.2)
    assert hs.name == "tensorrt" and hs.state == "switched" and opened == [b"engine"]
    assert fallback.calls == 3 and fast.calls == 1


@pytest.mark.parametrize("failure", ["build", "open", "gate", "gate_error"])
def test_hot_swap_keeps_fallback_when_build_open_or_gate_fails(failure):
    fallback, fast = Fake("onnxruntime", 0.1), Fake("tensorrt", 0.2)

    def make():
        if failure == "build":
            raise RuntimeError("out of memory")
        return b"engine"

    def open_fast(data):
        if failure == "open":
            raise RuntimeError("cannot deserialise")
        return fast

    def accept(b):
        if failure == "gate_error":
            raise FileNotFoundError("no gate images")
        return failure != "gate", "repeatability 0.4"

    hs = HotSwapBackend(fallback, make, open_fast, accept=accept)
    assert hs.wait(5)
    for _ in range(2):
        assert hs.infer(X)[0][0, 0, 0] == np.float32(0.1)
    assert hs.name == "onnxruntime" and fast.calls == 0
    assert hs.state == {"build": "failed", "open": "failed", "gate": "refused",
                        "gate_error": "refused"}[failure]


def test_feature_extractor_runs_through_a_hot_swap():
    from goodpoint_ros.core.config import GoodPointConfig
    from goodpoint_ros.core.pipeline import FeatureExtractor

    class Peaks(Fake):
        def infer(self, image):
            prob, desc = super().infer(image)
            prob[0, 20, 30] = 0.9
            desc[:, 0] = 1
            return prob, desc

    hs = HotSwapBackend(Peaks("onnxruntime", 0.0), lambda: b"e", lambda d: Peaks("tensorrt", 0.0))
    ex = FeatureExtractor(hs, GoodPointConfig(keypoint_threshold=0.5))
    hs.wait(5)
    f = ex(np.zeros((48, 64), np.uint8))
    assert f.keypoints.tolist() == [[30.0, 20.0]] and hs.name == "tensorrt"


def test_exiting_while_a_background_probe_runs_is_a_clean_exit(tmp_path):
    """Bug: a node stopped (or a script ending) during the auto probe aborted the
    interpreter ("terminate called without an active exception", rc 134): the
    probe's daemon thread was still inside ONNX Runtime at finalisation."""
    import os
    import subprocess
    import sys
    code = ("import numpy as np\n"
            "from goodpoint_ros.backends import create_backend\n"
            "b = create_backend('auto', precision='auto', probe='background', size=(320, 240))\n"
            "b.infer(np.zeros((1, 1, 240, 320), np.float32))\n"
            "print('served', b.state)\n")
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path), GOODPOINT_AUTO="probe")
    env.pop("ROS_HOME", None)
    for _ in range(3):       # the abort depended on where the probe was: try a few exits
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=300, env=env)
        assert out.returncode == 0, out.stderr[-500:]
        assert "served building" in out.stdout     # it did exit while the probe was running
