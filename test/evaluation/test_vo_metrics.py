"""VO metrics: ATE / RPE cross-checked against evo (test-only, GPL: never imported by the
package) on a real VO trajectory of KITTI 06; Umeyama and the TUM round trip; eval vo CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import require_shared
from goodpoint_ros.core.geometry import make_T, quat_to_R
from goodpoint_ros.evaluation.vo.metrics import (
    align,
    ate,
    endpoint_drift,
    kitti_segments,
    read_tum,
    rpe,
    umeyama,
    write_tum,
)

KITTI = "vo/kitti06_000000-000050"


@pytest.fixture(scope="module")
def vo_trajectory(tmp_path_factory):
    """A real estimate: ORB stereo VO on 16 frames of KITTI 06 at half resolution."""
    from goodpoint_ros.evaluation.vo.datasets import load_sequence
    from goodpoint_ros.evaluation.vo.run import method_source, run_sequence
    from goodpoint_ros.odometry import VOConfig
    seq = load_sequence(require_shared(KITTI), scale=0.5)
    r = run_sequence(seq, method_source("orb", 1000), VOConfig(), limit=16)
    out = tmp_path_factory.mktemp("evo")
    write_tum(out / "est.tum", r.stamps, r.poses)
    gt = np.stack(seq.gt[:16])
    write_tum(out / "gt.tum", r.stamps, gt)
    return out, r.poses, gt


def test_ate_and_rpe_agree_with_evo(vo_trajectory):
    evo_sync = pytest.importorskip("evo.core.sync")
    from evo.core import metrics as evo_metrics
    from evo.tools import file_interface
    out, est, gt = vo_trajectory
    ref = file_interface.read_tum_trajectory_file(str(out / "gt.tum"))
    e = file_interface.read_tum_trajectory_file(str(out / "est.tum"))
    ref, e = evo_sync.associate_trajectories(ref, e)
    for sim3 in (False, True):                                   # evo_ape -a / -as
        e_al = file_interface.read_tum_trajectory_file(str(out / "est.tum"))
        e_al.align(ref, correct_scale=sim3)
        ape = evo_metrics.APE(evo_metrics.PoseRelation.translation_part)
        ape.process_data((ref, e_al))
        ours = ate(est, gt, with_scale=sim3)["rmse"]
        assert ours == pytest.approx(ape.get_statistic(evo_metrics.StatisticsType.rmse), rel=0.01)
    ours = rpe(est, gt)
    for relation, key in ((evo_metrics.PoseRelation.translation_part, "trans_rmse"),
                          (evo_metrics.PoseRelation.rotation_angle_deg, "rot_rmse_deg")):
        m = evo_metrics.RPE(relation, delta=1, delta_unit=evo_metrics.Unit.frames, all_pairs=False)
        m.process_data((ref, e))
        assert ours[key] == pytest.approx(m.get_statistic(evo_metrics.StatisticsType.rmse), rel=0.01)
    assert ours["trans_rmse"] > 0.005                           # a real estimate, not the identity


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(0)
    src = rng.standard_normal((50, 3))
    R = quat_to_R([0.2, -0.1, 0.4, 0.9])
    dst = 2.5 * src @ R.T + [1, 2, 3]
    R2, t2, s2 = umeyama(src, dst, True)
    assert R2 == pytest.approx(R, abs=1e-9) and s2 == pytest.approx(2.5) and t2 == pytest.approx([1, 2, 3])
    _, _, s = umeyama(src, dst, False)
    assert s == 1.0


def test_aligned_copy_has_zero_error_and_drift_and_segments():
    gt = np.stack([make_T(quat_to_R([0, 0.01 * i, 0, 1]), [0, 0, 1.2 * i]) for i in range(120)])
    moved = np.stack([make_T(quat_to_R([0, 0, 0.3, 0.95]), [5, 1, 0]) @ T for T in gt])
    assert ate(moved, gt)["rmse"] < 1e-9
    assert rpe(moved, gt)["trans_rmse"] < 1e-9
    assert endpoint_drift(gt, gt) == 0.0
    k = kitti_segments(gt, gt)
    assert k is not None and k["t_err_pct"] < 1e-9        # 143 m: long enough for 100 m segments
    assert kitti_segments(gt[:50], gt[:50]) is None         # 59 m: too short
    scaled = gt.copy()
    scaled[:, :3, 3] *= 0.5                                 # mono: half the scale
    assert ate(scaled, gt, with_scale=True)["rmse"] < 1e-9
    assert align(scaled, gt, True)[1] == pytest.approx(2.0)


def test_tum_round_trip(tmp_path):
    T = np.stack([make_T(quat_to_R([0.1, 0.2, 0.3, 0.9]), [1, 2, 3]), np.eye(4)])
    write_tum(tmp_path / "t.tum", [0.5, 1.5], T, header="test")
    stamps, back = read_tum(tmp_path / "t.tum")
    assert stamps == pytest.approx([0.5, 1.5]) and back == pytest.approx(T, abs=1e-8)


def test_eval_vo_cli_writes_trajectories_report_and_json(tmp_path):
    from goodpoint_ros.cli import main
    data = require_shared(KITTI)
    out, js = tmp_path / "out", tmp_path / "m.json"
    code = main(["eval", "vo", str(data), "--methods", "orb,akaze", "--scale", "0.5", "--frames", "6",
                 "--out", str(out), "--json", str(js), "--no-progress",
                 "--stereo-matching", "patch"])
    assert code == 0
    for name in ("trajectory_orb.tum", "trajectory_akaze.tum", "report.md", "trajectory.png",
                 "errors.png"):
        assert (out / name).is_file(), name
    stamps, poses = read_tum(out / "trajectory_orb.tum")
    assert len(stamps) == 6 and stamps[1] == pytest.approx(0.1044989)     # input stamps
    result = json.loads(js.read_text())
    m = result["methods"]["orb"]
    assert m["ate"]["rmse"] < 0.15 and m["lost_count"] == 0 and m["alignment"] == "SE(3)"
    assert result["settings"]["vo"]["stereo_matching"] == "patch"
    assert "first 2 left out" in result["settings"]["timing"]          # what the times mean
    t = m["time_ms_mean"]
    assert t["total"] == pytest.approx(sum(t[k] for k in ("network", "frontend", "tracking",
                                                          "ba")), rel=0.05)
    assert m["backend_share"] == pytest.approx((t["tracking"] + t["ba"]) / t["total"])
    assert "| orb |" in (out / "report.md").read_text()


def test_eval_vo_cli_bad_inputs(tmp_path, capsys):
    from goodpoint_ros.cli import main
    assert main(["eval", "vo", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "not a KITTI" in capsys.readouterr().err
    (tmp_path / "image_0").mkdir()
    (tmp_path / "image_1").mkdir()
    src = require_shared(KITTI)
    import shutil
    for side in ("image_0", "image_1"):
        shutil.copy(src / side / "000000.png", tmp_path / side / "000000.png")
    assert main(["eval", "vo", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "missing calibration" in capsys.readouterr().err
    assert main(["eval", "vo", str(src), "--mode", "rgbd", "--out", str(tmp_path / "o")]) == 2
    assert "supports --mode stereo, mono" in capsys.readouterr().err
    for flag, value, rule in (("--network-scale", "3", "must be in [0.25, 2]"),
                              ("--pnp-threshold", "0", "must be > 0")):
        with pytest.raises(SystemExit) as exc:     # refused while parsing, before any work
            main(["eval", "vo", str(src), flag, value, "--out", str(tmp_path / "o")])
        assert exc.value.code == 2
        assert f"argument {flag}: {rule}" in capsys.readouterr().err


def test_eval_vo_cli_network_scale_reaches_goodpoint(tmp_path):
    """--network-scale 2: the network sees doubled frames (recorded in the JSON) and the
    trajectory is still in the input's pixels (ATE of a short, real drive stays small)."""
    from goodpoint_ros.cli import main
    data = require_shared(KITTI)
    js = tmp_path / "m.json"
    assert main(["eval", "vo", str(data), "--methods", "goodpoint", "--scale", "0.25",
                 "--frames", "5", "--network-scale", "2", "--out", str(tmp_path / "o"),
                 "--json", str(js), "--no-progress"]) == 0
    result = json.loads(js.read_text())
    assert result["settings"]["methods"]["goodpoint"]["network_scale"] == 2.0
    assert result["settings"]["methods"]["goodpoint"]["frame_scale"] == 2.0
    assert result["settings"]["vo"]["reprojection_threshold"] == 2.0       # stereo's own
    assert result["settings"]["vo"]["keyframe_gap"] == 3
    assert result["settings"]["vo"]["anchor_keyframes"] == 0                # stereo: none
    m = result["methods"]["goodpoint"]
    assert m["lost_count"] == 0 and m["ate"]["rmse"] < 0.15


