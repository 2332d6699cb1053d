"""TensorRT builder and runtime.  The GPU tests skip without ``tensorrt`` + CUDA
(CI machines have neither; run them on a GPU machine: see docs/deployment.md).
What does not need TensorRT — that its absence is a clean, explained fallback — runs everywhere."""
from __future__ import annotations

import importlib

import numpy as np
import pytest

from goodpoint_ros.backends import BackendUnavailable, create_backend

try:
    import tensorrt  # noqa: F401
    HAVE_TRT = True
except ImportError:
    HAVE_TRT = False


def _cuda_available() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        pass
    try:
        from cuda.bindings import runtime as rt
    except ImportError:
        try:
            from cuda import cudart as rt
        except ImportError:
            return False
    err, n = rt.cudaGetDeviceCount()
    return int(err) == 0 and n > 0


GPU = HAVE_TRT and _cuda_available()
needs_gpu = pytest.mark.skipif(not GPU, reason="needs tensorrt and a CUDA GPU")


@pytest.mark.skipif(HAVE_TRT, reason="tensorrt is installed here")
def test_without_tensorrt_the_backend_is_unavailable_with_the_reason():
    with pytest.raises(BackendUnavailable, match="tensorrt is not installed"):
        importlib.import_module("goodpoint_ros.backends.tensorrt_backend")
    with pytest.raises(BackendUnavailable, match="tensorrt"):
        create_backend("tensorrt")


def test_cli_engine_without_tensorrt_is_a_one_line_error(tmp_path, capsys):
    if GPU:
        pytest.skip("a GPU machine builds for real")
    from goodpoint_ros.cli import main
    assert main(["export", "engine", "--out", str(tmp_path / "x.engine")]) == 2
    err = capsys.readouterr().err
    assert "cannot build an engine here" in err and "Traceback" not in err
    assert not (tmp_path / "x.engine").exists()


@pytest.fixture(scope="module")
def trt_mod():
    return importlib.import_module("goodpoint_ros.backends.tensorrt_backend")


SMALL = ((64, 64), (240, 320), (480, 640))


@needs_gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_build_run_and_compare_with_onnxruntime(trt_mod, tmp_path, precision):
    from goodpoint_ros.backends.onnxruntime_backend import OnnxRuntimeBackend
    from goodpoint_ros.core.weights import DEFAULT_ONNX
    data = trt_mod.build_engine(DEFAULT_ONNX, precision, SMALL, timing_cache=tmp_path / "t.cache")
    assert (tmp_path / "t.cache").stat().st_size > 0
    b = trt_mod.TensorRTBackend(data, precision, {})
    ref = OnnxRuntimeBackend(device="cpu")
    rng = np.random.default_rng(0)
    for h, w in [(240, 320), (128, 96), (240, 320)]:          # each shape allocates once
        x = rng.random((1, 1, h, w), dtype=np.float32)
        prob, desc = b.infer(x)
        rp, rd = ref.infer(x)
        tol = 1e-3 if precision == "fp32" else 2e-2
        assert prob.shape == rp.shape and desc.shape == rd.shape
        assert np.abs(prob - rp).max() < tol
        assert (desc * rd).sum(1).mean() > 0.99
    assert len(b._by_shape) == 2                  # a pyramid's shapes keep their buffers


@needs_gpu
def test_corrupt_engine_is_refused_and_cache_rebuilds(trt_mod, tmp_path):
    with pytest.raises(BackendUnavailable, match="deserialise"):
        trt_mod.TensorRTBackend(b"\x00" * 1000, "fp16", {})
    from goodpoint_ros.core.weights import DEFAULT_ONNX
    b = trt_mod.create_tensorrt_backend(precision="fp16", profile=SMALL, build="blocking",
                                        cache_dir=tmp_path)
    assert b.name == "tensorrt"
    engines = list(tmp_path.glob("*.engine"))
    assert len(engines) == 1
    engines[0].write_bytes(b"garbage")                          # corrupt on disk
    key = trt_mod.engine_key(DEFAULT_ONNX, "fp16", SMALL)
    from goodpoint_ros.backends.engine_cache import EngineCache
    assert EngineCache(tmp_path).load(key) is None              # hash mismatch: discarded


@needs_gpu
def test_fp16_strategy_matches_the_tensorrt_version(trt_mod):
    s = trt_mod.fp16_strategy()
    if trt_mod.TRT_VERSION >= (10, 12):
        assert s == "strongly_typed"
    else:
        assert s == "flag"
