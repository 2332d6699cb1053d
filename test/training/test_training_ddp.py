"""Data-parallel training: 2 CPU processes under torchrun (gloo) stay identical.

Each rank trains on its own data shard for 3 steps at 64×64 crops; DDP
averages the gradients and broadcasts BatchNorm buffers, so both ranks must
end with bit-identical parameters and buffers.  Each rank dumps a hash of its
state dict; the test compares them.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402

WORKER = textwrap.dedent('''
    import hashlib, os, sys
    import torch
    from goodpoint_training import trainer
    from goodpoint_training.config import config_from_dict, validate
    images, out, dump = sys.argv[1:4]
    cfg = validate(config_from_dict(dict(
        images=images, out=out, crop=64, batch_size=2, precision="fp32", workers=0,
        steps_per_epoch=3, constant_epochs=1, decay_epochs=0, max_steps=3, tensorboard=False,
        guard_duplicates=False, validate_every=0, threads=1)))
    t = trainer.Trainer(cfg)
    first = {k: v.clone() for k, v in t.raw_model.state_dict().items()}
    t.fit()
    rank = t.dist.rank
    h = hashlib.sha256()
    for k, v in sorted(t.raw_model.state_dict().items()):
        h.update(k.encode()); h.update(v.detach().cpu().contiguous().numpy().tobytes())
    changed = any(not torch.equal(first[k], v) for k, v in t.raw_model.state_dict().items())
    with open(os.path.join(dump, f"rank{rank}.txt"), "w") as f:
        f.write(f"{h.hexdigest()} {t.step} {t.dist.world} {int(changed)}\\n")
    import torch.distributed as d
    d.barrier(); d.destroy_process_group()
''')


def textured(size, seed):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), 2)
    return (255 * (img - img.min()) / (img.max() - img.min())).astype(np.uint8)


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
def test_two_ranks_end_with_identical_parameters(tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    if not Path(torchrun).exists():
        pytest.skip("torchrun not found")
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for s in range(4):
        cv2.imwrite(str(imgs / f"{s}.png"), textured(96, s))
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    dump = tmp_path / "dump"
    dump.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    cmd = [torchrun, "--standalone", "--nproc-per-node", "2", str(script), str(imgs),
           str(tmp_path / "run"), str(dump)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [(dump / f"rank{r}.txt").read_text().split() for r in (0, 1)]
    assert lines[0][1:] == ["3", "2", "1"] and lines[1][1:] == ["3", "2", "1"]
    assert lines[0][0] == lines[1][0]
    # only rank 0 writes the run directory's files
    assert (tmp_path / "run" / "last.ckpt").is_file()
