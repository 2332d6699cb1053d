"""Bad camera models reaching the front end (docs/bad-inputs.md, case 9)."""
import numpy as np
import pytest
from test_frontend import K, ScriptedExtractor, params, scene_frames

from goodpoint_ros.frontend.frontend import Camera, Frontend

NAN_K = [np.nan, 0, 160, 0, np.nan, 120, 0, 0, 1]


@pytest.mark.parametrize("k,d,why", [
    (NAN_K, [], "non-finite"),
    ([np.inf, 0, 160, 0, 500, 120, 0, 0, 1], [], "non-finite"),
    ([-450, 0, 320, 0, 450, 240, 0, 0, 1], [], "not positive"),
    ([450, 0, 320, 0, 0, 240, 0, 0, 1], [], "not positive"),
    (np.zeros(9), [], "all zero"),
    (K.ravel(), [np.nan, 0, 0, 0, 0], "distortion"),
])
def test_unusable_intrinsics_are_rejected_with_a_reason(k, d, why):
    assert Camera.from_camera_info(k, d) is None
    assert why in Camera.problem(k, d)


def test_nan_camera_falls_back_to_the_fundamental_matrix_not_zero_inliers():
    frames, _, _ = scene_frames(dist=np.zeros(5))
    fe = Frontend(ScriptedExtractor([f for f, _ in frames]), *params())
    bad = Camera(np.array(NAN_K, float).reshape(3, 3))       # built by hand, bypassing the check
    fe.mono(None, bad)
    m = fe.mono(None, bad).matches
    assert m.model_type == "fundamental" and m.inliers.mean() > 0.95