def test_an_elongated_top_view_gets_a_stretched_second_panel(tmp_path):
    """A 60 m straight drive is drawn at equal scale and once more with the cross-track axis
    stretched (0.1 m off the road is invisible at 1:1); a loop keeps the one panel."""
    import cv2

    from goodpoint_ros.evaluation.vo.report import cross_track_stretch, plot_trajectories
    z = np.linspace(0, 60, 61)
    road = np.stack([np.sin(z / 10), z], 1)                        # ±1 m over 60 m
    assert cross_track_stretch(road) == pytest.approx(60 / np.ptp(road[:, 0]), rel=1e-6)
    t = np.linspace(0, 2 * np.pi, 61)
    assert cross_track_stretch(np.stack([10 * np.cos(t), 8 * np.sin(t)], 1)) == 1.0

    def poses(xz):
        return [make_T(np.eye(3), np.array([x, 0.0, zz])) for x, zz in xz]

    for name, xz in (("road", road), ("loop", np.stack([10 * np.cos(t), 8 * np.sin(t)], 1))):
        gt = poses(xz)
        est = np.stack(poses(xz + [0.1, 0.0]))                     # 0.1 m to the right
        png = tmp_path / f"{name}.png"
        plot_trajectories({"vo": (est, np.arange(len(gt)))}, gt, png, sim3=False)
        h, w = cv2.imread(str(png)).shape[:2]
        assert (w > 1.5 * h) == (name == "road"), (name, w, h)


