"""The report: paper-style tables (Table 1 and Table 2 layouts), plots."""
import math

import numpy as np
import pytest

from goodpoint_ros.evaluation.aggregate import aggregate, json_safe
from goodpoint_ros.evaluation.metrics import harmonic_mean
from goodpoint_ros.evaluation.report import fmt, markdown_report, paper_table, write_report


def rec(p, r, c, **extra):
    d = {"precision": p, "repeatability": r, "coverage": c, "harmonic_mean": harmonic_mean([p, r, c]),
         "eps5": {"precision": p, "repeatability": r, "coverage": c, "harmonic_mean": 0.0},
         "keypoints": 500.0, "matches": 100, "detect_ms": 12.0}
    d.update(extra)
    return d


def result_from(per_pair, methods, **extra):
    agg = aggregate(per_pair, methods)
    out = {"methods": agg["methods"], "splits": agg["splits"], "pairs": len(per_pair),
           "per_pair": per_pair, "settings": {"eps": [3, 5]}}
    out.update(extra)
    return json_safe(out)


def test_fmt():
    assert fmt(None) == "–" and fmt(float("nan")) == "–" and fmt(math.inf) == "∞"
    assert fmt(0.456) == "0.46" and fmt(3) == "3" and fmt(12.345, 1) == "12.3"


def test_table2_layout_with_splits_and_table1_layout_without():
    per_pair = [{"name": "i_a/1-2", "split": "i", "methods": {"orb": rec(0.8, 0.6, 0.4)}},
                {"name": "v_b/1-2", "split": "v", "methods": {"orb": rec(0.5, 0.25, 0.2)}}]
    lines = paper_table(result_from(per_pair, ["orb"]), [3, 5])
    text = "\n".join(lines)
    assert lines[0] == "| metric | orb 3px | orb 5px |"
    assert "| Light Replication | 0.60 | 0.60 |" in text
    assert "| View Accuracy | 0.50 | 0.50 |" in text
    hm = harmonic_mean([0.8, 0.6, 0.4, 0.5, 0.25, 0.2])
    assert f"**{hm:.2f}**" in lines[-1]
    bag = [{"name": "0-5", "split": None, "methods": {"sift": rec(0.9, 0.5, 0.3)}},
           {"name": "1-6", "split": None, "methods": {"sift": rec(float("nan"), 0.5, 0.3)}}]
    text = "\n".join(paper_table(result_from(bag, ["sift"]), [3, 5]))
    assert "| precision | 0.90 | 0.90 |" in text and "| repeatability | 0.50 | 0.50 |" in text
    assert "Light" not in text


def test_write_report_files_and_markdown(tmp_path):
    per_pair = [{"name": f"v_s/1-{k}", "split": "v",
                 "methods": {"orb": rec(0.5, 0.5, 0.1 * k, corner_error=float(k)),
                             "sift": rec(0.7, 0.4, 0.2)}} for k in range(2, 7)]
    res = result_from(per_pair, ["orb", "sift"], skipped=1, skipped_reasons=["v_s/1-7: broken"],
                      timing_s={"extraction": 2.0, "total": 2.5})
    img = np.zeros((40, 50, 3), np.uint8)
    examples = [{"name": "v_s/1-2", "image_a": img, "image_b": img,
                 "methods": {"orb": {"kpts_a": np.array([[5.0, 5.0]]), "kpts_b": np.array([[6.0, 5.0]]),
                                     "matches": np.array([[0, 0]]), "correct": np.array([True])}}}]
    paths = write_report(res, tmp_path / "rep", examples, title="T")
    names = sorted(p.name for p in paths)
    assert names == ["harmonic_per_pair.png", "matches_v_s_1-2_orb.png", "metrics.png", "report.md"]
    for p in paths:
        assert p.stat().st_size > 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert md.startswith("# T") and "5 pairs evaluated, 1 skipped" in md
    assert "H acc ≤1px" in md and "v_s/1-7: broken" in md and "extraction 2.00" in md
    assert md == markdown_report(res, "T", ["metrics.png", "harmonic_per_pair.png",
                                            "matches_v_s_1-2_orb.png"])
    with pytest.raises(ValueError, match="not a directory"):
        (tmp_path / "file").write_text("x")
        write_report(res, tmp_path / "file")


def test_json_safe_turns_nan_and_inf_into_null():
    out = json_safe({"a": np.float32(0.5), "b": float("nan"), "c": [math.inf, np.int64(3)],
                     "d": np.array([1.0, np.nan]), "e": np.bool_(True)})
    assert out == {"a": 0.5, "b": None, "c": [None, 3], "d": [1.0, None], "e": True}



def test_match_pictures_say_what_green_means(tmp_path, monkeypatch):
    """The evaluator colours matches by ground truth, so its caption says "correct within
    3 px", not "inliers" (RANSAC's word); without ground truth it is RANSAC's verdict."""
    from goodpoint_ros.evaluation import report
    from goodpoint_ros.evaluation.scoring import example_entry
    said = []
    real = report.draw_matches
    monkeypatch.setattr(report, "draw_matches",
                        lambda *a, **k: said.append(k["label"]) or real(*a, **k))
    img = np.zeros((48, 64), np.uint8)
    kp = np.array([[10.0, 10.0], [30.0, 20.0]])
    for eps in (3.0, None):
        entry = example_entry(kp, kp, np.array([[0, 0], [1, 1]]), np.array([True, False]), eps)
        report.write_match_pictures([{"name": "a-b", "image_a": img, "image_b": img,
                                      "methods": {"orb": entry}}], tmp_path)
    assert said == ["correct within 3 px", "inliers"]
    assert (tmp_path / "matches_a-b_orb.png").is_file()
