"""evaluation/scoring: the feature cache and match correctness both evaluations share."""
import numpy as np

from goodpoint_ros.evaluation.scoring import FeatureCache, correct_matches


def test_feature_cache_detects_once_per_key_and_evicts():
    calls, seconds = [], []

    class Method:
        def detect(self, image):
            calls.append(image.shape)
            return image.sum()
    cache = FeatureCache(seconds.append)
    img = np.ones((4, 5))
    assert cache.get(("m", 1), Method(), img)[0] == 20
    assert cache.get(("m", 1), Method(), img)[0] == 20
    assert len(calls) == 1 and len(seconds) == 1 and seconds[0] >= 0
    cache.get(("m", 2), Method(), img)
    cache.evict(lambda k: k[1] < 2)
    assert list(cache.entries) == [("m", 2)]


def test_correct_matches_needs_a_valid_warp_within_eps():
    warped = np.array([[0.0, 0.0], [10.0, 10.0], [np.nan, np.nan]])
    valid = np.array([True, False, True])
    kb = np.array([[1.0, 0.0], [10.0, 10.0], [5.0, 5.0]])
    m = np.array([[0, 0], [1, 1], [2, 2], [0, 2]])
    assert correct_matches(warped, valid, kb, m, 3.0).tolist() == [True, False, False, False]
    assert correct_matches(warped, valid, kb, np.zeros((0, 2), int), 3.0).shape == (0,)
