"""Unit tests of the training module: homographies, noise, data, targets, losses, loop.

Every case is small and hand-made so the expected answer is known; the whole
file runs in a few seconds on 2 CPU cores.
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from goodpoint_training.config import TrainConfig, config_from_dict, load_config, merge, validate  # noqa: E402
from goodpoint_training.data import PairBatches, find_images, load_images, read_split  # noqa: E402
from goodpoint_training.guard import DuplicateGuard, thumbnail  # noqa: E402
from goodpoint_training.homography import (  # noqa: E402
    HomographyConfig,
    apply_homography,
    corners,
    rotation_scale_about,
    sample_homography,
)
from goodpoint_training.losses import (  # noqa: E402
    bilinear_lookup,
    descriptor_losses,
    heatmap_difference,
    heatmaps_loss,
    keypoints_loss,
)
from goodpoint_training.noise import NoiseConfig, augment  # noqa: E402
from goodpoint_training.targets import cell_maxima, estimate_targets, warp_points  # noqa: E402
from goodpoint_training.trainer import lr_factor  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "hpatches_v_churchill"


def textured(size=64, seed=0):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), 2)
    return (img - img.min()) / (img.max() - img.min())


# --------------------------------------------------------------------------- homographies

def test_rotation_about_centre_maps_corner_where_expected():
    H = rotation_scale_about((10.0, 10.0), math.pi / 2, 2.0)
    # (20, 10) is 10 px right of the centre → rotated 90° and doubled: 20 px below it.
    np.testing.assert_allclose(apply_homography(H, [[20, 10], [10, 10]]), [[10, 30], [10, 10]],
                               atol=1e-9)


def test_zero_ranges_give_identity_and_shifts_stay_in_range():
    rng = np.random.default_rng(1)
    ident = sample_homography(rng, (128, 128), HomographyConfig(0, 0, 0, (1, 1)))
    np.testing.assert_allclose(ident, np.eye(3), atol=1e-6)
    cfg = HomographyConfig(corner_shift=14, perspective_shift=0, rotation=0, scale=(1, 1))
    for _ in range(20):
        H = sample_homography(rng, (256, 256), cfg)
        moved = apply_homography(H, corners((256, 256))) - corners((256, 256))
        assert np.abs(moved).max() <= 14 + 1e-4          # ±14 px per corner (§5.2)
        assert np.abs(moved).max() > 0.1


def test_homography_composed_with_inverse_is_identity_and_scales_with_crop():
    rng = np.random.default_rng(2)
    cfg = HomographyConfig(rotation=0.8, scale=(0.8, 1.3))
    pts = rng.uniform(0, 128, (50, 2))
    for _ in range(10):
        H = sample_homography(rng, (128, 128), cfg)
        back = apply_homography(np.linalg.inv(H), apply_homography(H, pts))
        np.testing.assert_allclose(back, pts, atol=1e-6)
    # the same draw on a crop twice as large moves the corners twice as far
    small = sample_homography(np.random.default_rng(5), (128, 128),
                              HomographyConfig(rotation=0, scale=(1, 1)))
    big = sample_homography(np.random.default_rng(5), (256, 256),
                            HomographyConfig(rotation=0, scale=(1, 1)))
    d_small = apply_homography(small, corners((128, 128))) - corners((128, 128))
    d_big = apply_homography(big, corners((256, 256))) - corners((256, 256))
    np.testing.assert_allclose(d_big, 2 * d_small, atol=1e-3)


# --------------------------------------------------------------------------- noise

def test_noise_keeps_range_and_is_deterministic():
    img = textured(64)
    a = augment(img, np.random.default_rng(3))
    b = augment(img, np.random.default_rng(3))
    assert a.shape == img.shape and a.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 1
    np.testing.assert_array_equal(a, b)
    outs = [augment(img, np.random.default_rng(s)) for s in range(8)]
    assert any(np.abs(o - img).mean() > 1e-3 for o in outs)      # filters do act


def test_ruinous_filter_is_undone():
    img = textured(64)
    # contrast ×0.01 would leave 0.01% of the variance: below 10% → undone
    cfg = NoiseConfig(p_skip=0.0, gaussian_sigma=0.0, brightness=0.0, shade_transparency=(0, 0),
                      salt_pepper=0.0, motion_blur_max_kernel=1, contrast=(0.01, 0.0100001))
    out = augment(img, np.random.default_rng(0), cfg)
    assert out.var() >= 0.1 * img.var()
    # the same chain with a harmless contrast is applied
    cfg2 = NoiseConfig(p_skip=0.0, gaussian_sigma=0.0, brightness=0.0, shade_transparency=(0, 0),
                       salt_pepper=0.0, motion_blur_max_kernel=1, contrast=(0.5, 0.5000001))
    out2 = augment(img, np.random.default_rng(0), cfg2)
    assert out2.var() < 0.3 * img.var()


# --------------------------------------------------------------------------- data

def test_folder_scan_skips_bad_images_with_counts(tmp_path):
    (tmp_path / "sub").mkdir()
    cv2.imwrite(str(tmp_path / "a.png"), (textured(80) * 255).astype(np.uint8))
    cv2.imwrite(str(tmp_path / "sub" / "b.jpg"), (textured(90, 1) * 255).astype(np.uint8))
    cv2.imwrite(str(tmp_path / "tiny.png"), np.zeros((10, 10), np.uint8))
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("x")
    paths = find_images(tmp_path)
    assert {p.name for p in paths} == {"a.png", "b.jpg", "tiny.png", "broken.jpg"}
    imgs, rep = load_images(paths, min_size=32, exclude_names=["b.jpg"])
    assert [p.name for p in rep.kept] == ["a.png"]
    assert len(rep.unreadable) == 1 and len(rep.tiny) == 1 and len(rep.held_out) == 1
    assert imgs[0].dtype == np.uint8 and imgs[0].shape == (80, 80)


def test_pair_batches_are_deterministic_and_related_by_H():
    img = cv2.imread(str(SAMPLE / "1.png"), cv2.IMREAD_GRAYSCALE)
    ds = PairBatches([img], crop=64, batch_size=2, noise=None,
                     homography=HomographyConfig(rotation=0.5, scale=(0.8, 1.2)), seed=4)
    b1, b2 = ds.batch(7), ds.batch(7)
    np.testing.assert_array_equal(b1["image"], b2["image"])
    assert not np.array_equal(ds.batch(8)["H"], b1["H"])
    other_rank = PairBatches([img], 64, 2, noise=None, seed=4, rank=1).batch(7)
    assert not np.array_equal(other_rank["image"], b1["image"])
    assert b1["image"].shape == (2, 1, 64, 64) and b1["mask"].shape == (2, 64, 64)
    # content at p in I equals content at H·p in I_h
    H = torch.from_numpy(b1["H"])
    I = torch.from_numpy(b1["image"][:, 0])
    Ih = torch.from_numpy(b1["image_h"][:, 0])
    pts = torch.rand(2, 300, 2) * 63
    q = warp_points(H, pts)
    ok = ((q >= 2) & (q <= 61)).all(-1)
    diff = (bilinear_lookup(I, pts) - bilinear_lookup(Ih, q)).abs()[ok].mean()
    shuffled = (bilinear_lookup(I, pts) - bilinear_lookup(Ih, q.roll(1, 1))).abs()[ok].mean()
    assert diff < 0.02 and shuffled > 3 * diff


def pair_zoom_and_angle(H, size):
    """Relative zoom and rotation (rad) of H about the image centre, from a small cross."""
    c = np.array([(size[0] - 1) / 2, (size[1] - 1) / 2])
    pts = np.array([c, c + [1.0, 0.0], c + [0.0, 1.0]])
    q = apply_homography(H, pts)
    ex, ey = q[1] - q[0], q[2] - q[0]
    return math.sqrt(abs(ex[0] * ey[1] - ex[1] * ey[0])), math.atan2(ex[1], ex[0])


def test_wide_fraction_mixes_wide_batches_and_zero_keeps_the_old_stream():
    img = cv2.imread(str(SAMPLE / "1.png"), cv2.IMREAD_GRAYSCALE)
    mild = HomographyConfig(rotation=0.0, scale=(1.0, 1.0), corner_shift=0, perspective_shift=0)
    wide = HomographyConfig(rotation=0.45, scale=(0.6, 1.6), corner_shift=0, perspective_shift=0)
    plain = PairBatches([img], 64, 1, mild, noise=None, seed=3)
    off = PairBatches([img], 64, 1, mild, noise=None, seed=3, wide=wide, wide_fraction=0.0)
    np.testing.assert_array_equal(plain.batch(5)["image"], off.batch(5)["image"])
    mixed = PairBatches([img], 64, 1, mild, noise=None, seed=3, wide=wide, wide_fraction=0.5)
    moved = [not np.allclose(mixed.batch(i)["H"], np.eye(3), atol=1e-6) for i in range(200)]
    assert 0.35 < np.mean(moved) < 0.65          # about half the batches are wide
    with pytest.raises(ValueError, match="wide_fraction"):
        validate(merge(TrainConfig(), {"wide_fraction": 1.5}))


def test_validation_wide_tier_has_the_rotation_and_zoom_it_names():
    from goodpoint_training.validation import KINDS, WIDE_ROTATION, WIDE_ZOOM, make_pair
    img = cv2.imread(str(SAMPLE / "1.png"), cv2.IMREAD_GRAYSCALE)
    for i in range(12):
        p = make_pair(img, i, kind="wide")
        zoom, angle = pair_zoom_and_angle(p.H, (320, 240))
        z = max(zoom, 1 / zoom)
        # the perspective jitter moves the centre's local zoom / angle a little
        assert WIDE_ZOOM[0] * 0.85 < z < WIDE_ZOOM[1] * 1.15, z
        assert WIDE_ROTATION[0] - 0.12 < abs(angle) < WIDE_ROTATION[1] + 0.12, angle
        np.testing.assert_array_equal(make_pair(img, i, kind="wide").H, p.H)   # fixed
    assert [make_pair(img, i).kind for i in range(2)] == ["mild", "strong"]
    assert set(KINDS) == {"mild", "strong", "wide"}
    with pytest.raises(ValueError, match="kind"):
        make_pair(img, 0, kind="huge")


def test_duplicate_guard_flags_copies_not_other_images():
    a = (textured(100, 0) * 255).astype(np.uint8)
    b = (textured(100, 9) * 255).astype(np.uint8)
    guard = DuplicateGuard(thumbnail(a)[None])
    noisy = np.clip(a.astype(np.int16) + np.random.default_rng(0).integers(-8, 9, a.shape), 0, 255)
    assert guard.is_duplicate(cv2.resize(noisy.astype(np.uint8), (150, 150)))
    assert not guard.is_duplicate(b)
    _, rep = load_images([SAMPLE / "1.png"], guard=DuplicateGuard(
        thumbnail(cv2.imread(str(SAMPLE / "1.png"), cv2.IMREAD_GRAYSCALE))[None]))
    assert len(rep.duplicates) == 1 and not rep.kept


def test_validation_split_is_excluded_from_training_list():
    names = read_split()
    assert len(names) == 16 and len(set(names)) == 16


# --------------------------------------------------------------------------- targets

def peaks_map(points, size=64, sigma=1.0):
    """A confidence-like map with Gaussian peaks at (x, y) points → float32 [H,W]."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    m = np.full((size, size), 1e-3, np.float32)
    for x, y in points:
        m += np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma ** 2))
    return m


