"""Bad inputs through the real `goodpoint` console script (docs/bad-inputs.md).

Each case is one the reliability review (issue 12) found misbehaving: an input
clobbered by an output, a traceback instead of one line, a result lost to an
unwritable folder at the end of a run.
"""
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import SAMPLE

GOODPOINT = Path(sys.executable).parent / "goodpoint"
FAST = ("--backend", "onnxruntime", "--threads", "1")


def run(*args, check=False, timeout=300):
    if not GOODPOINT.exists():
        pytest.skip("goodpoint console script not installed in this environment")
    return subprocess.run([str(GOODPOINT), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def one_line_error(p, code=2):
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    return p.stderr


def digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def photo(tmp_path):
    dst = tmp_path / "in" / "victim.png"
    dst.parent.mkdir()
    shutil.copy(SAMPLE / "1.png", dst)
    return dst


# --------------------------------------------------------------------------- case 1: clobbering

@pytest.mark.parametrize("flag", ["--out", "--json"])
def test_detect_refuses_to_overwrite_its_input(photo, flag):
    before = digest(photo)
    err = one_line_error(run("detect", photo, flag, photo, *FAST))
    assert "refusing to write" in err and "input" in err
    assert digest(photo) == before


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_match_refuses_an_output_that_is_an_input_through_a_link(photo, tmp_path, link):
    other = tmp_path / "in" / "b.png"
    shutil.copy(SAMPLE / "2.png", other)
    alias = tmp_path / "alias.png"
    (os.symlink if link == "symlink" else os.link)(other, alias)
    before = digest(other)
    err = one_line_error(run("match", photo, other, "--out", alias, *FAST))
    assert "refusing to write" in err
    assert digest(other) == before


def test_two_outputs_may_not_be_one_file(photo, tmp_path):
    out = tmp_path / "same.png"
    err = one_line_error(run("detect", photo, "--out", out, "--json", out, *FAST))
    assert "same file" in err and not out.exists()


def test_eval_refuses_a_json_inside_its_data_folder(tmp_path):
    data = tmp_path / "seq"
    shutil.copytree(SAMPLE, data)
    before = digest(data / "1.png")
    err = one_line_error(run("eval", "homography", data, "--json", data / "1.png",
                             "--methods", "orb"))
    assert "refusing to write" in err and digest(data / "1.png") == before
    # a report folder that holds the data would be replaced as a whole: refused too
    err = one_line_error(run("eval", "homography", data, "--report", tmp_path, "--methods", "orb"))
    assert "holds the input" in err and (data / "1.png").is_file()


def test_export_and_bench_refuse_to_overwrite_the_weights(tmp_path):
    from goodpoint_ros.core.weights import DEFAULT_WEIGHTS
    w = tmp_path / "w.safetensors"
    shutil.copy(DEFAULT_WEIGHTS, w)
    before = digest(w)
    assert "refusing to write" in one_line_error(run("export", "onnx", "--weights", w, "--out", w))
    assert "refusing to write" in one_line_error(run("bench", "--weights", w, "--json", w))
    assert digest(w) == before


# --------------------------------------------------------------------------- case 5: the package

def test_export_onnx_never_writes_inside_the_package_unless_asked(tmp_path):
    from goodpoint_ros.core.weights import DEFAULT_ONNX, DEFAULT_WEIGHTS
    pytest.importorskip("torch")
    shipped = digest(DEFAULT_ONNX)
    err = one_line_error(run("export", "onnx"))
    assert "inside the installed package" in err and "--into-package" in err
    assert "inside the installed package" in one_line_error(
        run("export", "onnx", "--out", DEFAULT_ONNX))
    other = tmp_path / "other.safetensors"
    shutil.copy(DEFAULT_WEIGHTS, other)
    p = run("export", "onnx", "--weights", other)            # default: beside the weights
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "other.onnx").is_file()
    assert digest(DEFAULT_ONNX) == shipped


# --------------------------------------------------------------------------- case 8: --resize

def test_resize_makes_an_oversized_image_usable(tmp_path):
    big = tmp_path / "big.png"
    img = cv2.resize(cv2.imread(str(SAMPLE / "1.png"), cv2.IMREAD_GRAYSCALE), (9000, 600))
    cv2.imwrite(str(big), img)
    p = run("detect", big, "--resize", "640x480", *FAST)
    assert p.returncode == 0, p.stderr
    assert "9000x600" in p.stdout


# --------------------------------------------------------------------------- case 7: memory budget

def test_budget_refuses_before_allocating_and_names_the_way_out(tmp_path):
    img = tmp_path / "img.png"
    shutil.copy(SAMPLE / "1.png", img)
    err = one_line_error(run("detect", img, "--memory-budget", "100", *FAST))
    assert "memory budget" in err and "--resize" in err and "--memory-budget" in err
    assert run("detect", img, *FAST).returncode == 0              # the default budget fits it


def test_8000px_square_is_refused_in_one_line_not_killed(tmp_path):
    img = tmp_path / "8k.png"
    cv2.imwrite(str(img), np.zeros((8000, 8000), np.uint8))
    err = one_line_error(run("detect", img, *FAST))
    assert "memory budget" in err and "8000x8000" in err


# --------------------------------------------------------------------------- case 14: paths, device

def test_unknown_picture_extension_is_one_line_before_the_network(photo, tmp_path):
    err = one_line_error(run("detect", photo, "--out", tmp_path / "vis.txt", *FAST))
    assert "image extension" in err and not (tmp_path / "vis.txt").exists()


def test_output_under_a_file_is_one_line(photo, tmp_path):
    (tmp_path / "file.png").write_bytes(b"x")
    err = one_line_error(run("detect", photo, "--out", tmp_path / "file.png" / "x.png", *FAST))
    assert "not a folder" in err


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_unknown_device_is_one_line(photo, backend):
    err = one_line_error(run("detect", photo, "--device", "gpu", "--backend", backend))
    assert "gpu" in err


# --------------------------------------------------------------------------- case 13: file systems

@pytest.fixture
def mounted(tmp_path):
    """mount(options) → a fresh tmpfs folder; skipped where mounting is not allowed."""
    points = []

    def make(options):
        point = tmp_path / f"mnt{len(points)}"
        point.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                           capture_output=True)
        if r.returncode:
            pytest.skip("cannot mount a tmpfs here (needs root)")
        points.append(point)
        return point
    yield make
    for point in points:
        subprocess.run(["umount", str(point)], capture_output=True)


