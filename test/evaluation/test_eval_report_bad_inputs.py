"""The report folder is written as a whole (docs/bad-inputs.md, case 6): a reader
sees the old report or the new one, never a mixture."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import SAMPLE
from goodpoint_ros.evaluation import report

GOODPOINT = Path(sys.executable).parent / "goodpoint"


def evaluate(*args):
    if not GOODPOINT.exists():
        pytest.skip("goodpoint console script not installed")
    p = subprocess.run([str(GOODPOINT), "eval", "homography", str(SAMPLE), "--max-pairs", "2",
                        "--pictures", "1", "--no-progress", *map(str, args)],
                       capture_output=True, text=True, timeout=300)
    return p


def snapshot(folder: Path):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_a_rerun_with_fewer_methods_leaves_no_stale_pictures(tmp_path):
    rep, js = tmp_path / "rep", tmp_path / "r.json"
    assert evaluate("--methods", "orb,sift", "--report", rep, "--json", js).returncode == 0
    assert any("orb" in p.name for p in rep.iterdir())
    p = evaluate("--methods", "sift", "--report", rep, "--json", js)
    assert p.returncode == 0, p.stderr
    assert not any("orb" in p.name for p in rep.iterdir()), sorted(rep.iterdir())
    run_id = json.loads(js.read_text())["run_id"]
    assert f"Run `{run_id}`" in (rep / "report.md").read_text()     # the pair belongs together
    assert not list(tmp_path.glob(".rep.*"))                        # no temp folder left


def test_a_failure_midway_leaves_the_previous_report_untouched(tmp_path, monkeypatch):
    result = {"methods": {"orb": {}}, "per_pair": [], "settings": {}, "pairs": 0}
    rep = tmp_path / "rep"
    monkeypatch.setattr(report, "plot_metric_bars", lambda r, p: p.write_bytes(b"old plot"))
    report.write_report(result, rep)
    before = snapshot(rep)

    def dies(r, p):
        p.write_bytes(b"new plot")
        raise KeyboardInterrupt          # killed while writing the new report
    monkeypatch.setattr(report, "plot_metric_bars", dies)
    with pytest.raises(KeyboardInterrupt):
        report.write_report(result, rep)
    assert snapshot(rep) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_a_report_into_a_folder_that_is_not_a_report_is_refused(tmp_path):
    data = tmp_path / "mine"
    data.mkdir()
    (data / "thesis.tex").write_text("years of work")
    p = evaluate("--methods", "orb", "--report", data)
    assert p.returncode == 2 and "not a report" in p.stderr and "Traceback" not in p.stderr
    assert p.stdout == ""                            # refused before evaluating anything
    assert (data / "thesis.tex").read_text() == "years of work"


def test_a_concurrent_writers_folder_in_progress_is_not_swept(tmp_path, monkeypatch):
    """The stale-folder sweep takes only folders of runs that are gone: a second eval into
    the same --report must not delete the first one's work in progress."""
    result = {"methods": {"orb": {}}, "per_pair": [], "settings": {}, "pairs": 0}
    monkeypatch.setattr(report, "plot_metric_bars", lambda r, p: p.write_bytes(b"plot"))
    rep = tmp_path / "rep"
    alive = tmp_path / f".rep.tmp-{os.getppid()}-inprogress"   # a live process's folder
    alive.mkdir()
    dead = tmp_path / ".rep.tmp-killed"                         # an older run's leftover
    dead.mkdir()
    report.write_report(result, rep)
    assert alive.is_dir() and not dead.exists()
    assert (rep / "report.md").is_file()


def test_a_report_folder_made_meanwhile_is_still_replaced_whole(tmp_path, monkeypatch):
    """``out`` appearing between the check and the rename (another writer) is replaced
    as a whole, not a bare "Directory not empty"."""
    out, tmp = tmp_path / "rep", tmp_path / ".rep.tmp-1-x"
    tmp.mkdir()
    (tmp / "report.md").write_text("new")
    real = Path.rename

    def racing(self, target):
        if self == tmp and not out.exists():      # the other writer lands first
            out.mkdir()
            (out / "report.md").write_text("other")
        return real(self, target)

    monkeypatch.setattr(Path, "rename", racing)
    report.replace_folder(tmp, out)
    assert (out / "report.md").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_the_metric_bars_legend_covers_no_bar():
    """The legend sat inside the first panel and hid GoodPoint's harmonic-mean bar (the tallest
    group there): no bar may lie under it."""
    rng = np.random.default_rng(0)
    keys = ("precision", "repeatability", "coverage", "harmonic_mean")

    def block():
        return {k: float(rng.uniform(0.6, 0.95)) for k in keys}
    methods = {m: {**block(), "eps5": block()} for m in ("goodpoint", "orb", "sift", "akaze")}
    fig = report.metric_bars_figure({"methods": methods, "settings": {"eps": [3, 5]}})
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    assert len(legends) == 1
    box = legends[0].get_window_extent(renderer)
    bars = [p.get_window_extent(renderer) for ax in fig.axes for p in ax.patches]
    assert len(bars) == 2 * 4 * 4
    assert not [b for b in bars if b.overlaps(box)]
