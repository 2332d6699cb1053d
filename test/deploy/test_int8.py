"""int8 mixed precision: layers, keep_float, the per-layer sensitivity study."""
from __future__ import annotations

import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from conftest import SAMPLE, network_inputs  # noqa: E402
from goodpoint_ros.core.weights import DEFAULT_ONNX  # noqa: E402
from goodpoint_ros.deploy import export as E  # noqa: E402

SIZE = (96, 64)


def _inputs(names=("1.png", "2.png")):
    return network_inputs(SIZE, names)


def test_int8_layers_cover_every_conv_once_with_its_activation_shift_and_pool():
    proto = onnx.load(str(DEFAULT_ONNX))
    E.fold_batchnorm(proto, skip_first=True)
    layers = E.int8_layers(proto)
    assert list(layers) == ["conv1a", "conv1b", "conv2a", "conv2b", "conv3a", "conv3b", "conv4a",
                            "conv4b", "det_a", "det_b", "desc_a", "desc_b"]
    by_name = {n.name: n for n in proto.graph.node}
    convs = [n.name for n in proto.graph.node if n.op_type == "Conv"]
    assert sorted(c for nodes in layers.values() for c in nodes if c in convs) == sorted(convs)
    pools = [n for nodes in layers.values() for n in nodes if by_name[n].op_type == "MaxPool"]
    assert len(pools) == 3 and all(p in layers[k] for k, p in zip(("conv1b", "conv2b", "conv3b"), pools))
    assert {by_name[n].op_type for n in layers["conv4a"]} == {"Conv", "LeakyRelu", "Add"}


def test_keep_float_leaves_exactly_those_layers_unquantised(tmp_path):
    out = tmp_path / "m.int8.onnx"
    info = E.quantize_int8(DEFAULT_ONNX, out, _inputs(), keep_float=["conv1a", "conv4a", "det_b"])
    assert info["kept_float_layers"] == ["conv1a", "conv4a", "det_b"]
    proto = onnx.load(str(out))
    weights_q = {n.input[0] for n in proto.graph.node if n.op_type == "DequantizeLinear"}
    convs = {n.name: n for n in proto.graph.node if n.op_type == "Conv"}
    float_convs = {name for name, c in convs.items() if c.input[1] not in
                   {n.output[0] for n in proto.graph.node if n.op_type == "DequantizeLinear"}}
    assert weights_q
    assert {n.split("/")[2] for n in float_convs} == {"conv1a", "conv4a", "det_b"}
    with pytest.raises(E.ExportError, match="unknown layer"):
        E.quantize_int8(DEFAULT_ONNX, tmp_path / "x.onnx", _inputs(), keep_float=["conv9"])


def test_sensitivity_rows_follow_what_each_layer_feeds():
    """desc_b only shapes descriptors: keypoints identical; det_b only the confidence map:
    descriptors identical."""
    from goodpoint_ros.core.imageio import read_image
    images = [read_image(SAMPLE / n) for n in ("1.png", "3.png")]
    rows = {r["layer"]: r for r in E.int8_sensitivity(DEFAULT_ONNX, _inputs(), images, resize=SIZE,
                                                        layers=["desc_b", "det_b"])}
    assert rows["desc_b"]["repeatability"] == 1.0
    assert 0.9 < rows["desc_b"]["descriptor_cosine"] < 1.0
    assert rows["det_b"]["descriptor_cosine"] == pytest.approx(1.0, abs=1e-6)


def test_int8_calibration_shows_its_progress(tmp_path, capsys):
    """`export int8` ran most of a minute silent: a bar counts the calibration views."""
    xs = _inputs()
    E.quantize_int8(DEFAULT_ONNX, tmp_path / "p.onnx", xs, method="minmax", progress=True)
    err = capsys.readouterr().err
    assert "int8 calibration: 100%|" in err and f"{len(xs)}/{len(xs)}" in err
    E.quantize_int8(DEFAULT_ONNX, tmp_path / "q.onnx", xs, method="minmax")
    assert "int8 calibration" not in capsys.readouterr().err      # the library is quiet
