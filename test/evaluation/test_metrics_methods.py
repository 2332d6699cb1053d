"""The compared methods: detection caps, the paper's matchers, and GoodPoint via a fake backend."""
import cv2
import numpy as np
import pytest

from conftest import SAMPLE, FakeBackend
from goodpoint_ros.core.config import GoodPointConfig
from goodpoint_ros.core.pipeline import FeatureExtractor
from goodpoint_ros.evaluation.methods import hamming_distances, l2_distances, make_method, parse_methods


@pytest.fixture(scope="module")
def image():
    return cv2.imread(str(SAMPLE / "1.png"), cv2.IMREAD_COLOR)


def test_hamming_distances_equal_opencv_norm():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (7, 32), dtype=np.uint8)
    b = rng.integers(0, 256, (5, 32), dtype=np.uint8)
    d = hamming_distances(a, b)
    ref = [[cv2.norm(a[i], b[j], cv2.NORM_HAMMING) for j in range(5)] for i in range(7)]
    np.testing.assert_array_equal(d, ref)


def test_l2_distances_equal_numpy_norm():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(6, 128)) * 50, rng.normal(size=(4, 128)) * 50
    ref = np.linalg.norm(a[:, None] - b[None], axis=2)
    np.testing.assert_allclose(l2_distances(a, b), ref, rtol=1e-4)


@pytest.mark.parametrize("name,dtype,dim", [("orb", np.uint8, 32), ("sift", np.float32, 128),
                                            ("akaze", np.uint8, 61)])
def test_classical_methods_cap_sort_and_self_match(image, name, dtype, dim):
    m = make_method(name, max_keypoints=150)
    f = m.detect(image)
    assert 50 <= len(f) <= 150
    assert f.descriptors.dtype == dtype and f.descriptors.shape == (len(f), dim)
    assert np.all(np.diff(f.scores) <= 0), "strongest first"
    assert f.image_size == (image.shape[1], image.shape[0])
    big = make_method(name, max_keypoints=0).detect(image)
    assert len(big) > len(f)
    # the kept ones are the strongest of the uncapped set
    assert f.scores.min() >= np.sort(big.scores)[::-1][len(f) - 1] - 1e-6
    matches = m.match(f, f)
    assert len(matches) >= 0.8 * len(f)
    assert np.mean(matches[:, 0] == matches[:, 1]) > 0.95


def test_ratio_test_is_applied_for_sift_not_orb():
    # two identical b-descriptors: the nearest and second nearest tie, so the
    # ratio test must reject the match while ORB's plain mutual NN keeps one.
    from goodpoint_ros.core.keypoints import Features
    d = np.zeros((1, 128), np.float32); d[0, 0] = 1
    f0 = Features(np.zeros((1, 2), np.float32), np.ones(1, np.float32), d, (10, 10))
    f1 = Features(np.zeros((2, 2), np.float32), np.ones(2, np.float32),
                  np.concatenate([d + 0.01, d + 0.01]), (10, 10))
    assert len(make_method("sift").match(f0, f1)) == 0
    b = np.zeros((1, 32), np.uint8)
    g0 = Features(np.zeros((1, 2), np.float32), np.ones(1, np.float32), b, (10, 10))
    g1 = Features(np.zeros((2, 2), np.float32), np.ones(2, np.float32), np.concatenate([b, b + 1]),
                  (10, 10))
    assert make_method("orb").match(g0, g1).tolist() == [[0, 0]]
    assert make_method("akaze").match(g0, g1).tolist() == [[0, 0]]   # 0 < 0.8 * 8


def test_empty_images_give_no_keypoints_and_no_matches():
    blank = np.full((64, 80), 128, np.uint8)
    for name in ("orb", "sift", "akaze"):
        m = make_method(name)
        f = m.detect(blank)
        assert len(f) == 0 and f.image_size == (80, 64)
        assert m.match(f, f).shape == (0, 2)


def peaks(points):
    def fn(h, w):
        prob = np.full((h, w), 1 / 64, np.float32)
        for i, (x, y) in enumerate(points):
            prob[y, x] = 0.9 - 0.01 * i
        return prob
    return fn


