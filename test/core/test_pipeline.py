"""FeatureExtractor: backend contract, padding, resize, odd sizes, original coordinates."""
import numpy as np
import pytest

from conftest import FakeBackend
from goodpoint_ros.backends import create_backend
from goodpoint_ros.core.config import GoodPointConfig
from goodpoint_ros.core.pipeline import FeatureExtractor


def dot_image(w, h, x, y):
    img = np.zeros((h, w), np.uint8)
    img[y, x] = 255
    return img


def prob_from_input(model_input_holder):
    """A fake network that 'detects' the brightest input pixel (as prob 0.9)."""
    def fn(h, w):
        img = model_input_holder["x"]
        prob = np.full((h, w), 1 / 64, np.float32)
        y, x = np.unravel_index(int(img.argmax()), img.shape)
        prob[y, x] = 0.9
        return prob
    return fn


class InputEchoBackend(FakeBackend):
    def __init__(self):
        self.holder = {}
        super().__init__(prob_from_input(self.holder))

    def infer(self, image):
        self.holder["x"] = image[0, 0]
        return super().infer(image)


@pytest.mark.parametrize("w,h,x,y", [(317, 241, 100, 200), (64, 48, 30, 20), (97, 33, 90, 10)])
def test_dot_found_at_its_original_pixel(w, h, x, y):
    ex = FeatureExtractor(InputEchoBackend(), GoodPointConfig(keypoint_threshold=0.5, border=4))
    f = ex(dot_image(w, h, x, y))
    assert f.keypoints.tolist() == [[x, y]]
    assert f.image_size == (w, h)
    shape = ex.backend.calls[-1]
    assert shape[2] % 8 == 0 and shape[3] % 8 == 0 and shape[2] >= h and shape[3] >= w


def test_resize_maps_back_to_original_pixels():
    # network runs at half size; the 2x2 block at (100..101, 60..61) is pixel (50, 30) there
    img = np.zeros((240, 320), np.uint8)
    img[60:62, 100:102] = 255
    ex = FeatureExtractor(InputEchoBackend(), GoodPointConfig(keypoint_threshold=0.5),
                          resize=(160, 120))
    f = ex(img)
    np.testing.assert_allclose(f.keypoints, [[100.5, 60.5]])
    assert f.image_size == (320, 240)


def test_scale_doubles_the_network_input_and_maps_back():
    # network sees 640x480; a bright 1-px dot at (101, 61) becomes a 2x2 blob there whose
    # argmax maps back to within half a pixel of the original pixel
    ex = FeatureExtractor(InputEchoBackend(), GoodPointConfig(keypoint_threshold=0.5,
                          subpixel="none"), scale=2.0)
    f = ex(dot_image(320, 240, 101, 61))
    assert ex.backend.calls[-1][2:] == (480, 640)
    assert f.image_size == (320, 240)
    assert np.abs(f.keypoints - [[101, 61]]).max() <= 0.5
    with pytest.raises(ValueError, match="not both"):
        FeatureExtractor(InputEchoBackend(), scale=2.0, resize=(64, 48))
    with pytest.raises(ValueError, match="scale must be"):
        FeatureExtractor(InputEchoBackend(), scale=0.0)


def test_upsample_below_doubles_only_small_frames_and_maps_back():
    cfg = GoodPointConfig(keypoint_threshold=0.5, subpixel="none", upsample_below=480)
    ex = FeatureExtractor(InputEchoBackend(), cfg)
    f = ex(dot_image(320, 240, 101, 61))                     # longer side 320 < 480: doubled
    assert ex.backend.calls[-1][2:] == (480, 640)
    assert f.image_size == (320, 240) and np.abs(f.keypoints - [[101, 61]]).max() <= 0.5
    f = ex(dot_image(480, 360, 101, 61))                     # 480 is not under 480
    assert ex.backend.calls[-1][2:] == (360, 480) and f.keypoints.tolist() == [[101, 61]]
    # an explicit scale or resize replaces the rule; 0 switches it off
    ex = FeatureExtractor(InputEchoBackend(), cfg, scale=1.0)
    ex(dot_image(320, 240, 101, 61))
    assert ex.backend.calls[-1][2:] == (240, 320)
    ex = FeatureExtractor(InputEchoBackend(), cfg, resize=(160, 120))
    ex(dot_image(320, 240, 101, 61))
    assert ex.backend.calls[-1][2:] == (120, 160)
    ex = FeatureExtractor(InputEchoBackend(), GoodPointConfig(keypoint_threshold=0.5,
                                                              upsample_below=0))
    ex(dot_image(320, 240, 101, 61))
    assert ex.backend.calls[-1][2:] == (240, 320)
    with pytest.raises(ValueError, match="upsample_below"):
        GoodPointConfig(upsample_below=-5).validate()


