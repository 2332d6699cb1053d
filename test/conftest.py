"""Shared test fixtures: where the real data lives, and small helpers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "hpatches_v_churchill"
#: Real evaluation data beside the repo; absent in a user's clone.
SHARED = REPO.parent / "shared"
SHARED_DATA = SHARED / "data"


def require_shared(sub: str = "") -> Path:
    """Path under ../shared/data, or skip the test when it is not there."""
    path = SHARED_DATA / sub
    if not path.exists():
        pytest.skip(f"{path} not present (real evaluation data lives beside the repo)")
    return path


def network_inputs(size, names=("1.png", "2.png")):
    """Bundled sample photos as network inputs [1,1,H,W] float32 in 0..1 at ``size`` (W, H)."""
    import cv2
    out = []
    for n in names:
        img = cv2.imread(str(SAMPLE / n), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
        out.append(cv2.resize(img, size, interpolation=cv2.INTER_AREA)[None, None].copy())
    return out


@pytest.fixture
def sample_pair():
    import cv2
    img0 = cv2.imread(str(SAMPLE / "1.png"), cv2.IMREAD_GRAYSCALE)
    img1 = cv2.imread(str(SAMPLE / "2.png"), cv2.IMREAD_GRAYSCALE)
    H = np.loadtxt(SAMPLE / "H_1_2")
    return img0, img1, H


class FakeBackend:
    """A backend returning chosen maps: tests the pipeline without a network.

    prob_fn(H, W) → [H, W] map; descriptors are a fixed random unit map.
    """
    name = "fake"
    precision = "fp32"

    def __init__(self, prob_fn, metadata=None, dim=256, seed=0):
        self.prob_fn = prob_fn
        self.metadata = metadata or {"detection": {"keypoint_threshold": 0.05, "nms_radius": 8}}
        self.dim = dim
        self.rng = np.random.default_rng(seed)
        self.calls = []

    def infer(self, image):
        from goodpoint_ros.backends import check_input
        check_input(image)
        self.calls.append(image.shape)
        h, w = image.shape[2:]
        prob = np.asarray(self.prob_fn(h, w), np.float32)[None]
        desc = self.rng.standard_normal((1, self.dim, h // 8, w // 8)).astype(np.float32)
        desc /= np.linalg.norm(desc, axis=1, keepdims=True)
        return prob, desc
