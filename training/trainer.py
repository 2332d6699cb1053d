"""The training loop (paper §4–5): AdamW, lr schedule, bf16 autocast, DDP.

One step: a mini-batch of pairs (one H, §4) → a single forward pass on
[I; I_h] → targets without gradient (§4.1) → losses (eq. 1) → AdamW step.

Run with ``goodpoint train`` or, for several processes / machines,
``torchrun --nproc-per-node N -m goodpoint_training.trainer ...`` (same
arguments).  Each rank draws its own data shard (the rank is part of the
data seed); only rank 0 writes checkpoints, TensorBoard and validation.

BatchNorm: SyncBatchNorm is used on CUDA.  PyTorch's SyncBatchNorm does not
run on CPU tensors, so on CPU each rank normalises its own 2·B images and
DDP's ``broadcast_buffers`` copies rank 0's running statistics to every rank
at each forward, keeping all ranks' models identical.
"""
from __future__ import annotations

import logging
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch
import torch.distributed as torch_dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from goodpoint_ros.core.config import GoodPointConfig
from goodpoint_ros.core.keypoints import postprocess
from goodpoint_ros.core.matching import match_descriptors
from goodpoint_ros.core.model import GoodPointNet
from goodpoint_ros.core.visualize import draw_matches
from goodpoint_ros.core.weights import atomic_write_bytes, load_model

from .bag_frames import load_bag_frames
from .checkpoint import (
    BEST,
    LAST,
    RunFolderError,
    RunLock,
    holds_run,
    load_checkpoint,
    model_state,
    remove_orphan_temps,
    resume_changes,
    save_checkpoint,
)
from .config import TrainConfig, validate
from .data import PairBatches, find_images, load_images, read_split
from .guard import DuplicateGuard
from .losses import total_loss
from .targets import estimate_targets
from .validation import Validator, run_network

log = logging.getLogger("goodpoint_training")


# --------------------------------------------------------------------------- small pieces

def lr_factor(step: int, constant_steps: int, decay_steps: int, final_ratio: float) -> float:
    """§5: constant for ``constant_steps``, then exponential decay to ``final_ratio``."""
    if step < constant_steps or decay_steps <= 0:
        return 1.0
    t = min(step - constant_steps, decay_steps) / decay_steps
    return float(final_ratio ** t)


