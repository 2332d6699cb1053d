"""Atomic, resumable checkpoints readable with ``torch.load(weights_only=True)``.

A checkpoint holds the model, optimizer and scheduler states, the step /
epoch counters, the torch RNG state (a uint8 tensor) and the config as YAML
text — only tensors, numbers, strings, lists and dicts, so loading never
unpickles arbitrary objects.  Files are written to a temp file and renamed:
killing the process at any moment leaves the previous checkpoint intact.
"""
from __future__ import annotations

import fcntl
import io
import os
from pathlib import Path
from typing import Any, Dict

import torch
import yaml

from goodpoint_ros.core.weights import atomic_write_bytes

from .config import config_from_dict

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


# --------------------------------------------------------------------------- the run folder

#: Files that mean "this folder holds a run": a new run without --resume or
#: --overwrite refuses to replace them (a second run once overwrote best.ckpt,
#: validation HM 0.658 → 0.0).
RUN_FILES = (LAST, BEST, "config.yaml")
LOCK = ".lock"

#: Settings a ``--resume`` may change: how long, where and how often to log /
#: save.  They are applied and recorded in config.yaml.  Every other setting
#: shapes the optimisation the checkpoint continues (the optimizer state keeps
#: its own lr, the data stream is seeded by seed/crop/batch size), so changing
#: one on resume is refused, naming each.
RESUME_MAY_CHANGE = frozenset({
    "out", "images", "bag", "validation_split", "max_steps", "constant_epochs",
    "decay_epochs", "steps_per_epoch", "device", "threads", "workers", "tensorboard",
    "log_every", "image_every", "checkpoint_minutes", "checkpoint_steps", "validate_every"})


class RunFolderError(ValueError):
    """The run folder cannot be used as asked; one line saying what to do."""


class RunLock:
    """An exclusive ``fcntl.flock`` on ``RUN/.lock`` holding the owner's PID.

    A second run into the same folder refuses at once, naming the first's PID;
    the lock goes when the process ends, however it ends (the kernel drops it),
    so a killed run never leaves a stale lock behind.
    """

    def __init__(self, folder: Path):
        # the folders this lock makes, deepest first: a run that cannot start removes them
        self.created = [d for d in (folder, *folder.parents) if not d.exists()]
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / LOCK
        self.made_file = not self.path.exists()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = os.pread(self._fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            self._fd = None
            raise RunFolderError(f"{folder} is in use by another training run (PID {owner}, "
                                 f"lock {self.path}); wait for it or pick another --out") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)          # closing drops the flock
            self._fd = None

    def abandon(self) -> None:
        """Release, and remove the lock file and the folders this lock made (those only if
        they hold nothing else): a run that could not start leaves no empty RUN/ behind."""
        if self._fd is None:
            return
        if self.made_file:
            self.path.unlink(missing_ok=True)
        self.release()
        for d in self.created:
            try:
                d.rmdir()           # only when empty: never anything but its own traces
            except OSError:
                break

    def __del__(self):
        self.release()


def holds_run(folder: Path) -> list:
    """The run files (``RUN_FILES``) present in ``folder``."""
    return [n for n in RUN_FILES if (Path(folder) / n).exists()]


def remove_orphan_temps(folder: Path) -> list:
    """Delete ``last.ckpt.*.tmp`` & co. that a kill during an atomic write left behind
    (safe only under :class:`RunLock`: no writer is running).  → names removed."""
    gone = []
    for name in RUN_FILES:
        for p in Path(folder).glob(f"{name}.*.tmp"):
            p.unlink(missing_ok=True)
            gone.append(p.name)
    return gone


def resume_changes(saved_yaml: str, cfg) -> tuple:
    """(refused, applied): settings of ``cfg`` that differ from the checkpoint's
    config (YAML text), as ``"key: old → new"``, split by :data:`RESUME_MAY_CHANGE`."""
    old = yaml.safe_load(saved_yaml or "") or {}
    new = cfg.to_dict()

    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
        return out
    old, new = flat(old), flat(new)
    refused, applied = [], []
    for key in sorted(set(old) | set(new)):
        if key in old and old.get(key) != new.get(key):
            line = f"{key}: {old.get(key)!r} → {new.get(key)!r}"
            (applied if key in RESUME_MAY_CHANGE else refused).append(line)
    return refused, applied


def run_config(folder: Path):
    """The TrainConfig recorded in ``folder/last.ckpt`` (what ``--resume`` continues),
    or None without a checkpoint."""
    p = Path(folder) / LAST
    if not p.is_file():
        return None
    return config_from_dict(yaml.safe_load(load_checkpoint(p).get("config") or "") or {})
