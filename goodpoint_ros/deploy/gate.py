"""Accuracy gate for reduced precision (int8, fp16, bf16) and compiled engines.

A faster backend is only worth shipping if it finds the same keypoints and
descriptors as the fp32 reference.  Both run through the *same* shared
post-processing and top-k (:class:`~goodpoint_ros.core.pipeline.FeatureExtractor`
with one :class:`~goodpoint_ros.core.config.GoodPointConfig`), on real images:

* repeatability vs fp32: fraction of the reference keypoints that have a
  candidate keypoint within 1 px — must be ≥ 0.90;
* descriptor cosine: mean cosine between the candidate's descriptor map
  sampled at the reference keypoints and the reference descriptors — ≥ 0.98.

Averaged over images (each image weighted by its reference keypoints).  A
reference with no keypoints cannot vouch for anything: the gate then fails
with that reason rather than passing vacuously.
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