def test_cell_maxima_returns_one_max_per_cell():
    m = np.zeros((64, 64), np.float32)
    m[5, 7] = 1.0
    m[40, 50] = 0.5
    pts, scores = cell_maxima(torch.from_numpy(m)[None], 32)
    got = {tuple(p) for p, s in zip(pts[0].tolist(), scores[0].tolist()) if s > 0}
    assert got == {(7.0, 5.0), (50.0, 40.0)}
    assert pts.shape == (1, 4, 2)


def unit_desc(b, c, h, w, seed=0):
    d = torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.normalize(d, dim=1)


def test_targets_under_translation_are_the_peaks():
    # peaks in I; I_h is I shifted by one descriptor cell (+8, +8), descriptors
    # shifted with it: every peak is a target at its true position.
    peaks = [(10, 12), (37, 14), (13, 37), (36, 38)]
    P = torch.from_numpy(peaks_map(peaks))[None]
    H = torch.tensor([[1, 0, 8], [0, 1, 8], [0, 0, 1]], dtype=torch.float32)
    P_h = torch.from_numpy(peaks_map([(x + 8, y + 8) for x, y in peaks]))[None]
    D = unit_desc(1, 16, 8, 8)
    D_h = D.roll((1, 1), dims=(2, 3))
    mask = torch.ones(1, 64, 64, dtype=torch.bool)
    t = estimate_targets(P, P_h, D, D_h, H, mask, mask, theta_dist=4.0)
    got = sorted(map(tuple, t.target[t.good].round().tolist()))
    assert got == sorted((float(x), float(y)) for x, y in peaks)
    np.testing.assert_allclose(t.target_h[t.good], warp_points(H, t.target)[t.good], atol=1e-4)


