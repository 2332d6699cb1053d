"""The shared post-processor: NMS, border, top-k, bucketing, sampling, conventions."""
import numpy as np
import pytest
import torch

from goodpoint_ros.core.config import GoodPointConfig
from goodpoint_ros.core.keypoints import (
    bucket,
    nms,
    pad_to_multiple,
    postprocess,
    refine_subpixel,
    sample_descriptors,
    scale_keypoints,
    select_keypoints,
    to_gray_float,
)


def cfg(**kw):
    base = dict(keypoint_threshold=0.1, nms_radius=4, border=4, max_keypoints=None)
    base.update(kw)
    return GoodPointConfig(**base).validate()


def test_threshold_must_exceed_flat_cell_score():
    with pytest.raises(ValueError, match="1/64"):
        GoodPointConfig(keypoint_threshold=1 / 64).validate()
    with pytest.raises(ValueError):
        GoodPointConfig(descriptor_threshold=3.0).validate()
    assert GoodPointConfig().resolved({"detection": {"keypoint_threshold": 0.03}}).keypoint_threshold == 0.03
    assert GoodPointConfig().resolved({}).keypoint_threshold == GoodPointConfig.DEFAULT_KEYPOINT_THRESHOLD


def test_peak_found_at_its_pixel():
    prob = np.zeros((48, 64), np.float32)
    prob[17, 29] = 0.9
    prob[30, 40] = 0.5
    kpts, scores = select_keypoints(prob, (64, 48), cfg())
    assert kpts.tolist() == [[29, 17], [40, 30]]          # (x, y), strongest first
    np.testing.assert_allclose(scores, [0.9, 0.5])


@pytest.mark.parametrize("radius", [1, 4, 8])
def test_nms_survivors_are_farther_apart_than_radius(radius):
    rng = np.random.default_rng(radius)
    prob = rng.random((80, 96)).astype(np.float32)
    prob[10:20, 10:20] = 1.0        # a saturated plateau: exact ties must still be thinned
    keep = nms(prob, radius)
    ys, xs = np.nonzero(keep)
    pts = np.stack([xs, ys], 1).astype(float)
    d = np.linalg.norm(pts[:, None] - pts[None], axis=2)
    np.fill_diagonal(d, np.inf)
    assert d.min() > radius
    assert keep[10:20, 10:20].sum() >= 1                 # the plateau keeps one survivor
    # every pixel is within the window of a survivor at least as strong
    assert keep.sum() > 0.5 * prob.size / (2 * radius + 1) ** 2


def test_nms_without_ties_keeps_exactly_the_window_maxima():
    # the tie-free shortcut (no rank pass) must agree with the definition, brute force
    rng = np.random.default_rng(7)
    prob = rng.random((30, 40)).astype(np.float32)
    prob[rng.random(prob.shape) < 0.5] = 0          # sparse, as after θ_keypoint
    r = 2
    padded = np.pad(prob, r)
    want = np.zeros_like(prob, bool)
    for y in range(30):
        for x in range(40):
            want[y, x] = prob[y, x] > 0 and prob[y, x] == padded[y:y + 2 * r + 1, x:x + 2 * r + 1].max()
    np.testing.assert_array_equal(nms(prob, r), want)


def test_border_and_padding_removed():
    prob = np.zeros((40, 48), np.float32)   # padded map of a 45x37 image
    prob[2, 20] = prob[20, 2] = 0.9          # inside the 4 px border
    prob[20, 42] = 0.9                       # x=42 is within 4 px of the right edge (w=45)
    prob[38, 20] = 0.9                       # in the padding (h=37)
    prob[20, 20] = 0.8
    kpts, _ = select_keypoints(prob, (45, 37), cfg())
    assert kpts.tolist() == [[20, 20]]


def test_top_k_keeps_strongest():
    prob = np.zeros((64, 64), np.float32)
    for i, (y, x) in enumerate([(10, 10), (10, 40), (40, 10), (40, 40)]):
        prob[y, x] = 0.2 + 0.1 * i
    kpts, scores = select_keypoints(prob, (64, 64), cfg(max_keypoints=2))
    assert kpts.tolist() == [[40, 40], [10, 40]]
    assert np.all(np.diff(scores) <= 0)


