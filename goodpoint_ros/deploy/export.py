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
import tempfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from goodpoint_ros.backends.gate import accuracy_gate

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
from goodpoint_ros.core.keypoints import to_gray_float
from goodpoint_ros.core.weights import DEFAULT_ONNX, atomic_write_bytes

#: The int8 variant shipped beside the fp32 file.
DEFAULT_INT8_ONNX = DEFAULT_ONNX.with_name(DEFAULT_ONNX.stem + ".int8.onnx")
#: Ops quantised to int8: with the BatchNorms folded (:func:`fold_batchnorm`) the
#: whole encoder then stays uint8 between convolutions.  Softmax, depth-to-space
#: and the descriptor normalisation stay fp32.
INT8_OPS = ("Conv", "LeakyRelu", "Add", "MaxPool")
#: Layers int8 leaves in fp32 by default (mixed precision), from the per-layer
#: sensitivity study (:func:`int8_sensitivity`, validation photos, 320×240,
#: docs/deployment.md): quantised alone, conv1a cost 21 % of the keypoints
#: within 1 px of fp32, conv4a 9 %, det_b 6 %; every other layer ≤ 4 %.
#: With these three in fp32 and the 99.99th-percentile ranges: repeatability
#: 0.966 / cosine 0.998 (the earlier recipe, conv1a + the detector head at
#: 99.9: 0.924 / 0.991), at the same speed.
INT8_KEEP_FLOAT = ("conv1a", "conv4a", "det_b")
#: Network input size used for int8 calibration: the node's default resolution.
CALIBRATION_SIZE = (320, 240)
#: Calibration photos of ``goodpoint export int8`` (and the bench's PT2E int8): the
#: training validation split, never the evaluation data.
CALIBRATION_LIST = Path(__file__).resolve().parents[2] / "training" / "validation_split.txt"
CALIBRATION_DIR = Path(__file__).resolve().parents[3] / "shared" / "train-images"


# --------------------------------------------------------------------------- graph rewrite

def _constants(graph) -> Dict[str, np.ndarray]:
    """Initializers, also under the names the exporter aliases with Identity nodes."""
    from onnx import numpy_helper  # lazy: onnx is an optional extra (.[onnx])
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
    from onnx import helper, numpy_helper  # lazy: onnx is an optional extra (.[onnx])
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


def int8_layers(proto) -> Dict[str, List[str]]:
    """Layer name (``conv1a`` … ``desc_b``) → the nodes int8 would quantise for it.

    A layer is its conv, the LeakyReLU after it, the folded BatchNorm shift
    and a max-pool reading it: the unit of the per-layer sensitivity study
    (:func:`int8_sensitivity`) and of ``keep_float``.  Run after
    :func:`fold_batchnorm` (names come from the exporter: ``/net/<layer>/...``).
    """
    layers: Dict[str, List[str]] = {}
    by_output = {o: n for n in proto.graph.node for o in n.output}
    for n in proto.graph.node:
        parts = n.name.split("/")
        if len(parts) > 2 and parts[1] == "net" and n.op_type in INT8_OPS and parts[2] != "pool" \
                and not parts[2].startswith("pool_"):
            layers.setdefault(parts[2], []).append(n.name)
    for n in proto.graph.node:      # a pool belongs to the layer whose activation it reads
        if n.op_type == "MaxPool":
            src = by_output.get(n.input[0])
            for name, nodes in layers.items():
                if src is not None and src.name in nodes:
                    nodes.append(n.name)
    return layers