def test_targets_reject_far_or_descriptor_disagreeing_matches():
    peaks = [(10, 12), (37, 14), (13, 37), (36, 38)]
    P = torch.from_numpy(peaks_map(peaks, sigma=0.5))[None]
    eye = torch.eye(3)
    mask = torch.ones(1, 64, 64, dtype=torch.bool)
    D = unit_desc(1, 16, 8, 8)
    # I_h peaks 6 px away (> θ_dist = 4): no target even with equal descriptors
    far = torch.from_numpy(peaks_map([(x + 6, y) for x, y in peaks], sigma=0.5))[None]
    assert estimate_targets(P, far, D, D, eye, mask, mask).good.sum() == 0
    # 2 px away: targets at the midpoints
    near = torch.from_numpy(peaks_map([(x + 2, y) for x, y in peaks], sigma=0.5))[None]
    t_near = estimate_targets(P, near, D, D, eye, mask, mask)
    assert t_near.good.sum() == 4
    np.testing.assert_allclose(t_near.target_h[t_near.good][:, 0] - t_near.K[t_near.good][:, 0], 1.0)
    # same peaks but unrelated descriptors in I_h: descriptor NN disagrees for some
    t = estimate_targets(P, P, D, unit_desc(1, 16, 8, 8, seed=5), eye, mask, mask)
    t_same = estimate_targets(P, P, D, D, eye, mask, mask)
    assert t_same.good.sum() == 4 and t.good.sum() < 4
    # masked-out I_h: nothing valid
    assert estimate_targets(P, P, D, D, eye, mask, torch.zeros_like(mask)).good.sum() == 0


