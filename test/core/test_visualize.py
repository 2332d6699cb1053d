"""core/visualize.py: the captions of the pictures people look at stay readable and inside."""
import numpy as np
import pytest

from goodpoint_ros.core.visualize import caption, draw_keypoints, draw_matches


def written_columns(img, gray=128):
    band = np.abs(img[:40].astype(int) - gray).max(axis=(0, 2)) > 0
    return np.nonzero(band)[0]


@pytest.mark.parametrize("width", [160, 320, 1226])
def test_a_long_caption_shrinks_to_fit_the_picture(width):
    canvas = np.full((120, width, 3), 128, np.uint8)
    caption(canvas, "1000 keypoints; score 0.07 blue, 0.95 red")
    cols = written_columns(canvas)
    assert len(cols) and cols.max() < width - 2, (width, cols.max())
    # white text on a black outline: both are there, whatever the image below
    assert (canvas[:40] == 255).all(axis=2).any() and (canvas[:40] < 40).all(axis=2).any()


def test_keypoint_and_match_pictures_carry_their_caption():
    img = np.full((96, 128), 128, np.uint8)
    kp = np.array([[60.0, 70.0], [100.0, 80.0]])
    plain = draw_keypoints(img, np.zeros((0, 2)))
    assert len(written_columns(plain)) > 0                       # "0 keypoints"
    pic = draw_keypoints(img, kp, np.array([0.1, 0.9]))
    assert len(written_columns(pic)) > len(written_columns(plain))   # the score range too
    m = draw_matches(img, img, kp, kp, np.array([[0, 0], [1, 1]]), np.array([True, False]))
    assert m.shape == (96, 256, 3) and len(written_columns(m)) > 0
