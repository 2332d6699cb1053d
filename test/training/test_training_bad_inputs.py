"""The run folder is never clobbered (docs/bad-inputs.md, cases 2, 3, 4, 20), through
the real `goodpoint train` entry point where a user would meet it."""
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

GOODPOINT = Path(sys.executable).parent / "goodpoint"
TINY = ("--crop", "32", "--batch-size", "2", "--precision", "fp32", "--workers", "0",
        "--steps-per-epoch", "2", "--epochs", "2", "--threads", "1", "--no-validation",
        "--set", "guard_duplicates=false", "--set", "tensorboard=false",
        "--set", "checkpoint_steps=1")


@pytest.fixture
def images(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for s in range(3):
        img = cv2.GaussianBlur(rng.random((48, 48)).astype(np.float32), (0, 0), 2)
        cv2.imwrite(str(d / f"{s}.png"), ((img - img.min()) / np.ptp(img) * 255).astype(np.uint8))
    return d


def train(images, out, *extra, wait=True):
    if not GOODPOINT.exists():
        pytest.skip("goodpoint console script not installed")
    cmd = [str(GOODPOINT), "train", "--images", str(images), "--out", str(out), *TINY,
           *map(str, extra)]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def digest(p):
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def error_line(p):
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    assert "Traceback" not in p.stderr
    return p.stderr.strip().splitlines()[-1]


def test_a_new_run_into_a_run_folder_is_refused_and_overwrite_is_explicit(images, tmp_path):
    run = tmp_path / "run"
    assert train(images, run, "--max-steps", "2").returncode == 0
    before = {n: digest(run / n) for n in ("best.ckpt", "last.ckpt", "config.yaml")
              if (run / n).exists()}
    err = error_line(train(images, run, "--max-steps", "1"))
    assert "holds a run already" in err and "--resume" in err and "--overwrite" in err
    assert {n: digest(run / n) for n in before} == before
    assert train(images, run, "--max-steps", "1", "--overwrite").returncode == 0
    assert torch.load(run / "last.ckpt", weights_only=True)["step"] == 1


def test_a_second_run_into_a_locked_folder_names_the_first_ones_pid(images, tmp_path):
    run = tmp_path / "run"
    # long enough to be running when the second starts (later flags win over TINY's)
    first = train(images, run, "--epochs", "100000", "--max-steps", "200000",
                  "--set", "checkpoint_steps=1000", wait=False)
    try:
        deadline = time.monotonic() + 120
        while not ((run / ".lock").exists() and (run / ".lock").read_text().strip()):
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()
            time.sleep(0.2)
        second = train(images, run, "--max-steps", "1", "--overwrite")
        err = error_line(second)
        assert "in use by another training run" in err and f"PID {first.pid}" in err
        assert first.poll() is None                          # the first run is untouched
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # the kernel dropped the dead run's lock: the folder is usable again
    assert train(images, run, "--max-steps", "1", "--overwrite").returncode == 0


def test_resume_refuses_changed_settings_and_applies_run_length(images, tmp_path):
    run = tmp_path / "run"
    assert train(images, run, "--max-steps", "2", "--lr", "0.001").returncode == 0
    cfg_before = (run / "config.yaml").read_text()
    ckpt_before = digest(run / "last.ckpt")
    err = error_line(train(images, run, "--resume", "--lr", "0.01", "--crop", "96",
                           "--batch-size", "4", "--seed", "9"))
    for name in ("lr: 0.001 → 0.01", "crop: 32 → 96", "batch_size: 2 → 4", "seed: 0 → 9"):
        assert name in err, err
    assert (run / "config.yaml").read_text() == cfg_before and digest(run / "last.ckpt") == ckpt_before
    # no flags: the checkpoint's own settings (lr 0.001 kept, not the default 5e-4)
    p = train(images, run, "--resume", "--max-steps", "3")
    assert p.returncode == 0, p.stderr[-2000:]
    state = torch.load(run / "last.ckpt", weights_only=True)
    assert state["step"] == 3
    assert state["optimizer"]["param_groups"][0]["initial_lr"] == pytest.approx(0.001)
    import yaml
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert recorded["lr"] == pytest.approx(0.001) and recorded["max_steps"] == 3


def test_orphan_checkpoint_temps_are_removed_on_start(images, tmp_path):
    run = tmp_path / "run"
    assert train(images, run, "--max-steps", "1").returncode == 0
    orphans = [run / "last.ckpt.x1y2.tmp", run / "best.ckpt.q.tmp", run / "config.yaml.z.tmp"]
    for o in orphans:
        o.write_bytes(b"half a checkpoint")
    keep = run / "notes.tmp"
    keep.write_text("not ours")
    assert train(images, run, "--resume", "--max-steps", "2").returncode == 0
    assert not any(o.exists() for o in orphans) and keep.exists()


def test_lock_is_released_after_a_run_in_the_same_process(images, tmp_path):
    """The Python API: two runs one after the other in one process share a folder."""
    from test_training import tiny_run_config

    from goodpoint_training import trainer
    trainer.run(tiny_run_config(tmp_path, images, max_steps=1))
    trainer.run(tiny_run_config(tmp_path, images, max_steps=2), resume=True)
    assert os.path.exists(tmp_path / "run" / ".lock")


@pytest.mark.parametrize("extra,field", [
    # each ran (or crashed in torch) before: 0 steps per epoch and -1 workers were accepted,
    # --max-steps -1 trained nothing and said "trained to step 0", --threads -2 a traceback
    (("--steps-per-epoch", "0"), "steps_per_epoch"),
    (("--workers", "-1"), "workers"),
    (("--threads", "-2"), "threads"),
    (("--rotation", "-1"), "homography.rotation"),
    (("--max-steps", "-1"), "max_steps"),
    (("--bag-every", "0"), "bag_every"),
    (("--set", "log_every=0"), "log_every"),
    (("--set", "homography_wide.rotation=-0.5"), "homography_wide.rotation"),
])
def test_settings_out_of_range_are_one_line_and_no_run_folder(images, tmp_path, extra, field):
    out = tmp_path / "run"
    line = error_line(train(images, out, *extra))
    assert f"{field} must be" in line, line
    assert not out.exists()


def test_benchmark_steps_must_be_positive(images, tmp_path):
    line = error_line(train(images, tmp_path / "run", "--benchmark", "--benchmark-steps", "0"))
    assert "--benchmark-steps must be >= 1" in line


def test_release_checks_its_defaults_and_its_input_before_the_sweep(tmp_path, capsys):
    """A bad recorded default was a traceback, after the θ sweep; `--out` the input itself
    rewrote the released weights in place."""
    from goodpoint_ros.core.weights import DEFAULT_WEIGHTS
    from goodpoint_training.release import main
    src = tmp_path / "w.safetensors"
    src.write_bytes(DEFAULT_WEIGHTS.read_bytes())
    before = digest(src)
    no_images = tmp_path / "none"          # the sweep would fail on it: refused before that
    for argv, msg in ((["--out", tmp_path / "o.safetensors", "--pyramid-levels", "0"],
                       "pyramid_levels must be in [1, 8]"),
                      (["--out", src, "--threshold", "0.02"], "refusing to write")):
        with pytest.raises(SystemExit) as exc:
            main([str(src), "--images", str(no_images), *map(str, argv)])
        assert exc.value.code == 2 and msg in capsys.readouterr().err
    assert digest(src) == before and not (tmp_path / "o.safetensors").exists()


def test_a_run_that_cannot_start_leaves_no_empty_run_folder(tmp_path):
    """No usable images: the error was right, but RUN/ stayed behind holding only .lock."""
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "run"
    assert "no usable training images" in error_line(train(empty, out))
    assert not out.exists()
    kept = tmp_path / "mine"            # a folder the user made is left where it was
    kept.mkdir()
    error_line(train(empty, kept))
    assert kept.is_dir() and list(kept.iterdir()) == []