# --------------------------------------------------------------------------- losses

def test_keypoints_loss_is_nll_at_targets():
    P = torch.full((1, 16, 16), 0.25)
    P[0, 5, 6] = 0.5
    t = estimate_targets(P, P, unit_desc(1, 8, 2, 2), unit_desc(1, 8, 2, 2), torch.eye(3),
                         torch.ones(1, 16, 16, dtype=torch.bool),
                         torch.ones(1, 16, 16, dtype=torch.bool), cell_k=16, cell_kh=16)
    assert t.good.sum() == 1
    np.testing.assert_allclose(float(keypoints_loss(P, P, t)), -math.log(0.5), rtol=1e-5)


def test_heatmap_loss_zero_for_exact_warp_and_positive_otherwise():
    size = 64
    H = np.array([[0.95, 0.08, 3.0], [-0.06, 1.02, 2.0], [1e-4, -2e-4, 1.0]])
    # a smooth continuous map f and its exact warp g(x) = f(H⁻¹x), sampled analytically
    def f(x, y):
        return 0.5 + 0.3 * np.sin(x / 7.0) * np.cos(y / 9.0)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    P = f(xs, ys)
    src = apply_homography(np.linalg.inv(H), np.stack([xs.ravel(), ys.ravel()], 1))
    P_h = f(src[:, 0], src[:, 1]).reshape(size, size)
    Pt = torch.from_numpy(P).float()[None]
    Pht = torch.from_numpy(P_h).float()[None]
    Ht = torch.from_numpy(H).float()
    mask = torch.ones(1, size, size, dtype=torch.bool)
    exact = float(heatmaps_loss(Pt, Pht, Ht, mask, mask))
    wrong = float(heatmaps_loss(Pt, Pht.flip(-1), Ht, mask, mask))
    assert exact < 1e-3 * wrong and wrong > 1.0
    # the mask matters: differences only outside it are ignored
    bad = Pht.clone()
    bad[:, :, :20] = 0
    m_h = mask.clone()
    m_h[:, :, :24] = False
    assert float(heatmap_difference(Pt, bad, Ht, mask, m_h)) < 1e-5
    assert float(heatmap_difference(Pt, bad, Ht, mask, mask)) > 1e-3


