"""OpenVINO backend: the same ONNX files, compiled by Intel's CPU runtime (oneDNN).

Why a second ONNX runtime: on this project's 2-core AVX-512 CPUs OpenVINO
fuses the whole QDQ int8 graph (convolution, LeakyReLU, the folded BatchNorm
shift, pooling) into oneDNN VNNI primitives, where ONNX Runtime runs ~25
separate kernels with layout transposes between them.  Measured at 320×240,
2 threads, AMD EPYC Zen 5 (docs/deployment.md): network int8 21 ms vs ONNX
Runtime's 35 ms; bf16 34 ms vs PyTorch bf16 43–70 ms.

The files are the ones ONNX Runtime reads (:func:`resolve_model`: shipped,
beside the weights, or exported to the user cache), with their recorded
weights hash and int8 gate verdict.  Precisions: ``fp32`` (inference
precision f32: bit-for-bit the ONNX graph's arithmetic up to summation
order), ``bf16`` (the fp32 file, bf16 inference where the CPU has bf16
instructions; refused elsewhere, since OpenVINO would silently run f32),
``int8`` (the static QDQ file).  One compiled model per input size, since a
static shape lets oneDNN pick its blocked layouts; a camera has one size, so
the cache stays small (:data:`MAX_SHAPES`, least recently used dropped).
"""
from __future__ import annotations

import logging
import os
from collections import OrderedDict
from typing import Dict, Optional, Tuple

import numpy as np

from goodpoint_ros.backends import MAX_SHAPES, BackendUnavailable, check_input
from goodpoint_ros.backends.onnx_model import ExportError, read_onnx_metadata, warn_if_gate_failed
from goodpoint_ros.backends.onnxruntime_backend import resolve_model

try:
    import openvino as ov
except ImportError as exc:  # pragma: no cover - exercised where openvino is absent
    raise BackendUnavailable(f"openvino is not installed ({exc})")

LOG = logging.getLogger("goodpoint_ros.backends.openvino")
PRECISIONS = ("fp32", "bf16", "int8")
#: int8: the layers the export keeps in float (conv1a, conv4a, det_b: the sensitive ones,
#: docs/deployment.md) run in bf16 where the CPU has it — 1–2 ms of a ~12 ms frame on Zen 5,
#: gate still passed; OpenVINO falls back to f32 on CPUs without bf16.
_INFERENCE_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "bf16"}


class OpenVinoBackend:
    """``infer`` with OpenVINO's CPU plugin (contract of :mod:`goodpoint_ros.backends`)."""

    name = "openvino"

    def __init__(self, weights: Optional[os.PathLike] = None, device: str = "auto",
                 precision: str = "fp32", threads: Optional[int] = None, **_):
        if device not in ("auto", "cpu"):
            raise BackendUnavailable(f"the openvino backend runs on the CPU, not {device!r}")
        if precision not in PRECISIONS:
            raise BackendUnavailable(f"openvino supports {', '.join(PRECISIONS)}; not {precision}")
        self.core = ov.Core()
        caps = self.core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if precision == "bf16" and "BF16" not in caps:
            raise BackendUnavailable("this CPU has no bf16 instructions (OpenVINO would run f32); "
                                     "use --precision fp32 or int8")
        stored = "fp32" if precision == "bf16" else precision   # bf16 runs the fp32 file
        path, how = resolve_model(weights, stored)
        try:
            info = read_onnx_metadata(path)
        except ExportError as exc:
            raise BackendUnavailable(str(exc)) from None
        made = info["export"].get("precision", "fp32")
        if made != stored:
            raise BackendUnavailable(f"{path} is a {made} model, not {precision}")
        try:
            self.model = self.core.read_model(str(path))
        except Exception as exc:
            raise BackendUnavailable(f"openvino cannot read {path}: "
                                     f"{str(exc).splitlines()[0]}") from None
        ranks = ([i.get_partial_shape().rank.get_length() for i in self.model.inputs],
                 [o.get_partial_shape().rank.get_length() for o in self.model.outputs])
        if ranks != ([4], [3, 4]):
            raise BackendUnavailable(f"{path} is not a GoodPoint graph: input / output ranks "
                                     f"{ranks}, expected [1,1,H,W] in, prob [1,H,W] and "
                                     "desc [1,D,H/8,W/8] out")
        self.precision, self.device = precision, "cpu"
        self.model_path, self.model_source = path, how
        self.metadata: Dict = info["weights"]
        self.export_info: Dict = info["export"]
        warn_if_gate_failed(LOG, path, self.export_info, precision)
        self.config = {"PERFORMANCE_HINT": "LATENCY",
                       "INFERENCE_NUM_THREADS": int(threads or os.cpu_count() or 1),
                       "INFERENCE_PRECISION_HINT": _INFERENCE_PRECISION[precision]}
        self._requests: "OrderedDict[Tuple[int, int], object]" = OrderedDict()

    def _request(self, shape: Tuple[int, int]):
        """The infer request compiled for an (H, W) input, compiled on first use."""
        req = self._requests.get(shape)
        if req is None:
            model = self.model.clone()
            model.reshape({model.inputs[0]: [1, 1, *shape]})
            req = self.core.compile_model(model, "CPU", self.config).create_infer_request()
            self._requests[shape] = req
            if len(self._requests) > MAX_SHAPES:
                self._requests.popitem(last=False)
        else:
            self._requests.move_to_end(shape)
        return req

    def infer(self, image: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        check_input(image)
        req = self._request((int(image.shape[2]), int(image.shape[3])))
        req.infer({0: np.ascontiguousarray(image, dtype=np.float32)})
        # copies: the request's output buffers are reused by the next frame
        return req.get_output_tensor(0).data.copy(), req.get_output_tensor(1).data.copy()