def test_goodpoint_method_uses_core_extractor_matcher_and_cap():
    pts = [(20, 20), (60, 30), (100, 50), (40, 70), (90, 90)]
    ex = FeatureExtractor(FakeBackend(peaks(pts)), GoodPointConfig(keypoint_threshold=0.5))
    m = make_method("goodpoint", max_keypoints=3, extractor=ex)
    f = m.detect(np.zeros((120, 128), np.uint8))
    assert f.keypoints.tolist() == [list(map(float, p)) for p in pts[:3]]
    assert m.config.keypoint_threshold == 0.5 and m.config.max_keypoints == 3
    assert m.match(f, f).tolist() == [[0, 0], [1, 1], [2, 2]] or \
        sorted(m.match(f, f).tolist()) == [[0, 0], [1, 1], [2, 2]]
    # θ_keypoint from the weights' metadata when not given (FakeBackend says 0.05)
    ex2 = FeatureExtractor(FakeBackend(peaks(pts)))
    m2 = make_method("goodpoint", max_keypoints=0, extractor=ex2)
    assert m2.config.keypoint_threshold == 0.05 and len(m2.detect(np.zeros((120, 128)))) == 5


def test_parse_methods_and_unknown_names():
    assert parse_methods("sift, orb,sift") == ("sift", "orb")
    with pytest.raises(ValueError, match="unknown method 'surf'"):
        parse_methods("orb,surf")
    with pytest.raises(ValueError):
        parse_methods(" , ")
    with pytest.raises(ValueError, match="unknown method"):
        make_method("brisk")



def _flip_offset(detect, gray: np.ndarray, axis: int, near_px: float = 1.0) -> float:
    """Mean systematic offset δ (px) of a detector's keypoints along ``axis``, by mirroring.

    A detector placing a corner at x − δ places the mirrored corner at (W − 1 − x) − δ in
    the mirrored image; mapped back that is x + δ: the two detections of one corner
    differ by −2δ, whatever the detector's noise.  ``detect``: gray → [N,2] positions.
    """
    pa = detect(gray)
    pb = detect(np.ascontiguousarray(cv2.flip(gray, 1 - axis))).copy()
    pb[:, axis] = gray.shape[1 - axis] - 1 - pb[:, axis]
    d = np.linalg.norm(pa[:, None] - pb[None], axis=2)
    j = d.argmin(1)
    near = d[np.arange(len(pa)), j] < near_px
    assert near.sum() > 50
    return float(np.mean(pa[near, axis] - pb[j[near], axis]) / -2.0)


@pytest.mark.parametrize("name", ["orb", "sift", "akaze"])
def test_classical_keypoints_sit_on_the_pixel_centres_of_the_image(image, name):
    """OpenCV maps SIFT's doubled octave back by x/2, off cv2.resize's pixel-centre
    convention ((x + 0.5)·s − 0.5): 0.25 px towards the bottom-right.  The methods
    compared carry no such offset."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    method = make_method(name, 0)
    for axis in (0, 1):
        assert abs(_flip_offset(lambda g: method.detect(g).keypoints, gray, axis)) < 0.1, \
            (name, axis)


def test_orb_coarse_levels_are_mapped_to_pixel_centres(image):
    """ORB's level-l keypoints, as OpenCV reports them (x·s, s = 1.2^l), sit (s − 1)/2 px
    towards the top-left: 0.5–1.3 px on levels 4–7.  A landmark seen on two levels is
    then mis-triangulated (mono VO: new ORB landmarks 4.6 % too close per keyframe on a
    generated bag); :func:`orb_pixel_centres` removes it."""
    from goodpoint_ros.evaluation.methods import ORB_BUDGET, orb_pixel_centres
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    orb = cv2.ORB_create(nfeatures=ORB_BUDGET)

    def coarse(g, fix):
        kps = [k for k in orb.detect(g, None) if k.octave >= 4]
        return (orb_pixel_centres(kps, orb) if fix
                else np.array([k.pt for k in kps], np.float32))
    for axis in (0, 1):
        # pairs within 2 px: these levels' keypoints lie on a 2–3.6 px grid
        assert _flip_offset(lambda g: coarse(g, False), gray, axis, 2.0) > 0.3   # OpenCV's
        assert abs(_flip_offset(lambda g: coarse(g, True), gray, axis, 2.0)) < 0.2