def hand_targets(D, D_h, K, K_h, K_proj=None):
    """Targets with chosen points and identity H (for descriptor-loss cases)."""
    from goodpoint_training.targets import Targets
    K_proj = K if K_proj is None else K_proj
    dist = torch.cdist(K_proj, K_h)
    dg, ig = dist.min(2)
    sim = (torch.nn.functional.normalize(D, dim=-1) @
           torch.nn.functional.normalize(D_h, dim=-1).transpose(1, 2))
    idd = sim.argmax(2)
    valid = torch.ones(K.shape[:2], dtype=torch.bool)
    return Targets(K, K_proj, valid, K_h, torch.ones(K_h.shape[:2], dtype=torch.bool), ig, dg,
                   idd, valid & (ig == idd) & (dg < 4), K, K_proj)


def test_descriptor_losses_on_hand_made_cases():
    # 4×4 descriptor map (32×32 image); points at cell centres so sampling is exact
    centres = torch.tensor([[[3.5, 3.5], [27.5, 3.5], [3.5, 27.5], [27.5, 27.5]]])
    desc = torch.zeros(1, 4, 4, 4)
    for k, (i, j) in enumerate([(0, 0), (0, 3), (3, 0), (3, 3)]):
        desc[0, k, i, j] = 1.0           # orthogonal unit descriptors at the 4 points
    desc[:, :, 1:3, :] = 0.5             # (not sampled)
    t = hand_targets(None if False else torch.eye(4)[None], torch.eye(4)[None], centres, centres)
    L = descriptor_losses(desc, desc, t)
    assert float(L["gt"]) == pytest.approx(0.0, abs=1e-6)          # identical descriptors
    assert float(L["random"]) == pytest.approx(0.0, abs=1e-6)      # orthogonal partners
    assert t.good.all()
    # swap two descriptors in I_h: descriptor NN disagrees, partners are > 7 px away
    desc_h = desc.clone()
    desc_h[0, :, 0, 0], desc_h[0, :, 0, 3] = desc[0, :, 0, 3].clone(), desc[0, :, 0, 0].clone()
    sim_src = torch.eye(4)[None]
    t2 = hand_targets(sim_src, sim_src[:, [1, 0, 2, 3]], centres, centres)
    L2 = descriptor_losses(desc, desc_h, t2)
    assert float(L2["wrong"]) == pytest.approx(1.0, abs=1e-5)      # similarity of the wrong pair
    assert float(L2["gt"]) == pytest.approx(0.5, abs=1e-5)         # 2 of 4 geometric pairs differ


def test_losses_give_gradients_to_both_heads():
    from goodpoint_ros.core.model import GoodPointNet
    from goodpoint_training.config import LossConfig
    from goodpoint_training.losses import total_loss
    torch.manual_seed(0)
    net = GoodPointNet()
    img = torch.from_numpy(textured(64))[None, None].repeat(2, 1, 1, 1)
    out = net(torch.cat([img, img]))
    o = {"prob": out["prob"][:2], "desc": out["desc"][:2]}
    oh = {"prob": out["prob"][2:], "desc": out["desc"][2:]}
    mask = torch.ones(2, 64, 64, dtype=torch.bool)
    t = estimate_targets(o["prob"], oh["prob"], o["desc"], oh["desc"], torch.eye(3), mask, mask)
    loss, terms = total_loss(o, oh, t, torch.eye(3), mask, mask, LossConfig())
    loss.backward()
    assert math.isfinite(float(loss.detach())) and terms["heatmaps"] == pytest.approx(0.0, abs=1e-6)
    assert net.det_b[0].weight.grad.abs().sum() > 0
    assert net.desc_b.weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------- config & loop