def test_error_plot_of_a_run_where_no_method_was_scored_says_so(tmp_path):
    """Every method lost (metrics None): the plot says why it is empty, no legend warning."""
    import warnings

    from goodpoint_ros.evaluation.vo.report import plot_errors
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot_errors({"methods": {"orb": None, "sift": None}}, {}, tmp_path / "e.png")
    assert (tmp_path / "e.png").stat().st_size > 1000


def test_time_figures_count_the_bundle_adjustment_of_keyframes_only():
    """BA runs on keyframes only: with one keyframe in four its median per frame is 0, and
    the back end's share and the rate taken from medians left it out (the generated stereo
    sequence, ORB: median share 0.50, mean 0.59; BA 0 ms in the report's table). The first
    frames' start-up (graph compilation, lazy imports) is not a frame's cost."""
    from goodpoint_ros.evaluation.vo.run import TIMING_WARMUP, RunResult
    n = 10
    gt = [np.eye(4) for _ in range(n)]
    for i, g in enumerate(gt):
        g[2, 3] = 0.1 * i
    warm = range(TIMING_WARMUP)
    times = {"network": [500.0 if i in warm else 20.0 for i in range(n)],
             "frontend": [10.0] * n, "tracking": [300.0 if i in warm else 10.0 for i in range(n)],
             "ba": [40.0 if i % 4 == 2 else 0.0 for i in range(n)]}
    times["total"] = [sum(v[i] for v in times.values()) for i in range(n)]
    r = RunResult("orb", "stereo", np.arange(n) * 0.1, np.stack(gt), ["OK"] * n, times, 0, 0,
                  [100] * n, gt, 1.0, keyframes=[i % 4 == 2 for i in range(n)])
    m = r.metrics()
    assert TIMING_WARMUP == 2      # the figures below: frames 2..9, BA on frames 2 and 6
    assert m["time_ms_mean"]["ba"] == pytest.approx(10.0) and m["time_ms_median"]["ba"] == 0
    assert m["time_ms_mean"]["network"] == 20.0
    assert m["backend_share"] == pytest.approx((10 + 10) / 50)     # means: 20 of 50 ms
    assert m["hz"] == pytest.approx(1e3 / 50)