def fill(folder: Path):
    with open(folder / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass


@pytest.mark.parametrize("cmd", ["detect", "match"])
@pytest.mark.parametrize("fs", ["ro", "full"])
def test_unwritable_output_folder_is_one_line(photo, mounted, cmd, fs):
    folder = mounted("ro,size=1m" if fs == "ro" else "size=64k")
    if fs == "full":
        fill(folder)
    images = [photo] if cmd == "detect" else [photo, SAMPLE / "2.png"]
    for flag, name in (("--json", "k.json"), ("--out", "k.png")):
        err = one_line_error(run(cmd, *images, flag, folder / name, *FAST))
        assert "cannot write" in err or "No space" in err or "Read-only" in err


def test_eval_bag_checks_writability_before_evaluating(mounted, tmp_path):
    folder = mounted("ro,size=1m")
    # the check comes before the bag is even opened: a bag path that does not exist
    # would be reported otherwise
    err = one_line_error(run("eval", "bag", tmp_path / "no-such-bag", "--json", folder / "r.json",
                             "--methods", "orb"))
    assert "cannot write" in err and "Read-only" in err
    err = one_line_error(run("eval", "bag", tmp_path / "no-such-bag", "--report", folder / "rep",
                             "--methods", "orb"))
    assert "cannot write" in err


# --------------------------------------------------------------------------- case 20: SIGTERM

def test_sigterm_during_make_sample_bag_removes_the_half_bag(tmp_path):
    import signal
    import time
    out = tmp_path / "bag"
    if not GOODPOINT.exists():
        pytest.skip("goodpoint console script not installed")
    proc = subprocess.Popen([str(GOODPOINT), "make-sample-bag", str(out), "--frames", "2000",
                             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    while not out.exists():                      # the writer has started
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "terminated" in err and "Traceback" not in err
    assert not out.exists()


def test_make_sample_bag_refuses_a_dangling_symlink(tmp_path):
    link = tmp_path / "bag"
    link.symlink_to(tmp_path / "elsewhere")
    err = one_line_error(run("make-sample-bag", link, "--frames", "2"))
    assert "exists already" in err and not (tmp_path / "elsewhere").exists()


def test_make_sample_bag_refuses_a_bad_distortion(tmp_path):
    for bad in ("-0.3,0.08,x", "1,2,3,4,5,6", "nan"):
        err = one_line_error(run("make-sample-bag", tmp_path / "bag", f"--distortion={bad}"))
        assert "--distortion takes up to 5 numbers" in err and not (tmp_path / "bag").exists()


def test_make_sample_stereo_refuses_bad_baseline_and_existing_output(tmp_path):
    err = one_line_error(run("make-sample-stereo", tmp_path / "st", "--baseline", "0"))
    assert "--baseline" in err and not (tmp_path / "st").exists()
    (tmp_path / "st").mkdir()
    (tmp_path / "st" / "keep.txt").write_text("mine")
    err = one_line_error(run("make-sample-stereo", tmp_path / "st", "--frames", "2"))
    assert "exists already" in err and (tmp_path / "st" / "keep.txt").read_text() == "mine"
    p = run("make-sample-stereo", tmp_path / "ok", "--frames", "2", "--size", "96x72")
    assert p.returncode == 0, p.stderr
    assert sorted(x.name for x in (tmp_path / "ok").iterdir()) == \
        ["calib.txt", "image_0", "image_1", "poses.txt", "times.txt"]


@pytest.mark.parametrize("flag,value", [("--backends", "torch,nope"), ("--precision", "fp33"),
                                        ("--detection", "netwrok"), ("--sizes", "320x")])
def test_bench_refuses_an_unknown_list_entry_before_measuring(flag, value):
    err = one_line_error(run("bench", flag, value, "--frames", "1", timeout=60))
    assert value.split(",")[-1] in err and "choose from" in err or "WIDTHxHEIGHT" in err


# --------------------------------------------------------------------------- case 26: numbers out of range

OUT_OF_RANGE = [
    # each was a traceback, or silently accepted and run with a meaningless value
    (("bench", "--frames", "0"), "--frames", ">= 1"),
    (("bench", "--warmup", "-1"), "--warmup", ">= 0"),
    (("bench", "--threads", "-3"), "--threads", ">= 1"),
    (("detect", SAMPLE / "1.png", "--threads", "-3"), "--threads", ">= 1"),
    (("match", SAMPLE / "1.png", SAMPLE / "2.png", "--ransac-threshold", "-1"),
     "--ransac-threshold", "> 0"),
    (("match", SAMPLE / "1.png", SAMPLE / "2.png", "--ransac-threshold", "0"),
     "--ransac-threshold", "> 0"),
    (("eval", "homography", SAMPLE, "--pictures", "-2"), "--pictures", ">= 0"),
    (("eval", "homography", SAMPLE, "--max-pairs", "-1"), "--max-pairs", ">= 0"),
    (("eval", "homography", SAMPLE, "--ransac-threshold", "0"), "--ransac-threshold", "> 0"),
    (("export", "onnx", "--height", "0", "--width", "0"), "--height", ">= 8"),
    (("export", "onnx", "--height", "-8", "--width", "16"), "--height", ">= 8"),
    (("export", "int8", "--crops", "0"), "--crops", ">= 1"),
    (("export", "int8", "--percentile", "150"), "--percentile", "(0, 100]"),
    (("bench", "--frames", "many"), "--frames", "expected an integer"),
    (("make-sample-bag", "never-made", "--seed", "-1"), "--seed", ">= 0"),
    (("make-sample-stereo", "never-made", "--seed", "-1"), "--seed", ">= 0"),
]


@pytest.mark.parametrize("argv,flag,rule", OUT_OF_RANGE, ids=lambda v: str(v)[:40])
def test_numbers_out_of_range_are_one_line_before_any_work(argv, flag, rule, tmp_path):
    err = one_line_error(run(*argv, timeout=60))
    assert f"argument {flag}" in err and rule in err, err
    assert "usage:" not in err         # the error line is not buried under the usage text


def test_argparse_errors_are_one_line_with_the_way_to_help():
    err = one_line_error(run("eval", "bag", "x.mcap", "--extrinsic", "nope", timeout=60))
    assert "invalid choice: 'nope'" in err and "goodpoint eval bag -h" in err


@pytest.mark.parametrize("cmd", [("export", "onnx", "--out"), ("detect", SAMPLE / "1.png", "--json"),
                                 ("bench", "--frames", "1", "--json")])
def test_a_folder_given_as_an_output_file_is_one_line_before_any_work(cmd, tmp_path):
    folder = tmp_path / "adir"
    (folder / "keep").mkdir(parents=True)
    err = one_line_error(run(*cmd, folder, timeout=60))
    assert f"cannot write {folder}: it is a folder" in err, err
    assert "Errno" not in err and (folder / "keep").is_dir()


@pytest.mark.parametrize("cmd", [("eval", "vo", SAMPLE, "--out"),
                                 ("eval", "homography", SAMPLE, "--report")])
def test_a_file_given_as_an_output_folder_is_one_line_before_any_work(cmd, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    err = one_line_error(run(*cmd, afile, "--methods", "orb", timeout=60))
    assert f"cannot write {afile}: it is a file, not a folder" in err, err
    assert afile.read_text() == "mine"


def test_eval_vo_refuses_to_write_over_its_sequence_before_running(tmp_path):
    seq = tmp_path / "seq"
    p = run("make-sample-stereo", seq, "--frames", "3", "--size", "96x72", "--no-progress")
    assert p.returncode == 0, p.stderr
    before = {f: digest(f) for f in seq.rglob("*") if f.is_file()}
    common = ("--methods", "orb", "--no-progress")
    err = one_line_error(run("eval", "vo", seq, "--out", tmp_path / "o", "--json",
                             seq / "poses.txt", *common))
    assert "refusing to write" in err and "poses.txt" in err
    err = one_line_error(run("eval", "vo", seq, "--out", seq, *common))
    assert "refusing to write" in err
    assert {f: digest(f) for f in seq.rglob("*") if f.is_file()} == before
    assert not (tmp_path / "o").exists()       # refused before the output folder is made


def test_unreadable_weights_for_onnxruntime_say_only_why(photo, tmp_path):
    """The on-the-fly ONNX export announced itself ("exporting bad.safetensors … (one-off)")
    before finding the file unreadable: two lines, the first a promise not kept."""
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not weights at all")
    err = one_line_error(run("detect", photo, "--weights", bad, "--backend", "onnxruntime"))
    assert "not a readable safetensors file" in err and "exporting" not in err


@pytest.mark.parametrize("name,expect", [("latency.txt", "cannot write a plot to"),
                                         ("sub/x.png", None)])
def test_bench_checks_its_plot_path_before_measuring(tmp_path, name, expect):
    """--plot was written only after the whole benchmark: a .txt (matplotlib has no such
    format), a path under a file, or the weights themselves failed or clobbered at the end."""
    if expect is None:               # a path under a file: the folder check of every output
        (tmp_path / "sub").write_text("a file")
        expect = "is a file, not a folder"
    err = one_line_error(run("bench", "--frames", "1", "--plot", tmp_path / name, timeout=60))
    assert expect in err, err
    w = tmp_path / "w.safetensors"
    w.write_bytes(b"mine")
    assert "refusing to write" in one_line_error(run("bench", "--weights", w, "--plot", w))
    assert w.read_bytes() == b"mine"


@pytest.mark.parametrize("backend,name", [("torch", "adir"), ("onnxruntime", "adir"),
                                          ("auto", "adir"), ("onnxruntime", "adir.onnx"),
                                          ("auto", "adir.onnx")])
def test_a_folder_given_as_weights_is_called_a_folder(photo, tmp_path, backend, name):
    """"weights file not found: adir" sent the user looking for a file that is there; with
    auto and nothing loadable, a probe warning came before the error line."""
    folder = tmp_path / name
    folder.mkdir()
    err = one_line_error(run("detect", photo, "--weights", folder, "--backend", backend))
    assert f"{folder} is a folder, not" in err, err


def test_bench_refuses_a_threshold_no_keypoint_can_pass():
    """θ 5 ran the whole benchmark on frames with no keypoints (scores are ≤ 1)."""
    err = one_line_error(run("bench", "--threshold", "5", "--frames", "1", timeout=60))
    assert "keypoint_threshold must be in" in err
