"""Bad inputs to the core API (docs/bad-inputs.md): one-line errors, documented
fallbacks, and a memory budget that holds on real measurements."""
import json
import logging
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import SAMPLE, FakeBackend, require_shared
from goodpoint_ros.core.config import GoodPointConfig
from goodpoint_ros.core.image_msgs import UnsupportedEncoding, decode_image
from goodpoint_ros.core.matching import match_features
from goodpoint_ros.core.pipeline import FeatureExtractor, estimate_peak_mb, fit_budget


def flat(h, w):
    return np.full((h, w), 1 / 64, np.float32)


# --------------------------------------------------------------------------- case 7: memory budget

MEASURE = """
import json, sys
import numpy as np
from goodpoint_ros.core.pipeline import FeatureExtractor
ex = FeatureExtractor(sys.argv[1], threads=1, precision="fp32")
w, h = int(sys.argv[2]), int(sys.argv[3])
ex((np.random.default_rng(0).random((h, w)) * 255).astype(np.uint8))
# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across fork + exec, so a
# child of a large pytest process would report its parent's peak.
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"peak_mb": hwm / 1024, "backend": ex.backend.name}))
"""


@pytest.mark.parametrize("backend,size", [("onnxruntime", (640, 480)),
                                          ("onnxruntime", (1280, 960)),
                                          ("torch", (1280, 960))])
