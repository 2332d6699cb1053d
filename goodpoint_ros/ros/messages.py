"""Build and parse goodpoint_ros/msg fields without ROS.

The node, the tests (through ``rosbags``' CDR) and Python consumers share these
functions, so one definition says what goes into ``Keypoints``, ``Matches`` and
``Status`` (see ``msg/*.msg`` for every field's units and frames):

    fields = keypoints_fields(features, track_ids)          # numpy arrays
    for name, value in to_rclpy(fields).items():            # array.array etc.
        setattr(msg, name, value)
    features, track_ids = parse_keypoints(received_msg)     # any msg-like object

Headers are not in the field dicts: the node copies the input image's header
object as is (output stamps are the input's).

Descriptor quantisation (``DESCRIPTOR_UINT8_AFFINE``): one step per message,
``scale = max|d| / 127``, code ``q = round(d / scale) + 128`` in [1, 255], so
nothing clips; decode ``d = (q − 128)·scale`` and re-normalise each row.
"""
from __future__ import annotations

import array
from typing import Any, Dict, Optional, Tuple

import numpy as np

from goodpoint_ros.core.keypoints import Features
from goodpoint_ros.core.matching import MatchResult

# Constants as in msg/Keypoints.msg and msg/Matches.msg (a test checks they agree).
DESCRIPTOR_FLOAT32 = 0
DESCRIPTOR_UINT8_AFFINE = 1
DESCRIPTOR_ENCODINGS = {"float32": DESCRIPTOR_FLOAT32, "uint8": DESCRIPTOR_UINT8_AFFINE}
MODEL_TYPES = {"none": 0, "homography": 1, "essential": 2, "fundamental": 3}
MODEL_NAMES = {v: k for k, v in MODEL_TYPES.items()}

#: Sequence fields → Python ``array`` typecode rclpy expects for them
#: (float32 'f', uint32 'I', uint64 'Q', uint8 'B'); ``bool[]`` is a list.
SEQUENCE_TYPECODES = {
    "x": "f", "y": "f", "scores": "f", "track_ids": "Q", "descriptors": "f",
    "descriptors_uint8": "B",
    "query_indices": "I", "train_indices": "I", "distances": "f", "disparities": "f",
}
BOOL_SEQUENCES = {"inliers"}
#: Fixed-size float64 arrays (rclpy holds them as numpy arrays).
FIXED_ARRAYS = {"model": 9, "rotation": 9, "translation": 3}


class MessageError(ValueError):
    """A received message is inconsistent (array lengths disagree, ...)."""


# --------------------------------------------------------------------------- descriptors

def quantize_descriptors(descriptors: np.ndarray) -> Tuple[np.ndarray, float]:
    """[N,D] float → (codes [N·D] uint8 row-major, scale)."""
    d = np.asarray(descriptors, np.float32)
    peak = float(np.abs(d).max()) if d.size else 0.0
    scale = peak / 127.0 if peak > 0 else 1.0
    q = np.clip(np.rint(d / scale) + 128, 0, 255).astype(np.uint8)
    return q.reshape(-1), scale


def dequantize_descriptors(codes: np.ndarray, scale: float, dim: int) -> np.ndarray:
    """(codes [N·D] uint8, scale, D) → [N,D] float32 unit rows."""
    q = np.asarray(codes, np.uint8).reshape(-1, dim) if dim else np.zeros((0, 0), np.uint8)
    d = (q.astype(np.float32) - 128.0) * np.float32(scale)
    norm = np.sqrt((d * d).sum(-1, keepdims=True))
    return (d / np.maximum(norm, 1e-12)).astype(np.float32)


# --------------------------------------------------------------------------- Keypoints

