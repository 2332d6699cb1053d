"""Inference backends behind one contract.

``infer(image)`` takes float32 [1,1,H,W] (grayscale in [0,1], H and W multiples
of 8) and returns numpy ``(prob [1,H,W], desc [1,256,H/8,W/8])``: the
confidence map after softmax + depth-to-space, and L2-normalised descriptors.
Everything after that is :func:`goodpoint_ros.core.keypoints.postprocess`, shared.

Backends are imported lazily so that a machine without torch (or without
TensorRT) can still use the others.
"""
from __future__ import annotations

import importlib
import logging
from typing import Callable, Dict, Protocol, Tuple

import numpy as np


class Backend(Protocol):
    name: str
    precision: str
    metadata: dict

    def infer(self, image: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        ...


class BackendUnavailable(RuntimeError):
    """A backend cannot run here (library missing, no device, bad engine...)."""


#: name → "module:factory"; factories take (weights=None, device=..., precision=..., **kw).
REGISTRY: Dict[str, str] = {
    "torch": "goodpoint_ros.backends.torch_backend:TorchBackend",
    "onnxruntime": "goodpoint_ros.backends.onnxruntime_backend:OnnxRuntimeBackend",
    "tensorrt": "goodpoint_ros.backends.tensorrt_backend:create_tensorrt_backend",
}

#: ``auto`` tries these in order: TensorRT (an engine cached or buildable: needs
#: tensorrt + CUDA), ONNX Runtime (CUDA provider, then CPU), PyTorch.
AUTO_ORDER = ["tensorrt", "onnxruntime", "torch"]

LOG = logging.getLogger("goodpoint_ros.backends")


def available_backends():
    return list(REGISTRY)


def _factory(name: str) -> Callable:
    if name not in REGISTRY:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join(REGISTRY)} or auto")
    module, attr = REGISTRY[name].split(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        raise BackendUnavailable(f"backend {name!r} needs a library that is not installed: {exc}") from None


def create_backend(name: str = "auto", **kwargs) -> "Backend":
    """Create a backend by name; ``auto`` falls back along :data:`AUTO_ORDER`.

    The chosen backend has ``fallback_log``: a list of (backend, reason) for the
    ones tried and skipped, for the caller to log.
    """
    if name != "auto":
        backend = _factory(name)(**kwargs)
        backend.fallback_log = []
        return backend
    log = []
    for candidate in AUTO_ORDER:
        if candidate not in REGISTRY:
            continue
        try:
            backend = _factory(candidate)(**kwargs)
        except (BackendUnavailable, ImportError) as exc:
            log.append((candidate, str(exc)))
            LOG.info("backend auto: skipping %s: %s", candidate, exc)
            continue
        backend.fallback_log = log
        LOG.info("backend auto: using %s (%s)%s", getattr(backend, "name", candidate),
                 getattr(backend, "precision", "?"),
                 "; skipped " + ", ".join(n for n, _ in log) if log else "")
        return backend
    reasons = "; ".join(f"{n}: {r}" for n, r in log)
    raise BackendUnavailable(f"no backend could load ({reasons})")


def check_input(image: np.ndarray) -> None:
    """Enforce the contract's input: float32 [1,1,H,W], H, W multiples of 8."""
    if image.dtype != np.float32 or image.ndim != 4 or image.shape[:2] != (1, 1):
        raise ValueError(f"backend input must be float32 [1,1,H,W], got {image.dtype} {image.shape}")
    if image.shape[2] % 8 or image.shape[3] % 8 or image.shape[2] == 0 or image.shape[3] == 0:
        raise ValueError(f"backend input H, W must be positive multiples of 8, got {image.shape[2:]}")