def test_upsample_below_unset_takes_the_weights_value():
    meta = {"detection": {"keypoint_threshold": 0.5, "nms_radius": 8, "upsample_below": 400}}
    backend = InputEchoBackend()
    backend.metadata = meta
    ex = FeatureExtractor(backend, GoodPointConfig(subpixel="none"))
    assert ex.config.upsample_below == 400
    ex(dot_image(320, 240, 101, 61))
    assert backend.calls[-1][2:] == (480, 640)
    assert GoodPointConfig().resolved({}).upsample_below == 0          # old weights: never
    assert GoodPointConfig(upsample_below=0).resolved(meta).upsample_below == 0


def test_upsample_below_gives_more_and_better_matched_keypoints_on_a_small_photo():
    # the reason for the rule (training/README.md round 6): on a 320x240 view the network's
    # 8x8 cells are coarse; doubled, more keypoints of a shifted view land within 1 px
    import cv2

    from conftest import REPO
    img = cv2.imread(str(sorted((REPO / "data" / "hpatches_v_churchill").glob("*.png"))[0]),
                     cv2.IMREAD_GRAYSCALE)
    img = cv2.resize(img, (320, 240), interpolation=cv2.INTER_AREA)
    H = np.array([[1.0, 0.0, 5.3], [0.0, 1.0, -3.7], [0.0, 0.0, 1.0]])
    warped = cv2.warpPerspective(img, H, (320, 240), flags=cv2.INTER_LINEAR)

    def repeated(upsample):
        ex = FeatureExtractor("torch", GoodPointConfig(upsample_below=upsample, pyramid_levels=1,
                                                       max_keypoints=None),
                              device="cpu", precision="fp32")
        a, b = ex(img), ex(warped)
        pa = a.keypoints + H[:2, 2]
        keep = (pa[:, 0] > 8) & (pa[:, 0] < 312) & (pa[:, 1] > 8) & (pa[:, 1] < 232)
        d = np.linalg.norm(pa[keep][:, None] - b.keypoints[None], axis=2).min(1)
        return int((d <= 1.0).sum())
    n1, n2 = repeated(0), repeated(480)
    assert n2 > 1.5 * n1, (n1, n2)


def test_scale_two_gives_more_and_finer_keypoints_on_a_real_photo():
    import cv2

    from conftest import REPO
    img = cv2.imread(str(sorted((REPO / "data" / "hpatches_v_churchill").glob("*.png"))[0]),
                     cv2.IMREAD_GRAYSCALE)
    img = cv2.resize(img, (320, 240), interpolation=cv2.INTER_AREA)
    cfg = GoodPointConfig(pyramid_levels=1)
    one = FeatureExtractor("onnxruntime", cfg, precision="fp32", scale=1.0)(img)
    two = FeatureExtractor("onnxruntime", cfg, precision="fp32", scale=2.0)(img)
    assert len(two) > 1.5 * len(one)
    assert two.image_size == (320, 240)
    assert (two.keypoints >= 0).all() and (two.keypoints[:, 0] < 320).all() \
        and (two.keypoints[:, 1] < 240).all()


