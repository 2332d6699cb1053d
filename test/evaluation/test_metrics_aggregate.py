"""Aggregation as the paper's tables: means over pairs, split means, harmonic means."""
import math

import pytest

from goodpoint_ros.evaluation.aggregate import aggregate, mean_records, split_names
from goodpoint_ros.evaluation.metrics import harmonic_mean


def rec(p, r, c, **extra):
    d = {"precision": p, "repeatability": r, "coverage": c,
         "harmonic_mean": harmonic_mean([p, r, c]),
         "eps5": {"precision": min(1, p + 0.1), "repeatability": min(1, r + 0.1),
                  "coverage": c, "harmonic_mean": 0.0}, "matches": 10}
    d.update(extra)
    return d


def pair(split, **methods):
    return {"name": "x", "split": split, "methods": methods}


def test_homography_sets_use_the_harmonic_mean_of_six_split_means():
    per_pair = [pair("i", orb=rec(0.8, 0.6, 0.4)), pair("i", orb=rec(0.6, 0.4, 0.2)),
                pair("v", orb=rec(0.2, 0.5, 0.1))]
    out = aggregate(per_pair, ["orb"])
    i = out["splits"]["i"]["methods"]["orb"]
    v = out["splits"]["v"]["methods"]["orb"]
    assert (i["precision"], i["repeatability"], i["coverage"]) == pytest.approx((0.7, 0.5, 0.3))
    assert v["precision"] == pytest.approx(0.2) and out["splits"]["v"]["pairs"] == 1
    o = out["methods"]["orb"]
    # top-level P, R, C are means over all pairs
    assert o["precision"] == pytest.approx((0.8 + 0.6 + 0.2) / 3)
    assert o["pairs"] == 3 and o["matches"] == 10
    six = [0.7, 0.5, 0.3, 0.2, 0.5, 0.1]
    assert o["harmonic_mean"] == pytest.approx(harmonic_mean(six))
    # and that differs from the harmonic mean of the overall means
    assert o["harmonic_mean"] != pytest.approx(
        harmonic_mean([o["precision"], o["repeatability"], o["coverage"]]))
    assert i["harmonic_mean"] == pytest.approx(harmonic_mean([0.7, 0.5, 0.3]))
    # the ε=5 block follows the same rule
    six5 = [0.8, 0.6, 0.3, 0.3, 0.6, 0.1]
    assert o["eps5"]["harmonic_mean"] == pytest.approx(harmonic_mean(six5))


def test_bags_use_the_harmonic_mean_of_the_three_means():
    per_pair = [pair(None, sift=rec(0.8, 0.6, 0.4)), pair(None, sift=rec(0.4, 0.2, 0.2))]
    out = aggregate(per_pair, ["sift"])
    assert out["splits"] == {}
    o = out["methods"]["sift"]
    assert o["harmonic_mean"] == pytest.approx(harmonic_mean([0.6, 0.4, 0.3]))
    # forcing the Table 1 rule on split data ignores the splits
    forced = aggregate([pair("i", sift=rec(0.8, 0.6, 0.4)), pair("v", sift=rec(0.4, 0.2, 0.2))],
                       ["sift"], by_split=False)
    assert forced["splits"] == {}
    assert forced["methods"]["sift"]["harmonic_mean"] == pytest.approx(o["harmonic_mean"])


def test_undefined_values_are_skipped_and_counted():
    nan = float("nan")
    per_pair = [pair(None, orb=rec(nan, nan, 0.0)), pair(None, orb=rec(0.5, 0.25, 0.5))]
    o = aggregate(per_pair, ["orb"])["methods"]["orb"]
    assert o["precision"] == 0.5 and o["repeatability"] == 0.25 and o["coverage"] == 0.25
    assert o["undefined"] == {"precision": 1, "repeatability": 1, "coverage": 0}
    allnan = aggregate([pair(None, orb=rec(nan, nan, 0.0))], ["orb"])["methods"]["orb"]
    assert math.isnan(allnan["precision"]) and allnan["harmonic_mean"] == 0.0   # coverage 0 rules


def test_method_missing_from_a_pair_and_extras():
    per_pair = [pair("v", orb=rec(0.5, 0.5, 0.5, corner_error=0.5, pose_error_deg=0.0),
                     sift=rec(1, 1, 1, corner_error=math.inf, pose_error_deg=math.inf)),
                pair("v", orb=rec(0.5, 0.5, 0.5, corner_error=4.0, pose_error_deg=0.0))]
    out = aggregate(per_pair, ["orb", "sift"])
    assert out["methods"]["orb"]["pairs"] == 2 and out["methods"]["sift"]["pairs"] == 1
    assert out["methods"]["orb"]["homography_accuracy"] == {"1": 0.5, "3": 0.5, "5": 1.0}
    assert out["methods"]["sift"]["homography_accuracy"]["5"] == 0.0
    assert out["methods"]["orb"]["pose_auc"]["5"] == pytest.approx(1.0)
    assert out["methods"]["sift"]["pose_auc"]["20"] == 0.0
    assert "corner_error" not in out["methods"]["orb"]


def test_split_names_order_and_mean_records_nesting():
    assert split_names([{"split": "v"}, {"split": "i"}, {"split": None}]) == ["i", "v"]
    m = mean_records([{"a": 1, "n": {"b": 2.0}}, {"a": 3, "n": {"b": 4.0}}])
    assert m["a"] == 2 and m["n"]["b"] == 3
