"""The bundled default weights beat a randomly initialised network by a wide margin.

On validation pairs (held-out training photos warped by the split's fixed
homographies — never the evaluation data), repeatability and precision are
computed with the shared post-processor and matcher.  The random network gets
its best θ_keypoint from a sweep; the bundled weights use the θ recorded in
their metadata, as a user would.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from goodpoint_ros.core.config import GoodPointConfig  # noqa: E402
from goodpoint_ros.core.model import GoodPointNet  # noqa: E402
from goodpoint_ros.core.weights import DEFAULT_WEIGHTS, load_model  # noqa: E402
from goodpoint_training.validation import evaluate, load_pairs, run_network  # noqa: E402

TRAIN_IMAGES = Path(__file__).resolve().parents[3] / "shared" / "train-images"
#: two photos of the validation split: one mild pair (even index), one rotation + zoom pair.
PAIRS = ["enlightenment-data_004.jpg", "enlightenment-data_014.jpg"]


@pytest.fixture(scope="module")
def pairs():
    if not TRAIN_IMAGES.is_dir():
        pytest.skip(f"{TRAIN_IMAGES} not present (training photos live beside the repo)")
    from goodpoint_training.data import read_split
    # load through the whole split so each photo keeps its fixed homography
    ps = [p for p in load_pairs(TRAIN_IMAGES, read_split(), wide=False) if p.name in PAIRS]
    if len(ps) != len(PAIRS):
        pytest.skip("validation photos missing")
    return ps


def test_bundled_weights_beat_random_init_by_a_wide_margin(pairs):
    model, meta = load_model(DEFAULT_WEIGHTS)
    theta = meta["detection"]["keypoint_threshold"]
    trained = evaluate(run_network(model, pairs), pairs,
                       GoodPointConfig(keypoint_threshold=theta, nms_radius=8))
    torch.manual_seed(0)
    rand_outs = run_network(GoodPointNet().eval(), pairs)
    best_random = 0.0
    for t in (0.0157, 0.016, 0.017, 0.02, 0.03):
        m = evaluate(rand_outs, pairs, GoodPointConfig(keypoint_threshold=t))
        for k in ("precision", "repeatability"):
            if np.isfinite(m[k]):
                best_random = max(best_random, m[k])
    assert trained["keypoints"] >= 50, trained
    assert trained["precision"] > 2 * best_random and trained["precision"] > 0.3, trained
    assert trained["repeatability"] > 1.5 * best_random or trained["repeatability"] > 0.4, trained


def test_bundled_weights_metadata_records_training():
    _, meta = load_model(DEFAULT_WEIGHTS)
    det = meta["detection"]
    assert 1 / 64 < det["keypoint_threshold"] < 1 and det["nms_radius"] == 8
    assert "training" in meta and meta["training"]["step"] > 0
    assert DEFAULT_WEIGHTS.stat().st_size <= 6 * 1024 * 1024
