"""Track ids over a sequence: matched keypoints keep their id, new ones get fresh ids."""
import numpy as np

from goodpoint_ros.core.config import GoodPointConfig
from goodpoint_ros.core.keypoints import Features
from goodpoint_ros.core.matching import match_features
from goodpoint_ros.frontend.tracking import TrackIdAssigner

RNG = np.random.default_rng(3)
CFG = GoodPointConfig(keypoint_threshold=0.5, descriptor_threshold=0.8)


def landmark_descriptors(n, dim=64):
    d = RNG.normal(size=(n, dim)).astype(np.float32)
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def frame(landmarks, visible, shift, desc):
    """Features of the visible landmarks, in a shuffled order, translated by ``shift``."""
    order = RNG.permutation(visible)
    kpts = (landmarks[order] + shift).astype(np.float32)
    noisy = desc[order] + RNG.normal(scale=0.02, size=desc[order].shape).astype(np.float32)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    return Features(kpts, np.ones(len(order), np.float32), noisy, (640, 480)), order


def test_ids_follow_the_landmarks_over_a_sequence():
    n = 60
    landmarks = RNG.uniform(20, 400, (n, 2))
    desc = landmark_descriptors(n)
    tracker = TrackIdAssigner()
    landmark_to_id = {}
    prev = None
    rng_vis = np.random.default_rng(5)
    for t in range(6):
        visible = np.sort(rng_vis.choice(n, 45, replace=False))   # landmarks come and go
        feats, who = frame(landmarks, visible, shift=(3.0 * t, 1.5 * t), desc=desc)
        if prev is None:
            ids = tracker.assign(len(feats))
        else:
            result = match_features(prev[0], feats, CFG, verify="homography")
            assert result.model_type == "homography" and result.inliers.mean() > 0.9
            ids = tracker.assign(len(feats), result.matches, result.inliers)
        assert len(np.unique(ids)) == len(ids)                    # one id per keypoint
        prev_visible = set() if prev is None else set(prev[1].tolist())
        for k, lm in enumerate(who):
            if lm in prev_visible:
                assert ids[k] == landmark_to_id[lm], f"frame {t}: landmark {lm} lost its id"
            else:
                assert lm not in landmark_to_id or ids[k] != landmark_to_id[lm]
                assert all(ids[k] != v for v in landmark_to_id.values())   # never reused
            landmark_to_id[lm] = ids[k]
        prev = (feats, who)


def test_outliers_do_not_pass_their_id_on():
    tracker = TrackIdAssigner()
    first = tracker.assign(3)
    matches = np.array([[0, 2], [1, 0], [2, 1]])
    ids = tracker.assign(3, matches, inliers=np.array([True, False, True]))
    assert ids[2] == first[0] and ids[1] == first[2]
    assert ids[0] not in first                          # the outlier's keypoint is new


def test_reset_and_empty_frames():
    tracker = TrackIdAssigner()
    a = tracker.assign(4)
    assert tracker.assign(0).shape == (0,)
    b = tracker.assign(2, np.array([[0, 0]]))          # previous frame was empty: nothing to inherit
    assert not set(b) & set(a)
    tracker.reset()
    c = tracker.assign(2, np.array([[0, 0], [1, 1]]))   # after reset, matches are ignored
    assert not set(c) & set(b)
    assert tracker.fresh(0).shape == (0,)
