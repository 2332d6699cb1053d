"""Released weights: safetensors tensors + JSON metadata in the same file.

The metadata (stored as a JSON string under the safetensors header key
``goodpoint``) records what a consumer needs to use the weights correctly:
format version, architecture and layer recipe, input normalisation, and the
θ_keypoint / NMS radius the weights were tuned for.  Loading never unpickles
anything (safetensors), and every failure is a :class:`WeightsError` with a
one-line reason.  torch is only needed to build a model, not to read a file.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save

from goodpoint_ros.core.config import GoodPointConfig

FORMAT = "goodpoint-weights"
FORMAT_VERSION = 1
METADATA_KEY = "goodpoint"
PACKAGE_WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_WEIGHTS = PACKAGE_WEIGHTS_DIR / "goodpoint_default.safetensors"
DEFAULT_ONNX = PACKAGE_WEIGHTS_DIR / "goodpoint_default.onnx"

ARCHITECTURE = {
    "name": "goodpoint-superpoint-vgg",
    "encoder": [64, 64, 64, 64, 128, 128, 128, 128],
    "detector_channels": 64,
    "dustbin": False,
    "descriptor_dim": 256,
    "cell": 8,
    "layer_recipe": {"order": ["conv", "leaky_relu", "batch_norm"], "leaky_slope": 0.01,
                     "batch_norm": True, "descriptor_final": "linear+l2"},
}
INPUT = {"channels": 1, "color": "gray", "range": [0.0, 1.0], "mean": 0.0, "std": 1.0,
         "size_multiple": 8}


class WeightsError(RuntimeError):
    """A weights file is missing, corrupt or not GoodPoint weights."""


def default_metadata(keypoint_threshold: float = GoodPointConfig.DEFAULT_KEYPOINT_THRESHOLD,
                     nms_radius: int = GoodPointConfig.DEFAULT_NMS_RADIUS,
                     pyramid_levels: int = GoodPointConfig.DEFAULT_PYRAMID_LEVELS,
                     pyramid_factor: float = GoodPointConfig.DEFAULT_PYRAMID_FACTOR,
                     upsample_below: int = GoodPointConfig.DEFAULT_UPSAMPLE_BELOW,
                     **extra: Any) -> Dict[str, Any]:
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "architecture": ARCHITECTURE, "input": INPUT,
            "detection": {"keypoint_threshold": keypoint_threshold, "nms_radius": nms_radius,
                          "pyramid_levels": int(pyramid_levels),
                          "pyramid_factor": float(pyramid_factor),
                          "upsample_below": int(upsample_below)}}
    meta.update(extra)
    return meta


def missing_file(path: os.PathLike, what: str) -> Optional[str]:
    """Why ``path`` cannot be opened as a ``what`` (e.g. "weights file"), or None when it
    is a file: a folder is called a folder, not "not found"."""
    p = Path(path)
    if p.is_file():
        return None
    article = "an" if what[:1].lower() in "aeio" else "a"
    return f"{p} is a folder, not {article} {what}" if p.is_dir() else f"{what} not found: {p}"


def resolve_path(path: Optional[os.PathLike] = None) -> Path:
    """``None`` → the bundled default weights."""
    return Path(path) if path else DEFAULT_WEIGHTS


def atomic_write_bytes(path: os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file + rename (never a half file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)   # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_weights(path: os.PathLike, tensors: Dict[str, np.ndarray],
                 metadata: Dict[str, Any]) -> None:
    """Atomically write numpy ``tensors`` (state-dict names) and ``metadata``."""
    # ascontiguousarray would turn 0-d tensors (BatchNorm counters) into 1-d
    arrays = {k: np.ascontiguousarray(v).reshape(np.shape(v)) for k, v in tensors.items()}
    atomic_write_bytes(path, save(arrays, metadata={METADATA_KEY: json.dumps(metadata)}))


def load_weights(path: Optional[os.PathLike] = None) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """Read (tensors as numpy, metadata); raise :class:`WeightsError` on any problem."""
    p = resolve_path(path)
    if why := missing_file(p, "weights file"):
        raise WeightsError(why)
    try:
        with safe_open(str(p), framework="numpy") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises several types on corrupt input
        raise WeightsError(f"{p} is not a readable safetensors file ({exc.__class__.__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else 'corrupt'})") from None
    if METADATA_KEY not in header:
        raise WeightsError(f"{p} has no GoodPoint metadata (is it a GoodPoint weights file?)")
    try:
        meta = json.loads(header[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{p}: metadata is not valid JSON ({exc})") from None
    if meta.get("format") != FORMAT:
        raise WeightsError(f"{p}: format is {meta.get('format')!r}, expected {FORMAT!r}")
    if int(meta.get("format_version", -1)) > FORMAT_VERSION:
        raise WeightsError(f"{p}: format version {meta.get('format_version')} is newer than "
                           f"this goodpoint_ros understands ({FORMAT_VERSION}); upgrade the package")
    problem = architecture_mismatch(meta.get("architecture", {}))
    if problem:
        raise WeightsError(f"{p}: {problem}")
    return tensors, meta


#: Architecture fields that change the network this package builds (the layer
#: recipe is informative; the tensors' shapes are checked by load_model).
_ARCH_KEYS = ("name", "dustbin", "encoder", "detector_channels", "descriptor_dim", "cell")


def architecture_mismatch(arch: Dict[str, Any]) -> Optional[str]:
    """The first field of recorded ``architecture`` metadata that differs from what this
    package builds, as one sentence naming it (``None`` when it fits)."""
    if not isinstance(arch, dict):
        return f"architecture metadata is a {type(arch).__name__}, not a mapping"
    for key in _ARCH_KEYS:
        want = ARCHITECTURE[key]
        got = arch.get(key, False if key == "dustbin" else want)
        if key == "encoder" and isinstance(got, (list, tuple)):
            got = list(got)
        if got != want:
            return (f"architecture {key} is {got!r}, this package builds {want!r}"
                    + (" (GoodPoint has no dustbin channel, paper §3)" if key == "dustbin" else ""))
    return None


def load_model(path: Optional[os.PathLike] = None, device: str = "cpu"):
    """Build a :class:`GoodPointNet` in eval mode from a weights file → (model, metadata)."""
    import torch  # lazy: torch is optional (reading weights needs none, building a model does)

    from goodpoint_ros.core.model import GoodPointNet  # lazy: imports torch
    tensors, meta = load_weights(path)
    model = GoodPointNet()
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise WeightsError(f"{resolve_path(path)}: tensors do not fit GoodPointNet "
                           f"(missing {missing[:3]}{'…' if len(missing) > 3 else ''}, "
                           f"unexpected {unexpected[:3]}{'…' if len(unexpected) > 3 else ''})")
    bad = [k for k, v in tensors.items() if tuple(v.shape) != tuple(expected[k].shape)]
    if bad:
        k = bad[0]
        raise WeightsError(f"{resolve_path(path)}: tensor {k} has shape {tuple(tensors[k].shape)}, "
                           f"expected {tuple(expected[k].shape)}")
    nonfinite = [k for k, v in tensors.items() if v.dtype.kind == "f" and not np.isfinite(v).all()]
    if nonfinite:
        raise WeightsError(f"{resolve_path(path)}: tensor {nonfinite[0]} has NaN/inf values")
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in tensors.items()})
    return model.to(device).eval(), meta


def model_to_tensors(model) -> Dict[str, np.ndarray]:
    """state dict → float32/int64 numpy arrays for :func:`save_weights`."""
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
