"""tools/gpu/train_round.py: the prepared GPU round runs end to end (here on the CPU, tiny).

A lent GPU machine gives a session minutes, not hours; the script that spends them must
work the first time.  This runs its whole path — the tree-as-package environment, the
probe, the round sized from it, the release with the bundled weights' detection defaults —
on real training photos, two steps each, and checks what would come back through $OUT.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, SHARED
from goodpoint_ros.core.weights import load_weights

SCRIPT = REPO / "tools" / "gpu" / "train_round.py"


def test_the_gpu_round_trains_and_releases_within_its_budget(tmp_path):
    photos = SHARED / "train-images"
    if not photos.is_dir():
        pytest.skip(f"{photos} not present")
    out, scratch = tmp_path / "OUT", tmp_path / "tmp"
    scratch.mkdir()
    p = subprocess.run([sys.executable, str(SCRIPT), "train", "--device", "cpu", "--images",
                        str(photos), "--out", str(out), "--batch-size", "2", "--crop", "64",
                        "--workers", "0", "--threads", "2", "--probe-steps", "1",
                        "--budget-s", "1", "--threshold", "0.065"],
                       capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, TMPDIR=str(scratch)))
    assert p.returncode == 0, p.stdout + p.stderr
    assert not list(scratch.glob("gp_round_*"))          # the run's scratch is removed
    assert sorted(f.name for f in out.iterdir()) == ["config.yaml", "gpu.safetensors",
                                                     "sweep.json", "train.log"]
    _, meta = load_weights(out / "gpu.safetensors")
    _, bundled = load_weights()
    assert meta["detection"] == {**bundled["detection"], "keypoint_threshold": 0.065}
    assert meta["architecture"] == bundled["architecture"]
    assert meta["training"]["step"] >= 1 and meta["training"]["wide_fraction"] == 0.6
    log = (out / "train.log").read_text()
    assert "probe: 1 steps" in log and "goodpoint_training.release" in log
    assert "wide_fraction: 0.6" in (out / "config.yaml").read_text()
    assert json.loads((out / "sweep.json").read_text()) == {}       # θ given: no sweep


def test_prepare_copies_the_photos_beside_the_tree_for_carrying(tmp_path):
    shared = tmp_path / "shared"
    (shared / "train-images").mkdir(parents=True)
    (shared / "train-images" / "a.jpg").write_bytes(b"x")
    into = tmp_path / "gpu"
    for _ in range(2):                                   # a second prepare replaces the first
        p = subprocess.run([sys.executable, str(SCRIPT), "prepare", "--shared", str(shared),
                            "--into", str(into)], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
    assert [f.name for f in (into / "train-images").iterdir()] == ["a.jpg"]
    assert sorted(f.name for f in into.iterdir()) == ["train-images"]
    # the default folder, .gpu/ in the tree, is never committed by accident
    ignored = subprocess.run(["git", "check-ignore", "-q", ".gpu/train-images/x.jpg"], cwd=REPO)
    assert ignored.returncode == 0
