"""A mono / RGB-D CameraInfo → the camera the odometry works in (goodpoint_ros/odometry/camera.py)."""
import cv2
import numpy as np
import pytest

from conftest import SAMPLE
from goodpoint_ros.odometry.camera import CalibrationError, camera_from_info

SIZE = (640, 480)
K = np.array([[520.0, 0, 318.0], [0, 515.0, 242.0], [0, 0, 1]])
D = np.array([-0.28, 0.09, 0.001, -0.0005, 0.0])            # a wide-angle webcam's plumb_bob
P = np.hstack([np.array([[470.0, 0, 322.0], [0, 468.0, 238.0], [0, 0, 1]]), np.zeros((3, 1))])


def _raw_positions(ideal_px, K_ideal, K_raw, D_raw, fisheye=False):
    """Where pixels [N,2] of the ideal camera K_ideal lie in the distorted raw frame."""
    rays = np.c_[(ideal_px - K_ideal[:2, 2]) / np.diag(K_ideal)[:2], np.ones(len(ideal_px))]
    project = cv2.fisheye.projectPoints if fisheye else cv2.projectPoints
    if fisheye:
        return project(rays.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), K_raw, D_raw)[0].reshape(-1, 2)
    return project(rays, np.zeros(3), np.zeros(3), K_raw, D_raw)[0].reshape(-1, 2)


@pytest.mark.parametrize("model", ["plumb_bob", "equidistant"])
def test_raw_frames_are_undistorted_into_the_camera_of_p(model):
    """Every ideal pixel must be read from where the distortion model puts its ray."""
    Dm = np.array([0.05, -0.01, 0.002, 0.0]) if model == "equidistant" else D
    cam, und = camera_from_info(K.ravel(), Dm, P.ravel(), SIZE, model)
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == (470.0, 468.0, 322.0, 238.0)
    rng = np.random.default_rng(0)
    px = rng.uniform([40, 40], [600, 440], (200, 2)).round()
    want = _raw_positions(px, P[:, :3], K, Dm, fisheye=model == "equidistant")
    x, y = px[:, 0].astype(int), px[:, 1].astype(int)
    got = np.c_[und.map_x[y, x], und.map_y[y, x]]
    assert np.abs(got - want).max() < 0.05
    assert np.abs(want - px).max() > 10         # a distortion large enough to mean something


def test_undistorted_photo_matches_the_ideal_photo():
    """A photo taken as the ideal camera sees it, distorted into a raw frame, comes back."""
    ideal = cv2.resize(cv2.imread(str(SAMPLE / "1.png"), cv2.IMREAD_GRAYSCALE), SIZE)
    cam, und = camera_from_info(K.ravel(), D, P.ravel(), SIZE)
    # the raw frame: each raw pixel reads the ideal image where its ray lands in P's camera
    gx, gy = np.meshgrid(np.arange(SIZE[0], dtype=np.float64), np.arange(SIZE[1], dtype=np.float64))
    ideal_xy = cv2.undistortPoints(np.c_[gx.ravel(), gy.ravel()].reshape(-1, 1, 2), K, D,
                                   P=P[:, :3]).reshape(SIZE[1], SIZE[0], 2).astype(np.float32)
    raw = cv2.remap(ideal, ideal_xy[..., 0], ideal_xy[..., 1], cv2.INTER_LINEAR)
    back = und.image(raw).astype(np.float64)
    inner = (slice(80, 400), slice(100, 540))
    a, b = back[inner] - back[inner].mean(), ideal[inner] - ideal[inner].astype(np.float64).mean()
    ncc = (a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum())
    assert ncc > 0.97
    a_raw = raw[inner].astype(np.float64) - raw[inner].mean()
    assert (a_raw * b).sum() / np.sqrt((a_raw ** 2).sum() * (b * b).sum()) < ncc - 0.1