def test_odd_size_shapes_and_dtypes_with_real_network():
    ex = FeatureExtractor("torch", GoodPointConfig(keypoint_threshold=0.0157, max_keypoints=50),
                          device="cpu")
    rng = np.random.default_rng(0)
    f = ex((rng.random((241, 317)) * 255).astype(np.uint8))
    assert f.image_size == (317, 241)
    assert f.keypoints.dtype == np.float32 and f.descriptors.dtype == np.float32
    assert f.descriptors.shape == (len(f), 256) and len(f) > 0
    np.testing.assert_allclose(np.linalg.norm(f.descriptors, axis=1), 1, atol=1e-5)
    assert (f.keypoints[:, 0] >= 4).all() and (f.keypoints[:, 0] < 317 - 4).all()
    assert (f.keypoints[:, 1] >= 4).all() and (f.keypoints[:, 1] < 241 - 4).all()
    assert ex.times.network > 0


def test_torch_backend_contract():
    b = create_backend("torch", device="cpu")
    prob, desc = b.infer(np.random.default_rng(0).random((1, 1, 48, 64), dtype=np.float32))
    assert prob.shape == (1, 48, 64) and desc.shape == (1, 256, 6, 8)
    assert prob.dtype == np.float32 and desc.dtype == np.float32
    np.testing.assert_allclose(prob.reshape(6, 8, 8, 8).sum(axis=(1, 3)), 1, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(desc, axis=1), 1, atol=1e-5)
    with pytest.raises(ValueError, match="multiples of 8"):
        b.infer(np.zeros((1, 1, 50, 64), np.float32))
    with pytest.raises(ValueError, match="float32"):
        b.infer(np.zeros((1, 1, 48, 64), np.float64))


def test_bf16_close_to_fp32():
    x = np.random.default_rng(1).random((1, 1, 64, 64), dtype=np.float32)
    p32, d32 = create_backend("torch", device="cpu").infer(x)
    p16, d16 = create_backend("torch", device="cpu", precision="bf16").infer(x)
    assert np.abs(p32 - p16).max() < 0.05
    assert (d32 * d16).sum(axis=1).mean() > 0.98


def test_unknown_backend_and_precision():
    with pytest.raises(ValueError, match="unknown backend"):
        create_backend("nope")
    from goodpoint_ros.backends import BackendUnavailable
    with pytest.raises(BackendUnavailable):
        create_backend("torch", device="cpu", precision="int4")


def test_huge_and_empty_images_rejected():
    ex = FeatureExtractor(InputEchoBackend(), GoodPointConfig(keypoint_threshold=0.5))
    with pytest.raises(ValueError, match="memory budget"):
        ex(np.zeros((9000, 9000), np.uint8))
    with pytest.raises(ValueError, match="empty"):
        ex(np.zeros((0, 10), np.uint8))


def test_set_config_validates_and_keeps_old_on_error():
    ex = FeatureExtractor(InputEchoBackend(), GoodPointConfig(keypoint_threshold=0.5))
    with pytest.raises(ValueError):
        ex.set_config(GoodPointConfig(keypoint_threshold=0.01))
    assert ex.config.keypoint_threshold == 0.5
    ex.set_config(GoodPointConfig())            # unset → from the backend's metadata
    assert ex.config.keypoint_threshold == 0.05


def test_the_nms_radius_recorded_in_the_weights_is_honoured_by_detect():
    """`goodpoint detect` without --nms, like eval and the node, uses the weights' radius
    (issue 10): two peaks 6 px apart survive a radius of 4, not one of 8."""
    import argparse

    from goodpoint_ros.cli.common import add_feature_args, config_from_args

    def two_peaks(h, w):
        prob = np.full((h, w), 1 / 64, np.float32)
        prob[30, 30], prob[30, 36] = 0.9, 0.8
        return prob
    p = argparse.ArgumentParser()
    add_feature_args(p)
    cfg = config_from_args(p.parse_args([]))
    assert cfg.nms_radius is None                              # unset: the weights decide
    counts = {}
    for radius in (4, 8):
        meta = {"detection": {"keypoint_threshold": 0.5, "nms_radius": radius}}
        ex = FeatureExtractor(FakeBackend(two_peaks, meta), cfg)
        assert ex.config.nms_radius == radius
        counts[radius] = len(ex(np.zeros((64, 64), np.uint8)))
    assert counts == {4: 2, 8: 1}
    explicit = config_from_args(p.parse_args(["--nms", "4"]))
    meta8 = {"detection": {"keypoint_threshold": 0.5, "nms_radius": 8}}
    assert FeatureExtractor(FakeBackend(two_peaks, meta8), explicit).config.nms_radius == 4


