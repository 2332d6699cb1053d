"""make-sample-bag --motion turns: the trajectory turns and changes speed (for VO tests)."""
import numpy as np
import pytest

from goodpoint_ros.synthetic import scene as sc


def test_turns_motion_turns_and_changes_speed():
    t = np.linspace(0, 20, 401)
    R, p = sc.trajectory(t, 1.5, "turns")
    yaw = np.degrees(np.arctan2(R[:, 1, 0], R[:, 0, 0]))
    assert yaw.max() - yaw.min() > 40                           # ±25° heading
    v = np.linalg.norm(np.diff(p, axis=0), axis=1) / np.diff(t)
    assert v.min() < 0.8 and v.max() > 2.2                      # 0.4×…1.6× of 1.5 m/s
    Rc, pc = sc.trajectory(t, 1.5)                              # the default is unchanged
    assert np.ptp(np.degrees(np.arctan2(Rc[:, 1, 0], Rc[:, 0, 0]))) < 15
    assert np.allclose(np.diff(pc[:, 0]) / np.diff(t), 1.5)
    with pytest.raises(ValueError, match="motion"):
        sc.trajectory(t, 1.5, "loop")