def quantize_int8(onnx_in: os.PathLike, out: os.PathLike, inputs: Iterable[np.ndarray],
                  method: str = "percentile", percentile: float = 99.99,
                  keep_float: Optional[Sequence[str]] = None,
                  activation_symmetric: bool = False, progress: bool = False) -> Dict:
    """Static QDQ int8 quantisation, calibrated on ``inputs`` ([1,1,H,W] float32).

    BatchNorms are folded first (:func:`fold_batchnorm`), then the ops in
    :data:`INT8_OPS` are quantised: weights int8 per output channel,
    activations uint8 (the U8S8 kernels of VNNI/AMX CPUs).  Softmax,
    depth-to-space, the descriptor's L2 normalisation and the sensitive layers
    (``keep_float``) stay fp32.  ``method``: minmax | entropy |
    percentile (activation range = the ``percentile`` of |x|; 99.99 measured
    best with :data:`INT8_KEEP_FLOAT` on the released weights).
    ``keep_float``: layer names (:func:`int8_layers`) left in fp32; default
    :data:`INT8_KEEP_FLOAT` (a graph without the exporter's layer names falls
    back to :func:`int8_keep_float`: the first block and the detector head).
    ``progress``: a bar over the calibration views (the CLI's, on a terminal).
    """
    # lazy: onnx (optional extra) and onnxruntime's quantiser are heavy; `goodpoint --help`
    # imports this module
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
            # the calibrator runs the network on every view first: most of a minute here
            self.it = iter(tqdm(batches, desc="int8 calibration", unit="view",
                                disable=not progress))

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {INPUT_NAME: x}

    proto = onnx.load(str(onnx_in))
    src_meta = metadata_from_map({p.key: p.value for p in proto.metadata_props}, onnx_in)
    if src_meta["export"].get("precision", "fp32") != "fp32":
        raise ExportError(f"{onnx_in} is already {src_meta['export']['precision']}; quantise the fp32 file")
    folded = fold_batchnorm(proto, skip_first=True)
    layers = int8_layers(proto)
    if keep_float is None and all(k in layers for k in INT8_KEEP_FLOAT):
        keep_float = list(INT8_KEEP_FLOAT)
    if keep_float is None:
        keep_nodes = int8_keep_float(proto)
    else:
        unknown = sorted(set(keep_float) - set(layers))
        if unknown:
            raise ExportError(f"unknown layer(s) {', '.join(unknown)}; layers: {', '.join(layers)}")
        keep_nodes = [n for name in keep_float for n in layers[name]]
    with tempfile.TemporaryDirectory() as tmp:
        src, pre, q = Path(tmp) / "src.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "q.onnx"
        onnx.save(proto, str(src))
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        extra = {"CalibMovingAverage": False, "ActivationSymmetric": activation_symmetric}
        if method == "percentile":
            extra["CalibPercentile"] = percentile
        quantize_static(str(pre), str(q), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        per_channel=True, op_types_to_quantize=list(INT8_OPS),
                        nodes_to_exclude=keep_nodes,
                        calibrate_method=methods[method], extra_options=extra)
        proto = onnx.load(str(q))
    info = dict(src_meta["export"], precision="int8", batchnorm_folded=folded,
                kept_float=keep_nodes, kept_float_layers=list(keep_float or []), calibration={
                    "method": method, "percentile": percentile if method == "percentile" else None,
                    "images": len(batches), "size": list(batches[0].shape[2:][::-1])})
    set_metadata(proto, src_meta["weights"], src_meta["weights_sha256"], info)
    onnx.checker.check_model(proto)
    atomic_write_bytes(out, proto.SerializeToString())
    return {"out": str(out), **info}


def int8_sensitivity(onnx_in: os.PathLike, inputs: Sequence[np.ndarray], images: Sequence[np.ndarray],
                     resize: Tuple[int, int] = CALIBRATION_SIZE, layers: Optional[Sequence[str]] = None,
                     **quant_kw) -> List[Dict]:
    """Per-layer int8 sensitivity: quantise one layer at a time, gate it against fp32.

    inputs: calibration tensors [1,1,H,W]; images: the photos compared on (the
    validation split, never the evaluation data), at network size ``resize``
    (W,H).  Returns one row per layer: ``{"layer", "repeatability",
    "descriptor_cosine"}`` with the gate's definitions (1 px, cosine at the
    fp32 keypoints).  The layers that lose the most are the ones to keep in
    float (``quantize_int8(keep_float=...)``).
    """
    # lazy: onnx (optional extra) and onnxruntime (imported by the backend module) are heavy
    import onnx

    from goodpoint_ros.backends.onnxruntime_backend import OnnxRuntimeBackend
    proto = onnx.load(str(onnx_in))
    fold_batchnorm(proto, skip_first=True)
    names = list(int8_layers(proto))
    ref = OnnxRuntimeBackend(weights=str(onnx_in), device="cpu")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for layer in layers or names:
            out = Path(tmp) / f"{layer}.onnx"
            quantize_int8(onnx_in, out, inputs, keep_float=[n for n in names if n != layer], **quant_kw)
            cand = OnnxRuntimeBackend(weights=str(out), device="cpu", precision="int8")
            g = accuracy_gate(ref, cand, images, resize=resize)
            rows.append({"layer": layer, "repeatability": g.repeatability,
                         "descriptor_cosine": g.descriptor_cosine})
    return rows
