"""The renderer behind the sample bag: exact planar depth, texture mapping, z-buffer."""
from __future__ import annotations

import numpy as np
import pytest

from goodpoint_ros.synthetic import scene as sc

SIZE = (64, 48)
K = sc.intrinsics(SIZE)                      # f = 32 px (90° HFOV), c = (32, 24)


def camera(position=(0.0, 0.0, 0.0)):
    """Optical camera looking north (+x in NED): optical z = world x."""
    T = np.eye(4)
    T[:3, :3] = sc.R_BODY_OPTICAL             # body frame = world axes here
    T[:3, 3] = position
    return T


def checker(n=64, cells=8):
    y, x = np.mgrid[0:n, 0:n]
    g = (((x // cells) + (y // cells)) % 2).astype(np.float32)
    img = np.stack([g, 1 - g, 0.5 * np.ones_like(g)], axis=2)
    return [img]


def wall(x, half=50.0, texture=0, tile=None):
    """A wall facing the camera at distance x, spanning y, z ∈ [−half, half]."""
    return sc.Quad(np.array([x, -half, -half]), np.array([0.0, 2 * half, 0.0]),
                   np.array([0.0, 0.0, 2 * half]), texture, tile)


def test_fronto_parallel_wall_has_exact_constant_depth():
    scene = sc.Scene([wall(5.0)], checker())
    img, depth = sc.render(scene, K, camera(), SIZE)
    assert img.shape == (48, 64, 3) and img.dtype == np.uint8
    np.testing.assert_allclose(depth, 5.0, rtol=1e-6)


def test_slanted_ground_depth_follows_the_plane_equation():
    # ground z = 0 (NED, down positive), camera 2 m above it: a pixel row v below the
    # principal point sees the ground at planar depth 2·f / (v − cy).
    ground = sc.Quad(np.array([0.0, -50.0, 0.0]), np.array([100.0, 0.0, 0.0]),
                     np.array([0.0, 100.0, 0.0]), 0)
    scene = sc.Scene([ground], checker())
    _, depth = sc.render(scene, K, camera((0.0, 0.0, -2.0)), SIZE)
    rows = np.arange(48)
    below = rows > K[1, 2]
    expect = 2.0 * K[1, 1] / (rows[below] - K[1, 2])
    visible = expect < 100.0 * 0.99                     # the quad ends 100 m north
    np.testing.assert_allclose(depth[below, 10][visible], expect[visible], rtol=1e-5)
    assert np.isinf(depth[rows < K[1, 2], :]).all()      # above the horizon: sky


def test_nearer_surface_wins_the_z_buffer():
    near = sc.Quad(np.array([3.0, -0.5, -0.5]), np.array([0.0, 1.0, 0.0]),
                   np.array([0.0, 0.0, 1.0]), 0)        # 1 m square in front of the wall
    scene = sc.Scene([wall(6.0), near], checker())
    _, depth = sc.render(scene, K, camera(), SIZE)
    assert depth[24, 32] == pytest.approx(3.0)           # centre: the square
    assert depth[2, 2] == pytest.approx(6.0)             # corner: the wall
    scene_rev = sc.Scene([near, wall(6.0)], checker())   # order does not matter
    np.testing.assert_array_equal(sc.render(scene_rev, K, camera(), SIZE)[1], depth)


def test_texture_is_mapped_where_the_plane_geometry_says():
    # Wall 32 m wide at 16 m: 64 px wide image ↔ exactly the 32 m, i.e. 2 texels per px of
    # a 128-texel texture.  A texture with left half dark, right half bright must show the
    # same split in the image at the principal point's column.
    tex = np.zeros((128, 128, 3), np.float32)
    tex[:, 64:] = 1.0
    quad = sc.Quad(np.array([16.0, -16.0, -16.0]), np.array([0.0, 32.0, 0.0]),
                   np.array([0.0, 0.0, 32.0]), 0)
    img, _ = sc.render(sc.Scene([quad], [[tex]]), K, camera(), SIZE)
    row = img[24, :, 0].astype(int)
    assert row[:30].max() < 60 and row[34:].min() > 150
    assert np.argmax(np.diff(row)) in (30, 31, 32)


def test_night_is_darker_than_day_and_lighting_is_checked():
    scene = sc.village(seed=1)
    R, p = sc.trajectory(np.array([1.0]))
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R[0] @ sc.R_BODY_OPTICAL, p[0]
    day, d1 = sc.render(scene, sc.intrinsics((160, 120)), T, (160, 120), "day")
    night, d2 = sc.render(scene, sc.intrinsics((160, 120)), T, (160, 120), "night")
    np.testing.assert_array_equal(d1, d2)
    assert night.mean() < 0.5 * day.mean() and day.std() > 20
    with pytest.raises(ValueError, match="lighting"):
        sc.render(scene, K, T, SIZE, "dusk")


def test_textures_are_bundled_and_mipmapped():
    pyramids = sc.load_textures()
    assert len(pyramids) >= 4
    for pyr in pyramids:
        assert pyr[0].dtype == np.float32 and 0 <= pyr[0].min() and pyr[0].max() <= 1
        for a, b in zip(pyr, pyr[1:]):
            assert b.shape[0] == (a.shape[0] + 1) // 2
    with pytest.raises(FileNotFoundError):
        sc.load_textures(sc.TEXTURE_DIR / "nope")
