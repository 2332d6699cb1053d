"""ONNX export of GoodPoint and its int8 static quantisation.

    export_onnx(weights=None, out="goodpoint.onnx")          # dynamic H, W
    quantize_int8("goodpoint.onnx", "goodpoint.int8.onnx", calibration_images(...))

The exported graph honours the backend contract of
:mod:`goodpoint_ros.backends`: input ``image`` float32 [1,1,H,W] (H, W
multiples of 8), outputs ``prob`` [1,H,W] (softmax over the 64 cell channels
+ depth-to-space, already in :class:`GoodPointNet.forward`) and ``desc``
[1,256,H/8,W/8] (unit length).  Everything after that is the shared numpy
post-processor, so a runtime with ONNX Runtime, numpy and OpenCV needs no torch.

The weights' metadata (θ_keypoint, NMS radius, architecture...) is copied into
the ONNX ``metadata_props`` together with the sha256 of the safetensors file
it came from, so a torch-free runtime reads its thresholds from the ONNX file
and a stale ONNX (weights changed, ONNX not re-exported) is detected.

torch is imported only inside :func:`export_onnx`; quantisation needs
``onnx`` and ``onnxruntime`` only.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple

import numpy as np

# the model file format (metadata, export) is the backends'; re-exported here, where it
# was first documented (goodpoint_ros.deploy.export.export_onnx ...)
from goodpoint_ros.backends.onnx_model import (  # noqa: F401
    INPUT_NAME,
    META_EXPORT,
    META_SHA256,
    META_WEIGHTS,
    OPSET,
    OUTPUT_NAMES,
    ExportError,
    check_onnx,
    export_onnx,
    file_sha256,
    metadata_from_map,
    onnx_precision,
    read_onnx_metadata,
    set_metadata,
)
from goodpoint_ros.core.weights import DEFAULT_ONNX, atomic_write_bytes

#: The int8 variant shipped beside the fp32 file.
DEFAULT_INT8_ONNX = DEFAULT_ONNX.with_name(DEFAULT_ONNX.stem + ".int8.onnx")
#: Ops quantised to int8: with the BatchNorms folded (:func:`fold_batchnorm`) the
#: whole encoder then stays uint8 between convolutions.  Softmax, depth-to-space
#: and the descriptor normalisation stay fp32.
INT8_OPS = ("Conv", "LeakyRelu", "Add", "MaxPool")
#: Network input size used for int8 calibration: the node's default resolution.
CALIBRATION_SIZE = (320, 240)


# --------------------------------------------------------------------------- graph rewrite

def _constants(graph) -> Dict[str, np.ndarray]:
    """Initializers, also under the names the exporter aliases with Identity nodes."""
    from onnx import numpy_helper
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for n in graph.node:
        if n.op_type == "Identity" and n.input[0] in consts:
            consts[n.output[0]] = consts[n.input[0]]
    return consts


def fold_batchnorm(proto, skip_first: bool = False) -> int:
    """Rewrite conv → LeakyReLU → BatchNorm blocks as conv' → LeakyReLU → +shift (exact).

    The authors' layer order puts BatchNorm *after* the activation, so the
    usual conv+BN folding does not apply, and an unfused BatchNorm is what
    makes int8 slow on CPU (a dequantise → BN → quantise round trip per
    layer).  With ``a = γ/√(σ²+ε) > 0`` the activation is positively
    homogeneous: ``a·leaky(z) + b = leaky(a·z) + b``, so ``a`` goes into the
    conv's weights and bias and only a per-channel shift ``b = β − μ·a``
    remains.  A shift commutes with max-pooling, so where a pool follows it
    moves after the pool (4× fewer additions).  Blocks with any ``a ≤ 0`` are
    left unchanged, and with ``skip_first`` the block reading the image (for
    int8: see :func:`int8_keep_float`).  Returns the number of blocks folded.
    """
    from onnx import helper, numpy_helper
    g = proto.graph
    consts = _constants(g)
    producer = {o: n for n in g.node for o in n.output}
    consumers: Dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    folded = 0
    for bn in [n for n in g.node if n.op_type == "BatchNormalization"]:
        leaky = producer.get(bn.input[0])
        conv = producer.get(leaky.input[0]) if leaky is not None else None
        if (leaky is None or leaky.op_type != "LeakyRelu" or conv is None or conv.op_type != "Conv"
                or len(consumers[leaky.output[0]]) != 1 or len(consumers[conv.output[0]]) != 1
                or not all(k in consts for k in list(bn.input[1:5]) + list(conv.input[1:]))
                or (skip_first and conv.input[0] in {i.name for i in g.input})):
            continue
        gamma, beta, mean, var = (consts[k].astype(np.float64) for k in bn.input[1:5])
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        a = gamma / np.sqrt(var + eps)
        if not (a > 0).all():
            continue
        shift = beta - mean * a
        w = consts[conv.input[1]].astype(np.float64)
        bias = consts[conv.input[2]].astype(np.float64) if len(conv.input) > 2 else np.zeros(len(a))
        names = (f"{conv.output[0]}.W_folded", f"{conv.output[0]}.B_folded", f"{bn.output[0]}.shift")
        g.initializer.extend([
            numpy_helper.from_array((w * a[:, None, None, None]).astype(np.float32), names[0]),
            numpy_helper.from_array((bias * a).astype(np.float32), names[1]),
            numpy_helper.from_array(shift.reshape(1, -1, 1, 1).astype(np.float32), names[2])])
        conv.input[1] = names[0]
        if len(conv.input) > 2:
            conv.input[2] = names[1]
        else:
            conv.input.append(names[1])
        # the shift goes after a following max-pool when the pool is its only consumer
        after = bn
        users = consumers.get(bn.output[0], [])
        if len(users) == 1 and users[0].op_type == "MaxPool":
            after = users[0]
            users[0].input[0] = leaky.output[0]
            pooled = after.output[0]
            after.output[0] = pooled + ".unshifted"
            add = helper.make_node("Add", [after.output[0], names[2]], [pooled], name=bn.name + ".shift")
            g.node.remove(bn)
            g.node.insert(list(g.node).index(after) + 1, add)
        else:
            add = helper.make_node("Add", [leaky.output[0], names[2]], [bn.output[0]],
                                   name=bn.name + ".shift")
            idx = list(g.node).index(bn)
            g.node.remove(bn)
            g.node.insert(idx, add)
        folded += 1
    _drop_unused(g)
    return folded


def _drop_unused(graph) -> None:
    """Remove initializers and Identity aliases nothing reads any more."""
    while True:
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if n.op_type == "Identity" and n.output[0] not in used]
        for n in dead:
            graph.node.remove(n)
        if not dead:
            break
    used = {i for n in graph.node for i in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


# --------------------------------------------------------------------------- int8

def int8_keep_float(proto) -> List[str]:
    """Names of the nodes int8 leaves in float: the first block and the detector head.

    Measured on training checkpoints (docs/deployment.md): quantising the
    first conv's output alone dropped repeatability vs fp32 to 0.32 — one
    channel with a large mean sets the per-tensor uint8 scale — and the
    detector head decides where the softmax peaks are (keypoints within 1 px),
    while the descriptors lose almost nothing in int8 (cosine ≥ 0.998).  Both
    are cheap: 1 input channel, and two convs at 1/8 resolution (≈ 6 % of the
    FLOPs).  The head is everything between the shared encoder output (a
    tensor with two consumers) and the softmax.
    """
    g = proto.graph
    inputs = {i.name for i in g.input}
    producer = {o: n for n in g.node for o in n.output}
    consumers: Dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    keep: List[str] = []
    for conv in (n for n in g.node if n.op_type == "Conv" and n.input[0] in inputs):
        keep.append(conv.name)
        keep += [c.name for c in consumers.get(conv.output[0], []) if c.op_type == "LeakyRelu"]
    for sm in (n for n in g.node if n.op_type == "Softmax"):
        node = producer.get(sm.input[0])
        while node is not None and node.op_type in ("Add", "LeakyRelu", "BatchNormalization",
                                                     "Cast", "Conv"):
            keep.append(node.name)
            if node.op_type == "Conv" and len(consumers.get(node.input[0], [])) > 1:
                break           # the head's first conv, reading the shared encoder output
            node = producer.get(node.input[0])
    return keep


def calibration_images(list_file: os.PathLike, image_dir: os.PathLike) -> List[Path]:
    """Files named in ``list_file`` (one per line, ``#`` comments) found in ``image_dir``.

    The training issue's validation split: never the evaluation data.
    """
    list_file, image_dir = Path(list_file), Path(image_dir)
    if not list_file.is_file():
        raise ExportError(f"calibration list not found: {list_file}")
    names = [ln.strip() for ln in list_file.read_text().splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")]
    paths = [image_dir / n for n in names if (image_dir / n).is_file()]
    if not paths:
        raise ExportError(f"none of the {len(names)} images listed in {list_file} is in {image_dir}")
    return paths


def calibration_tensors(paths: Sequence[os.PathLike], size: Tuple[int, int] = CALIBRATION_SIZE,
                        crops_per_image: int = 4, seed: int = 0) -> List[np.ndarray]:
    """Real photos → float32 [1,1,H,W] network inputs at ``size`` (W,H).

    Each photo gives its full view plus random crops (scale variety the node
    sees), preprocessed exactly as the runtime does (gray, [0,1]).
    """
    import cv2

    from goodpoint_ros.core.keypoints import to_gray_float
    rng = np.random.default_rng(seed)
    w, h = size
    out = []
    for p in paths:
        img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if img is None:
            continue
        views = [img]
        ih, iw = img.shape
        for _ in range(crops_per_image - 1):
            s = rng.uniform(0.3, 0.8)
            cw, ch = max(int(iw * s), w // 2), max(int(ih * s), h // 2)
            x0, y0 = rng.integers(0, max(iw - cw, 0) + 1), rng.integers(0, max(ih - ch, 0) + 1)
            views.append(img[y0:y0 + ch, x0:x0 + cw])
        for v in views:
            g = cv2.resize(to_gray_float(v), (w, h), interpolation=cv2.INTER_AREA)
            out.append(np.ascontiguousarray(g[None, None], dtype=np.float32))
    if not out:
        raise ExportError("no readable calibration image")
    return out


def quantize_int8(onnx_in: os.PathLike, out: os.PathLike, inputs: Iterable[np.ndarray],
                  method: str = "percentile", percentile: float = 99.9) -> Dict:
    """Static QDQ int8 quantisation, calibrated on ``inputs`` ([1,1,H,W] float32).

    BatchNorms are folded first (:func:`fold_batchnorm`), then the ops in
    :data:`INT8_OPS` are quantised: weights int8 per output channel,
    activations uint8 (the U8S8 kernels of VNNI/AMX CPUs).  Softmax,
    depth-to-space, the descriptor's L2 normalisation and the two sensitive
    parts of :func:`int8_keep_float` stay fp32.  ``method``: minmax | entropy |
    percentile (activation range = the ``percentile`` of |x|; 99.9 measured
    best on the trained weights, 99.99 on earlier checkpoints).
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise ExportError(f"calibration method must be one of {', '.join(methods)}, not {method!r}")
    batches = list(inputs)
    if not batches:
        raise ExportError("int8 calibration needs at least one image")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(batches)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {INPUT_NAME: x}

    proto = onnx.load(str(onnx_in))
    src_meta = metadata_from_map({p.key: p.value for p in proto.metadata_props}, onnx_in)
    if src_meta["export"].get("precision", "fp32") != "fp32":
        raise ExportError(f"{onnx_in} is already {src_meta['export']['precision']}; quantise the fp32 file")
    folded = fold_batchnorm(proto, skip_first=True)
    keep_float = int8_keep_float(proto)
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        src, pre, q = Path(tmp) / "src.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "q.onnx"
        onnx.save(proto, str(src))
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        extra = {"CalibMovingAverage": False}
        if method == "percentile":
            extra["CalibPercentile"] = percentile
        quantize_static(str(pre), str(q), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        per_channel=True, op_types_to_quantize=list(INT8_OPS),
                        nodes_to_exclude=keep_float,
                        calibrate_method=methods[method], extra_options=extra)
        proto = onnx.load(str(q))
    info = dict(src_meta["export"], precision="int8", batchnorm_folded=folded,
                kept_float=keep_float, calibration={
                    "method": method, "percentile": percentile if method == "percentile" else None,
                    "images": len(batches), "size": list(batches[0].shape[2:][::-1])})
    set_metadata(proto, src_meta["weights"], src_meta["weights_sha256"], info)
    onnx.checker.check_model(proto)
    atomic_write_bytes(out, proto.SerializeToString())
    return {"out": str(out), **info}
