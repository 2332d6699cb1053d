"""One prepared GPU training round (issue 11): a continuation of the bundled weights sized to
fit one call of the device tool, with the released file, the log and the validation sweep
coming back through ``$OUT``.

Here, once per checkout (copies the training photos into ``.gpu/``, which git ignores)::

    .venv/bin/python tools/gpu/train_round.py prepare

On the lent machine, one call of the device tool (its ``python3`` holds CUDA torch; the
package runs from the tree, nothing is installed)::

    run(command="python3 tools/gpu/train_round.py train --budget-s 420",
        carry=[".gpu"], timeout_s=560)

Back here the files lie under the reply's ``files_at``: ``gpu.safetensors`` (the best
validation checkpoint, released with the bundled weights' detection defaults),
``train.log``, ``config.yaml`` and ``sweep.json``.  Nothing is released by this script:
gate the file as every release is (the validation split's tiers, the KITTI odometry gate,
``make models``; training/README.md, "Releasing weights").

The recipe is s10's (training/README.md, round 5: 256² crops, 60 % wide pairs with rotation
±0.8 rad and zoom 0.8–1.25, a constant-then-decaying lr) with a GPU's batch; the number of
steps is what a short probe says fits ``--budget-s``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))          # the tree as the package, here and on the device
from goodpoint_ros.core.weights import load_weights  # noqa: E402

GPU_DIR = ROOT / ".gpu"
BUNDLED = ROOT / "goodpoint_ros" / "weights" / "goodpoint_default.safetensors"
#: s10's schedule shape (training/README.md, round 5): 4 constant epochs, 6 decaying ones.
CONSTANT_EPOCHS, DECAY_EPOCHS = 4, 6
#: s10's wide-pair recipe, as ``--set`` overrides of training/default.yaml.
RECIPE = ["image_scale=[0.6,1.0]", "wide_fraction=0.6", "homography_wide.scale=[0.8,1.25]",
          "homography_wide.rotation=0.8", f"constant_epochs={CONSTANT_EPOCHS}",
          f"decay_epochs={DECAY_EPOCHS}", "final_lr_ratio=0.1"]


def prepare(shared: Path, into: Path = GPU_DIR) -> Path:
    """Copy the training photos beside the tree (``.gpu/train-images``) so a call can carry
    them: the device tool sends the repository, not ``../shared``."""
    src = shared / "train-images"
    if not src.is_dir():
        raise SystemExit(f"prepare: no training photos at {src}")
    dst = into / "train-images"
    tmp = into / ".train-images.tmp"       # a copy cut short leaves the previous one
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
    n = sum(1 for p in dst.rglob("*") if p.is_file())
    print(f"prepare: {n} files → {dst} ({sum(p.stat().st_size for p in dst.rglob('*')) >> 20} MiB)")
    return dst


def _env(alias: Path) -> dict:
    """The package from the tree: ``training/`` is importable as ``goodpoint_training``
    (setup.py's package_dir) through a link in the folder ``alias``."""
    (alias / "goodpoint_training").symlink_to(ROOT / "training")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(alias), env.get("PYTHONPATH", "")])
    return env


def _train(args, out: Path, steps: int, log, env, validate: bool = True) -> float:
    """One trainer run of ``steps`` steps into ``out`` → wall seconds."""
    per_epoch = max(1, steps // (CONSTANT_EPOCHS + DECAY_EPOCHS))
    cmd = [sys.executable, "-m", "goodpoint_training.trainer",
           "--config", str(ROOT / "training" / "default.yaml"), "--images", str(args.images),
           "--out", str(out), "--init", str(args.init), "--crop", str(args.crop),
           "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--seed", str(args.seed),
           "--device", args.device, "--precision", args.precision,
           "--workers", str(args.workers), "--epochs", str(CONSTANT_EPOCHS + DECAY_EPOCHS),
           "--steps-per-epoch", str(per_epoch), "--max-steps", str(steps)]
    for kv in RECIPE + [f"validate_every={max(1, steps // 4)}", "tensorboard=false",
                        "checkpoint_minutes=1.0"] + args.set:
        cmd += ["--set", kv]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if not validate:
        cmd.append("--no-validation")
    t0 = time.perf_counter()
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, check=True, cwd=ROOT)
    return time.perf_counter() - t0


