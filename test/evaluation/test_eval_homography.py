"""Homography-set evaluation: layouts, ground-truth pipeline, CLI, bad input, real data."""
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import SAMPLE, require_shared
from goodpoint_ros.cli import main
from goodpoint_ros.core.keypoints import Features
from goodpoint_ros.evaluation.aggregate import aggregate
from goodpoint_ros.evaluation.homography import (
    discover_pairs,
    evaluate_pairs,
    fit_homography_from_matches,
    read_homography,
    resize_pair,
    scale_matrix,
    split_of,
)
from goodpoint_ros.evaluation.methods import Method
from goodpoint_ros.evaluation.metrics import apply_homography

H_TRUE = np.array([[0.95, 0.04, 6.0], [-0.03, 1.02, 4.0], [2e-5, -1e-5, 1.0]])


def texture(w, h, seed=0):
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(0, 255, (h // 8, w // 8), dtype=np.uint8), (w, h))
    return cv2.GaussianBlur(img, (3, 3), 0)


def write_sequence(d: Path, sizes, Hs, ext=".ppm"):
    d.mkdir(parents=True)
    for k, (w, h) in enumerate(sizes, start=1):
        cv2.imwrite(str(d / f"{k}{ext}"), cv2.cvtColor(texture(w, h, k), cv2.COLOR_GRAY2BGR))
    for k, H in Hs.items():
        np.savetxt(d / f"H_1_{k}", H)


# --------------------------------------------------------------------------- layouts

def test_discovers_hpatches_evd_and_retina_layouts(tmp_path):
    write_sequence(tmp_path / "hp" / "i_lamp", [(80, 64)] * 3, {2: np.eye(3), 3: H_TRUE})
    write_sequence(tmp_path / "hp" / "v_wall", [(96, 80), (80, 64)], {2: H_TRUE}, ext=".png")
    evd = tmp_path / "evd"
    for sub in ("1", "2", "h"):
        (evd / sub).mkdir(parents=True)
    for name in ("adam", "cat"):
        cv2.imwrite(str(evd / "1" / f"{name}.png"), texture(64, 48))
        cv2.imwrite(str(evd / "2" / f"{name}.png"), texture(64, 48))
        np.savetxt(evd / "h" / f"{name}.txt", H_TRUE)
    ret = tmp_path / "retina"
    ret.mkdir()
    cv2.imwrite(str(ret / "retina_a.jpg"), texture(64, 48))
    cv2.imwrite(str(ret / "retina_b.jpg"), texture(64, 48))
    pa = np.array([[5, 5], [50, 8], [45, 40], [8, 38], [25, 20], [30, 30]], float)
    pb, _ = apply_homography(H_TRUE, pa)
    rows = np.concatenate([pa, pb, np.ones((6, 1))], 1)
    rows = np.concatenate([rows, [[1, 1, 60, 40, 0]]])          # a wrong putative match
    np.savetxt(ret / "matches.txt", rows, header="x1 y1 x2 y2 is_correct")

    pairs, problems = discover_pairs(tmp_path)
    names = sorted(p.name for p in pairs)
    assert names == ["evd/adam", "evd/cat", "i_lamp/1-2", "i_lamp/1-3", "retina", "v_wall/1-2"]
    assert problems == []
    by = {p.name: p for p in pairs}
    assert by["i_lamp/1-3"].split == "i" and by["v_wall/1-2"].split == "v"
    assert by["evd/adam"].split is None and by["evd/adam"].dataset == "evd"
    np.testing.assert_allclose(by["i_lamp/1-3"].H, H_TRUE)
    # the retina H is fitted to the labelled-correct matches only
    Hr = by["retina"].H / by["retina"].H[2, 2]
    np.testing.assert_allclose(Hr, H_TRUE, atol=1e-6)
    assert by["retina"].notes["correct_matches"] == 6
    # one sequence given directly works too
    pairs1, _ = discover_pairs(tmp_path / "hp" / "v_wall")
    assert [p.name for p in pairs1] == ["v_wall/1-2"]


def test_malformed_or_orphan_h_files_are_skipped_and_reported(tmp_path):
    d = tmp_path / "v_x"
    write_sequence(d, [(64, 48)] * 3, {2: H_TRUE})
    (d / "H_1_3").write_text("1 2 3\n4 5\n")
    np.savetxt(d / "H_1_5", H_TRUE)                              # no image 5
    orphan = tmp_path / "v_y"
    write_sequence(orphan, [(64, 48)] * 2, {2: H_TRUE})
    (orphan / "1.ppm").unlink()                                  # H files but no image 1
    pairs, problems = discover_pairs(tmp_path)
    assert [p.name for p in pairs] == ["v_x/1-2"]
    assert len(problems) == 3
    assert any("H_1_3" in p for p in problems) and any("H_1_5" in p for p in problems)
    assert any(p.startswith("v_y") and "no image 1" in p for p in problems)


def test_read_homography_errors(tmp_path):
    bad = tmp_path / "H"
    bad.write_text("1 0 0\n0 1 0\n")
    with pytest.raises(ValueError, match="3x3"):
        read_homography(bad)
    bad.write_text("0 0 0\n0 0 0\n0 0 0\n")
    with pytest.raises(ValueError, match="singular"):
        read_homography(bad)
    bad.write_text("a b c\n")
    with pytest.raises(ValueError, match="not a 3x3"):
        read_homography(bad)


def test_no_data_set_found_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no homography sequences found"):
        discover_pairs(tmp_path / "empty")
    with pytest.raises(ValueError, match="no such directory"):
        discover_pairs(tmp_path / "nope")


def test_split_names():
    assert split_of("i_leuven") == "i" and split_of("v_graf") == "v"
    assert split_of("hpatches_v_churchill") == "v" and split_of("adam") is None


def test_fit_homography_needs_four_points():
    with pytest.raises(ValueError, match="at least 4"):
        fit_homography_from_matches(np.zeros((3, 2)), np.zeros((3, 2)))


def test_resize_pair_updates_h_in_the_centre_convention():
    a, b = np.zeros((48, 64), np.uint8), np.zeros((60, 80), np.uint8)
    ra, rb, H2 = resize_pair(a, b, H_TRUE, (32, 24))
    assert ra.shape == (24, 32) and rb.shape == (24, 32)
    pts = np.array([[10.0, 7.0], [50.0, 30.0]])
    p_b, _ = apply_homography(H_TRUE, pts)
    # original → b, then b's resize  ==  a's resize, then H2
    lhs, _ = apply_homography(scale_matrix(32 / 80, 24 / 60), p_b)
    rhs, _ = apply_homography(H2, apply_homography(scale_matrix(0.5, 0.5), pts)[0])
    np.testing.assert_allclose(lhs, rhs, atol=1e-9)
    # pixel centre 0 of a 2x downscale lands at -0.25 (x' = (x + 0.5)/2 - 0.5)
    np.testing.assert_allclose(apply_homography(scale_matrix(0.5, 0.5), [[0, 0]])[0], [[-0.25, -0.25]])


# --------------------------------------------------------------------------- pipeline with ground truth

class GroundTruthMethod(Method):
    """'Detects' fixed points in image 1 and their exact warps in image k.

    Image identity is read from the image size (the test gives each a unique one);
    descriptors are one-hot ids so the matcher pairs a point with its own warp.
    """
    name = "gt"

    def __init__(self, points_by_size):
        self.points_by_size = points_by_size
        self.calls = 0

    def detect(self, image):
        self.calls += 1
        size = (image.shape[1], image.shape[0])
        pts, ids = self.points_by_size[size]
        desc = np.eye(64, dtype=np.float32)[ids]
        return Features(pts.astype(np.float32), np.ones(len(pts), np.float32), desc, size)

    def match(self, f0, f1):
        from goodpoint_ros.core.matching import match_descriptors
        return match_descriptors(f0.descriptors, f1.descriptors)[0]


def gt_setup(tmp_path, H_stored):
    sizes = [(200, 160), (220, 170)]
    d = tmp_path / "v_gt"
    write_sequence(d, sizes, {2: H_stored}, ext=".png")
    xs, ys = np.meshgrid(np.arange(20, 180, 30), np.arange(20, 140, 30))
    pa = np.stack([xs.ravel(), ys.ravel()], 1).astype(float)
    pb, _ = apply_homography(H_TRUE, pa)
    inside = (pb[:, 0] < 219.5) & (pb[:, 1] < 169.5)
    ids = np.arange(len(pa))
    method = GroundTruthMethod({sizes[0]: (pa, ids), sizes[1]: (pb[inside], ids[inside])})
    return d, method


def test_ground_truth_keypoints_score_perfectly_through_the_pipeline(tmp_path):
    d, method = gt_setup(tmp_path, H_TRUE)
    pairs, _ = discover_pairs(d)
    per_pair, skipped, _ = evaluate_pairs(pairs, {"gt": method}, progress=False)
    assert skipped == [] and len(per_pair) == 1
    r = per_pair[0]["methods"]["gt"]
    assert r["precision"] == pytest.approx(1.0) and r["repeatability"] == pytest.approx(1.0)
    assert r["corner_error"] < 1e-3 and r["coverage"] > 0.5
    assert per_pair[0]["size_a"] == [200, 160] and per_pair[0]["size_b"] == [220, 170]
    summary = aggregate(per_pair, ["gt"])
    assert summary["methods"]["gt"]["homography_accuracy"]["1"] == 1.0
    assert list(summary["splits"]) == ["v"]


def test_a_wrong_ground_truth_homography_collapses_precision(tmp_path):
    shift = np.array([[1, 0, 6.0], [0, 1, 0], [0, 0, 1]])
    d, method = gt_setup(tmp_path, shift @ H_TRUE)              # stored H off by 6 px
    pairs, _ = discover_pairs(d)
    r = evaluate_pairs(pairs, {"gt": method}, progress=False)[0][0]["methods"]["gt"]
    assert r["precision"] == 0.0 and r["repeatability"] == 0.0
    assert r["eps5"]["precision"] == 0.0
    assert r["corner_error"] == pytest.approx(6.0, abs=1e-3)


def test_image_1_features_are_computed_once_per_sequence_and_bad_images_skip_pairs(tmp_path):
    d = tmp_path / "i_seq"
    write_sequence(d, [(64, 48)] * 4, {2: np.eye(3), 3: np.eye(3), 4: np.eye(3)}, ext=".png")
    (d / "3.png").write_bytes(b"not an image")
    calls = []

    class Counting(GroundTruthMethod):
        def detect(self, image):
            calls.append(image.shape)
            return Features(np.array([[10.0, 10.0]], np.float32), np.ones(1, np.float32),
                            np.eye(64, dtype=np.float32)[:1], (image.shape[1], image.shape[0]))

    per_pair, skipped, _ = evaluate_pairs(discover_pairs(d)[0], {"c": Counting({})}, progress=False)
    assert [p["name"] for p in per_pair] == ["i_seq/1-2", "i_seq/1-4"]
    assert len(skipped) == 1 and skipped[0][0] == "i_seq/1-3" and "decode" in skipped[0][1]
    assert len(calls) == 3                                       # 1 once, 2, 4


def test_a_detector_error_skips_the_pair_not_the_run(tmp_path):
    d = tmp_path / "i_seq"
    write_sequence(d, [(64, 48), (64, 48), (60, 40)], {2: np.eye(3), 3: np.eye(3)}, ext=".png")

    class Picky(GroundTruthMethod):
        def detect(self, image):
            if image.shape[1] == 60:
                import cv2 as _cv2
                raise _cv2.error("OpenCV(5.0.0) boom\n(-215:Assertion failed) size in function 'x'")
            return Features(np.array([[10.0, 10.0]], np.float32), np.ones(1, np.float32),
                            np.eye(64, dtype=np.float32)[:1], (image.shape[1], image.shape[0]))

    per_pair, skipped, _ = evaluate_pairs(discover_pairs(d)[0], {"p": Picky({})}, progress=False)
    assert [p["name"] for p in per_pair] == ["i_seq/1-2"]
    assert skipped[0][0] == "i_seq/1-3" and "Assertion failed" in skipped[0][1]


# --------------------------------------------------------------------------- CLI

def run_cli(argv, capsys):
    try:
        rc = main(argv)
    except SystemExit as exc:      # refused by the parser (an option out of range)
        rc = exc.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_on_the_bundled_sequence_with_goodpoint_and_orb(tmp_path, capsys):
    js, rep = tmp_path / "out.json", tmp_path / "report"
    # θ just above 1/64 so the (possibly untrained) bundled net yields keypoints
    rc, out, err = run_cli(["eval", "homography", str(SAMPLE), "--methods", "goodpoint,orb",
                            "--resize", "128x96", "--max-keypoints", "200", "--threshold", "0.0157",
                            "--max-pairs", "2", "--json", str(js), "--report", str(rep),
                            "--pictures", "1", "--no-progress"], capsys)
    assert rc == 0, err
    assert "Harmonic mean" in out and "View Replication" in out
    res = json.loads(js.read_text())
    assert set(res) >= {"methods", "splits", "pairs", "per_pair", "settings"}
    assert res["pairs"] == 2 and list(res["splits"]) == ["v"]
    assert set(res["methods"]) == {"goodpoint", "orb"}
    orb = res["methods"]["orb"]
    assert {"precision", "repeatability", "coverage", "harmonic_mean", "eps5"} <= set(orb)
    assert orb["keypoints"] <= 200
    assert 0 <= orb["precision"] <= 1 and orb["eps5"]["precision"] >= orb["precision"]
    s = res["settings"]
    assert s["resize"] == [128, 96] and s["max_keypoints"] == 200 and s["eps"] == [3.0, 5.0]
    assert s["method_settings"]["goodpoint"]["keypoint_threshold"] == 0.0157
    assert s["method_settings"]["goodpoint"]["max_keypoints"] == 200
    assert res["per_pair"][0]["size_a"] == [128, 96]
    files = {p.name for p in rep.iterdir()}
    assert {"report.md", "metrics.png", "harmonic_per_pair.png"} <= files
    assert any(f.startswith("matches_") for f in files)
    assert "| **Harmonic mean** |" in (rep / "report.md").read_text()


def test_cli_with_no_keypoints_reports_undefined_not_a_crash(tmp_path, capsys):
    js = tmp_path / "o.json"
    # θ = 0.99: nothing passes; metrics are undefined (null), coverage 0
    rc, out, err = run_cli(["eval", "homography", str(SAMPLE), "--methods", "goodpoint",
                            "--resize", "64x48", "--threshold", "0.99", "--max-pairs", "1",
                            "--json", str(js), "--no-progress"], capsys)
    assert rc == 0, err
    gp = json.loads(js.read_text())["methods"]["goodpoint"]
    assert gp["precision"] is None and gp["repeatability"] is None
    assert gp["coverage"] == 0.0 and gp["keypoints"] == 0 and gp["undefined"]["precision"] == 1
    assert gp["harmonic_mean"] == 0.0


@pytest.mark.parametrize("argv,msg", [
    (["eval", "homography", "/nonexistent/dir"], "no such directory"),
    (["eval", "homography", str(SAMPLE), "--methods", "orb,surf"], "unknown method 'surf'"),
    (["eval", "homography", str(SAMPLE / "1.png")], "not a directory"),
    (["eval"], "choose what to evaluate"),
    (["eval", "homography", str(SAMPLE), "--coverage-radius", "0"], "--coverage-radius"),
    (["eval", "homography", str(SAMPLE), "--max-keypoints", "-3"], "--max-keypoints"),
])
def test_cli_bad_input_gives_one_line_errors(argv, msg, capsys):
    rc, out, err = run_cli(argv, capsys)
    assert rc == 2
    assert msg in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_rejects_bad_tolerances(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["eval", "homography", str(SAMPLE), "--eps", "3,-1"])
    assert exc.value.code == 2 and "tolerances must be positive" in capsys.readouterr().err


def test_cli_partly_bad_set_evaluates_good_pairs_and_counts_skips(tmp_path, capsys):
    d = tmp_path / "v_churchill"
    shutil.copytree(SAMPLE, d)
    (d / "4.png").write_bytes(b"\x89PNG truncated")
    (d / "H_1_5").write_text("garbage\n")
    js = tmp_path / "o.json"
    rc, out, err = run_cli(["eval", "homography", str(d), "--methods", "orb", "--resize", "128x96",
                            "--json", str(js), "--no-progress"], capsys)
    assert rc == 0, err
    res = json.loads(js.read_text())
    assert res["pairs"] == 3 and res["skipped"] == 2
    assert sorted(p["name"] for p in res["per_pair"]) == ["v_churchill/1-2", "v_churchill/1-3",
                                                          "v_churchill/1-6"]
    assert "2 skipped" in out


def test_cli_all_pairs_bad_is_an_error(tmp_path, capsys):
    d = tmp_path / "v_bad"
    d.mkdir()
    (d / "1.png").write_bytes(b"junk")
    (d / "2.png").write_bytes(b"junk")
    np.savetxt(d / "H_1_2", np.eye(3))
    rc, out, err = run_cli(["eval", "homography", str(d), "--methods", "orb", "--no-progress"], capsys)
    assert rc == 2 and "no pair could be evaluated" in err


# --------------------------------------------------------------------------- real data (../shared)

def test_real_sequences_sift_is_precise_with_the_stored_homographies(tmp_path, capsys):
    root = require_shared("homography")
    for seq in ("i_leuven", "v_graf"):
        js = tmp_path / f"{seq}.json"
        rc, out, err = run_cli(["eval", "homography", str(root / seq), "--methods", "sift",
                                "--max-pairs", "1", "--max-keypoints", "500", "--json", str(js),
                                "--no-progress"], capsys)
        assert rc == 0, err
        sift = json.loads(js.read_text())["methods"]["sift"]
        # a wrong direction or pixel convention of H would drive these to ~0
        assert sift["precision"] > 0.8, seq
        assert sift["repeatability"] > 0.3, seq
        assert sift["homography_accuracy"]["3"] == 1.0, seq


def test_real_evd_and_retina_layouts_are_read(capsys):
    root = require_shared()
    pairs, problems = discover_pairs(root / "evd")
    assert len(pairs) == 15 and problems == []
    # EVD's h/ maps image 1 to image 2: warping 1 correlates with 2 (not with the inverse)
    p = next(q for q in pairs if q.name.endswith("adam"))
    a = cv2.imread(str(p.path_a), cv2.IMREAD_GRAYSCALE).astype(np.float32)
    b = cv2.imread(str(p.path_b), cv2.IMREAD_GRAYSCALE).astype(np.float32)
    corr = []
    for H in (p.H, np.linalg.inv(p.H)):
        w = cv2.warpPerspective(a, H, (b.shape[1], b.shape[0]), borderValue=-1)
        m = w >= 0
        corr.append(np.corrcoef(w[m], b[m])[0, 1])
    assert corr[0] > 0.6 > corr[1]
    ret, problems = discover_pairs(root / "retina")
    assert len(ret) == 1 and problems == []
    assert ret[0].notes["correct_matches"] == 49 and ret[0].notes["fit_rms_px"] < 10
