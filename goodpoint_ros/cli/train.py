"""Train GoodPoint without labels on any folder of images (paper §4–5).

  goodpoint train --images DIR --out RUN_DIR [--config cfg.yaml] [--resume]
                  [--init WEIGHTS] [--epochs N] [--crop 256] [--set key=value ...]
  goodpoint train --benchmark            # throughput and per-stage split, fp32 and bf16

Checkpoints (last.ckpt, best.ckpt), config.yaml and TensorBoard logs (tb/)
go to RUN_DIR.  Kill it at any time; --resume continues from last.ckpt.
Several processes / machines: torchrun --nproc-per-node N -m
goodpoint_training.trainer (same flags).  Export the result with
``goodpoint export weights RUN_DIR/best.ckpt --out model.safetensors``.
Needs the training extra: pip install goodpoint_ros[train].
"""
from __future__ import annotations

import argparse
import importlib

from goodpoint_ros.cli.common import UserError


def _flags():
    """The trainer's flags module (goodpoint_training.flags), or the ImportError: a
    runtime-only installation has no trainer, and `goodpoint --help` must still work."""
    try:
        return importlib.import_module("goodpoint_training.flags")
    except ImportError as exc:
        return exc


def add_arguments(p: argparse.ArgumentParser) -> None:
    flags = _flags()
    if isinstance(flags, ImportError):
        p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        p.set_defaults(_train_unavailable=str(flags))
        return
    flags.add_arguments(p)


def run(args) -> int:
    if getattr(args, "_train_unavailable", None):
        raise UserError(f"training is not available in this installation "
                        f"({args._train_unavailable}); pip install goodpoint_ros[train]")
    try:    # torch and the trainer's other extras: optional, only `goodpoint train` needs them
        importlib.import_module("goodpoint_training.trainer")
    except ImportError as exc:
        raise UserError(f"training needs torch (pip install goodpoint_ros[train]): {exc}") from None
    return _flags().run_from_args(args)