def test_bucketing_caps_each_cell():
    rng = np.random.default_rng(0)
    kpts = rng.uniform(0, 99, (500, 2)).astype(np.float32)   # pixel centres of a 100x100 image
    scores = rng.random(500).astype(np.float32)
    idx = bucket(kpts, scores, (100, 100), (4, 4), 3)
    # pixel x spans [x - 0.5, x + 0.5): its cell is floor((x + 0.5) / cell_width)
    cells = ((kpts[idx] + 0.5) // 25).astype(int)
    _, counts = np.unique(cells[:, 1] * 4 + cells[:, 0], return_counts=True)
    assert len(counts) == 16 and counts.max() == 3
    # the kept ones are the strongest of their cell
    c_all = ((kpts + 0.5) // 25).astype(int) @ np.array([1, 4])
    for c in range(16):
        members = np.nonzero(c_all == c)[0]
        best = members[np.argsort(-scores[members])[:3]]
        assert set(best) == set(idx[c_all[idx] == c])


def test_sample_descriptors_at_cell_centres_and_between():
    rng = np.random.default_rng(0)
    desc = rng.standard_normal((1, 8, 3, 4)).astype(np.float32)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    # cell (i=1, j=2) has its centre at pixel (x, y) = (8*2+3.5, 8*1+3.5)
    out = sample_descriptors(desc, np.array([[[19.5, 11.5]]], np.float32))
    np.testing.assert_allclose(out[0, 0], desc[0, :, 1, 2], atol=1e-6)
    # halfway between two centres: normalised mean
    mid = sample_descriptors(desc, np.array([[[23.5, 11.5]]], np.float32))[0, 0]
    expect = desc[0, :, 1, 2] + desc[0, :, 1, 3]
    np.testing.assert_allclose(mid, expect / np.linalg.norm(expect), atol=1e-6)
    # outside the outermost centres: clamp to the edge cell
    edge = sample_descriptors(desc, np.array([[[0.0, 0.0]]], np.float32))[0, 0]
    np.testing.assert_allclose(edge, desc[0, :, 0, 0], atol=1e-6)


def test_sample_descriptors_numpy_and_torch_agree_and_give_gradients():
    rng = np.random.default_rng(1)
    desc = rng.standard_normal((2, 16, 5, 7)).astype(np.float32)
    kpts = rng.uniform(-3, 60, (2, 9, 2)).astype(np.float32)
    out_np = sample_descriptors(desc, kpts)
    d_t = torch.from_numpy(desc).requires_grad_()
    out_t = sample_descriptors(d_t, torch.from_numpy(kpts))
    np.testing.assert_allclose(out_t.detach().numpy(), out_np, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out_np, axis=-1), 1, atol=1e-5)
    out_t[..., 0].sum().backward()
    assert d_t.grad is not None and d_t.grad.abs().sum() > 0


def test_scale_keypoints_pixel_centre_convention():
    # x' = (x + 0.5) s − 0.5: the centre of the first 2x2 block (x = 0.5) is pixel 0 at half size
    k = np.array([[0.5, 0.5], [3.5, 1.5]], np.float32)
    np.testing.assert_allclose(scale_keypoints(k, 0.5), [[0, 0], [1.5, 0.5]])
    back = scale_keypoints(scale_keypoints(k, 0.5), 2.0)
    np.testing.assert_allclose(back, k, atol=1e-6)


def test_to_gray_float_scalings():
    assert to_gray_float(np.full((4, 4), 255, np.uint8)).max() == pytest.approx(1.0)
    assert to_gray_float(np.full((4, 4), 65535, np.uint16)).max() == pytest.approx(1.0)
    f = to_gray_float(np.array([[np.nan, 2.0], [-1.0, 0.25]], np.float32))
    np.testing.assert_allclose(f, [[0, 1], [0, 0.25]])
    bgr = np.zeros((4, 4, 3), np.uint8)
    bgr[..., 2] = 255                       # pure red in BGR order
    assert to_gray_float(bgr)[0, 0] == pytest.approx(0.299, abs=0.01)
    with pytest.raises(ValueError, match="empty"):
        to_gray_float(np.zeros((0, 5), np.uint8))
    with pytest.raises(ValueError, match="channels"):
        to_gray_float(np.zeros((4, 4, 2), np.uint8))


def test_pad_to_multiple_replicates_edges():
    img = np.arange(5 * 9, dtype=np.float32).reshape(5, 9)
    p = pad_to_multiple(img)
    assert p.shape == (8, 16)
    np.testing.assert_array_equal(p[:5, :9], img)
    np.testing.assert_array_equal(p[7, :9], img[4])


def test_postprocess_empty_and_shapes():
    prob = np.full((1, 32, 32), 1 / 64, np.float32)
    desc = np.ones((1, 256, 4, 4), np.float32) / 16
    f = postprocess(prob, desc, (32, 32), cfg())
    assert len(f) == 0 and f.descriptors.shape == (0, 256)
    prob[0, 16, 16] = 0.5
    f = postprocess(prob, desc, (32, 32), cfg())
    assert f.keypoints.shape == (1, 2) and f.descriptors.shape == (1, 256)
    assert f.keypoints.dtype == np.float32 and f.descriptors.dtype == np.float32


def _blob(h, w, cx, cy, sigma=1.2):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma ** 2)).astype(np.float32)