def test_depth_is_undistorted_by_the_nearest_pixel_never_blended():
    depth = np.where(np.arange(SIZE[0])[None, :] < 320, 1000, 3000).astype(np.uint16)
    depth = np.repeat(depth, SIZE[1], axis=0)
    depth[::7, ::5] = 0                                  # holes: no depth
    _, und = camera_from_info(K.ravel(), D, P.ravel(), SIZE)
    out = und.depth(depth)
    assert out.dtype == np.uint16 and set(np.unique(out)) <= {0, 1000, 3000}
    f = und.depth(np.where(depth > 0, depth / 1000.0, np.nan).astype(np.float32))
    assert np.isnan(f).any() and set(np.unique(f[np.isfinite(f)])) <= {1.0, 3.0}


def test_depth_under_a_rectification_rotation_is_measured_along_the_new_axis():
    """A wall 4 m in front of the raw camera, seen through a rectification rotation of a
    few degrees: depth is z along the *rectified* optical axis, so it must change by up to
    ~5 % across the frame (carried over as it was, it stays 4.0 everywhere)."""
    R = cv2.Rodrigues(np.array([0.05, -0.08, 0.01]))[0]          # ~5.5°
    depth_mm = np.full(SIZE[::-1], 4000, np.uint16)
    _, und = camera_from_info(K.ravel(), np.zeros(5), P.ravel(), SIZE, r=R.ravel())
    out = und.depth(depth_mm.astype(np.float32) / 1000.0)
    out_mm = und.depth(depth_mm)
    # the truth: the wall z_raw = 4 has normal R·e_z in the rectified frame
    gx, gy = np.meshgrid(np.arange(SIZE[0], dtype=np.float64), np.arange(SIZE[1], dtype=np.float64))
    rays = np.stack([(gx - P[0, 2]) / P[0, 0], (gy - P[1, 2]) / P[1, 1], np.ones_like(gx)], -1)
    want = 4.0 / (rays @ R[:, 2])
    seen = np.isfinite(out)
    assert seen.mean() > 0.7
    assert np.abs(out[seen] - want[seen]).max() < 1e-4
    assert np.abs(want[seen] - 4.0).max() > 0.15                  # the rotation matters
    assert out_mm.dtype == np.uint16
    assert np.abs(out_mm[seen].astype(np.float64) - 1000 * want[seen]).max() <= 0.51


def test_no_distortion_or_rectified_frames_need_no_undistorter():
    cam, und = camera_from_info(K.ravel(), np.zeros(5), P.ravel(), SIZE)
    assert und is None and cam.fx == 520.0                 # undistorted camera: k as it is
    cam, und = camera_from_info(K.ravel(), [], np.zeros(12), SIZE)
    assert und is None and cam.fx == 520.0
    for d in (D, np.zeros(5)):                            # image_rect: the camera of p
        cam, und = camera_from_info(K.ravel(), d, P.ravel(), SIZE, frames_are_raw=False)
        assert und is None and cam.fx == 470.0


def test_unusable_distortion_is_a_clear_error():
    with pytest.raises(CalibrationError, match="cannot be undone"):
        camera_from_info(K.ravel(), D, P.ravel(), SIZE, "unknown_model")
    with pytest.raises(CalibrationError, match="non-finite"):
        camera_from_info(K.ravel(), [np.nan, 0, 0, 0, 0], P.ravel(), SIZE)


def test_stereo_rectifiers_of_an_already_rectified_pair_change_nothing():
    from types import SimpleNamespace

    from goodpoint_ros.odometry.camera import stereo_rectifiers
    P1 = P.copy()
    P1[0, 3] = -470.0 * 0.12
    infos = [SimpleNamespace(k=Pi[:, :3].ravel(), d=[0.0] * 5, r=np.eye(3).ravel(), p=Pi.ravel(),
                             distortion_model="plumb_bob") for Pi in (P, P1)]
    rig, maps = stereo_rectifiers(infos, SIZE)
    assert rig.baseline == pytest.approx(0.12)
    gx, gy = np.meshgrid(np.arange(SIZE[0]), np.arange(SIZE[1]))
    for m in maps:
        assert np.abs(m.map_x - gx).max() < 1e-3 and np.abs(m.map_y - gy).max() < 1e-3
