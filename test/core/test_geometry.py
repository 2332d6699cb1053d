"""core/geometry: one pixel convention for evaluation and training (docs/conventions.md)."""
from __future__ import annotations

import numpy as np
import pytest

from goodpoint_ros.core.geometry import (
    apply_homography,
    compose,
    in_frame,
    inside_image,
    pixel_grid,
    so3_left_jacobian,
    warp_points,
)


def test_the_frame_is_half_open_every_point_in_at_most_one_pixel():
    w, h = 4, 3
    pts = np.array([[-0.5, -0.5], [3.49, 2.49], [3.5, 0], [0, 2.5], [-0.51, 0], [np.nan, 1],
                    [np.inf, 1]])
    assert inside_image(pts, (w, h)).tolist() == [True, True, False, False, False, False, False]
    # the pixel a point rounds to (floor(x + 0.5)) exists exactly when it is in the frame
    rng = np.random.default_rng(0)
    q = rng.uniform(-2, 6, size=(2000, 2))
    q[:50] = np.round(q[:50] * 2) / 2            # many points exactly on pixel edges
    idx = np.floor(q + 0.5)
    exists = (idx[:, 0] >= 0) & (idx[:, 0] < w) & (idx[:, 1] >= 0) & (idx[:, 1] < h)
    np.testing.assert_array_equal(inside_image(q, (w, h)), exists)


def test_torch_and_numpy_flavours_agree():
    torch = pytest.importorskip("torch")
    from goodpoint_ros.core.geometry import warp_points_torch
    H = np.array([[1.1, 0.05, 3.0], [-0.02, 0.95, -2.0], [1e-4, -2e-4, 1.0]])
    pts = pixel_grid((40, 30)).astype(np.float64)
    ref = warp_points(H, pts)
    out = warp_points_torch(torch.tensor(H), torch.tensor(pts)[None]).numpy()[0]
    np.testing.assert_allclose(out, ref, rtol=1e-12)
    np.testing.assert_array_equal(in_frame(torch.tensor(ref), (40, 30)).numpy(), inside_image(ref, (40, 30)))


def test_compose_applies_right_to_left_and_behind_the_camera_is_nan():
    A = np.array([[2.0, 0, 0], [0, 2.0, 0], [0, 0, 1]])
    B = np.array([[1.0, 0, 5], [0, 1.0, 0], [0, 0, 1]])
    p = np.array([[1.0, 1.0]])
    np.testing.assert_allclose(warp_points(compose(A, B), p), warp_points(A, warp_points(B, p)))
    np.testing.assert_allclose(warp_points(compose(A, B), p), [[12.0, 2.0]])
    flip = np.diag([1.0, 1.0, -1.0])
    out, front = apply_homography(flip, p)
    assert not front[0] and np.isnan(out).all()


@pytest.mark.parametrize("phi", [[0.0, 0.0, 0.0], [1e-8, 0.0, 0.0], [0.3, -0.2, 0.1], [2.0, 1.0, -0.5]])
def test_so3_left_jacobian_maps_a_rotation_vector_step_to_a_left_rotation(phi):
    """Rodrigues(φ + δ)·Rodrigues(φ)ᵀ = exp([J_l(φ)·δ]×) to first order, checked per axis."""
    import cv2
    phi = np.asarray(phi, np.float64)
    R = cv2.Rodrigues(phi)[0]
    h = 1e-6

    def vee(D):       # a rotation this small is I + [ω]×: read ω off its skew part
        A = (D - D.T) / 2
        return np.array([A[2, 1], A[0, 2], A[1, 0]])
    numeric = np.stack([vee(cv2.Rodrigues(phi + h * e)[0] @ R.T) / h for e in np.eye(3)],
                       axis=1)
    assert np.allclose(so3_left_jacobian(phi), numeric, atol=1e-5)
