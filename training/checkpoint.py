"""Atomic, resumable checkpoints readable with ``torch.load(weights_only=True)``.

A checkpoint holds the model, optimizer and scheduler states, the step /
epoch counters, the torch RNG state (a uint8 tensor) and the config as YAML
text — only tensors, numbers, strings, lists and dicts, so loading never
unpickles arbitrary objects.  Files are written to a temp file and renamed:
killing the process at any moment leaves the previous checkpoint intact.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Dict

import torch

from goodpoint_ros.core.weights import atomic_write_bytes

LAST = "last.ckpt"
BEST = "best.ckpt"


def save_checkpoint(path: Path, state: Dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path) -> Dict[str, Any]:
    """Read a checkpoint safely; one-line ``ValueError`` if it is not one."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    try:
        state = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types on corrupt / unsafe files
        raise ValueError(f"{p} is not a readable GoodPoint checkpoint "
                         f"({exc.__class__.__name__}: {str(exc).splitlines()[0][:200]})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{p} is not a GoodPoint training checkpoint (no 'model' entry)")
    return state


def model_state(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """state dict without a DDP ``module.`` prefix, on CPU."""
    m = model.module if hasattr(model, "module") else model
    return {k: v.detach().cpu().clone() for k, v in m.state_dict().items()}
