"""The robot runtime without PyTorch: detect, match, eval and the node's pipeline.

Runs in a real virtual environment that has no torch: ``python -m venv``
plus the runtime's distributions (onnxruntime, numpy, OpenCV, safetensors,
... and their requirements, never torch) linked from the project's venv.
Linking instead of ``pip install`` keeps the test at a few seconds and
offline; it is the same isolation (torch is absent from the interpreter's
path, ``import torch`` fails), with the exact versions CI tested.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "hpatches_v_churchill"
#: What the torch-free runtime installs (setup.py install_requires + onnxruntime).
RUNTIME = ["numpy", "opencv-contrib-python-headless", "onnxruntime", "safetensors", "tqdm",
           "pyyaml", "matplotlib", "rosbags", "rosbags-image"]
NEVER = {"torch", "torchvision", "triton"}


def _requirement_closure(names):
    todo, seen = list(names), {}
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen or name in NEVER:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue              # optional / platform-specific requirement not installed
        seen[name] = dist
        for req in dist.requires or []:
            if "extra ==" in req.replace('"', "'").replace("extra=='", "extra == '"):
                continue
            todo.append(re.match(r"[A-Za-z0-9_.\-]+", req).group(0))
    return seen


@pytest.fixture(scope="session")
def torch_free_python(tmp_path_factory):
    venv = tmp_path_factory.mktemp("torch_free") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    src_site = Path(sysconfig.get_paths()["purelib"])
    linked = set()
    for dist in _requirement_closure(RUNTIME).values():
        for f in dist.files or []:
            top = Path(f).parts[0]
            if top in ("..", "__pycache__") or top in linked or top.endswith(".pth"):
                continue
            if not (src_site / top).exists():
                continue
            linked.add(top)
            (site / top).symlink_to(src_site / top)
    assert not any(t.startswith("torch") for t in linked)
    (site / "goodpoint_ros_repo.pth").write_text(str(REPO) + "\n")
    return py


def _run(py, *args, cwd=None):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["HOME"] = str(Path(py).parents[2])          # a fresh user cache
    return subprocess.run([str(py), *args], capture_output=True, text=True, env=env,
                          cwd=cwd or REPO, timeout=120)


def test_torch_is_really_absent(torch_free_python):
    r = _run(torch_free_python, "-c", "import torch")
    assert r.returncode != 0 and "No module named 'torch'" in r.stderr
    r = _run(torch_free_python, "-c", "import onnxruntime, cv2, numpy, safetensors, goodpoint_ros")
    assert r.returncode == 0, r.stderr


def test_detect_and_match_without_torch(torch_free_python, tmp_path):
    out = tmp_path / "det.json"
    r = _run(torch_free_python, "-m", "goodpoint_ros.cli", "detect", str(SAMPLE / "1.png"),
             "--threshold", "0.0158", "--json", str(out))
    assert r.returncode == 0, r.stderr
    det = json.loads(out.read_text())
    assert det["backend"] == "onnxruntime" and len(det["keypoints"]) > 20
    m = tmp_path / "match.json"
    r = _run(torch_free_python, "-m", "goodpoint_ros.cli", "match", str(SAMPLE / "1.png"),
             str(SAMPLE / "2.png"), "--threshold", "0.0158", "--json", str(m))
    assert r.returncode == 0, r.stderr
    assert m.is_file()
    # asking for the torch backend explicitly is a one-line error, not a traceback
    r = _run(torch_free_python, "-m", "goodpoint_ros.cli", "detect", str(SAMPLE / "1.png"),
             "--backend", "torch")
    assert r.returncode == 2 and "torch" in r.stderr and "Traceback" not in r.stderr


def test_eval_without_torch(torch_free_python, tmp_path):
    out = tmp_path / "eval.json"
    r = _run(torch_free_python, "-m", "goodpoint_ros.cli", "eval", "homography", str(SAMPLE),
             "--methods", "goodpoint,orb", "--max-pairs", "1", "--threshold", "0.0158",
             "--no-progress", "--json", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert out.is_file() and json.loads(out.read_text())


def test_node_pipeline_without_torch(torch_free_python):
    """The node's per-frame work (frontend: extract, match, track ids) on the
    auto backend; rclpy itself is not needed for it."""
    code = f"""
import sys, cv2
from goodpoint_ros.core.pipeline import FeatureExtractor
from goodpoint_ros.frontend.frontend import Frontend
from goodpoint_ros.ros.params import config_from_params, defaults, frontend_config_from_params
params = defaults()
params["keypoint_threshold"] = 0.0158
ex = FeatureExtractor("auto", resize=(320, 240))
fe = Frontend(ex, config_from_params(params), frontend_config_from_params(params))
for name in ("1.png", "2.png"):
    out = fe.mono(cv2.imread("{SAMPLE}/" + name, cv2.IMREAD_GRAYSCALE))
assert ex.backend.name == "onnxruntime", ex.backend.name
assert "torch" not in sys.modules
print(type(out).__name__, len(out.features))
"""
    r = _run(torch_free_python, "-c", code)
    assert r.returncode == 0, r.stderr[-2000:]
    assert int(r.stdout.split()[-1]) > 0