def test_budget_estimate_bounds_the_measured_peak(backend, size):
    """A fresh process's real peak RSS stays under the estimate the budget uses
    (above 1 Mpx ONNX Runtime runs without its arena: the lower per-pixel figure)."""
    if backend == "torch":
        pytest.importorskip("torch")
    out = subprocess.run([sys.executable, "-c", MEASURE, backend, *map(str, size)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    est = estimate_peak_mb(got["backend"], *size)
    assert got["peak_mb"] <= est, (got, est)
    assert got["peak_mb"] > 0.4 * est                 # an estimate, not a blanket refusal


def test_default_budget_takes_hd_and_refuses_8000_squared_before_allocating():
    backend = FakeBackend(flat)
    backend.name = "onnxruntime"
    ex = FeatureExtractor(backend, GoodPointConfig(keypoint_threshold=0.5))
    assert estimate_peak_mb("onnxruntime", 1920, 1080) < ex.config.memory_budget_mb
    with pytest.raises(ValueError, match="memory budget") as err:
        ex(np.zeros((8000, 8000), np.uint8))
    assert "\n" not in str(err.value) and not backend.calls      # refused before the network
    # the suggested size fits the budget
    w, h = fit_budget("onnxruntime", 8000, 8000, 4000)
    assert estimate_peak_mb("onnxruntime", w, h) <= 4000 and w == h and w % 8 == 0


def test_resize_is_what_the_budget_checks():
    backend = FakeBackend(flat)
    ex = FeatureExtractor(backend, GoodPointConfig(keypoint_threshold=0.5), resize=(320, 240))
    feats = ex(np.zeros((9000, 9000), np.uint8))
    assert backend.calls == [(1, 1, 240, 320)] and feats.image_size == (9000, 9000)


def test_downscale_mode_runs_smaller_maps_back_and_says_so_once():
    dot = {"xy": None}

    def peak(h, w):     # one confident pixel at the network-resolution dot
        p = flat(h, w)
        x, y = dot["xy"]
        p[int(y * h), int(x * w)] = 0.9
        return p
    backend = FakeBackend(peak)
    ex = FeatureExtractor(backend, GoodPointConfig(keypoint_threshold=0.5, memory_budget_mb=100),
                          oversize="downscale")
    dot["xy"] = (0.5, 0.25)
    img = np.zeros((1200, 1600), np.uint8)
    f1 = ex(img)
    ex(img)
    (_, _, h, w), = set(backend.calls)
    assert w * h * 1000 / 1e6 <= 100 and w < 1600          # fits 100 MB at 1000 B/px
    assert f1.image_size == (1600, 1200)
    np.testing.assert_allclose(f1.keypoints[0], [800, 300], atol=1600 / w + 1)
    notes = ex.pop_notes()
    assert len(notes) == 1 and "memory budget" in notes[0] and ex.pop_notes() == []


# --------------------------------------------------------------------------- case 12: input range

def keypoint_count(image, **cfg):
    ex = FeatureExtractor("onnxruntime", GoodPointConfig(**cfg), threads=1)
    n = len(ex(image))
    return n, ex.pop_notes()


@pytest.mark.parametrize("kind", ["mono12", "float255"])
def test_small_range_images_warn_once_and_input_max_fixes_them(kind):
    img8 = cv2.imread(str(SAMPLE / "1.png"), cv2.IMREAD_GRAYSCALE)
    ref, notes = keypoint_count(img8)
    assert ref > 200 and notes == []
    if kind == "mono12":
        img, top = (img8.astype(np.uint16) * 16), 4095         # a 12-bit camera in mono16
    else:
        img, top = img8.astype(np.float32), 255.0               # floats in 0..255
    dark, notes = keypoint_count(img)
    assert len(notes) == 1 and "input_max" in notes[0]
    assert dark < 0.5 * ref or kind == "float255"               # the network sees it wrongly
    fixed, notes = keypoint_count(img, input_max=top)
    assert notes == [] and abs(fixed - ref) <= 0.1 * ref


# --------------------------------------------------------------------------- case 19, 22: API traps

@pytest.mark.parametrize("shape", [(10, 0, 3), (0, 10), (5, 5, 0), (3,)])
def test_empty_or_malformed_arrays_are_one_line_value_errors(shape):
    ex = FeatureExtractor(FakeBackend(flat))
    with pytest.raises(ValueError, match="empty or malformed") as err:
        ex(np.zeros(shape, np.uint8))
    assert "\n" not in str(err.value)


def test_config_passed_as_the_backend_is_refused_at_construction():
    with pytest.raises(TypeError, match="config=GoodPointConfig"):
        FeatureExtractor(GoodPointConfig(keypoint_threshold=0.03))
    with pytest.raises(TypeError, match="backend must be"):
        FeatureExtractor(object())
    with pytest.raises(TypeError, match="config must be"):
        FeatureExtractor(FakeBackend(flat), {"keypoint_threshold": 0.03})
    ex = FeatureExtractor(FakeBackend(flat), config=GoodPointConfig(keypoint_threshold=0.03))
    assert ex.config.keypoint_threshold == 0.03


@pytest.mark.parametrize("K", [np.zeros((3, 3)), np.full((3, 3), np.nan),
                               [[-500, 0, 160], [0, 500, 120], [0, 0, 1]], np.eye(2)])
def test_match_features_with_an_unusable_K_is_a_clear_error(sample_pair, K):
    ex = FeatureExtractor(FakeBackend(flat), GoodPointConfig(keypoint_threshold=0.0157,
                                                             max_keypoints=50))
    rng = np.random.default_rng(0)
    f = ex((rng.random((120, 160)) * 255).astype(np.uint8))
    with pytest.raises(ValueError, match="camera matrix") as err:
        match_features(f, f, K0=K)
    assert "\n" not in str(err.value)


def test_vo_users_get_the_essential_matrix_by_passing_K():
    """KITTI: a homography fits a 3-D street badly; with K0/K1 `auto` verifies with
    the essential matrix and keeps many more inliers (the README says so)."""
    root = require_shared("vo/kitti06_000000-000050")
    P0 = np.array((root / "calib.txt").read_text().splitlines()[0].split()[1:], float)
    K = P0.reshape(3, 4)[:, :3]
    ex = FeatureExtractor("onnxruntime", threads=1)
    f0, f1 = (ex(cv2.imread(str(root / "image_0" / f"{i:06d}.png"), cv2.IMREAD_GRAYSCALE))
              for i in (0, 5))
    h = match_features(f0, f1, ex.config)
    e = match_features(f0, f1, ex.config, K0=K, K1=K)
    assert h.model_type == "homography" and e.model_type == "essential"
    assert e.inliers.sum() > 1.5 * h.inliers.sum()


# --------------------------------------------------------------------------- case 15: odd yuv422

@pytest.mark.parametrize("enc", ["yuv422", "yuv422_yuy2"])
def test_odd_width_422_is_unsupported_not_a_cv2_error(enc):
    with pytest.raises(UnsupportedEncoding, match="even width"):
        decode_image(enc, 7, 5, 10, False, np.zeros(70, np.uint8))
    assert decode_image(enc, 7, 6, 12, False, np.zeros(84, np.uint8)).shape == (7, 6, 3)


def test_pipeline_logs_its_notes(caplog):
    ex = FeatureExtractor(FakeBackend(flat), GoodPointConfig(keypoint_threshold=0.5))
    with caplog.at_level(logging.WARNING, logger="goodpoint_ros.pipeline"):
        ex(np.full((64, 64), 1000, np.uint16))
        ex(np.full((64, 64), 1000, np.uint16))
    assert len([r for r in caplog.records if "10-bit" in r.getMessage()]) == 1


def test_a_failed_allocation_in_the_backend_is_a_memory_error_in_one_line():
    class Starved(FakeBackend):
        name = "onnxruntime"

        def infer(self, image):     # what ONNX Runtime raises when a buffer cannot be had
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to "
                               "allocate memory for requested buffer of size 2000000000")
    ex = FeatureExtractor(Starved(flat), GoodPointConfig(keypoint_threshold=0.5))
    with pytest.raises(MemoryError, match="ran out of memory for a 64x48") as err:
        ex(np.zeros((48, 64), np.uint8))
    assert "\n" not in str(err.value)
