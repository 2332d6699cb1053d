"""Inference backends behind one contract.

``infer(image)`` takes float32 [1,1,H,W] (grayscale in [0,1], H and W multiples
of 8) and returns numpy ``(prob [1,H,W], desc [1,256,H/8,W/8])``: the
confidence map after softmax + depth-to-space, and L2-normalised descriptors.
Everything after that is :func:`goodpoint_ros.core.keypoints.postprocess`, shared.

Backends are imported lazily so that a machine without torch (or without
TensorRT) can still use the others.  Also here: :mod:`.onnx_model` (the ONNX file
and its GoodPoint metadata, export from torch), :mod:`.gate` (the accuracy gate
``auto`` and the TensorRT builder run), :mod:`.engine_cache`, :mod:`.auto`.

May import :mod:`goodpoint_ros.core` (the pipeline only inside the gate, lazily);
torch, onnxruntime, onnx and tensorrt lazily.  Never ``deploy``, ``frontend``,
``ros``, ``evaluation`` or ``cli`` (``test/test_architecture.py``).
"""
from __future__ import annotations

import importlib
import logging
import re
from typing import Callable, Dict, Protocol, Tuple

import numpy as np

from goodpoint_ros.backends.engine_cache import HotSwapBackend
from goodpoint_ros.core.weights import WeightsError