def test_config_yaml_round_trip_and_errors(tmp_path):
    cfg = merge(TrainConfig(), {"crop": 128, "homography.rotation": 0.8,
                                "homography.scale": (0.8, 1.3)})
    p = tmp_path / "c.yaml"
    p.write_text(cfg.to_yaml())
    back = load_config(p)
    assert back == cfg and back.homography.scale == (0.8, 1.3)
    with pytest.raises(ValueError, match="unknown"):
        config_from_dict({"crpo": 3})
    with pytest.raises(ValueError, match="crop"):
        validate(merge(cfg, {"crop": 100}))
    p.write_text("[1, 2")
    with pytest.raises(ValueError, match="YAML"):
        load_config(p)


def test_lr_schedule_constant_then_exponential():
    assert lr_factor(0, 10, 10, 0.1) == 1.0 and lr_factor(9, 10, 10, 0.1) == 1.0
    assert lr_factor(15, 10, 10, 0.1) == pytest.approx(0.1 ** 0.5)
    assert lr_factor(20, 10, 10, 0.1) == pytest.approx(0.1)
    assert lr_factor(99, 10, 10, 0.1) == pytest.approx(0.1)


def tiny_run_config(tmp_path, images, **kw):
    base = dict(images=str(images), out=str(tmp_path / "run"), crop=32, batch_size=2,
                precision="fp32", workers=0, steps_per_epoch=2, constant_epochs=1,
                decay_epochs=1, tensorboard=False, guard_duplicates=False, validate_every=0,
                checkpoint_steps=1, threads=2)
    base.update(kw)
    return validate(config_from_dict(base))


def test_resume_continues_exactly(tmp_path):
    from goodpoint_training import trainer
    from goodpoint_training.checkpoint import load_checkpoint
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for s in range(3):
        cv2.imwrite(str(imgs / f"{s}.png"), (textured(48, s) * 255).astype(np.uint8))
    # uninterrupted: 4 steps
    full = trainer.run(tiny_run_config(tmp_path / "a", imgs, max_steps=4))
    assert full["step"] == 4
    ref = load_checkpoint(tmp_path / "a" / "run" / "last.ckpt")
    # interrupted after 2 steps, then resumed to 4
    trainer.run(tiny_run_config(tmp_path / "b", imgs, max_steps=2))
    mid = load_checkpoint(tmp_path / "b" / "run" / "last.ckpt")
    assert mid["step"] == 2
    trainer.run(tiny_run_config(tmp_path / "b", imgs, max_steps=4), resume=True)
    got = load_checkpoint(tmp_path / "b" / "run" / "last.ckpt")
    assert got["step"] == 4
    for k, v in ref["model"].items():
        assert torch.equal(v, got["model"][k]), k
    assert not torch.equal(mid["model"]["desc_b.weight"], got["model"]["desc_b.weight"])
    assert got["scheduler"]["last_epoch"] == ref["scheduler"]["last_epoch"]
    assert (tmp_path / "b" / "run" / "config.yaml").is_file()


