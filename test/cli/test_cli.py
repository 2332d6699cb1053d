"""The real `goodpoint` console script, run in a subprocess."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import SAMPLE

GOODPOINT = Path(sys.executable).parent / "goodpoint"


def run(*args, check=True):
    if not GOODPOINT.exists():
        pytest.skip("goodpoint console script not installed in this environment")
    p = subprocess.run([str(GOODPOINT), *map(str, args)], capture_output=True, text=True, timeout=120)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def test_help_lists_subcommands():
    out = run("--help").stdout
    for cmd in ("detect", "match", "bench"):
        assert cmd in out
    assert "θ_keypoint" in run("detect", "--help").stdout


def test_detect_json_and_picture(tmp_path):
    # θ just above 1/64 so the untrained bundled network yields keypoints too
    p = run("detect", SAMPLE / "1.png", "--json", tmp_path / "k.json", "--out", tmp_path / "k.png",
            "--threshold", "0.0157", "--max-keypoints", "200", "--backend", "torch")
    data = json.loads((tmp_path / "k.json").read_text())
    assert data["image_size"] == [384, 512] and data["descriptor_dim"] == 256
    assert len(data["keypoints"]) == len(data["scores"]) == 200
    k = np.array(data["keypoints"])
    assert (k[:, 0] >= 4).all() and (k[:, 0] < 380).all() and (k[:, 1] < 508).all()
    assert np.all(np.diff(data["scores"]) <= 0)
    pic = cv2.imread(str(tmp_path / "k.png"))
    assert pic.shape == (512, 384, 3)
    assert "200 keypoints" in p.stdout


def test_match_json(tmp_path):
    run("match", SAMPLE / "1.png", SAMPLE / "2.png", "--json", tmp_path / "m.json",
        "--out", tmp_path / "m.png", "--threshold", "0.0157", "--max-keypoints", "300",
        "--backend", "torch")
    data = json.loads((tmp_path / "m.json").read_text())
    m = np.array(data["matches"]).reshape(-1, 2)
    assert len(data["inliers"]) == len(m)
    assert len(set(m[:, 0])) == len(m) == len(set(m[:, 1]))          # mutual: one-to-one
    assert all(d <= 0.8 for d in data["distances"])
    assert m[:, 0].max(initial=-1) < len(data["keypoints0"])
    if "homography" in data:
        assert np.array(data["homography"]).shape == (3, 3)
    pic = cv2.imread(str(tmp_path / "m.png"))
    assert pic.shape == (512, 768, 3)


@pytest.mark.parametrize("make,expect", [
    (lambda d: d / "missing.png", "no such file"),
    (lambda d: (d / "notimg.png").write_text("hello") and d / "notimg.png", "not an image"),
    (lambda d: (d / "empty.png").write_bytes(b"") or d / "empty.png", "empty"),
    (lambda d: d, "directory"),
])
def test_bad_input_one_line_error(tmp_path, make, expect):
    p = run("detect", make(tmp_path), check=False)
    assert p.returncode == 2
    assert expect in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_limit_is_a_pixel_budget_not_a_side(tmp_path):
    # a long thin strip is cheap; a 9000x9000 frame is over the memory budget
    path = tmp_path / "strip.png"
    cv2.imwrite(str(path), np.zeros((16, 9000), np.uint8))
    assert "9000x16" in run("detect", path, "--backend", "onnxruntime").stdout
    path = tmp_path / "huge.png"
    cv2.imwrite(str(path), np.zeros((9000, 9000), np.uint8))
    p = run("detect", path, check=False)
    assert p.returncode == 2 and "memory budget" in p.stderr and "Traceback" not in p.stderr


def test_16bit_and_colour_are_converted(tmp_path):
    img = cv2.imread(str(SAMPLE / "1.png"))
    cv2.imwrite(str(tmp_path / "c.png"), img)
    cv2.imwrite(str(tmp_path / "g16.png"), cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257)
    args = ["--threshold", "0.0157", "--max-keypoints", "100", "--backend", "torch"]
    run("detect", tmp_path / "c.png", "--json", tmp_path / "c.json", *args)
    run("detect", tmp_path / "g16.png", "--json", tmp_path / "g.json", *args)
    a = np.array(json.loads((tmp_path / "c.json").read_text())["keypoints"])
    b = np.array(json.loads((tmp_path / "g.json").read_text())["keypoints"])
    # same picture at 8 or 16 bits, colour or gray: (almost) the same keypoints
    d = np.linalg.norm(a[:, None] - b[None], axis=2).min(axis=1)
    assert (d <= 1).mean() > 0.9


def test_bad_threshold_is_a_clear_error():
    p = run("detect", SAMPLE / "1.png", "--threshold", "0.01", check=False)
    assert p.returncode == 2 and "1/64" in p.stderr and "Traceback" not in p.stderr


def test_evaluations_default_to_the_fp32_reference_detection_to_auto():
    """An evaluation's figures must not depend on the path a timing probe picked."""
    from goodpoint_ros.cli import build_parser
    p = build_parser()
    for argv in (["eval", "homography", "d"], ["eval", "bag", "b"], ["eval", "vo", "s", "--out", "o"]):
        assert p.parse_args(argv).precision == "fp32", argv
    assert p.parse_args(["detect", "x.png"]).precision == "auto"


@pytest.mark.parametrize("kw,good,bad,rule", [
    (dict(kind=int, low=1), "1", "0", "must be >= 1, got 0"),
    (dict(kind=float, above=0), "0.5", "0", "must be > 0, got 0"),
    (dict(kind=float, low=-90, high=90), "-90", "90.5", "must be in [-90, 90], got 90.5"),
    (dict(kind=float, above=0, high=100), "100", "0", "must be in (0, 100], got 0"),
    (dict(kind=int, low=0), "0", "1.5", "expected an integer, got '1.5'"),
    (dict(kind=float, low=0), "0", "nan", "must be a finite number, got nan"),
    (dict(kind=float, above=0), "1e9", "inf", "must be a finite number, got inf"),
])
def test_bounded_flag_types(kw, good, bad, rule):
    import argparse

    from goodpoint_ros.cli.common import bounded
    kind = kw.pop("kind")
    parse = bounded(kind, **kw)
    assert parse(good) == kind(good) and isinstance(parse(good), kind)
    with pytest.raises(argparse.ArgumentTypeError) as exc:
        parse(bad)
    assert str(exc.value) == rule
