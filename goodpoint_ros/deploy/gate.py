"""Record the accuracy gate's verdict in an exported ONNX file (``record_gate``).

The gate itself (what it measures, its thresholds: repeatability vs fp32 ≥ 0.90 within
1 px, descriptor cosine ≥ 0.98) is :mod:`goodpoint_ros.backends.gate`, where ``--backend
auto`` and the TensorRT engine builder use it; it is re-exported here.
"""
from __future__ import annotations

import json

# the gate itself runs inside the backends (auto, TensorRT); re-exported here, where it is
# documented (docs/deployment.md), beside record_gate
from goodpoint_ros.backends.gate import (  # noqa: F401
    MIN_COSINE,
    MIN_REPEATABILITY,
    PACKAGE_IMAGES,
    RADIUS_PX,
    SAMPLE_DIR,
    GateResult,
    accuracy_gate,
    agreement,
    sample_images,
)
from goodpoint_ros.backends.onnx_model import META_EXPORT
from goodpoint_ros.core.weights import atomic_write_bytes


def record_gate(fp32_onnx, candidate_onnx, images=None, resize=(320, 240)) -> GateResult:
    """Gate ``candidate_onnx`` against ``fp32_onnx`` (ONNX Runtime, CPU) and store
    the verdict in the candidate's metadata (``goodpoint_export["gate"]``)."""

    import onnx

    from goodpoint_ros.backends.onnxruntime_backend import OnnxRuntimeBackend
    ref = OnnxRuntimeBackend(weights=str(fp32_onnx), device="cpu")
    cand = OnnxRuntimeBackend(weights=str(candidate_onnx), device="cpu")
    result = accuracy_gate(ref, cand, sample_images(images), resize=resize)
    proto = onnx.load(str(candidate_onnx))
    for p in proto.metadata_props:
        if p.key == META_EXPORT:
            info = json.loads(p.value)
            info["gate"] = {k: v for k, v in result.to_dict().items() if k != "per_image"}
            p.value = json.dumps(info)
    atomic_write_bytes(candidate_onnx, proto.SerializeToString())
    return result
