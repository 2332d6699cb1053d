"""ONNX export: contract, exactness against PyTorch on real images, shipped files, int8."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from goodpoint_ros.core.config import GoodPointConfig  # noqa: E402
from goodpoint_ros.core.model import GoodPointNet  # noqa: E402
from goodpoint_ros.core.weights import (  # noqa: E402
    DEFAULT_ONNX,
    DEFAULT_WEIGHTS,
    default_metadata,
    load_model,
    load_weights,
    model_to_tensors,
    save_weights,
)
from goodpoint_ros.deploy import export as E  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "hpatches_v_churchill"


def _real_input(name="1.png", size=None):
    img = cv2.imread(str(SAMPLE / name), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
    if size:
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    return img[None, None].copy()


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def varied_weights(tmp_path_factory):
    """Weights with non-trivial BatchNorm statistics (one block with a negative
    scale), exported to ONNX: exercises export and BN folding beyond the
    untrained identity BatchNorms."""
    d = tmp_path_factory.mktemp("varied")
    # a fixed random network, not the bundled weights: the test must not depend on what ships
    torch.manual_seed(0)
    model = GoodPointNet().eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.3)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
        model.encoder["conv2a"][2].weight[3] = -0.7     # a ≤ 0: this block must stay unfolded
        # spread the cell logits: an untrained softmax is nearly flat, full of exact ties
        model.det_b[0].weight.mul_(20)
    w = d / "varied.safetensors"
    save_weights(w, model_to_tensors(model), default_metadata(keypoint_threshold=0.03))
    out = d / "varied.onnx"
    E.export_onnx(w, out)
    return w, out, model


def test_shipped_onnx_is_valid_and_matches_shipped_weights():
    """A stale ONNX (weights replaced, ONNX not re-exported) fails here:
    regenerate with `goodpoint export onnx` (and `goodpoint export int8`)."""
    E.check_onnx(DEFAULT_ONNX)
    info = E.read_onnx_metadata(DEFAULT_ONNX)
    assert info["weights_sha256"] == E.file_sha256(DEFAULT_WEIGHTS), \
        "goodpoint_default.onnx is stale: run `goodpoint export onnx`"
    assert info["weights"] == load_weights(DEFAULT_WEIGHTS)[1]
    assert info["export"]["opset"] == E.OPSET and info["export"]["dynamic"] is True
    int8 = E.read_onnx_metadata(E.DEFAULT_INT8_ONNX)
    assert int8["weights_sha256"] == info["weights_sha256"], \
        "goodpoint_default.int8.onnx is stale: run `goodpoint export int8`"
    assert int8["export"]["precision"] == "int8"


def test_graph_follows_the_backend_contract_at_several_sizes():
    sess = _session(DEFAULT_ONNX)
    (inp,) = sess.get_inputs()
    assert inp.name == "image" and inp.shape[:2] == [1, 1]
    assert [o.name for o in sess.get_outputs()] == ["prob", "desc"]
    for h, w in [(240, 320), (64, 96), (480, 640)]:
        prob, desc = sess.run(None, {"image": np.random.rand(1, 1, h, w).astype(np.float32)})
        assert prob.shape == (1, h, w) and desc.shape == (1, 256, h // 8, w // 8)
        assert np.allclose(np.linalg.norm(desc, axis=1), 1, atol=1e-4)


@pytest.mark.parametrize("name,size", [("1.png", None), ("4.png", (320, 240))])
def test_onnxruntime_matches_pytorch_on_real_images(name, size):
    x = _real_input(name, size)
    model, meta = load_model(None)
    with torch.no_grad():
        ref = model(torch.from_numpy(x))
    prob, desc = _session(DEFAULT_ONNX).run(None, {"image": x})
    assert np.abs(prob - ref["prob"].numpy()).max() <= 1e-4
    assert np.abs(desc - ref["desc"].numpy()).max() <= 1e-4


@pytest.mark.parametrize("name,size", [("1.png", None), ("4.png", (320, 240))])
def test_export_varied_weights_gives_identical_top_k(varied_weights, name, size):
    """Same heatmap and the same top-k keypoints through the shared post-processor.

    On weights with a spread-out heatmap: the untrained one is flat up to 1e-8
    (exact ties), where any two correct implementations may pick differently.
    """
    from goodpoint_ros.core.keypoints import select_keypoints
    w, path, model = varied_weights
    E.check_onnx(path)
    x = _real_input(name, size)
    with torch.no_grad():
        ref = model.eval()(torch.from_numpy(x))
    prob, desc = _session(path).run(None, {"image": x})
    assert np.abs(prob - ref["prob"].numpy()).max() <= 1e-4
    assert np.abs(desc - ref["desc"].numpy()).max() <= 1e-4
    cfg = GoodPointConfig(keypoint_threshold=0.05, max_keypoints=40, subpixel="none")
    hw = (x.shape[3], x.shape[2])
    k_ref, s_ref = select_keypoints(ref["prob"].numpy()[0], hw, cfg)
    k_ort, s_ort = select_keypoints(prob[0], hw, cfg)
    assert len(k_ref) == 40, "the test needs keypoints to compare"
    # the same set (two near-equal scores may swap places in the ranking)
    np.testing.assert_array_equal(np.unique(k_ort, axis=0), np.unique(k_ref, axis=0))
    # and the sub-pixel refinement of those peaks agrees to far below a pixel
    sub = dataclasses.replace(cfg, subpixel="softargmax")
    r_ref = select_keypoints(ref["prob"].numpy()[0], hw, sub)[0]
    r_ort = select_keypoints(prob[0], hw, sub)[0]
    np.testing.assert_allclose(np.unique(np.round(r_ort, 2), axis=0),
                               np.unique(np.round(r_ref, 2), axis=0), atol=0.011)
    info = E.read_onnx_metadata(path)
    assert info["weights"]["detection"]["keypoint_threshold"] == 0.03
    assert info["weights_sha256"] == E.file_sha256(w)


def test_fixed_size_export(tmp_path):
    out = tmp_path / "fixed.onnx"
    E.export_onnx(None, out, size=(160, 120))
    (inp,) = _session(out).get_inputs()
    assert inp.shape == [1, 1, 120, 160]
    with pytest.raises(E.ExportError):
        E.export_onnx(None, tmp_path / "bad.onnx", size=(161, 120))


def test_batchnorm_folding_is_exact_and_skips_negative_scales(varied_weights):
    _, path, _ = varied_weights
    proto = onnx.load(str(path))
    n_bn = sum(n.op_type == "BatchNormalization" for n in proto.graph.node)
    folded = E.fold_batchnorm(proto)
    assert folded == n_bn - 1          # every block but conv2a's
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("BatchNormalization") == 1
    onnx.checker.check_model(proto)
    x = _real_input("3.png", (320, 240))
    a = _session(path).run(None, {"image": x})
    b = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"image": x})
    assert np.abs(a[0] - b[0]).max() <= 1e-5 and np.abs(a[1] - b[1]).max() <= 1e-5


def test_int8_keeps_the_first_and_the_detector_block_in_float(varied_weights):
    _, path, _ = varied_weights
    proto = onnx.load(str(path))
    n_bn = sum(n.op_type == "BatchNormalization" for n in proto.graph.node)
    assert E.fold_batchnorm(proto, skip_first=True) == n_bn - 2     # conv2a's a ≤ 0, and the first
    keep = E.int8_keep_float(proto)
    by_name = {n.name: n for n in proto.graph.node}
    convs = [by_name[k] for k in keep if by_name[k].op_type == "Conv"]
    assert len(convs) == 3
    assert convs[0].input[0] == "image"                              # the first layer
    assert {by_name[k].op_type for k in keep} >= {"Conv", "LeakyRelu", "Add"}
    dims = {c.name: next(list(i.dims) for i in proto.graph.initializer if i.name == c.input[1])
            for c in convs[1:]}
    # the detector head: 128→256 3×3 reading the shared encoder output, then 256→64 1×1
    assert sorted(dims.values()) == [[64, 256, 1, 1], [256, 128, 3, 3]]
    head_first = next(c for c in convs[1:] if dims[c.name] == [256, 128, 3, 3])
    readers = [n for n in proto.graph.node if head_first.input[0] in n.input]
    assert len(readers) == 2                                         # det_a and desc_a


def test_calibration_images_reads_the_split_and_refuses_empty(tmp_path):
    (tmp_path / "a.png").write_bytes(cv2.imencode(".png", np.zeros((40, 50), np.uint8))[1].tobytes())
    lst = tmp_path / "split.txt"
    lst.write_text("# comment\na.png\nmissing.png\n\n")
    assert E.calibration_images(lst, tmp_path) == [tmp_path / "a.png"]
    lst.write_text("missing.png\n")
    with pytest.raises(E.ExportError, match="none of"):
        E.calibration_images(lst, tmp_path)
    xs = E.calibration_tensors([tmp_path / "a.png"], size=(64, 48), crops_per_image=3)
    assert len(xs) == 3 and all(x.shape == (1, 1, 48, 64) and x.dtype == np.float32 for x in xs)


def test_int8_quantisation_keeps_contract_and_metadata(varied_weights, tmp_path):
    _, path, _ = varied_weights
    calib = [_real_input(n, (96, 64)) for n in ("1.png", "2.png")]
    out = tmp_path / "varied.int8.onnx"
    info = E.quantize_int8(path, out, calib, method="minmax")
    assert info["precision"] == "int8" and info["batchnorm_folded"] >= 1
    assert len(info["kept_float"]) >= 4
    proto = onnx.load(str(out))
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    meta = E.read_onnx_metadata(out)
    assert meta["weights_sha256"] == E.read_onnx_metadata(path)["weights_sha256"]
    prob, desc = _session(out).run(None, {"image": _real_input("5.png", (320, 240))})
    assert prob.shape == (1, 240, 320) and desc.shape == (1, 256, 30, 40)
    assert np.allclose(prob.reshape(1, 30, 8, 40, 8).sum((2, 4)), 1, atol=1e-3)  # softmax per cell
    with pytest.raises(E.ExportError, match="already int8"):
        E.quantize_int8(out, tmp_path / "twice.onnx", calib)


def test_cli_export_onnx_and_errors(tmp_path, capsys):
    from goodpoint_ros.cli import main
    out = tmp_path / "cli.onnx"
    assert main(["export", "onnx", "--out", str(out), "--size", "64x48"]) == 0
    assert E.read_onnx_metadata(out)["export"]["size"] == [64, 48]
    assert main(["export", "onnx", "--weights", str(tmp_path / "nope.safetensors"),
                 "--out", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert "error" in err and "Traceback" not in err
    assert main(["export", "int8", "--onnx", str(out), "--calib-list", str(tmp_path / "no.txt")]) == 2
    assert main(["export", "onnx", "--size", "100x10", "--out", str(tmp_path / "y.onnx")]) == 2
    assert main(["export", "onnx", "--height", "48", "--out", str(tmp_path / "z.onnx")]) == 2
    assert main(["export", "onnx", "--height", "40", "--width", "56", "--out", str(tmp_path / "z.onnx")]) == 0
    assert E.read_onnx_metadata(tmp_path / "z.onnx")["export"]["size"] == [56, 40]
    assert main(["export", "weights", str(tmp_path / "none.ckpt"), "--out", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert "multiples of 8" in err and "not found" in err and "--width" in err
    assert "Traceback" not in err


def test_int8_file_records_the_gate_and_the_runtime_warns_on_failure(varied_weights, tmp_path, caplog):
    import logging

    from goodpoint_ros.backends.onnxruntime_backend import OnnxRuntimeBackend
    from goodpoint_ros.deploy.gate import record_gate
    _, path, _ = varied_weights
    out = tmp_path / "varied.int8.onnx"
    E.quantize_int8(path, out, [_real_input("1.png", (96, 64))], method="minmax")
    result = record_gate(path, out, images=[SAMPLE / "1.png"])
    stored = E.read_onnx_metadata(out)["export"]["gate"]
    assert stored["passed"] == result.passed and stored["reference_keypoints"] == result.reference_keypoints
    assert E.read_onnx_metadata(out)["weights_sha256"] == E.read_onnx_metadata(path)["weights_sha256"]
    caplog.set_level(logging.WARNING, logger="goodpoint_ros.backends.onnxruntime")
    OnnxRuntimeBackend(weights=str(out), device="cpu")
    assert ("failed the accuracy gate" in caplog.text) == (not result.passed)
