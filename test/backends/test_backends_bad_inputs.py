"""Bad model files (docs/bad-inputs.md, cases 11, 16, 17): the error names the real
problem, from the backend that reads that file type."""
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SAMPLE
from goodpoint_ros.backends import BackendUnavailable, create_backend
from goodpoint_ros.core.weights import DEFAULT_ONNX, WeightsError, load_weights, save_weights

GOODPOINT = Path(sys.executable).parent / "goodpoint"


def detect(*args):
    if not GOODPOINT.exists():
        pytest.skip("goodpoint console script not installed")
    return subprocess.run([str(GOODPOINT), "detect", str(SAMPLE / "1.png"), *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def broken_onnx(tmp_path):
    p = tmp_path / "broken.onnx"
    p.write_bytes(DEFAULT_ONNX.read_bytes()[:3000])          # truncated protobuf
    return p


def test_auto_with_a_broken_onnx_reports_onnx_runtimes_reason(broken_onnx):
    with pytest.raises(BackendUnavailable) as err:
        create_backend("auto", weights=str(broken_onnx), precision="fp32")
    msg = str(err.value)
    assert "INVALID_PROTOBUF" in msg and msg.index("onnxruntime") < msg.index("also tried")
    assert "safetensors file" not in msg


def test_cli_auto_with_a_broken_onnx_is_one_line_with_the_real_reason(broken_onnx):
    p = detect("--weights", broken_onnx)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("goodpoint detect: error:") and "INVALID_PROTOBUF" in last


def test_torch_backend_with_an_onnx_file_says_which_backend_reads_it(broken_onnx):
    pytest.importorskip("torch")
    with pytest.raises(BackendUnavailable, match="--backend onnxruntime"):
        create_backend("torch", weights=str(broken_onnx), precision="fp32")


@pytest.mark.parametrize("key,value,named", [("dustbin", True, "dustbin"),
                                             ("descriptor_dim", 128, "descriptor_dim"),
                                             ("name", "superpoint", "name")])
def test_architecture_mismatch_names_the_field(tmp_path, key, value, named):
    tensors, meta = load_weights()
    meta["architecture"] = dict(meta["architecture"], **{key: value})
    w = tmp_path / "w.safetensors"
    save_weights(w, tensors, meta)
    with pytest.raises(WeightsError) as err:
        load_weights(w)
    msg = str(err.value)
    assert f"architecture {named} is {value!r}" in msg
    assert "'goodpoint-superpoint-vgg' is not 'goodpoint-superpoint-vgg'" not in msg


def wrong_graph(tmp_path, outputs=1):
    """An ONNX that carries the shipped GoodPoint metadata around a graph that is not
    GoodPoint's: one Identity output (or three)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    shipped = onnx.load(str(DEFAULT_ONNX))
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, "h", "w"])
    outs = [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, [1, 1, "h", "w"])
            for i in range(outputs)]
    nodes = [helper.make_node("Identity", ["image"], [f"y{i}"]) for i in range(outputs)]
    model = helper.make_model(helper.make_graph(nodes, "wrong", [x], outs),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = shipped.ir_version
    for prop in shipped.metadata_props:
        model.metadata_props.add(key=prop.key, value=prop.value)
    p = tmp_path / f"wrong{outputs}.onnx"
    onnx.save(model, str(p))
    return p


@pytest.mark.parametrize("outputs", [1, 2, 3])
def test_onnx_graph_is_checked_against_the_backend_contract(tmp_path, outputs):
    p = wrong_graph(tmp_path, outputs)
    with pytest.raises(BackendUnavailable, match="not a GoodPoint graph") as err:
        create_backend("onnxruntime", weights=str(p), precision="fp32")
    assert "expected" in str(err.value)
    if outputs == 1:
        r = detect("--weights", p, "--backend", "onnxruntime")
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert "not a GoodPoint graph" in r.stderr and len(r.stderr.strip().splitlines()) == 1
