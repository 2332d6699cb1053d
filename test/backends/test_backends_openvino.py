"""The OpenVINO backend: same ONNX files, same contract, gated against ONNX Runtime fp32."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("openvino")

from conftest import network_inputs  # noqa: E402
from goodpoint_ros.backends import BackendUnavailable, create_backend  # noqa: E402
from goodpoint_ros.backends.auto import CANDIDATES, library_versions  # noqa: E402
from goodpoint_ros.backends.openvino_backend import MAX_SHAPES, OpenVinoBackend  # noqa: E402
from goodpoint_ros.core.weights import DEFAULT_ONNX  # noqa: E402
from goodpoint_ros.deploy.export import DEFAULT_INT8_ONNX  # noqa: E402
from goodpoint_ros.deploy.gate import accuracy_gate, sample_images  # noqa: E402


@pytest.fixture(scope="module")
def ort_fp32():
    return create_backend("onnxruntime", precision="fp32", device="cpu")


def test_fp32_matches_onnxruntime_on_real_photos(ort_fp32):
    ov = create_backend("openvino", precision="fp32")
    assert isinstance(ov, OpenVinoBackend) and ov.model_path == DEFAULT_ONNX
    for x in network_inputs((320, 240)):
        p0, d0 = ort_fp32.infer(x)
        p1, d1 = ov.infer(x)
        assert p1.shape == p0.shape == (1, 240, 320) and d1.shape == d0.shape
        assert p1.dtype == np.float32 and d1.dtype == np.float32
        # f32 inference: only the summation order differs
        assert np.abs(p1 - p0).max() < 1e-4 and np.abs(d1 - d0).max() < 1e-4
    assert ov.metadata == ort_fp32.metadata


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_reduced_precisions_pass_the_gate(ort_fp32, precision):
    try:
        ov = create_backend("openvino", precision=precision)
    except BackendUnavailable as exc:      # bf16 on a CPU without bf16 instructions
        assert precision == "bf16" and "bf16" in str(exc)
        pytest.skip(str(exc))
    if precision == "int8":
        assert ov.model_path == DEFAULT_INT8_ONNX
    g = accuracy_gate(ort_fp32, ov, sample_images(), resize=(320, 240))
    assert g.passed, g.summary()


def test_outputs_are_not_overwritten_by_the_next_frame():
    ov = create_backend("openvino", precision="fp32")
    a, b = network_inputs((320, 240))
    pa, da = ov.infer(a)
    keep = pa.copy(), da.copy()
    ov.infer(b)
    assert np.array_equal(pa, keep[0]) and np.array_equal(da, keep[1])


def test_one_compiled_model_per_size_bounded():
    ov = create_backend("openvino", precision="fp32")
    sizes = [(64 + 8 * i, 48 + 8 * i) for i in range(MAX_SHAPES + 2)]
    for w, h in sizes:
        prob, desc = ov.infer(np.zeros((1, 1, h, w), np.float32))
        assert prob.shape == (1, h, w) and desc.shape[2:] == (h // 8, w // 8)
    assert len(ov._requests) == MAX_SHAPES
    assert list(ov._requests)[-1] == sizes[-1][::-1]


def test_bad_requests_are_clear_errors(tmp_path):
    with pytest.raises(BackendUnavailable, match="CPU"):
        create_backend("openvino", device="cuda")
    with pytest.raises(BackendUnavailable, match="not fp16"):
        create_backend("openvino", precision="fp16")
    with pytest.raises(BackendUnavailable, match="int8 model, not fp32"):
        OpenVinoBackend(weights=DEFAULT_INT8_ONNX, precision="fp32")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(BackendUnavailable):
        OpenVinoBackend(weights=bad)
    ov = create_backend("openvino", precision="fp32")
    with pytest.raises(ValueError):
        ov.infer(np.zeros((240, 320), np.float32))


def test_auto_probe_considers_openvino_and_keys_on_its_version():
    assert {("openvino", p) for p in ("fp32", "bf16", "int8")} <= set(CANDIDATES)
    assert library_versions()["openvino"] != "-"


def test_loading_and_running_opens_no_network_connection():
    """A robot must not phone home: openvino imports openvino-telemetry (for its
    conversion tools), but loading and running a model makes no DNS look-up and
    opens no connection (the hooks record any attempt)."""
    code = ("import socket, sys, numpy as np\n"
            "calls = []\n"
            "real = socket.getaddrinfo\n"
            "socket.getaddrinfo = lambda *a, **k: calls.append(a) or real(*a, **k)\n"
            "connect = socket.socket.connect\n"
            "socket.socket.connect = lambda self, *a: calls.append(a) or connect(self, *a)\n"
            "from goodpoint_ros.backends import create_backend\n"
            "for p in ('fp32', 'int8'):\n"
            "    create_backend('openvino', precision=p).infer(np.zeros((1, 1, 48, 64), np.float32))\n"
            "print(len(calls))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "0"


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_a_file_that_failed_its_gate_is_loaded_with_a_warning(tmp_path, caplog, backend):
    import logging

    import onnx

    from goodpoint_ros.backends.onnx_model import read_onnx_metadata, set_metadata
    meta = read_onnx_metadata(DEFAULT_INT8_ONNX)
    proto = onnx.load(str(DEFAULT_INT8_ONNX))
    set_metadata(proto, meta["weights"], meta["weights_sha256"],
                 dict(meta["export"], gate={"passed": False, "reason": "repeatability 0.80 < 0.90"}))
    bad = tmp_path / "failed.int8.onnx"
    onnx.save(proto, str(bad))
    with caplog.at_level(logging.WARNING, logger="goodpoint_ros.backends"):
        create_backend(backend, weights=bad, precision="int8")
    assert "failed.int8.onnx failed the accuracy gate when it was made (repeatability 0.80" in caplog.text



def test_every_level_of_the_largest_pyramid_stays_compiled():
    # a pyramid visits its level sizes in a cycle each frame: a cache smaller than the
    # number of levels recompiles every level of every frame (LRU on a cycle)
    from goodpoint_ros.core.config import GoodPointConfig, field_info
    from goodpoint_ros.core.pipeline import FeatureExtractor
    most = field_info("pyramid_levels")["range"][1]
    ex = FeatureExtractor("openvino", GoodPointConfig(pyramid_levels=most, pyramid_factor=0.841),
                          precision="fp32")
    img = (np.random.default_rng(0).random((240, 320)) * 255).astype(np.uint8)
    ex(img)
    compiles = []
    real = ex.backend.core.compile_model
    ex.backend.core.compile_model = lambda *a, **k: compiles.append(1) or real(*a, **k)
    ex(img)
    assert compiles == [], f"{len(compiles)} levels recompiled on the second frame"