def train(args) -> Path:
    if not Path(args.images).is_dir():
        raise SystemExit(f"train: no photos at {args.images}: run `train_round.py prepare` "
                         "here and carry .gpu")
    out = Path(args.out or os.environ.get("OUT") or "out/gpu_round")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gp_round_"))
    try:
        return _round(args, out, work, _env(work))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _round(args, out: Path, work: Path, env: dict) -> Path:
    with open(out / "train.log", "w") as log:
        info = subprocess.run([sys.executable, "-c",
                               "import torch; print('torch', torch.__version__, 'cuda', "
                               "torch.cuda.is_available(), torch.cuda.get_device_name() "
                               "if torch.cuda.is_available() else '')"],
                              capture_output=True, text=True, env=env)
        log.write(info.stdout + info.stderr)
        print(info.stdout.strip() or info.stderr.strip())
        # The probe pays the start-up (image loading, first-step compilation) as the real run
        # will: its steps per second are a lower bound, so the round ends inside the budget.
        probe_s = _train(args, work / "probe", args.probe_steps, log, env, validate=False)
        rate = args.probe_steps / probe_s
        steps = max(args.probe_steps, int(rate * args.budget_s * 0.9))
        line = f"probe: {args.probe_steps} steps in {probe_s:.1f} s → {steps} steps in the round"
        log.write(line + "\n")
        print(line, flush=True)
        wall = _train(args, work / "run", steps, log, env)
        print(f"round: {steps} steps in {wall:.0f} s", flush=True)
        best = work / "run" / "best.ckpt"
        if not best.is_file():
            best = work / "run" / "last.ckpt"
        det = load_weights(args.init)[1]["detection"]
        rel = [sys.executable, "-m", "goodpoint_training.release", str(best),
               "--images", str(args.images), "--out", str(out / "gpu.safetensors"),
               "--table", str(out / "sweep.json"),
               "--pyramid-levels", str(det["pyramid_levels"]),
               "--pyramid-factor", str(det["pyramid_factor"]),
               "--upsample-below", str(det["upsample_below"])]
        if args.threshold:
            rel += ["--threshold", str(args.threshold)]
        log.write(f"$ {' '.join(rel)}\n")
        log.flush()
        subprocess.run(rel, stdout=log, stderr=subprocess.STDOUT, env=env, check=True, cwd=ROOT)
    shutil.copy(work / "run" / "config.yaml", out / "config.yaml")
    print(f"wrote {out / 'gpu.safetensors'}")
    return out / "gpu.safetensors"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pr = sub.add_parser("prepare", help="copy ../shared/train-images into .gpu/ (here)")
    pr.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    pr.add_argument("--into", type=Path, default=GPU_DIR, help="default: .gpu/ in the tree")
    t = sub.add_parser("train", help="probe, train within --budget-s, release to $OUT (there)")
    t.add_argument("--budget-s", type=float, default=420.0,
                   help="seconds of training after the probe (default 420: a 560 s call)")
    t.add_argument("--probe-steps", type=int, default=20)
    t.add_argument("--images", type=Path, default=GPU_DIR / "train-images")
    t.add_argument("--init", type=Path, default=BUNDLED)
    t.add_argument("--out", help="output folder (default: $OUT, else out/gpu_round)")
    t.add_argument("--device", default="cuda")
    t.add_argument("--precision", default="bf16")
    t.add_argument("--batch-size", type=int, default=32,
                   help="pairs per step (default 32: 4x the CPU runs' 8)")
    t.add_argument("--crop", type=int, default=256)
    t.add_argument("--lr", type=float, default=7e-5, help="s9's lr (s10 continued at 5e-5)")
    t.add_argument("--seed", type=int, default=7)
    t.add_argument("--workers", type=int, default=12, help="DataLoader workers (16 cores there)")
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--threshold", type=float, default=None,
                   help="record this θ_keypoint instead of sweeping the validation split")
    t.add_argument("--set", action="append", default=[], help="extra trainer --set KEY=VALUE")
    args = p.parse_args(argv)
    if args.cmd == "prepare":
        prepare(args.shared, args.into)
    else:
        train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
