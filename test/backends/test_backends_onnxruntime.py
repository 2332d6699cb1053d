"""ONNX Runtime backend, auto selection and fallback, ONNX lookup and staleness, accuracy gate."""
from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from goodpoint_ros.backends import BackendUnavailable, create_backend  # noqa: E402
from goodpoint_ros.backends.onnxruntime_backend import OnnxRuntimeBackend, resolve_model  # noqa: E402
from goodpoint_ros.core.config import GoodPointConfig  # noqa: E402
from goodpoint_ros.core.pipeline import FeatureExtractor  # noqa: E402
from goodpoint_ros.core.weights import DEFAULT_ONNX, DEFAULT_WEIGHTS, load_weights  # noqa: E402
from goodpoint_ros.deploy.export import DEFAULT_INT8_ONNX, file_sha256, read_onnx_metadata  # noqa: E402
from goodpoint_ros.deploy.gate import accuracy_gate, agreement, sample_images  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "hpatches_v_churchill"


@pytest.fixture(scope="module")
def ort_fp32():
    return OnnxRuntimeBackend(device="cpu", threads=1)


def test_backend_contract_and_metadata(ort_fp32):
    x = np.random.rand(1, 1, 64, 80).astype(np.float32)
    prob, desc = ort_fp32.infer(x)
    assert prob.shape == (1, 64, 80) and desc.shape == (1, 256, 8, 10)
    assert prob.dtype == np.float32 and desc.dtype == np.float32
    assert ort_fp32.metadata == load_weights(DEFAULT_WEIGHTS)[1]
    assert ort_fp32.model_path == DEFAULT_ONNX and ort_fp32.providers == ["CPUExecutionProvider"]
    with pytest.raises(ValueError):
        ort_fp32.infer(np.zeros((1, 1, 60, 80), np.float32))
    with pytest.raises(ValueError):
        ort_fp32.infer(np.zeros((1, 1, 64, 80), np.float64))


def test_threshold_comes_from_onnx_metadata(ort_fp32):
    ex = FeatureExtractor(ort_fp32)
    theta = read_onnx_metadata(DEFAULT_ONNX)["weights"]["detection"]["keypoint_threshold"]
    assert ex.config.keypoint_threshold == theta


def test_precision_is_separate_from_backend():
    b8 = OnnxRuntimeBackend(precision="int8", device="cpu", threads=1)
    assert b8.precision == "int8" and b8.model_path == DEFAULT_INT8_ONNX
    with pytest.raises(BackendUnavailable, match="bf16"):
        OnnxRuntimeBackend(precision="bf16", device="cpu")
    with pytest.raises(BackendUnavailable, match="CUDA"):
        OnnxRuntimeBackend(precision="fp16", device="cpu")
    # a given int8 file is int8 whatever the default precision says
    assert OnnxRuntimeBackend(weights=str(DEFAULT_INT8_ONNX), device="cpu").precision == "int8"
    with pytest.raises(BackendUnavailable, match="fp32 model, not int8"):
        OnnxRuntimeBackend(weights=str(DEFAULT_ONNX), precision="int8", device="cpu")


def test_auto_skips_unavailable_backends_and_logs_why(caplog):
    caplog.set_level(logging.INFO, logger="goodpoint_ros.backends")
    b = create_backend("auto", device="cpu")
    names = [n for n, _ in b.fallback_log]
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert b.name == "onnxruntime" and names == ["tensorrt"]
        assert "tensorrt" in b.fallback_log[0][1]
    assert f"using {b.name}" in caplog.text


def test_auto_falls_back_to_torch_without_onnxruntime(monkeypatch):
    pytest.importorskip("torch")
    for mod in [m for m in sys.modules if m.startswith("goodpoint_ros.backends.onnxruntime")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)    # import fails as if not installed
    b = create_backend("auto", device="cpu")
    assert b.name == "torch" and "onnxruntime" in [n for n, _ in b.fallback_log]


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown backend"):
        create_backend("tpu")


