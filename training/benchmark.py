"""``goodpoint train --benchmark``: training throughput and where a step's time goes.

Runs a few real training steps (the same :func:`~goodpoint_training.trainer.train_step`
as training) at the configured crop (256 by default) in fp32 and bf16, and
prints pairs/s and milliseconds per stage: data (augmentation, measured
separately in the main process), forward, target estimation, losses and
backward + optimizer step.  The issue's goals: target estimation + losses
under 20 % of a step; one DataLoader worker producing batches faster than
the model consumes them (so the data pipeline never starves it).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, Optional

import cv2
import numpy as np
import torch

from goodpoint_ros.core.model import GoodPointNet

from .config import TrainConfig
from .data import PairBatches, find_images, load_images
from .trainer import StepTimes, to_tensors, train_step


def synthetic_images(n: int = 4, size=(480, 640), seed: int = 0):
    """Textured uint8 images for a benchmark without an image folder."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = cv2.GaussianBlur(rng.random(size).astype(np.float32), (0, 0), 3)
        out.append((255 * (img - img.min()) / (img.max() - img.min())).astype(np.uint8))
    return out


def measure(cfg: TrainConfig, images, precision: str, steps: int = 6, warmup: int = 2) -> Dict:
    """Time ``steps`` training steps after ``warmup`` → dict of figures."""
    torch.manual_seed(0)
    device = torch.device("cpu" if cfg.device in ("auto", "cpu") and not torch.cuda.is_available()
                          else ("cuda" if cfg.device == "auto" else cfg.device))
    model = GoodPointNet().to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ds = PairBatches(images, cfg.crop, cfg.batch_size, cfg.homography, cfg.noise,
                     cfg.image_scale, cfg.seed)
    t0 = time.perf_counter()
    batches = [ds[i] for i in range(steps + warmup)]
    data_ms = (time.perf_counter() - t0) * 1e3 / len(batches)
    run_cfg = TrainConfig(**{**cfg.__dict__, "precision": precision})
    gen = torch.Generator().manual_seed(0)
    times = StepTimes()
    for i, b in enumerate(batches):
        if i == warmup:
            times = StepTimes()
            t_start = time.perf_counter()
        train_step(model, opt, to_tensors(b, device), run_cfg, device, gen, times)
    if device.type == "cuda":
        torch.cuda.synchronize()
    total = (time.perf_counter() - t_start) * 1e3 / steps
    per = {k: v / steps for k, v in vars(times).items() if k != "data"}
    return {"precision": precision, "crop": cfg.crop, "batch_size": cfg.batch_size,
            "threads": torch.get_num_threads(), "pairs_per_s": cfg.batch_size * 1e3 / total,
            "step_ms": total, "data_ms_per_batch": data_ms,
            "data_keeps_up": data_ms < total, **{f"{k}_ms": v for k, v in per.items()},
            "targets_losses_share": (per["targets"] + per["losses"]) / total}


def run_benchmark(cfg: TrainConfig, steps: int = 6, images: Optional[str] = None,
                  precisions=("fp32", "bf16")) -> int:
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    if images:
        imgs, _ = load_images(find_images(Path(images))[:32], cfg.min_image_size)
    else:
        imgs = synthetic_images()
    rows = []
    for p in precisions:
        r = measure(cfg, imgs, p, steps)
        rows.append(r)
        print(f"{p:5s} crop {r['crop']} batch {r['batch_size']} threads {r['threads']}: "
              f"{r['pairs_per_s']:.2f} pairs/s, {r['step_ms']:.0f} ms/step = forward "
              f"{r['forward_ms']:.0f} + targets {r['targets_ms']:.0f} + losses {r['losses_ms']:.0f}"
              f" + backward/step {r['backward_ms']:.0f} ms; augmentation {r['data_ms_per_batch']:.0f}"
              f" ms/batch (in a worker; keeps up: {r['data_keeps_up']}); targets+losses "
              f"{100 * r['targets_losses_share']:.1f}% of the step")
    print(json.dumps({"runs": rows}, indent=1))
    return 0
