"""Weights format: round trip, metadata, and clear errors for bad files."""

import numpy as np
import pytest
import torch

from goodpoint_ros.core.model import GoodPointNet
from goodpoint_ros.core.weights import (
    DEFAULT_WEIGHTS,
    WeightsError,
    default_metadata,
    load_model,
    load_weights,
    model_to_tensors,
    save_weights,
)


def test_bundled_weights_load_without_configuration():
    assert DEFAULT_WEIGHTS.is_file() and DEFAULT_WEIGHTS.stat().st_size < 6 * 1024 * 1024
    tensors, meta = load_weights()
    assert meta["format"] == "goodpoint-weights"
    assert meta["architecture"]["layer_recipe"]["leaky_slope"] == 0.01
    assert meta["architecture"]["dustbin"] is False
    assert meta["detection"]["keypoint_threshold"] > 1 / 64
    assert meta["input"]["range"] == [0.0, 1.0]
    model, _ = load_model()
    assert not model.training


def test_round_trip_is_exact(tmp_path):
    torch.manual_seed(3)
    m = GoodPointNet()
    m.train()(torch.rand(2, 1, 16, 16))            # non-trivial BN running stats
    path = tmp_path / "w.safetensors"
    save_weights(path, model_to_tensors(m), default_metadata(keypoint_threshold=0.03))
    m2, meta = load_model(path)
    for (k, a), (_, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k
    assert meta["detection"]["keypoint_threshold"] == 0.03
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]   # no temp left


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        load_weights(tmp_path / "nope.safetensors")


def test_corrupt_file(tmp_path):
    good = DEFAULT_WEIGHTS.read_bytes()
    for name, data in {"garbage": b"\x00" * 100, "truncated": good[: len(good) // 2],
                       "text": b"hello world"}.items():
        p = tmp_path / f"{name}.safetensors"
        p.write_bytes(data)
        with pytest.raises(WeightsError, match="not a readable safetensors"):
            load_weights(p)


def test_foreign_or_mismatched_file(tmp_path):
    from safetensors.numpy import save_file
    p = tmp_path / "foreign.safetensors"
    save_file({"w": np.zeros(3, np.float32)}, str(p))
    with pytest.raises(WeightsError, match="no GoodPoint metadata"):
        load_weights(p)
    p = tmp_path / "wrong_shapes.safetensors"
    tensors = model_to_tensors(GoodPointNet())
    tensors["desc_b.weight"] = np.zeros((128, 256, 1, 1), np.float32)
    save_weights(p, tensors, default_metadata())
    with pytest.raises(WeightsError, match="desc_b.weight has shape"):
        load_model(p)
    p = tmp_path / "missing.safetensors"
    tensors = model_to_tensors(GoodPointNet())
    del tensors["det_b.0.weight"]
    save_weights(p, tensors, default_metadata())
    with pytest.raises(WeightsError, match="missing"):
        load_model(p)
    p = tmp_path / "nan.safetensors"
    tensors = model_to_tensors(GoodPointNet())
    tensors["det_a.0.bias"][0] = np.nan
    save_weights(p, tensors, default_metadata())
    with pytest.raises(WeightsError, match="NaN"):
        load_model(p)
    p = tmp_path / "future.safetensors"
    save_weights(p, model_to_tensors(GoodPointNet()), default_metadata(format_version=99))
    with pytest.raises(WeightsError, match="newer"):
        load_weights(p)