class Backend(Protocol):
    name: str
    precision: str
    metadata: dict

    def infer(self, image: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        ...


#: Input shapes whose compiled models / buffers a shape-specialising
#: backend (OpenVINO, TensorRT) keeps: every level of the largest pyramid
#: (8, GoodPointConfig) for two frame sizes (two cameras, or frames on both sides of
#: ``upsample_below``); a cache smaller than the level count recompiles each level of
#: each frame (LRU on a cycle).
MAX_SHAPES = 16

#: Every precision some backend runs; which pairs one can is that backend's own answer
#: (``BackendUnavailable``).
PRECISIONS: Tuple[str, ...] = ("fp32", "bf16", "fp16", "int8")


class BackendUnavailable(RuntimeError):
    """A backend cannot run here (library missing, no device, bad engine...)."""


#: name → "module:factory"; factories take (weights=None, device=..., precision=..., **kw).
REGISTRY: Dict[str, str] = {
    "torch": "goodpoint_ros.backends.torch_backend:TorchBackend",
    "onnxruntime": "goodpoint_ros.backends.onnxruntime_backend:OnnxRuntimeBackend",
    "tensorrt": "goodpoint_ros.backends.tensorrt_backend:create_tensorrt_backend",
    "openvino": "goodpoint_ros.backends.openvino_backend:OpenVinoBackend",
}

#: ``auto`` tries these in order: TensorRT (an engine cached or buildable: needs
#: tensorrt + CUDA), ONNX Runtime (CUDA provider, then CPU), PyTorch.
AUTO_ORDER = ["tensorrt", "onnxruntime", "torch"]

LOG = logging.getLogger("goodpoint_ros.backends")


def _factory(name: str) -> Callable:
    if name not in REGISTRY:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join(REGISTRY)} or auto")
    module, attr = REGISTRY[name].split(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        raise BackendUnavailable(f"backend {name!r} needs a library that is not installed: {exc}") from None


#: What ``precision="auto"`` means for a named backend: its reference precision.
DEFAULT_PRECISION = {"tensorrt": "fp16"}


def create_backend(name: str = "auto", probe: str = "blocking", **kwargs) -> "Backend":
    """Create a backend by name.

    ``name="auto"`` with ``precision="auto"``: the fastest backend × precision
    that passes the accuracy gate on this machine, measured once and cached
    (:mod:`goodpoint_ros.backends.auto`; TensorRT first where it loads).
    ``probe``: ``blocking`` — probe now when nothing is cached (CLI, Python
    API); ``background`` — serve with the static choice while a thread
    probes, then switch between frames (the node).  ``name="auto"`` with an
    explicit precision (or ``GOODPOINT_AUTO=static``) falls back along
    :data:`AUTO_ORDER` without probing.  A named backend with
    ``precision="auto"`` runs at its reference precision (fp32; TensorRT fp16).

    The chosen backend has ``fallback_log``: a list of (backend, reason) for the
    ones tried and skipped, for the caller to log; an auto-probed one also
    ``auto_probe`` (the probe result, see :func:`auto.run_probe`).
    """
    check_device(kwargs.get("device", "auto"))
    if name != "auto":
        if kwargs.get("precision") == "auto":
            kwargs["precision"] = DEFAULT_PRECISION.get(name, "fp32")
        backend = _factory(name)(**kwargs)
        backend.fallback_log = []
        return backend
    if kwargs.get("precision") == "auto":
        return _create_probed(probe, kwargs)
    return _create_static(kwargs)


def check_device(device) -> None:
    """Refuse a device name no backend knows (``gpu``...) once, before any backend
    tries it: torch would raise a bare RuntimeError."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(device)):
        raise BackendUnavailable(f"unknown device {device!r} (auto, cpu or cuda[:N])")


def file_owner(weights) -> str:
    """The backend that reads a weights file of this type: ``.onnx`` → onnxruntime,
    anything else (``.safetensors``, the default) → torch."""
    return "onnxruntime" if weights and str(weights).lower().endswith(".onnx") else "torch"


def _create_static(kwargs, order=AUTO_ORDER) -> "Backend":
    """The first backend of ``order`` that loads (precision as given, default fp32).

    When none loads, the error leads with the reason of the backend that owns the
    file type (:func:`file_owner`), then the whole chain: a broken ``.onnx`` once
    reported torch's "not a readable safetensors file" and hid ONNX Runtime's
    ``INVALID_PROTOBUF``.
    """
    log = []
    weights = kwargs.get("weights")
    owner = file_owner(weights)
    for candidate in order:
        if candidate not in REGISTRY:
            continue
        if candidate == "torch" and owner == "onnxruntime":
            log.append((candidate, "reads .safetensors weights, not an .onnx file"))
            continue
        try:
            backend = _factory(candidate)(**kwargs)
        except (BackendUnavailable, ImportError, WeightsError) as exc:
            log.append((candidate, str(exc)))
            LOG.info("backend auto: skipping %s: %s", candidate, exc)
            continue
        backend.fallback_log = log
        LOG.info("backend auto: using %s (%s)%s", getattr(backend, "name", candidate),
                 getattr(backend, "precision", "?"),
                 "; skipped " + ", ".join(n for n, _ in log) if log else "")
        return backend
    first = [(n, r) for n, r in log if n == owner][:1]
    chain = "; ".join(f"{n}: {r}" for n, r in log if (n, r) not in first)
    if first:
        name = f" {weights}" if weights else ""
        raise BackendUnavailable(f"no backend could load{name}: {first[0][0]} (reads this file "
                                 f"type): {first[0][1]}" + (f" [also tried: {chain}]" if chain else ""))
    raise BackendUnavailable(f"no backend could load ({chain})")


def _create_probed(probe: str, kwargs) -> "Backend":
    """``auto`` × ``auto``: TensorRT where it loads, else the measured choice."""
    # lazy: auto imports this package (BackendUnavailable); at the top it would be circular
    from goodpoint_ros.backends import auto
    if probe not in ("blocking", "background"):
        raise ValueError(f"probe must be blocking or background, not {probe!r}")
    mode = auto.probe_mode()
    static_kw = dict(kwargs, precision="fp32")
    if mode == "static":
        return _create_static(static_kw)
    log = []
    if kwargs.get("device", "auto") != "cpu" and "tensorrt" in REGISTRY:
        try:   # a GPU: TensorRT builds, gates and hot-swaps its own engine
            backend = _factory("tensorrt")(**dict(kwargs, precision="fp16"))
            backend.fallback_log = []
            return backend
        except (BackendUnavailable, ImportError) as exc:
            log.append(("tensorrt", str(exc)))
    size = kwargs.get("size")
    if size is None and kwargs.get("profile"):
        (h, w) = kwargs["profile"][1]          # the profile's optimum (H, W)
        size = (w, h)
    size = tuple(size or auto.DEFAULT_SIZE)
    size = (-(-size[0] // 8) * 8, -(-size[1] // 8) * 8)

    def factory(b, p):
        return _factory(b)(**dict(kwargs, precision=p))

    key = auto.probe_key(kwargs.get("weights"), size, kwargs.get("device", "auto"),
                         kwargs.get("threads"))
    cache = auto.ProbeCache()
    info = None if mode == "reprobe" else cache.load(key)
    if info is not None:                       # measured before on this machine: no probe
        try:
            backend = factory(*info["choice"])
        except (BackendUnavailable, ImportError) as exc:
            LOG.warning("auto: cached choice %s no longer loads (%s); probing again",
                        " ".join(info["choice"]), exc)
        else:
            LOG.info("%s (cached %s)", info["line"], cache.path(key))
            backend.fallback_log, backend.auto_probe = log, info
            return backend
    if probe == "blocking":
        result = auto.cached_or_probe(factory, key, cache, reprobe=mode == "reprobe", keep=True)
        LOG.info("%s (probe %.0f s, cached in %s)", result["line"],
                 result.get("probe_seconds", 0), cache.path(key))
        if result["choice"] is None:
            # nothing loads at all: the static order raises the reason, with no warning
            # before it (the error is the one line a user should read)
            backend = _create_static(static_kw)
            LOG.warning("auto: no candidate passed; using the static order (%s %s)",
                        getattr(backend, "name", "?"), getattr(backend, "precision", "?"))
            return backend
        backend = result.pop("backend", None) or factory(*result["choice"])  # None: cached meanwhile
        backend.fallback_log, backend.auto_probe = log, result
        return backend
    # background: serve with the static choice, switch once measured
    fallback = _create_static(static_kw, [n for n in AUTO_ORDER if n != "tensorrt"])

    def measure():
        result = auto.cached_or_probe(factory, key, cache, reprobe=mode == "reprobe", keep=True)
        LOG.info("%s (probe %.0f s, cached in %s)", result["line"],
                 result.get("probe_seconds", 0), cache.path(key))
        if result["choice"] is None:
            raise BackendUnavailable("no candidate passed the accuracy gate")
        return result

    def open_choice(result):
        chosen = result.pop("backend", None) or factory(*result["choice"])
        same = [getattr(fallback, "name", ""), getattr(fallback, "precision", "")] == result["choice"]
        swap.auto_probe = result
        return fallback if same else chosen

    swap = HotSwapBackend(fallback, measure, open_choice, label="auto probe", heartbeat_s=60.0)
    swap.fallback_log = log + list(getattr(fallback, "fallback_log", []))
    swap.auto_probe = None
    return swap


def check_input(image: np.ndarray) -> None:
    """Enforce the contract's input: float32 [1,1,H,W], H, W multiples of 8."""
    if image.dtype != np.float32 or image.ndim != 4 or image.shape[:2] != (1, 1):
        raise ValueError(f"backend input must be float32 [1,1,H,W], got {image.dtype} {image.shape}")
    if image.shape[2] % 8 or image.shape[3] % 8 or image.shape[2] == 0 or image.shape[3] == 0:
        raise ValueError(f"backend input H, W must be positive multiples of 8, got {image.shape[2:]}")
