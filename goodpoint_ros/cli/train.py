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

import importlib

from goodpoint_training.flags import add_arguments, build_config, run_from_args

__all__ = ["add_arguments", "build_config", "run"]


def run(args) -> int:
    from goodpoint_ros.cli.common import UserError
    try:    # torch and the trainer's other extras: optional, only `goodpoint train` needs them
        importlib.import_module("goodpoint_training.trainer")
    except ImportError as exc:
        raise UserError(f"training needs torch (pip install goodpoint_ros[train]): {exc}") from None
    return run_from_args(args)
