"""The trainer's command line, shared by ``goodpoint train`` and the torchrun entry.

``goodpoint train`` (:mod:`goodpoint_ros.cli.train`) and ``torchrun -m
goodpoint_training.trainer`` take the same flags; they are defined here, in
the training package, so the trainer never imports the CLI above it (the
dependency points one way: ``goodpoint_ros.cli`` → ``goodpoint_training``).
Bad values raise ``ValueError`` (the CLI prints it in one line).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml

from .config import TrainConfig, load_config, merge, validate


def _kv(text: str):
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    k, v = text.split("=", 1)
    return k.strip(), yaml.safe_load(v)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", help="folder of training images (searched recursively)")
    p.add_argument("--bag", help="train on frames of this rosbag2 (.mcap/.db3) instead of --images: "
                   "adapt to a robot's own domain without labels")
    p.add_argument("--image-topic", help="with --bag: the image topic (Image or CompressedImage)")
    p.add_argument("--bag-every", type=int,
                   help="with --bag: use every k-th frame (default 5); near-duplicates are dropped")
    p.add_argument("--out", help="run directory for checkpoints, config.yaml and tb/ logs")
    p.add_argument("--config", help="YAML file with any TrainConfig fields")
    p.add_argument("--resume", action="store_true",
                   help="continue from RUN_DIR/last.ckpt with its recorded settings (flags may "
                        "change only run length, devices, logging and checkpoint cadence)")
    p.add_argument("--overwrite", action="store_true",
                   help="start a new run in a RUN_DIR that holds one (its checkpoints are deleted)")
    p.add_argument("--init", metavar="WEIGHTS",
                   help="start from released weights (.safetensors) with a fresh optimizer")
    p.add_argument("--epochs", type=int, help="total epochs (split 8:10 constant:decay as §5)")
    p.add_argument("--steps-per-epoch", type=int, help="define an epoch as this many steps")
    p.add_argument("--max-steps", type=int, help="stop after this many steps in total")
    p.add_argument("--crop", type=int, help="random crop size in px (default 256, §5)")
    p.add_argument("--batch-size", type=int, help="pairs per step (default 8)")
    p.add_argument("--lr", type=float, help="AdamW learning rate (default 5e-4, §5)")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], help="default bf16")
    p.add_argument("--device", help="auto | cpu | cuda")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--workers", type=int, help="DataLoader worker processes (default 1)")
    p.add_argument("--seed", type=int, help="data / init seed (default 0)")
    p.add_argument("--rotation", type=float, help="homography rotation range ±rad (§5.2: 0.08)")
    p.add_argument("--scale", type=float, nargs=2, metavar=("LO", "HI"),
                   help="homography zoom range (default 1 1)")
    p.add_argument("--validation-dir",
                   help="folder holding the validation split's photos (default: --images)")
    p.add_argument("--no-validation", action="store_true", help="skip validation")
    p.add_argument("--set", type=_kv, action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set homography.perspective_shift=40")
    p.add_argument("--benchmark", action="store_true",
                   help="print training throughput and the per-stage split, then exit")
    p.add_argument("--benchmark-steps", type=int, default=6, help="timed steps per precision")


def build_config(args):
    cfg = load_config(Path(args.config)) if args.config else TrainConfig()
    if args.resume and args.out and not args.config:
        # --resume starts from the checkpoint's own settings; only flags given now change
        # them (and the trainer refuses those that cannot apply to a continued run)
        from .checkpoint import run_config  # lazy: imports torch (`goodpoint --help` imports flags)
        cfg = run_config(Path(args.out)) or cfg
    over = {"images": args.images, "bag": args.bag, "bag_topic": args.image_topic,
            "bag_every": args.bag_every, "out": args.out, "crop": args.crop,
            "batch_size": args.batch_size, "lr": args.lr, "precision": args.precision,
            "device": args.device, "threads": args.threads, "workers": args.workers,
            "seed": args.seed, "steps_per_epoch": args.steps_per_epoch,
            "max_steps": args.max_steps, "homography.rotation": args.rotation,
            "homography.scale": tuple(args.scale) if args.scale else None}
    if args.epochs is not None:
        if args.epochs < 1:
            raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
        constant = round(args.epochs * 8 / 18)
        over["constant_epochs"] = constant
        over["decay_epochs"] = args.epochs - constant
    for k, v in args.set:
        over[k] = v
    try:
        return validate(merge(cfg, over))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"bad config override: {exc}") from None


def run_from_args(args) -> int:
    """Train (or ``--benchmark``) with the parsed flags; the result line on stdout."""
    # lazy: torch is heavy and optional for the runtime: imported only when training runs
    from . import trainer
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = build_config(args)
    if args.benchmark:
        if args.benchmark_steps < 1:
            raise ValueError(f"--benchmark-steps must be >= 1, got {args.benchmark_steps}")
        from .benchmark import run_benchmark  # lazy: imports torch
        return run_benchmark(cfg, steps=args.benchmark_steps, images=args.images)
    if not (cfg.images or cfg.bag) or not cfg.out:
        raise ValueError("--images (or --bag with --image-topic) and --out are required "
                         "(or set them in --config)")
    if cfg.bag and not cfg.bag_topic:
        raise ValueError("--bag needs --image-topic (the camera's image topic in the bag)")
    # The validation split is a list of photos: with --bag it needs --validation-dir (or --images).
    validation_dir = None if args.no_validation else (args.validation_dir or cfg.images or None)
    result = trainer.run(cfg, resume=args.resume, init=args.init, validation_dir=validation_dir,
                         overwrite=args.overwrite)
    print(f"trained to step {result['step']}; best validation harmonic mean "
          f"{result['best']:.4f}; checkpoints in {cfg.out}")
    return 0


def main(argv=None) -> int:
    """``python -m goodpoint_training.trainer`` / torchrun entry: same flags as ``goodpoint train``."""
    p = argparse.ArgumentParser(prog="goodpoint_training.trainer")
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return run_from_args(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"goodpoint train: error: {exc}", file=sys.stderr)
        return 2