@pytest.mark.parametrize("mode,tol", [("softargmax", 0.12), ("quadratic", 0.12)])
def test_subpixel_recovers_an_off_grid_peak(mode, tol):
    rng = np.random.default_rng(3)
    for _ in range(20):
        cx, cy = 20 + rng.uniform(-0.45, 0.45), 15 + rng.uniform(-0.45, 0.45)
        prob = 0.9 * _blob(32, 40, cx, cy)
        kpts, _ = select_keypoints(prob, (40, 32), cfg(subpixel=mode))
        whole, _ = select_keypoints(prob, (40, 32), cfg(subpixel="none"))
        assert np.abs(kpts[0] - [cx, cy]).max() < tol
        assert whole[0].tolist() == [20, 15]               # NMS peak itself stays on the grid


def test_subpixel_keeps_a_symmetric_peak_and_stays_in_its_window():
    prob = np.zeros((16, 16), np.float32)
    prob[8, 8] = 0.7
    np.testing.assert_allclose(refine_subpixel(prob, np.array([[8, 8]], np.float32)), [[8, 8]])
    prob[8, 9] = prob[8, 10] = 0.7                          # a plateau to the right
    out = refine_subpixel(prob, np.array([[8, 8]], np.float32), "softargmax", radius=2)
    assert 8 < out[0, 0] <= 10 and out[0, 1] == 8
    out = refine_subpixel(prob, np.array([[0, 0]], np.float32), "softargmax")   # edge: no crash
    assert np.isfinite(out).all()
    with pytest.raises(ValueError, match="subpixel"):
        GoodPointConfig(subpixel="bicubic").validate()


def test_subpixel_improves_one_pixel_precision_on_a_real_pair(sample_pair):
    """Bundled weights on a real photo warped by an exact homography (5°, ×1.1, shift):
    more matches correct to 1 px than with whole-pixel keypoints."""
    import cv2

    from goodpoint_ros.core.matching import match_descriptors
    from goodpoint_ros.core.pipeline import FeatureExtractor
    img0 = sample_pair[0]
    h, w = img0.shape
    H = np.vstack([cv2.getRotationMatrix2D((w / 2, h / 2), 5.0, 1.1), [0, 0, 1]])
    H[:2, 2] += (3.3, -2.7)
    img1 = cv2.warpPerspective(img0, H, (w, h), flags=cv2.INTER_LINEAR)

    def correct_at_1px(mode):
        ex = FeatureExtractor(config=GoodPointConfig(subpixel=mode), backend="onnxruntime")
        f0, f1 = ex(img0), ex(img1)
        m = match_descriptors(f0.descriptors, f1.descriptors, ex.config)[0]
        w0 = cv2.perspectiveTransform(f0.keypoints[m[:, 0]][None].astype(np.float64), H)[0]
        err = np.linalg.norm(w0 - f1.keypoints[m[:, 1]], axis=1)
        return (err <= 1.0).mean()

    assert correct_at_1px("softargmax") > correct_at_1px("none") + 0.03
