"""Depth + pose + intrinsics warp: hand-made geometry with known answers."""
from __future__ import annotations

import numpy as np

from goodpoint_ros.evaluation.bags.depth_warp import (
    DepthWarp,
    apply_affine,
    depth_at,
    pair_warps,
    relative_pose,
    roll_image,
    roll_matrix,
    warp_points,
)

W, H = 64, 48
K = np.array([[50.0, 0, 32.0], [0, 50.0, 24.0], [0, 0, 1]])


def plane(z=4.0):
    return np.full((H, W), z, np.float32)


def translation(tx=0.0, ty=0.0, tz=0.0):
    T = np.eye(4)
    T[:3, 3] = (tx, ty, tz)
    return T


def grid(step=7, margin=8):
    xs, ys = np.meshgrid(np.arange(margin, W - margin, step), np.arange(margin, H - margin, step))
    return np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)


def test_sideways_motion_shifts_by_focal_times_baseline_over_depth():
    # camera b sits 0.4 m to the right of a: a point at depth 4 m moves 50·0.4/4 = 5 px left.
    T_b_a = np.linalg.inv(translation(tx=0.4))
    pts = grid()
    warped, valid = warp_points(pts, plane(), K, T_b_a, K, (W, H), plane())
    assert valid.all()
    np.testing.assert_allclose(warped, pts - [5.0, 0.0], atol=1e-9)


def test_forward_motion_scales_about_the_principal_point():
    T_b_a = np.linalg.inv(translation(tz=1.0))         # b is 1 m closer to the wall at 4 m
    pts = grid()
    warped, valid = warp_points(pts, plane(4.0), K, T_b_a, K, (W, H), plane(3.0))
    c = np.array([32.0, 24.0])
    expect = c + (pts - c) * 4.0 / 3.0
    inside = (expect[:, 0] >= -0.5) & (expect[:, 0] < W - 0.5) & (expect[:, 1] >= -0.5) & \
        (expect[:, 1] < H - 0.5)
    np.testing.assert_array_equal(valid, inside)
    np.testing.assert_allclose(warped[valid], expect[valid], atol=1e-9)


def test_invalid_depth_outside_and_occluded_points_are_not_valid():
    depth_a = plane()
    depth_a[10, 20] = np.nan
    depth_a[30, 40] = 0.0
    depth_a[20, 30] = np.inf
    pts = np.array([[20.0, 10.0], [40.0, 30.0], [30.0, 20.0], [12.0, 12.0], [2.0, 24.0]])
    depth_b = plane()
    depth_b[12, 7] = 2.0                               # something nearer hides (12, 12) in b
    T_b_a = np.linalg.inv(translation(tx=0.4))          # 5 px left: (2, 24) → (−3, 24) outside
    warped, valid = warp_points(pts, depth_a, K, T_b_a, K, (W, H), depth_b)
    np.testing.assert_array_equal(valid, [False, False, False, False, False])
    assert np.isnan(warped[~valid]).all()
    # the same point is valid without the occluder
    _, v2 = warp_points(pts[3:4], depth_a, K, T_b_a, K, (W, H), plane())
    assert v2.all()


def test_visibility_tolerance_is_relative():
    depth_b = plane(4.0 * 1.04)                          # 4 % off: visible at 5 %, not at 3 %
    T = np.eye(4)
    _, v5 = warp_points(grid(), plane(4.0), K, T, K, (W, H), depth_b, rel_tolerance=0.05)
    _, v3 = warp_points(grid(), plane(4.0), K, T, K, (W, H), depth_b, rel_tolerance=0.03)
    assert v5.all() and not v3.any()


def test_depth_is_read_at_the_rounded_pixel():
    d = np.arange(W * H, dtype=np.float32).reshape(H, W) + 1
    got = depth_at(d, np.array([[3.4, 5.6], [3.6, 5.4], [-0.6, 0.0]]))
    assert got[0] == d[6, 3] and got[1] == d[5, 4] and np.isnan(got[2])


def test_roll_warp_matches_the_rolled_image():
    img = np.zeros((H, W), np.uint8)
    img[20, 40] = 255
    rolled = roll_image(img, 5.0, interpolation=0)      # nearest: the dot stays one pixel
    y, x = np.unravel_index(int(np.argmax(rolled)), rolled.shape)
    p = apply_affine(roll_matrix(5.0, (W, H)), np.array([[40.0, 20.0]]))[0]
    assert abs(p[0] - x) <= 0.5 + 1e-9 and abs(p[1] - y) <= 0.5 + 1e-9
    # a roll keeps the centre and turns the image counter-clockwise on screen
    c = apply_affine(roll_matrix(5.0, (W, H)), np.array([[(W - 1) / 2, (H - 1) / 2]]))[0]
    np.testing.assert_allclose(c, [(W - 1) / 2, (H - 1) / 2], atol=1e-9)


class _F:
    def __init__(self, T, depth):
        self.T_world_cam, self.depth, self.K, self.image = T, depth, K, np.zeros((H, W), np.uint8)

    @property
    def size(self):
        return W, H


def test_pair_warps_round_trip_with_roll():
    fa = _F(np.eye(4), plane(4.0))
    fb = _F(translation(tx=0.2, tz=0.3), plane(3.7))
    ab, ba = pair_warps(fa, fb, roll_deg=5.0)
    pts = grid()
    wb, v = ab(pts)
    assert v.sum() > 0.5 * len(pts)
    back, vb = ba(wb[v])
    assert vb.all()
    np.testing.assert_allclose(back, pts[v], atol=1e-6)
    # without the roll the b positions differ by exactly the roll
    wb0, v0 = pair_warps(fa, fb)[0](pts)
    np.testing.assert_allclose(apply_affine(roll_matrix(5.0, (W, H)), wb0[v]), wb[v], atol=1e-9)


def test_relative_pose_and_callable_warp_agree():
    Ta, Tb = translation(tx=1.0), translation(tx=1.4)
    T_b_a = relative_pose(Ta, Tb)
    np.testing.assert_allclose(T_b_a, np.linalg.inv(translation(tx=0.4)))
    warp = DepthWarp(plane(), K, T_b_a, K, (W, H), plane())
    out, valid = warp(grid())
    assert valid.all()
    np.testing.assert_allclose(out, grid() - [5.0, 0.0])
    e, v = warp(np.zeros((0, 2)))
    assert e.shape == (0, 2) and v.shape == (0,)
