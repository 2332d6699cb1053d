"""PyTorch 2 bench paths: PT2E int8 keeps the chosen layers float, refuses cleanly."""
from __future__ import annotations

import sys

import pytest

torch = pytest.importorskip("torch")

from conftest import network_inputs  # noqa: E402
from goodpoint_ros.backends import BackendUnavailable  # noqa: E402
from goodpoint_ros.core.model import GoodPointNet  # noqa: E402
from goodpoint_ros.core.weights import load_model  # noqa: E402
from goodpoint_ros.deploy import inductor as I  # noqa: E402
from goodpoint_ros.deploy.export import INT8_KEEP_FLOAT  # noqa: E402

SIZE = (64, 48)
LAYERS = ("conv1a", "conv1b", "conv2a", "conv2b", "conv3a", "conv3b", "conv4a", "conv4b",
          "det_a", "det_b", "desc_a", "desc_b")


def _inputs(names=("1.png", "2.png")):
    return network_inputs(SIZE, names)


def test_every_layer_name_is_a_convolution_of_the_network():
    modules = dict(GoodPointNet().named_modules())
    for layer in LAYERS:
        assert isinstance(modules[I.quantizable_name(layer)], torch.nn.Conv2d), layer
    assert set(INT8_KEEP_FLOAT) <= set(LAYERS)


def _quantised_convs(gm):
    """Names of the weights that reach a convolution through a dequantise node."""
    out = []
    for n in gm.graph.nodes:
        if n.op == "call_function" and "conv2d" in str(n.target):
            w = n.args[1]
            if w.op == "call_function" and "dequantize" in str(w.target):
                out.append(n)
    return out


def test_pt2e_int8_quantises_all_but_the_kept_layers_and_stays_close_to_fp32():
    pytest.importorskip("torchao")
    model, _ = load_model(None, device="cpu")
    model.eval()
    x = _inputs()
    example = torch.from_numpy(x[0])
    mixed = I.pt2e_int8(model, example, x, keep_float=("conv1a", "det_b"))   # ~1 min: export
    quantised = _quantised_convs(mixed)
    assert len(quantised) == len(LAYERS) - 2
    with torch.no_grad():
        ref, got = model(example), mixed(example)
    cos = torch.nn.functional.cosine_similarity(ref["desc"], got["desc"], dim=1).mean()
    assert float(cos) > 0.95                        # int8, not noise
    assert float((ref["prob"] - got["prob"]).abs().max()) < 0.5


def test_int8_without_torchao_or_photos_is_a_clear_refusal(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torchao", None)    # as if not installed
    model, _ = load_model(None, device="cpu")
    with pytest.raises(BackendUnavailable, match="torchao"):
        I.pt2e_int8(model.eval(), torch.zeros(1, 1, 48, 64), _inputs())
    with pytest.raises(BackendUnavailable, match="calibration photos"):
        I.InductorBackend(precision="int8", calib_dir=tmp_path)
    with pytest.raises(BackendUnavailable, match="not fp16"):
        I.InductorBackend(precision="fp16")
