"""The ONNX model file of the backend contract: export from the torch weights, and the
GoodPoint metadata (θ_keypoint, NMS radius, the source weights' sha256) read torch-free.

Lives with the backends because ONNX Runtime and TensorRT read this metadata to
load a model, and ONNX Runtime exports a stale or missing fp32 file on the fly;
``goodpoint_ros.deploy.export`` (int8, graph rewrites) builds on it.

The exported graph honours the backend contract of :mod:`goodpoint_ros.backends`:
input ``image`` float32 [1,1,H,W] (H, W multiples of 8), outputs ``prob`` [1,H,W]
and ``desc`` [1,256,H/8,W/8] (unit length).  torch is imported only inside
:func:`export_onnx` (an optional heavy dependency); onnxruntime / onnx only in the
functions that need them.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from pathlib import Path
from typing import Dict, Optional, Tuple

from goodpoint_ros.core.weights import (
    DEFAULT_ONNX,
    atomic_write_bytes,
    load_model,
    missing_file,
    resolve_path,
)

#: ONNX opset of the legacy (TorchScript) exporter used here; TensorRT 8.6 reads it.
OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAMES = ("prob", "desc")
#: metadata_props keys
META_WEIGHTS = "goodpoint"                    # JSON: the weights' metadata
META_SHA256 = "goodpoint_weights_sha256"      # sha256 of the source .safetensors
META_EXPORT = "goodpoint_export"              # JSON: how the file was made


class ExportError(RuntimeError):
    """Export or quantisation failed for a reason the user can fix."""


def file_sha256(path: os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export_onnx(weights: Optional[os.PathLike] = None, out: os.PathLike = DEFAULT_ONNX,
                size: Optional[Tuple[int, int]] = None, opset: int = OPSET) -> Dict:
    """Export ``weights`` (default: bundled) to ONNX at ``out``; return a summary.

    size: ``None`` → dynamic height and width (any multiples of 8); (W, H) →
    a fixed shape (TensorRT can then skip the optimisation profile).
    """
    import torch  # lazy: only the export needs torch; the robot reads ONNX without it

    if size is not None and (size[0] % 8 or size[1] % 8):
        raise ExportError(f"fixed export size must be multiples of 8, got {size[0]}x{size[1]}")
    src = resolve_path(weights)
    model, meta = load_model(src)
    w, h = size or (320, 240)

    class ContractOutputs(torch.nn.Module):
        """dict outputs → the (prob, desc) tuple of the backend contract."""

        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, image):
            out = self.net(image)
            return out["prob"], out["desc"]

    dynamic = None
    if size is None:
        dynamic = {INPUT_NAME: {2: "height", 3: "width"},
                   "prob": {1: "height", 2: "width"},
                   "desc": {2: "height_8", 3: "width_8"}}
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # the model's input checks are Python ifs: traced as constants, which is intended
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)   # the legacy exporter, on purpose
        torch.onnx.export(ContractOutputs(model).eval(), (torch.zeros(1, 1, h, w),), buf,
                          input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                          dynamic_axes=dynamic, opset_version=opset, do_constant_folding=True,
                          dynamo=False)
    import onnx  # lazy: optional extra (.[onnx]), export-time only
    proto = onnx.load_from_string(buf.getvalue())
    export_info = {"opset": opset, "dynamic": size is None, "size": list(size) if size else None,
                   "precision": "fp32", "torch": torch.__version__,
                   "source": src.name}
    set_metadata(proto, meta, file_sha256(src), export_info)
    onnx.checker.check_model(proto, full_check=True)
    atomic_write_bytes(out, proto.SerializeToString())
    return {"out": str(out), "weights": str(src), "sha256": file_sha256(src), **export_info}


def set_metadata(proto, weights_meta: Dict, weights_sha256: str, export_info: Dict) -> None:
    """Write the GoodPoint keys into ``proto.metadata_props`` (replacing old ones)."""
    keep = [p for p in proto.metadata_props if p.key not in (META_WEIGHTS, META_SHA256, META_EXPORT)]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in ((META_WEIGHTS, json.dumps(weights_meta)), (META_SHA256, weights_sha256),
                       (META_EXPORT, json.dumps(export_info))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def read_onnx_metadata(path: os.PathLike) -> Dict:
    """ONNX file → {"weights": dict, "weights_sha256": str, "export": dict} (torch-free).

    Uses onnxruntime's model metadata, so the robot needs neither torch nor onnx.
    """
    import onnxruntime as ort  # lazy: heavy; `goodpoint --help` imports this module
    path = Path(path)
    if why := missing_file(path, "ONNX file"):
        raise ExportError(why)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL   # only reading
    so.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ExportError(f"{path} is not a loadable ONNX model ({str(exc).splitlines()[0]})") from None
    return metadata_from_map(sess.get_modelmeta().custom_metadata_map, path)


def warn_if_gate_failed(log, path: os.PathLike, export_info: Dict, precision: str) -> None:
    """Say once, at load, that a reduced-precision file failed its accuracy gate."""
    gate = export_info.get("gate") or {}
    if precision != "fp32" and gate.get("passed") is False:
        log.warning("%s failed the accuracy gate when it was made (%s): its keypoints differ "
                    "from fp32; use fp32 unless you re-checked it", Path(path).name,
                    gate.get("reason") or "see goodpoint export gate")


def onnx_precision(path: os.PathLike) -> str:
    """fp32 | int8 | ...: what ``goodpoint export`` recorded (fp32 if unrecorded)."""
    try:
        return read_onnx_metadata(path)["export"].get("precision", "fp32")
    except ExportError:
        return "fp32"


def metadata_from_map(props: Dict[str, str], path: os.PathLike = "<onnx>") -> Dict:
    if META_WEIGHTS not in props:
        raise ExportError(f"{path} has no GoodPoint metadata (export it with `goodpoint export onnx`)")
    try:
        return {"weights": json.loads(props[META_WEIGHTS]),
                "weights_sha256": props.get(META_SHA256, ""),
                "export": json.loads(props.get(META_EXPORT, "{}"))}
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path}: GoodPoint metadata is not valid JSON ({exc})") from None


def check_onnx(path: os.PathLike) -> None:
    """``onnx.checker`` on a file; :class:`ExportError` with the reason on failure."""
    import onnx  # lazy: optional extra (.[onnx])
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise ExportError(f"{path} fails onnx.checker: {str(exc).splitlines()[0]}") from None