def autocast(device: torch.device, precision: str):
    """bf16 autocast on CPU/GPU, fp16 on CUDA, nothing for fp32."""
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    if device.type == "cpu" and dtype == torch.float16:
        raise ValueError("fp16 autocast needs a GPU; use bf16 on CPU")
    return torch.autocast(device.type, dtype=dtype)


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """Join the torchrun process group if launched by torchrun (gloo on CPU, nccl on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not torch_dist.is_initialized():
        torch_dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return DistInfo(torch_dist.get_rank(), torch_dist.get_world_size(),
                    int(os.environ.get("LOCAL_RANK", 0)))


def pick_device(name: str, dist: DistInfo) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{dist.local_rank}"
    return torch.device(name)


def to_tensors(batch: Dict, device) -> Dict[str, torch.Tensor]:
    return {k: (v if torch.is_tensor(v) else torch.from_numpy(np.asarray(v))).to(device)
            for k, v in batch.items()}


# --------------------------------------------------------------------------- one step

@dataclass
class StepTimes:
    """Milliseconds per stage of a step (the benchmark's split)."""
    data: float = 0.0
    forward: float = 0.0
    targets: float = 0.0
    losses: float = 0.0
    backward: float = 0.0


def train_step(model, optimizer, batch: Dict[str, torch.Tensor], cfg: TrainConfig,
               device: torch.device, generator: Optional[torch.Generator] = None,
               times: Optional[StepTimes] = None):
    """One optimisation step on a mini-batch → (loss float, terms dict)."""
    t0 = time.perf_counter()
    b = batch["image"].shape[0]
    with autocast(device, cfg.precision):
        out = model(torch.cat([batch["image"], batch["image_h"]]))
    prob, desc = out["prob"].float(), out["desc"].float()
    o, o_h = {"prob": prob[:b], "desc": desc[:b]}, {"prob": prob[b:], "desc": desc[b:]}
    t1 = time.perf_counter()
    L = cfg.loss
    tg = estimate_targets(o["prob"], o_h["prob"], o["desc"], o_h["desc"], batch["H"],
                          batch["mask"], batch["mask_h"], L.theta_dist, L.cell_k, L.cell_kh)
    t2 = time.perf_counter()
    loss, terms = total_loss(o, o_h, tg, batch["H"], batch["mask"], batch["mask_h"], L, generator)
    t3 = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    t4 = time.perf_counter()
    if times is not None:
        times.forward += (t1 - t0) * 1e3
        times.targets += (t2 - t1) * 1e3
        times.losses += (t3 - t2) * 1e3
        times.backward += (t4 - t3) * 1e3
    terms["targets"] = float(tg.good.float().sum(1).mean())
    return float(loss.detach()), terms


# --------------------------------------------------------------------------- the run

def build_model(cfg: TrainConfig, init: Optional[str], device, dist: DistInfo):
    model = GoodPointNet()
    if init:
        src, _ = load_model(init)
        model.load_state_dict(src.state_dict())
        if dist.main:
            log.info("initialised from %s (fresh optimizer)", init)
    model = model.to(device)
    if dist.world > 1 and device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


class Trainer:
    """Owns model, optimizer, data and the run directory."""

    def __init__(self, cfg: TrainConfig, resume: bool = False, init: Optional[str] = None,
                 validation_dir: Optional[str] = None, overwrite: bool = False):
        self.cfg = validate(cfg)
        self.out = Path(cfg.out)
        self._init_process()
        # One run per folder: an exclusive lock first, then the folder's state.
        self.lock = RunLock(self.out) if self.dist.main else None
        try:
            state = self._claim_folder(resume, overwrite)
            # The order below is the RNG's: the model's initialisation draws from torch's
            # generator seeded above, before a resumed run restores its state.
            self._init_model(state, init)
            self.optimizer = torch.optim.AdamW(self.raw_model.parameters(), lr=cfg.lr,
                                               weight_decay=cfg.weight_decay)
            self.images, self.report = self._load_images()
            self._init_schedule()
            self._init_progress(state)
            self.last_threshold = 0.032
            self.validator = self._make_validator(validation_dir)
        except BaseException:
            self.close(abandon=True)
            raise
        self.writer = self._open_outputs()

    # ------------------------------------------------------------------ set-up
    def _init_process(self) -> None:
        """Process group, device, CPU threads and the rank's torch seed."""
        cfg = self.cfg
        self.dist = init_distributed("cuda" if cfg.device.startswith("cuda") or (
            cfg.device == "auto" and torch.cuda.is_available()) else "cpu")
        self.device = pick_device(cfg.device, self.dist)
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        torch.manual_seed(cfg.seed + self.dist.rank)

    def _init_model(self, state: Optional[Dict], init: Optional[str]) -> None:
        """``raw_model`` (the network, resumed weights loaded) and ``model`` (DDP-wrapped
        when several processes train)."""
        self.model = build_model(self.cfg, None if state else init, self.device, self.dist)
        if state:
            (self.model.module if hasattr(self.model, "module") else self.model).load_state_dict(
                state["model"])
        self.raw_model = self.model
        if self.dist.world > 1:
            self.model = DDP(self.model, device_ids=[self.device.index] if self.device.type ==
                             "cuda" else None, broadcast_buffers=True)

    def _init_schedule(self) -> None:
        """Steps per epoch, the run's length and the §5 learning-rate schedule."""
        cfg = self.cfg
        spe = cfg.steps_per_epoch or max(1, math.ceil(len(self.images) / cfg.batch_size /
                                                      self.dist.world))
        self.steps_per_epoch = spe
        self.total_steps = (cfg.constant_epochs + cfg.decay_epochs) * spe
        if cfg.max_steps:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, cfg.constant_epochs * spe,
                                                cfg.decay_epochs * spe, cfg.final_lr_ratio))

    def _init_progress(self, state: Optional[Dict]) -> None:
        """Step, best score and the loss's generator: fresh, or restored from ``state``."""
        self.step = 0
        self.best = -1.0
        self.generator = torch.Generator().manual_seed(self.cfg.seed * 7919 + self.dist.rank)
        if not state:
            return
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.best = float(state.get("best", -1.0))
        torch.set_rng_state(state["torch_rng"])
        self.generator.set_state(state["loss_rng"])
        if self.dist.main:
            log.info("resumed from %s at step %d", self.out / LAST, self.step)

    def _make_validator(self, validation_dir: Optional[str]) -> Optional[Validator]:
        """Rank 0's validation set, or None (no folder, validation off, no photos found)."""
        cfg = self.cfg
        if not (self.dist.main and validation_dir and cfg.validate_every >= 0):
            return None
        validator = Validator(Path(validation_dir), read_split(cfg.validation_split or None))
        return validator if len(validator) else None

    def _open_outputs(self):
        """Rank 0: the run folder with config.yaml, and the TensorBoard writer (or None)."""
        if not self.dist.main:
            return None
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.out / "config.yaml", self.cfg.to_yaml().encode())
        if not self.cfg.tensorboard:
            return None
        try:
            # lazy: tensorboard is optional (no logs without it)
            from torch.utils.tensorboard import SummaryWriter
            return SummaryWriter(str(self.out / "tb"))
        except ImportError:
            log.warning("tensorboard is not installed: no TensorBoard logs")
            return None

    def _claim_folder(self, resume: bool, overwrite: bool) -> Optional[Dict]:
        """Refuse a folder holding a run unless resuming / overwriting it; clean the
        temp files a killed checkpoint write left; → the checkpoint to resume, if any."""
        present = holds_run(self.out)
        if present and not resume and not overwrite:
            raise RunFolderError(f"{self.out} holds a run already ({', '.join(present)}): pass "
                                 "--resume to continue it, --overwrite to replace it, or a new --out")
        if self.dist.main:
            gone = remove_orphan_temps(self.out)
            if gone:
                log.info("removed %d temp file(s) left by an interrupted write: %s", len(gone),
                         ", ".join(gone))
            if overwrite and not resume:
                for name in (LAST, BEST):   # no stale best.ckpt beside the new run's
                    (self.out / name).unlink(missing_ok=True)
        state = None
        if resume:
            ckpt = self.out / LAST
            if ckpt.is_file():
                state = load_checkpoint(ckpt)
                refused, applied = resume_changes(state.get("config", ""), self.cfg)
                if refused:
                    raise RunFolderError(
                        f"--resume continues {ckpt} with its own settings; these differ and "
                        f"cannot apply to it: {'; '.join(refused)} (drop those flags, or start "
                        "a new run with --out NEW or --overwrite)")
                for line in applied if self.dist.main else ():
                    log.info("--resume: applying %s (recorded in config.yaml)", line)
            elif self.dist.main:
                log.warning("--resume: no %s yet, starting fresh", ckpt)
        return state

    def close(self, abandon: bool = False) -> None:
        """Release the run folder's lock (also dropped by the kernel at exit); ``abandon``:
        the run never started, so a folder it made and left empty goes too."""
        if getattr(self, "lock", None) is not None:
            if abandon:
                self.lock.abandon()
            else:
                self.lock.release()
            self.lock = None

    # ------------------------------------------------------------------ data
    def _load_images(self):
        cfg = self.cfg
        if cfg.bag:
            frames, bag_report = load_bag_frames(Path(cfg.bag), cfg.bag_topic, cfg.bag_every,
                                                 min_size=cfg.min_image_size)
            if self.dist.main:
                log.info("bag %s: %s", cfg.bag, bag_report.summary())
            return frames, bag_report
        paths = find_images(Path(cfg.images))
        exclude = read_split(cfg.validation_split or None)
        guard = None
        if cfg.guard_duplicates:
            guard = DuplicateGuard.from_folder()
        images, report = load_images(paths, cfg.min_image_size, exclude, guard)
        if self.dist.main:
            log.info(report.summary())
        if not images:
            raise ValueError(f"no usable training images under {cfg.images} ({report.summary()})")
        return images, report

    def batches(self):
        cfg = self.cfg
        ds = PairBatches(self.images, cfg.crop, cfg.batch_size, cfg.homography, cfg.noise,
                         cfg.image_scale, cfg.seed, self.dist.rank,
                         length=max(self.total_steps - self.step, 0), start=self.step,
                         wide=cfg.homography_wide, wide_fraction=cfg.wide_fraction)
        if cfg.workers <= 0:
            return (ds[i] for i in range(len(ds)))
        return iter(torch.utils.data.DataLoader(ds, batch_size=None, shuffle=False,
                                                num_workers=cfg.workers, prefetch_factor=2,
                                                persistent_workers=False))

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> Dict:
        return {"model": model_state(self.raw_model), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "step": self.step,
                "epoch": self.step // self.steps_per_epoch, "best": self.best,
                "threshold": self.last_threshold,      # θ_keypoint of the latest validation
                "torch_rng": torch.get_rng_state(), "loss_rng": self.generator.get_state(),
                "config": self.cfg.to_yaml()}

    def save(self, best: bool = False) -> None:
        if not self.dist.main:
            return
        st = self.state()
        save_checkpoint(self.out / LAST, st)
        if best:
            save_checkpoint(self.out / BEST, st)

    def validate_now(self) -> Optional[Dict]:
        if self.validator is None:
            return None
        metrics, outs = self.validator(self.raw_model, self.device)
        if self.writer:
            for k, v in metrics.items():
                if isinstance(v, float) and math.isfinite(v):
                    self.writer.add_scalar(f"val/{k}", v, self.step)
            k = 1 % len(outs)
            self._log_picture(self.validator.pairs[k], outs[k], metrics["threshold"])
        return metrics

    def log_picture_now(self, threshold: float = 0.032) -> None:
        """TensorBoard picture of keypoints and matches on one validation pair."""
        if self.validator is None or self.writer is None:
            return
        pair = self.validator.pairs[1 % len(self.validator.pairs)]
        outs = run_network(self.raw_model, [pair], self.device, "bf16")
        self._log_picture(pair, outs[0], threshold)

    def _log_picture(self, p, out, threshold):
        try:
            (pa, da), (pb, db) = out
            cfg = GoodPointConfig(keypoint_threshold=threshold)
            h, w = p.image_a.shape
            fa, fb = postprocess(pa, da, (w, h), cfg), postprocess(pb, db, (w, h), cfg)
            m = match_descriptors(fa.descriptors, fb.descriptors, cfg)[0]
            img = draw_matches((p.image_a * 255).astype(np.uint8), (p.image_b * 255).astype(np.uint8),
                               fa.keypoints, fb.keypoints, m)
            self.writer.add_image("val/matches", img[..., ::-1].copy(), self.step, dataformats="HWC")
        except Exception as exc:  # a picture must never stop training
            log.warning("could not draw the validation picture: %s", exc)

    def sync_buffers(self) -> None:
        """Give every rank rank 0's BatchNorm statistics (collective; call on all ranks).

        DDP's ``broadcast_buffers`` copies them at the start of each forward, so
        after the last step each rank holds stats updated on its own shard only;
        rank 0's are the ones its checkpoints carry.
        """
        if self.dist.world <= 1:
            return
        for buf in self.raw_model.buffers():
            torch_dist.broadcast(buf.data, src=0)

    # ------------------------------------------------------------------ loop
    def fit(self) -> Dict:
        cfg = self.cfg
        self.model.train()
        last_ckpt = time.monotonic()
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not self.dist.main,
                   dynamic_ncols=True, mininterval=2.0, file=sys.stderr)
        metrics = None
        running: Dict[str, float] = {}
        t_start, start_step = time.monotonic(), self.step
        for batch in self.batches():
            terms = self._train_one(batch)
            self._report_step(terms, running, bar, t_start, start_step)
            done = self.step >= self.total_steps
            if cfg.image_every and self.step % cfg.image_every == 0 and not (
                    cfg.validate_every and self.step % cfg.validate_every == 0):
                self.log_picture_now(self.last_threshold)
            is_best = False
            if self.validator and ((cfg.validate_every and self.step % cfg.validate_every == 0)
                                   or done):
                metrics = self.validate_now()
                is_best = self._record_validation(metrics)
            due = ((cfg.checkpoint_steps and self.step % cfg.checkpoint_steps == 0)
                   or time.monotonic() - last_ckpt > cfg.checkpoint_minutes * 60)
            if due or done or is_best:
                self.save(best=is_best)
                last_ckpt = time.monotonic()
            if done:
                break
        bar.close()
        self.sync_buffers()
        if self.writer:
            self.writer.flush()
        return {"step": self.step, "best": self.best, "validation": metrics}

    def _train_one(self, batch: Dict) -> Dict[str, float]:
        """One optimisation and schedule step on a loader batch → the loss terms (with ``loss``)."""
        batch = to_tensors(batch, self.device)
        loss, terms = train_step(self.model, self.optimizer, batch, self.cfg, self.device,
                                 self.generator)
        if not math.isfinite(loss):
            raise FloatingPointError(f"loss is {loss} at step {self.step}: lower --lr or use "
                                     "--precision fp32")
        self.scheduler.step()
        self.step += 1
        terms["loss"] = loss
        return terms

    def _report_step(self, terms: Dict[str, float], running: Dict[str, float], bar,
                     t_start: float, start_step: int) -> None:
        """Running means on the progress bar; every ``log_every`` steps, TensorBoard scalars."""
        for k, v in terms.items():
            running[k] = 0.9 * running.get(k, v) + 0.1 * v
        bar.update(1)
        bar.set_postfix({k: f"{running[k]:.3g}" for k in
                         ("loss", "keypoints", "heatmaps", "gt", "wrong", "random", "targets")})
        if self.writer and self.step % self.cfg.log_every == 0:
            for k, v in terms.items():
                self.writer.add_scalar(f"train/{k}", v, self.step)
            self.writer.add_scalar("train/lr", self.scheduler.get_last_lr()[0], self.step)
            self.writer.add_scalar("train/pairs_per_s", self.cfg.batch_size * self.dist.world *
                                   (self.step - start_step) /
                                   max(time.monotonic() - t_start, 1e-6), self.step)

    def _record_validation(self, metrics: Dict) -> bool:
        """Log a validation, keep its θ_keypoint → whether it is the best so far."""
        hm = metrics["harmonic_mean"] if math.isfinite(metrics["harmonic_mean"]) else 0.0
        log.info("step %d validation: %s", self.step,
                 " ".join(f"{k}={v:.4g}" for k, v in metrics.items()
                          if isinstance(v, float) and "_" not in k))
        self.last_threshold = metrics["threshold"]
        if hm > self.best:
            self.best = hm
            return True
        return False


def run(cfg: TrainConfig, resume=False, init=None, validation_dir=None,
        overwrite=False) -> Dict:
    trainer = Trainer(cfg, resume=resume, init=init, validation_dir=validation_dir,
                      overwrite=overwrite)
    try:
        return trainer.fit()
    finally:
        trainer.close()
        if trainer.dist.world > 1:
            torch_dist.barrier()
            torch_dist.destroy_process_group()


if __name__ == "__main__":
    # ``python -m goodpoint_training.trainer`` / torchrun: the command line (flags.py)
    # sits above the trainer, so it is imported only when this file runs as a script
    from goodpoint_training.flags import main
    sys.exit(main())