def test_export_weights_writes_core_format(tmp_path):
    from goodpoint_ros.core.weights import load_model
    from goodpoint_training import trainer
    from goodpoint_training.release import export_weights
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    cv2.imwrite(str(imgs / "a.png"), (textured(48) * 255).astype(np.uint8))
    trainer.run(tiny_run_config(tmp_path, imgs, max_steps=1))
    out = tmp_path / "w.safetensors"
    meta = export_weights(tmp_path / "run" / "last.ckpt", out, keypoint_threshold=0.03)
    model, meta2 = load_model(out)
    assert meta2["detection"]["keypoint_threshold"] == 0.03 == meta["detection"]["keypoint_threshold"]
    assert meta2["training"]["step"] == 1
    assert meta2["detection"]["pyramid_levels"] == 1          # the paper's single level
    three = tmp_path / "w3.safetensors"
    export_weights(tmp_path / "run" / "last.ckpt", three, keypoint_threshold=0.03, pyramid_levels=3)
    from goodpoint_ros.core.pipeline import FeatureExtractor
    ex = FeatureExtractor("torch", weights=three, device="cpu")
    assert ex.config.pyramid_levels == 3 and len(ex.config.scales) == 3   # users get it unasked
    assert ex.config.pyramid_factor == pytest.approx(2 ** -0.5)            # the default ratio
    five = tmp_path / "w5.safetensors"
    export_weights(tmp_path / "run" / "last.ckpt", five, keypoint_threshold=0.03,
                   pyramid_levels=5, pyramid_factor=2 ** -0.25)
    ex5 = FeatureExtractor("torch", weights=five, device="cpu")
    assert ex5.config.scales[-1] == pytest.approx(0.5) and len(ex5.config.scales) == 5
    assert ex5.config.upsample_below == 0 == meta2["detection"]["upsample_below"]  # never, unasked
    small = tmp_path / "w_up.safetensors"
    export_weights(tmp_path / "run" / "last.ckpt", small, keypoint_threshold=0.03,
                   upsample_below=480)
    ex_up = FeatureExtractor("torch", weights=small, device="cpu")
    assert ex_up.config.upsample_below == 480 and ex_up.frame_scale((320, 240)) == 2.0
    assert ex_up.frame_scale((640, 480)) == 1.0
    with pytest.raises(ValueError, match="upsample_below"):
        export_weights(tmp_path / "run" / "last.ckpt", small, keypoint_threshold=0.03,
                       upsample_below=-1)
    with pytest.raises(ValueError, match="pyramid_factor"):
        export_weights(tmp_path / "run" / "last.ckpt", five, keypoint_threshold=0.03,
                       pyramid_levels=5, pyramid_factor=1.0)
    with pytest.raises(ValueError, match="pyramid_levels"):
        export_weights(tmp_path / "run" / "last.ckpt", three, keypoint_threshold=0.03,
                       pyramid_levels=0)
    with pytest.raises(ValueError, match="1/64"):
        export_weights(tmp_path / "run" / "last.ckpt", out, keypoint_threshold=0.01)
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable"):
        export_weights(bad, out)


def test_init_starts_from_released_weights_with_fresh_optimizer(tmp_path):
    from goodpoint_ros.core.weights import load_weights
    from goodpoint_training import trainer
    from goodpoint_training.release import export_weights
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    cv2.imwrite(str(imgs / "a.png"), (textured(48) * 255).astype(np.uint8))
    trainer.run(tiny_run_config(tmp_path / "src", imgs, max_steps=2))
    w = tmp_path / "w.safetensors"
    export_weights(tmp_path / "src" / "run" / "last.ckpt", w)
    t = trainer.Trainer(tiny_run_config(tmp_path / "ft", imgs, max_steps=2), init=str(w))
    tensors, _ = load_weights(w)
    for k, v in t.raw_model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), tensors[k])
    assert t.step == 0 and not t.optimizer.state          # fresh optimizer


def test_cli_train_errors_are_one_line(tmp_path, capsys):
    from goodpoint_ros.cli import main
    assert main(["train", "--images", str(tmp_path / "missing"), "--out", str(tmp_path / "r"),
                 "--no-validation"]) == 2
    err = capsys.readouterr().err.strip()
    assert "not found" in err and len(err.splitlines()) == 1
    (tmp_path / "empty").mkdir()
    assert main(["train", "--images", str(tmp_path / "empty"), "--out", str(tmp_path / "r"),
                 "--no-validation", "--set", "guard_duplicates=false"]) == 2
    assert "no usable training images" in capsys.readouterr().err
    assert main(["train", "--images", str(tmp_path), "--out", str(tmp_path / "r"),
                 "--set", "crpo=3"]) == 2
    assert "unknown" in capsys.readouterr().err


def test_benchmark_reports_every_stage(capsys):
    from goodpoint_training.benchmark import measure, synthetic_images
    cfg = validate(config_from_dict(dict(crop=32, batch_size=2, threads=2)))
    r = measure(cfg, synthetic_images(2, (64, 64)), "fp32", steps=1, warmup=0)
    for k in ("forward_ms", "targets_ms", "losses_ms", "backward_ms", "data_ms_per_batch"):
        assert r[k] > 0, k
    assert r["pairs_per_s"] > 0 and 0 < r["targets_losses_share"] < 1