def test_pyramid_levels_find_a_blob_at_its_original_place_on_every_level():
    # A 6x6 bright block: the echo network "detects" its brightest pixel on each level;
    # every level's keypoint, mapped back, lands on the block (a level resized from the
    # wrong image or scaled by the wrong factor would miss it).
    img = np.zeros((240, 320), np.uint8)
    img[100:106, 200:206] = 255
    backend = InputEchoBackend()
    ex = FeatureExtractor(backend, GoodPointConfig(keypoint_threshold=0.5, pyramid_levels=3,
                                                   max_keypoints=None))
    f = ex(img)
    assert [tuple(c[2:]) for c in backend.calls] == [(240, 320), (176, 232), (120, 160)]
    assert len(f) == 3 and f.image_size == (320, 240)
    assert (np.abs(f.keypoints - [202.5, 102.5]) <= 3.5).all(), f.keypoints
    one = FeatureExtractor(InputEchoBackend(), GoodPointConfig(keypoint_threshold=0.5))(img)
    assert len(one) == 1                       # one level: the paper's single-scale detector


def test_pyramid_factor_sets_the_level_sizes_and_keypoints_still_land_on_the_blob():
    img = np.zeros((240, 320), np.uint8)
    img[100:106, 200:206] = 255
    backend = InputEchoBackend()
    cfg = GoodPointConfig(keypoint_threshold=0.5, pyramid_levels=3, pyramid_factor=2 ** -0.25,
                          max_keypoints=None)
    assert cfg.scales == pytest.approx((1.0, 0.8409, 0.7071), abs=1e-4)
    f = FeatureExtractor(backend, cfg)(img)
    assert [tuple(c[2:]) for c in backend.calls] == [(240, 320), (208, 272), (176, 232)]
    assert len(f) == 3 and (np.abs(f.keypoints - [202.5, 102.5]) <= 3.5).all(), f.keypoints
    with pytest.raises(ValueError, match="pyramid_factor"):
        GoodPointConfig(pyramid_factor=0.3).validate()


def test_pyramid_makes_keypoints_repeat_under_2x_zoom_with_real_network():
    # the same view at 2x zoom: keypoints of the zoomed image repeat in the original far
    # more often with a 3-level pyramid (the network alone has one receptive field)
    from pathlib import Path

    import cv2
    img = cv2.imread(str(Path(__file__).resolve().parents[2] / "data" / "hpatches_v_churchill"
                         / "1.png"), cv2.IMREAD_GRAYSCALE)
    img = cv2.resize(img, (480, 360), interpolation=cv2.INTER_AREA)
    zoom = cv2.resize(img[90:270, 120:360], (480, 360), interpolation=cv2.INTER_LINEAR)

    def repeat(levels, factor=None):
        ex = FeatureExtractor("torch", GoodPointConfig(pyramid_levels=levels, pyramid_factor=factor,
                                                       max_keypoints=None),
                              device="cpu", precision="fp32")
        a, b = ex(img), ex(zoom)
        back = (b.keypoints + 0.5) / 2 - 0.5 + [120, 90]          # zoomed → original pixels
        inside = (a.keypoints[:, 0] > 124) & (a.keypoints[:, 0] < 355) & \
                 (a.keypoints[:, 1] > 94) & (a.keypoints[:, 1] < 265)
        d = np.linalg.norm(a.keypoints[inside][:, None] - back[None], axis=2)
        return float((d.min(1) <= 3).mean())
    # both pyramids that span the 2x: 3 levels 1/sqrt(2) apart, 5 levels 2^-1/4 apart
    r1, r3, r5 = repeat(1), repeat(3, 2 ** -0.5), repeat(5, 2 ** -0.25)
    assert r3 > r1 + 0.1 and r5 > r1 + 0.1, (r1, r3, r5)