def _weights_copy(tmp_path, name="mine"):
    w = tmp_path / f"{name}.safetensors"
    shutil.copy(DEFAULT_WEIGHTS, w)
    return w


def test_onnx_beside_weights_is_used_and_a_stale_one_is_not(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setenv("ROS_HOME", str(tmp_path / "ros"))
    w = _weights_copy(tmp_path)
    shutil.copy(DEFAULT_ONNX, tmp_path / "mine.onnx")     # same weights → valid
    assert resolve_model(w, "fp32") == (tmp_path / "mine.onnx", "beside the weights")
    # new weights, old ONNX: stale → exported into the cache (torch is here)
    from goodpoint_ros.core.weights import save_weights
    tensors, meta = load_weights(w)
    theta = round(meta["detection"]["keypoint_threshold"] + 0.013, 4)    # a different file
    meta["detection"]["keypoint_threshold"] = theta
    save_weights(w, tensors, meta)
    path, how = resolve_model(w, "fp32")
    assert how == "exported to the user cache" and path.parent == tmp_path / "ros" / "goodpoint" / "onnx"
    assert read_onnx_metadata(path)["weights_sha256"] == file_sha256(w)
    b = OnnxRuntimeBackend(weights=w, device="cpu", threads=1)
    assert b.metadata["detection"]["keypoint_threshold"] == theta
    assert resolve_model(w, "fp32")[1] == "user cache"     # second time: no export


def test_stale_onnx_without_torch_is_refused_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("ROS_HOME", str(tmp_path / "ros"))
    w = _weights_copy(tmp_path)
    shutil.copy(DEFAULT_ONNX, tmp_path / "mine.onnx")
    w.write_bytes(w.read_bytes()[:-4] + b"    ")            # weights changed
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(BackendUnavailable, match="goodpoint export onnx --weights"):
        resolve_model(w, "fp32")
    with pytest.raises(BackendUnavailable, match="goodpoint export int8"):
        resolve_model(w, "int8")


def test_missing_files_are_backend_unavailable(tmp_path):
    with pytest.raises(BackendUnavailable, match="not found"):
        OnnxRuntimeBackend(weights=str(tmp_path / "none.onnx"))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(BackendUnavailable):
        OnnxRuntimeBackend(weights=str(bad))


# --------------------------------------------------------------------------- accuracy gate

class Shifted:
    """Wraps a backend: heatmap moved by ``dx`` px, descriptors mixed with noise."""

    def __init__(self, base, dx=0, noise=0.0):
        self.base, self.dx, self.noise = base, dx, noise
        self.name, self.precision, self.metadata = "shifted", "fp32", base.metadata
        self.rng = np.random.default_rng(0)

    def infer(self, image):
        prob, desc = self.base.infer(image)
        prob = np.roll(prob, self.dx, axis=2)
        if self.noise:
            desc = desc + self.noise * self.rng.standard_normal(desc.shape).astype(np.float32)
            desc /= np.linalg.norm(desc, axis=1, keepdims=True)
        return prob, desc


class Peaky:
    """A backend with a real-image-dependent, peaky heatmap: a Harris response
    per 8x8 cell made into a softmax (so the gate has keypoints to compare),
    and descriptors from random projections of the local patch."""

    name, precision = "peaky", "fp32"
    metadata = {"detection": {"keypoint_threshold": 0.05}}

    def infer(self, image):
        img = image[0, 0]
        h, w = img.shape
        r = cv2.cornerHarris(img, 3, 3, 0.04)
        logits = (r / (np.abs(r).max() + 1e-12) * 40).reshape(h // 8, 8, w // 8, 8)
        e = np.exp(logits - logits.max(axis=(1, 3), keepdims=True))
        prob = (e / e.sum(axis=(1, 3), keepdims=True)).reshape(h, w)
        cells = cv2.resize(img, (w // 8, h // 8), interpolation=cv2.INTER_AREA)
        proj = np.random.default_rng(1).standard_normal((256, 3))
        feats = np.stack([cells, np.gradient(cells, axis=0), np.gradient(cells, axis=1)])
        desc = np.einsum("dc,chw->dhw", proj, feats - feats.mean(axis=(1, 2), keepdims=True))
        desc /= np.linalg.norm(desc, axis=0, keepdims=True) + 1e-12
        return prob[None].astype(np.float32), desc[None].astype(np.float32)


def test_gate_passes_identical_and_fails_shifted_or_noisy():
    imgs = sample_images()[:3]
    ref = Peaky()
    same = accuracy_gate(ref, Peaky(), imgs, resize=(320, 240))
    assert same.passed and same.repeatability == 1.0 and same.descriptor_cosine > 0.999
    assert same.reference_keypoints > 100
    moved = accuracy_gate(ref, Shifted(Peaky(), dx=2), imgs, resize=(320, 240))
    assert not moved.passed and moved.repeatability < 0.9 and "repeatability" in moved.reason
    noisy = accuracy_gate(ref, Shifted(Peaky(), noise=0.05), imgs, resize=(320, 240))
    assert noisy.repeatability == 1.0 and noisy.descriptor_cosine < 0.98 and not noisy.passed
    # within 1 px counts: exactly for whole-pixel peaks; sub-pixel refinement moves a few
    # peaks whose window the shift pushes against the zero-filled edge just past 1 px
    whole = GoodPointConfig(keypoint_threshold=0.05, subpixel="none")
    one_px = accuracy_gate(ref, Shifted(Peaky(), dx=1), imgs, whole, resize=(320, 240))
    assert one_px.repeatability == 1.0
    one_px = accuracy_gate(ref, Shifted(Peaky(), dx=1), imgs, resize=(320, 240))
    assert one_px.repeatability >= 0.97 and one_px.passed


def test_gate_fails_when_the_reference_finds_nothing(ort_fp32):
    r = accuracy_gate(ort_fp32, ort_fp32, sample_images()[:1], GoodPointConfig(keypoint_threshold=0.99))
    assert not r.passed and "no keypoints" in r.reason


def test_agreement_counts_within_radius():
    from goodpoint_ros.core.keypoints import Features
    d = np.zeros((1, 4, 2, 2), np.float32)
    d[:, 0] = 1
    ref = Features(np.array([[3.5, 3.5], [10, 10]], np.float32), np.ones(2, np.float32),
                   np.tile(np.eye(4, dtype=np.float32)[:1], (2, 1)), (16, 16))
    test = Features(np.array([[4.2, 4.0], [12, 10]], np.float32), np.ones(2, np.float32),
                    ref.descriptors, (16, 16))
    rep, cos = agreement(ref, test, d)
    assert rep == 0.5 and cos == pytest.approx(1.0)


def test_cli_gate_reports_and_exits_by_verdict(tmp_path, capsys):
    from goodpoint_ros.cli import main
    out = tmp_path / "gate.json"
    rc = main(["export", "gate", "--backend", "onnxruntime", "--precision", "fp32",
               "--threshold", "0.99", "--json", str(out), "--images", str(SAMPLE / "1.png")])
    assert rc == 1 and "FAIL" in capsys.readouterr().out
    import json
    assert json.loads(out.read_text())["passed"] is False


def test_gate_images_fall_back_to_the_copies_in_the_package(monkeypatch, tmp_path):
    from goodpoint_ros.backends import gate
    assert len(gate.sample_images()) == 6                       # the repository's sample
    monkeypatch.setattr(gate, "SAMPLE_DIR", tmp_path / "absent")
    imgs = gate.sample_images()                                 # an installed package
    assert len(imgs) == 3 and all(i.shape[:2] == (240, 320) for i in imgs)
    monkeypatch.setattr(gate, "PACKAGE_IMAGES", tmp_path / "absent2")
    with pytest.raises(FileNotFoundError):
        gate.sample_images()