def test_tensorboard_logs_loss_terms_validation_and_pictures(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from goodpoint_training import trainer
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for s in range(4):
        cv2.imwrite(str(imgs / f"{s}.png"), (textured(120, s) * 255).astype(np.uint8))
    split = tmp_path / "split.txt"
    split.write_text("# held out\n2.png\n3.png\n")
    cfg = tiny_run_config(tmp_path, imgs, max_steps=2, tensorboard=True, log_every=1,
                          validate_every=2, image_every=1, validation_split=str(split))
    t = trainer.Trainer(cfg, validation_dir=str(imgs))
    # 2 photos held out (each a mild-or-strong and a wide pair), 2 trained on
    assert len(t.images) == 2 and len(t.validator) == 4
    result = t.fit()
    assert result["validation"] is not None and "harmonic_mean" in result["validation"]
    acc = EventAccumulator(str(tmp_path / "run" / "tb")).Reload()
    tags = acc.Tags()
    for tag in ("train/loss", "train/gt", "train/wrong", "train/random", "train/keypoints",
                "train/heatmaps", "train/lr"):
        assert tag in tags["scalars"], tag
    assert "val/keypoints" in tags["scalars"]
    assert "val/matches" in tags["images"]


def test_duplicate_guard_thumbnails_are_cached(tmp_path):
    folder = tmp_path / "eval" / "seq"
    folder.mkdir(parents=True)
    a = (textured(100, 3) * 255).astype(np.uint8)
    cv2.imwrite(str(folder / "1.png"), a)
    g1 = DuplicateGuard.from_folder(tmp_path / "eval", cache_dir=tmp_path / "cache")
    caches = list((tmp_path / "cache" / "goodpoint").glob("eval_thumbs_*.npz"))
    assert len(caches) == 1 and g1.is_duplicate(a)
    g2 = DuplicateGuard.from_folder(tmp_path / "eval", cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(g1.thumbs, g2.thumbs)
    assert len(DuplicateGuard.from_folder(tmp_path / "absent").thumbs) == 0


def test_checkpoint_records_validation_threshold_for_export(tmp_path):
    from goodpoint_training import trainer
    from goodpoint_training.checkpoint import load_checkpoint
    from goodpoint_training.release import export_weights
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    cv2.imwrite(str(imgs / "a.png"), (textured(48) * 255).astype(np.uint8))
    t = trainer.Trainer(tiny_run_config(tmp_path, imgs, max_steps=1))
    t.last_threshold = 0.065                 # as a validation sweep would set it
    t.fit()
    assert load_checkpoint(tmp_path / "run" / "last.ckpt")["threshold"] == 0.065
    meta = export_weights(tmp_path / "run" / "last.ckpt", tmp_path / "w.safetensors")
    assert meta["detection"]["keypoint_threshold"] == 0.065


def test_released_weights_can_be_re_released_with_new_detection_defaults(tmp_path):
    from goodpoint_ros.core.weights import DEFAULT_WEIGHTS, load_weights
    from goodpoint_training.release import export_weights
    out = tmp_path / "again.safetensors"
    before = DEFAULT_WEIGHTS.read_bytes()
    export_weights(DEFAULT_WEIGHTS, out, pyramid_levels=3)
    (t0, m0), (t1, m1) = load_weights(DEFAULT_WEIGHTS), load_weights(out)
    assert sorted(t0) == sorted(t1) and all(np.array_equal(t0[k], t1[k]) for k in t0)
    assert m1["detection"]["pyramid_levels"] == 3
    assert m1["detection"]["keypoint_threshold"] == m0["detection"]["keypoint_threshold"]
    assert m1["training"]["step"] == m0["training"]["step"]       # provenance carried over
    for k in ("homography", "wide_fraction", "homography_wide", "crop", "images"):
        assert m1["training"].get(k) == m0["training"].get(k), k
    assert DEFAULT_WEIGHTS.read_bytes() == before                  # the input is not touched
    twice = tmp_path / "twice.safetensors"                         # provenance does not nest
    export_weights(out, twice, pyramid_levels=2)
    source = load_weights(twice)[1]["source"]
    assert source.count("re-released from") == 1 and source.endswith("(re-released from again.safetensors)")
    assert source.startswith(m0["source"].split(" (re-released from ")[0])
