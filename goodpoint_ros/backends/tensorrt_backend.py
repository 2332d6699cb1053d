"""TensorRT: engine builder (Python API, no ``trtexec``) and runtime backend.

Supports TensorRT 8.6 (JetPack 6) through 11 with the name-based tensor API
(``set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3``) that
exists in all of them.  Differences handled here:

* FP16: ``BuilderFlag.FP16`` up to 10.11; from 10.12 (and in 11, where the
  flag is gone) a *strongly typed* network of an fp16 ONNX graph.
* INT8: an entropy calibrator on real photos where ``IInt8EntropyCalibrator2``
  exists (≤ 10.x); in 11 only explicit quantisation, so the QDQ ONNX made by
  ``goodpoint export int8`` is built instead.
* ``EXPLICIT_BATCH`` is passed only before 10.0 (the default since).
* TensorRT 11 builds strongly typed networks only: fp32 as exported, fp16 from
  the converted graph, int8 from the QDQ model.

Device memory comes from torch (if installed) or cuda-python; no pycuda.
Buffers are allocated once per input shape (pinned host + device), copies
are async on one CUDA stream: no allocation per frame.

Nothing here can run without ``tensorrt`` and a CUDA GPU; importing this
module raises :class:`BackendUnavailable` then, and ``auto`` moves on.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from goodpoint_ros.backends import MAX_SHAPES, BackendUnavailable, check_input
from goodpoint_ros.backends.engine_cache import (
    DEFAULT_PROFILE,
    EngineCache,
    EngineKey,
    HotSwapBackend,
    Profile,
)
from goodpoint_ros.backends.gate import accuracy_gate, sample_images
from goodpoint_ros.backends.onnx_model import ExportError, file_sha256, read_onnx_metadata
from goodpoint_ros.core.weights import atomic_write_bytes, missing_file

try:
    import tensorrt as trt
except ImportError as exc:  # the usual case on CPU machines: auto falls back
    raise BackendUnavailable(f"tensorrt is not installed ({exc}); pip install .[tensorrt] "
                             "on a machine with an NVIDIA GPU")

LOG = logging.getLogger("goodpoint_ros.backends.tensorrt")
TRT_VERSION = tuple(int(v) for v in trt.__version__.split(".")[:2])
INPUT = "image"


class _TrtLogger(trt.ILogger):
    """TensorRT messages → Python logging."""

    def __init__(self):
        trt.ILogger.__init__(self)
        sev = trt.ILogger.Severity
        self.levels = {sev.INTERNAL_ERROR: logging.ERROR, sev.ERROR: logging.ERROR,
                       sev.WARNING: logging.WARNING, sev.INFO: logging.DEBUG}

    def log(self, severity, msg):
        LOG.log(self.levels.get(severity, logging.DEBUG), "TensorRT: %s", msg)


TRT_LOGGER = _TrtLogger()


# --------------------------------------------------------------------------- CUDA memory

class _Buffer:
    """host: pinned numpy view; dev: device pointer; *_obj keep the memory alive."""

    def __init__(self, host: np.ndarray, dev: int, host_obj, dev_obj):
        self.host, self.dev, self.host_obj, self.dev_obj = host, dev, host_obj, dev_obj


class _Cuda:
    """The few CUDA calls needed: torch when installed, else cuda-python."""

    def __init__(self):
        try:   # lazy, optional: torch's CUDA allocator when installed
            import torch
        except ImportError:
            torch = None
        if torch is not None and torch.cuda.is_available():
            self.torch, self.rt = torch, None
            self.stream = torch.cuda.Stream()
            self.handle = self.stream.cuda_stream
            return
        # no torch, or a CPU-only torch build: cuda-python does the memory work
        try:
            try:
                from cuda.bindings import runtime as rt  # cuda-python ≥ 12.6
            except ImportError:
                from cuda import cudart as rt  # older cuda-python
        except ImportError:
            raise BackendUnavailable("TensorRT needs torch or cuda-python for CUDA memory "
                                     "(pip install cuda-python)") from None
        self.torch, self.rt = None, rt
        err, count = rt.cudaGetDeviceCount()
        if int(err) != 0 or count == 0:
            raise BackendUnavailable("no CUDA device")
        self.stream = self._ok(rt.cudaStreamCreate())
        self.handle = int(self.stream)          # TensorRT takes the raw handle

    def _ok(self, ret):
        err, *rest = ret if isinstance(ret, tuple) else (ret,)
        if int(err) != 0:
            raise RuntimeError(f"CUDA error {err}")
        return rest[0] if rest else None

    def device_name(self) -> Tuple[str, str]:
        if self.torch is not None:
            major, minor = self.torch.cuda.get_device_capability()
            return self.torch.cuda.get_device_name(), f"{major}.{minor}"
        props = self._ok(self.rt.cudaGetDeviceProperties(0))
        name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
        return name.strip("\x00"), f"{props.major}.{props.minor}"

    def pair(self, shape: Tuple[int, ...]) -> "_Buffer":
        """A pinned host array and a device buffer of float32 ``shape``."""
        n = int(np.prod(shape))
        if self.torch is not None:
            host = self.torch.empty(shape, dtype=self.torch.float32, pin_memory=True)
            dev = self.torch.empty(shape, dtype=self.torch.float32, device="cuda")
            return _Buffer(host.numpy(), dev.data_ptr(), host, dev)
        hptr = self._ok(self.rt.cudaMallocHost(n * 4))
        dptr = self._ok(self.rt.cudaMalloc(n * 4))
        host = np.ctypeslib.as_array((ctypes.c_float * n).from_address(int(hptr))).reshape(shape)
        return _Buffer(host, int(dptr), hptr, dptr)

    def free(self, buf: "_Buffer") -> None:
        if self.torch is None:
            self.rt.cudaFreeHost(buf.host_obj)
            self.rt.cudaFree(buf.dev_obj)

    def h2d(self, buf: "_Buffer") -> None:
        if self.torch is not None:
            with self.torch.cuda.stream(self.stream):
                buf.dev_obj.copy_(buf.host_obj, non_blocking=True)
        else:
            self._ok(self.rt.cudaMemcpyAsync(buf.dev, buf.host.ctypes.data, buf.host.nbytes,
                                             self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice,
                                             self.stream))

    def d2h(self, buf: "_Buffer") -> None:
        if self.torch is not None:
            with self.torch.cuda.stream(self.stream):
                buf.host_obj.copy_(buf.dev_obj, non_blocking=True)
        else:
            self._ok(self.rt.cudaMemcpyAsync(buf.host.ctypes.data, buf.dev, buf.host.nbytes,
                                             self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                                             self.stream))

    def sync(self) -> None:
        if self.torch is not None:
            self.stream.synchronize()
        else:
            self._ok(self.rt.cudaStreamSynchronize(self.stream))


# --------------------------------------------------------------------------- builder

class EntropyCalibrator(getattr(trt, "IInt8EntropyCalibrator2", object)):
    """INT8 entropy calibration on real photos ([1,1,H,W] float32 batches)."""

    def __init__(self, batches: Sequence[np.ndarray], cuda: "_Cuda", cache_file: Optional[Path] = None):
        super().__init__()
        self.batches, self.cuda, self.cache_file = list(batches), cuda, cache_file
        self.index = 0
        self.buf = cuda.pair(self.batches[0].shape)

    def get_batch_size(self):
        return 1

    def get_batch(self, names):
        if self.index >= len(self.batches):
            return None
        x = self.batches[self.index]
        if x.shape != self.buf.host.shape:
            raise ValueError("calibration batches must all have one shape")
        self.buf.host[...] = x
        self.cuda.h2d(self.buf)
        self.cuda.sync()
        self.index += 1
        if self.index % 10 == 0:
            LOG.info("INT8 calibration: %d/%d images", self.index, len(self.batches))
        return [self.buf.dev]

    def read_calibration_cache(self):
        if self.cache_file and self.cache_file.is_file():
            return self.cache_file.read_bytes()
        return None

    def write_calibration_cache(self, cache):
        if self.cache_file:
            atomic_write_bytes(self.cache_file, bytes(cache))


def fp16_strategy() -> str:
    """``flag`` (BuilderFlag.FP16, TensorRT ≤ 10.11) or ``strongly_typed`` (≥ 10.12, 11)."""
    if hasattr(trt.BuilderFlag, "FP16") and TRT_VERSION < (10, 12):
        return "flag"
    return "strongly_typed"


def _fp16_onnx(onnx_bytes: bytes) -> bytes:
    """fp32 ONNX → fp16 graph with fp32 inputs/outputs; softmax and L2 norm stay fp32."""
    import onnx  # lazy: optional extra (.[onnx]), only for an fp16 build
    from onnxruntime.transformers.float16 import convert_float_to_float16
    return convert_float_to_float16(onnx.load_from_string(onnx_bytes), keep_io_types=True,
                                    op_block_list=["Softmax", "ReduceL2", "Div"]).SerializeToString()


def build_engine(onnx_path: os.PathLike, precision: str = "fp16", profile: Profile = DEFAULT_PROFILE,
                 calibration: Optional[Sequence[np.ndarray]] = None,
                 timing_cache: Optional[os.PathLike] = None, workspace_mb: int = 2048) -> bytes:
    """Build a serialised engine for ``onnx_path`` → bytes.

    precision: fp32 | fp16 | int8.  profile: ((h,w) min, opt, max).
    calibration: int8 batches (implicit-quantisation TensorRT); for TensorRT 11
    pass the QDQ ONNX from ``goodpoint export int8`` instead.  The timing cache
    file is read if present and rewritten after the build (rebuilds for other
    shapes or precisions then take seconds instead of minutes).
    """
    onnx_bytes = Path(onnx_path).read_bytes()
    builder = trt.Builder(TRT_LOGGER)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH") and TRT_VERSION < (10, 0):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    # TensorRT 11 has only strongly typed networks (types come from the graph);
    # 10.12+ prefers them for fp16.  Weak typing + builder flags otherwise.
    strongly_typed = (TRT_VERSION >= (11, 0) or not hasattr(trt.BuilderFlag, "FP16")
                      or (precision == "fp16" and fp16_strategy() == "strongly_typed"))
    if strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        if precision == "fp16":
            onnx_bytes = _fp16_onnx(onnx_bytes)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, TRT_LOGGER)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    prof = builder.create_optimization_profile()
    (h0, w0), (h1, w1), (h2, w2) = profile
    prof.set_shape(INPUT, (1, 1, h0, w0), (1, 1, h1, w1), (1, 1, h2, w2))
    config.add_optimization_profile(prof)
    if precision == "fp16" and not strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "int8":
        has_qdq = any(network.get_layer(i).type == trt.LayerType.QUANTIZE
                      for i in range(network.num_layers))
        if not strongly_typed:
            config.set_flag(trt.BuilderFlag.INT8)
            config.set_flag(trt.BuilderFlag.FP16)    # layers left out of int8 run fp16
        if strongly_typed and not has_qdq:
            raise RuntimeError("strongly typed TensorRT builds int8 only from a QDQ model: pass "
                               "--onnx goodpoint_default.int8.onnx (goodpoint export int8)")
        if not has_qdq:
            if not hasattr(trt, "IInt8EntropyCalibrator2"):
                raise RuntimeError("this TensorRT has no calibrators: build the QDQ model from "
                                   "`goodpoint export int8` instead")
            if not calibration:
                raise RuntimeError("int8 needs calibration images (--calib-images DIR)")
            config.int8_calibrator = EntropyCalibrator(calibration, _Cuda())
            config.set_calibration_profile(prof)
    elif precision != "fp32":
        raise ValueError(f"TensorRT precision must be fp32, fp16 or int8, not {precision}")
    cache_bytes = b""
    if timing_cache and Path(timing_cache).is_file():
        cache_bytes = Path(timing_cache).read_bytes()
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    t0 = time.monotonic()
    LOG.info("building TensorRT %s engine for %s (profile %s): minutes on a Jetson",
             precision, onnx_path, profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT engine build failed (see the TensorRT log above)")
    if timing_cache:
        atomic_write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))
    LOG.info("engine built in %.0f s", time.monotonic() - t0)
    return bytes(serialized)


def engine_key(onnx_path: os.PathLike, precision: str, profile: Profile) -> EngineKey:
    name, cc = _Cuda().device_name()
    return EngineKey(file_sha256(onnx_path), trt.__version__, name, cc, precision, profile)


# --------------------------------------------------------------------------- runtime

class TensorRTBackend:
    """``infer`` with a deserialised engine (contract of :mod:`goodpoint_ros.backends`)."""

    name = "tensorrt"

    def __init__(self, engine: bytes, precision: str, metadata: Dict):
        self.cuda = _Cuda()
        self.runtime = trt.Runtime(TRT_LOGGER)
        self.engine = self.runtime.deserialize_cuda_engine(engine)
        if self.engine is None:
            raise BackendUnavailable("TensorRT could not deserialise the engine (corrupt, or built "
                                     "for another TensorRT version / GPU)")
        self.context = self.engine.create_execution_context()
        self.precision = precision
        self.metadata = metadata
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.outputs = [n for n in names
                        if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self._shape: Optional[Tuple[int, ...]] = None
        self._bufs: Dict[str, tuple] = {}
        # Buffers of the last few input shapes: an image pyramid alternates 3 shapes per
        # frame, and pinned allocations each call would cost more than the network.
        self._by_shape: "OrderedDict[Tuple[int, ...], Dict[str, tuple]]" = OrderedDict()

    def _allocate(self, shape: Tuple[int, ...]) -> None:
        """Bind the buffers of one input shape, allocated on its first use and kept
        (the ``MAX_SHAPES`` most recent shapes)."""
        self.context.set_input_shape(INPUT, shape)
        bufs = self._by_shape.get(shape)
        if bufs is None:
            bufs = {INPUT: self.cuda.pair(shape)}
            for n in self.outputs:
                bufs[n] = self.cuda.pair(tuple(self.context.get_tensor_shape(n)))
            self._by_shape[shape] = bufs
            while len(self._by_shape) > MAX_SHAPES:
                _, old = self._by_shape.popitem(last=False)
                for buf in old.values():
                    self.cuda.free(buf)
        else:
            self._by_shape.move_to_end(shape)
        for n, buf in bufs.items():
            self.context.set_tensor_address(n, buf.dev)
        self._bufs, self._shape = bufs, shape

    def infer(self, image: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        check_input(image)
        if image.shape != self._shape:
            self._allocate(image.shape)
        self._bufs[INPUT].host[...] = image
        self.cuda.h2d(self._bufs[INPUT])
        if not self.context.execute_async_v3(self.cuda.handle):
            raise RuntimeError("TensorRT execution failed")
        for n in self.outputs:
            self.cuda.d2h(self._bufs[n])
        self.cuda.sync()
        prob = self._bufs["prob"].host.copy()
        desc = self._bufs["desc"].host.copy()
        # fp16 descriptors are re-normalised in fp32 (as the torch backend does)
        desc /= np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-12)
        return prob, desc


# --------------------------------------------------------------------------- factory

def create_tensorrt_backend(weights: Optional[os.PathLike] = None, device: str = "auto",
                            precision: str = "fp16", engine: Optional[os.PathLike] = None,
                            profile: Optional[Profile] = None, build: str = "background",
                            calibration: Optional[Sequence[np.ndarray]] = None,
                            cache_dir: Optional[os.PathLike] = None, threads: Optional[int] = None,
                            **_):
    """The ``tensorrt`` backend: a cached (or given) engine, else build one.

    ``build``: ``background`` — serve with ONNX Runtime while a thread builds
    the engine, then switch (the node's default); ``blocking`` — build now;
    ``never`` — only use an existing engine.  ``fp32`` requests build an fp16
    engine only if asked: precision is honoured as given.
    """
    if device == "cpu":
        raise BackendUnavailable("device cpu: TensorRT needs a CUDA GPU")
    _Cuda()   # raises BackendUnavailable without a GPU
    # lazy: that module imports onnxruntime (heavy), needed only once a GPU is found
    from goodpoint_ros.backends.onnxruntime_backend import OnnxRuntimeBackend, resolve_model
    if engine is None and weights is not None and str(weights).endswith((".engine", ".plan")):
        engine = weights
    if engine is not None:
        path = Path(engine)
        if why := missing_file(path, "engine file"):
            raise BackendUnavailable(why)
        data = path.read_bytes()
        side_file = path.with_suffix(path.suffix + ".json")   # written by `goodpoint export engine`
        side = json.loads(side_file.read_text()) if side_file.is_file() else {}
        if side.get("engine_sha256") and side["engine_sha256"] != hashlib.sha256(data).hexdigest():
            raise BackendUnavailable(f"{path} does not match its {side_file.name} (corrupt or replaced)")
        return TensorRTBackend(data, side.get("key", {}).get("precision", precision),
                               side.get("weights", {}))
    # int8 without calibration photos (or without calibrators): the QDQ model
    explicit_int8 = precision == "int8" and (not calibration
                                             or not hasattr(trt, "IInt8EntropyCalibrator2"))
    onnx_precision = "int8" if explicit_int8 else "fp32"
    onnx_path, _ = resolve_model(weights, onnx_precision)
    try:
        meta = read_onnx_metadata(onnx_path)["weights"]
    except ExportError as exc:
        raise BackendUnavailable(str(exc)) from None
    profile = profile or DEFAULT_PROFILE
    key = engine_key(onnx_path, precision, profile)
    cache = EngineCache(cache_dir)
    timing = cache.root / f"timing-{key.gpu_name.replace(' ', '_')}-{key.trt_version}.cache"

    def make() -> bytes:
        return cache.get_or_build(key, lambda: build_engine(
            onnx_path, precision, profile, calibration, timing_cache=timing))

    def open_engine(data: bytes) -> TensorRTBackend:
        try:
            return TensorRTBackend(data, precision, meta)
        except BackendUnavailable:
            cache.remove(key)   # TensorRT refused it: corrupt; next start rebuilds
            raise

    entry = cache.entry(key)
    if entry is not None and entry.get("gate", {}).get("passed") is False:
        raise BackendUnavailable(f"the cached {key.describe()} engine failed the accuracy gate "
                                 f"({entry['gate'].get('reason', '')}); not used")
    if entry is not None or build == "blocking":
        return open_engine(make())
    if build == "never":
        raise BackendUnavailable(f"no cached engine for {key.describe()} "
                                 "(build one: goodpoint export engine)")
    fallback = OnnxRuntimeBackend(weights=weights, device=device, precision="fp32", threads=threads)

    def accept(fast) -> Tuple[bool, str]:
        result = accuracy_gate(fallback, fast, sample_images())
        cache.annotate(key, gate=result.to_dict())
        LOG.info("engine accuracy gate: %s", result.summary())
        return result.passed, result.summary()

    LOG.info("no cached engine for %s: serving with ONNX Runtime while it builds", key.describe())
    return HotSwapBackend(fallback, make, open_engine, accept=accept)