def keypoints_fields(features: Features, track_ids: Optional[np.ndarray] = None,
                     encoding: str = "float32") -> Dict[str, Any]:
    """Features (+ ids) → Keypoints fields (all but ``header``), numpy-valued."""
    if encoding not in DESCRIPTOR_ENCODINGS:
        raise ValueError(f"descriptor encoding must be one of {list(DESCRIPTOR_ENCODINGS)}, "
                         f"got {encoding!r}")
    n = len(features.keypoints)
    ids = np.zeros(n, np.uint64) if track_ids is None else np.asarray(track_ids, np.uint64)
    if len(ids) != n:
        raise ValueError(f"{len(ids)} track ids for {n} keypoints")
    desc = np.asarray(features.descriptors, np.float32)
    dim = int(desc.shape[-1]) if desc.ndim == 2 else (desc.size // n if n else 0)
    desc = desc.reshape(n, dim)
    fields = {
        "width": int(features.image_size[0]), "height": int(features.image_size[1]),
        "x": np.ascontiguousarray(features.keypoints[:, 0], np.float32),
        "y": np.ascontiguousarray(features.keypoints[:, 1], np.float32),
        "scores": np.asarray(features.scores, np.float32),
        "track_ids": ids,
        "descriptor_size": dim,
        "descriptor_encoding": DESCRIPTOR_ENCODINGS[encoding],
        "descriptors": np.zeros(0, np.float32),
        "descriptors_uint8": np.zeros(0, np.uint8),
        "descriptor_scale": 0.0,
    }
    if encoding == "float32":
        fields["descriptors"] = desc.reshape(-1)
    else:
        fields["descriptors_uint8"], fields["descriptor_scale"] = quantize_descriptors(desc)
    return fields


def parse_keypoints(msg) -> Tuple[Features, np.ndarray]:
    """A Keypoints message (rclpy, rosbags or a dict-like object) → (Features, track_ids)."""
    get = _getter(msg)
    x, y = np.asarray(get("x"), np.float32), np.asarray(get("y"), np.float32)
    scores = np.asarray(get("scores"), np.float32)
    ids = np.asarray(get("track_ids"), np.uint64)
    n, dim = len(x), int(get("descriptor_size"))
    if not (len(y) == len(scores) == len(ids) == n):
        raise MessageError(f"Keypoints arrays disagree: x {n}, y {len(y)}, scores {len(scores)}, "
                           f"track_ids {len(ids)}")
    enc = int(get("descriptor_encoding"))
    if enc == DESCRIPTOR_FLOAT32:
        flat = np.asarray(get("descriptors"), np.float32)
        if flat.size != n * dim:
            raise MessageError(f"{flat.size} descriptor values for {n} keypoints x {dim}")
        desc = flat.reshape(n, dim)
    elif enc == DESCRIPTOR_UINT8_AFFINE:
        codes = _as_uint8(get("descriptors_uint8"))
        if codes.size != n * dim:
            raise MessageError(f"{codes.size} descriptor codes for {n} keypoints x {dim}")
        desc = dequantize_descriptors(codes, float(get("descriptor_scale")), dim)
    else:
        raise MessageError(f"unknown descriptor_encoding {enc}")
    feats = Features(np.stack([x, y], axis=1).reshape(n, 2), scores, desc,
                     (int(get("width")), int(get("height"))))
    return feats, ids


# --------------------------------------------------------------------------- Matches

def matches_fields(result: MatchResult) -> Dict[str, Any]:
    """MatchResult → Matches fields (all but the three headers), numpy-valued."""
    m = np.asarray(result.matches, np.int64).reshape(-1, 2)
    disparities = getattr(result, "disparities", None)

    def fixed(value, size):
        out = np.zeros(size, np.float64)
        if value is not None:
            out[:] = np.asarray(value, np.float64).reshape(-1)[:size]
        return out

    return {
        "query_indices": m[:, 0].astype(np.uint32),
        "train_indices": m[:, 1].astype(np.uint32),
        "distances": np.asarray(result.distances, np.float32),
        "inliers": np.asarray(result.inliers, bool),
        "disparities": (np.zeros(0, np.float32) if disparities is None
                        else np.asarray(disparities, np.float32)),
        "model_type": MODEL_TYPES[result.model_type],
        "model": fixed(result.model, 9),
        "rotation": fixed(result.rotation, 9),
        "translation": fixed(result.translation, 3),
    }


def parse_matches(msg) -> MatchResult:
    """A Matches message → MatchResult (``disparities`` attribute when present)."""
    get = _getter(msg)
    q = np.asarray(get("query_indices"), np.int64)
    t = np.asarray(get("train_indices"), np.int64)
    dist = np.asarray(get("distances"), np.float32)
    inl = np.asarray(list(get("inliers")), bool)
    if not (len(t) == len(dist) == len(inl) == len(q)):
        raise MessageError(f"Matches arrays disagree: query {len(q)}, train {len(t)}, "
                           f"distances {len(dist)}, inliers {len(inl)}")
    kind = MODEL_NAMES.get(int(get("model_type")))
    if kind is None:
        raise MessageError(f"unknown model_type {get('model_type')}")
    result = MatchResult(np.stack([q, t], axis=1).reshape(-1, 2), dist, inl, kind)
    if kind != "none":
        result.model = np.asarray(get("model"), np.float64).reshape(3, 3)
    if kind == "essential":
        result.rotation = np.asarray(get("rotation"), np.float64).reshape(3, 3)
        result.translation = np.asarray(get("translation"), np.float64).reshape(3)
    disp = np.asarray(get("disparities"), np.float32)
    if len(disp):
        if len(disp) != len(q):
            raise MessageError(f"{len(disp)} disparities for {len(q)} matches")
        result.disparities = disp
    return result


# --------------------------------------------------------------------------- Status

def status_fields(backend: str, precision: str, device: str, times, callback_ms: float,
                  stats, skipped: int, num_keypoints: int, num_matches: int,
                  num_inliers: int) -> Dict[str, Any]:
    """Status fields (all but ``header``). ``times``: StageTimes; ``stats``: SchedulerStats."""
    return {
        "backend": str(backend), "precision": str(precision), "device": str(device),
        "preprocess_ms": float(times.preprocess), "network_ms": float(times.network),
        "postprocess_ms": float(times.postprocess), "callback_ms": float(callback_ms),
        "frames_received": int(stats.received), "frames_processed": int(stats.processed),
        "frames_dropped": int(stats.dropped), "frames_skipped": int(skipped),
        "num_keypoints": int(num_keypoints), "num_matches": int(num_matches),
        "num_inliers": int(num_inliers),
    }


# --------------------------------------------------------------------------- rclpy values

def to_rclpy(fields: Dict[str, Any]) -> Dict[str, Any]:
    """numpy-valued fields → the Python types rclpy's generated setters accept.

    Unbounded numeric sequences become ``array.array`` of the exact typecode
    (a copy of the bytes, fast even for 256k descriptor values), ``bool[]`` a
    list of bools, fixed float64 arrays numpy float64 vectors, scalars plain
    Python numbers.
    """
    out: Dict[str, Any] = {}
    for name, value in fields.items():
        if name in SEQUENCE_TYPECODES:
            code = SEQUENCE_TYPECODES[name]
            arr = np.ascontiguousarray(value, dtype=np.dtype(code))
            a = array.array(code)
            a.frombytes(arr.tobytes())
            out[name] = a
        elif name in BOOL_SEQUENCES:
            out[name] = [bool(v) for v in np.asarray(value, bool)]
        elif name in FIXED_ARRAYS:
            out[name] = np.asarray(value, np.float64).reshape(FIXED_ARRAYS[name])
        elif isinstance(value, (np.integer, bool)):
            out[name] = int(value)
        elif isinstance(value, np.floating):
            out[name] = float(value)
        else:
            out[name] = value
    return out


def fill(msg, fields: Dict[str, Any]):
    """Set ``fields`` on a message object (rclpy-ready values); returns ``msg``."""
    for name, value in to_rclpy(fields).items():
        setattr(msg, name, value)
    return msg


def _as_uint8(value) -> np.ndarray:
    """uint8[] as rclpy (array.array / bytes), rosbags (ndarray) or a list gives it."""
    if isinstance(value, (bytes, bytearray, memoryview, array.array)):
        return np.frombuffer(memoryview(value).cast("B"), np.uint8)
    return np.asarray(value, np.uint8).reshape(-1)


def _getter(msg):
    if isinstance(msg, dict):
        return msg.__getitem__
    return lambda name: getattr(msg, name)
