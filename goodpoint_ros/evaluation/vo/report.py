"""Markdown report and plots of ``goodpoint eval vo`` (matplotlib, lazily imported)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List

import numpy as np

from goodpoint_ros.core.weights import atomic_write_bytes
from goodpoint_ros.evaluation.vo.metrics import align


def _fmt(v, digits=3, suffix=""):
    if v is None:
        return "–"
    return f"{v:.{digits}f}{suffix}"


def table(result: Dict) -> List[str]:
    """One Markdown row per method."""
    lines = ["| method | ATE RMSE (m) | RPE trans (m/frame) | RPE rot (°/frame) | RPE (%) | "
             "KITTI t_err (%) | end drift (%) | lost | frames scored (no pose) | median inliers | "
             "mean ms/frame (net / frontend / track / BA) | Hz |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, m in result["methods"].items():
        if m is None:
            lines.append(f"| {name} | no ground truth | | | | | | | | | | |")
            continue
        k = m.get("kitti")
        t = m["time_ms_mean"]
        lines.append(
            f"| {name} | {_fmt(m['ate']['rmse'])} | {_fmt(m['rpe']['trans_rmse'], 4)} | "
            f"{_fmt(m['rpe']['rot_rmse_deg'], 3)} | {_fmt(m['rpe']['trans_pct'], 2)} | "
            f"{_fmt(k['t_err_pct'], 2) if k else '– (< 100 m)'} | "
            f"{_fmt(m['endpoint_drift_pct'], 2)} | {m['lost_count']} | {m['frames']} "
            f"({m.get('frames_without_pose', 0)}) | "
            f"{m['median_inliers']:.0f} | {t['total']:.0f} ({t['network']:.0f} / "
            f"{t.get('frontend', 0):.0f} / {t['tracking']:.0f} / {t['ba']:.0f}) | "
            f"{_fmt(m['hz'], 1)} |")
    return lines


#: A top view longer than this many times its width gets a second, stretched panel.
ELONGATED = 4.0


def cross_track_stretch(xz: np.ndarray) -> float:
    """How much to stretch the narrow axis of a top view so its deviations show: the
    extent ratio of the ground-truth path ``xz`` [N,2] when it is over :data:`ELONGATED`
    (a straight drive: at equal scale, 0.1 m off a 60 m road is invisible), else 1."""
    extent = np.ptp(xz, axis=0) if len(xz) else np.zeros(2)
    narrow = max(extent.min(), 1e-3 * extent.max())     # a ruler-straight path: 1000× at most
    ratio = extent.max() / narrow if narrow > 0 else 1.0
    return float(ratio) if ratio > ELONGATED else 1.0


def plot_trajectories(runs, gt, path: Path, sim3: bool) -> None:
    """Top view (x–z of the first camera: right / forward) of aligned estimates and ground
    truth, at equal scale; an elongated path gets a second panel with the cross-track axis
    stretched (:func:`cross_track_stretch`), where the estimates' deviations are visible.

    runs: name → (est [M,4,4], frame indices [M]); gt: per frame 4×4 or None."""
    import matplotlib
    matplotlib.use("Agg")     # headless: never needs a display
    import matplotlib.pyplot as plt

    G = np.stack([g for g in gt if g is not None])
    stretch = cross_track_stretch(G[:, [0, 2], 3])
    fig, axes = plt.subplots(1, 2 if stretch > 1 else 1, figsize=(11 if stretch > 1 else 6, 6),
                             squeeze=False)
    curves = [("ground truth", G, {"color": "k", "lw": 2})]
    for name, (est, idx) in runs.items():
        if len(idx) >= 2:
            a, _ = align(est, np.stack([gt[i] for i in idx]), sim3)
            curves.append((name, a, {"lw": 1.2}))
    for ax, equal in zip(axes[0], (True, False)):
        for name, T, style in curves:
            ax.plot(T[:, 0, 3], T[:, 2, 3], "-", label=name, **style)
        ax.set_xlabel("x (m, right)")
        ax.set_ylabel("z (m, forward)")
        ax.grid(alpha=0.3)
        if equal:
            ax.set_aspect("equal", adjustable="datalim")
            ax.set_title(f"top view, {'Sim(3)' if sim3 else 'SE(3)'}-aligned")
            ax.legend()
        else:
            ax.set_title(f"the same, cross-track stretched ~{stretch:.0f}×")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_errors(result: Dict, stamps: Dict[str, np.ndarray], path: Path) -> None:
    """Aligned position error over time, per method."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name, m in result["methods"].items():
        if m is None:
            continue
        t = stamps[name]
        ax.plot(t - t[0], m["ate"]["errors"], label=name)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("ATE error (m)")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend()
    else:           # an empty frame would look like a plotting bug
        ax.text(0.5, 0.5, "no method kept track long enough to be scored", ha="center",
                va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(result: Dict, out: Path, runs, gt, stamps) -> Path:
    """DIR/report.md + trajectory.png + errors.png (atomic writes)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sim3 = result["settings"]["mode"] == "mono"
    pics = []
    if gt is not None and sum(g is not None for g in gt) >= 2 and runs:
        plot_trajectories(runs, gt, out / "trajectory.tmp.png", sim3)
        os.replace(out / "trajectory.tmp.png", out / "trajectory.png")
        plot_errors(result, stamps, out / "errors.tmp.png")
        os.replace(out / "errors.tmp.png", out / "errors.png")
        pics = ["![top view](trajectory.png)", "", "![error over time](errors.png)", ""]
    s = result["settings"]
    lines = [f"# goodpoint eval vo: {result['sequence']}", "",
             f"Mode **{s['mode']}**, layout {result['layout']}, {result['frames']} frames at "
             f"{s['size'][0]}×{s['size'][1]}, ATE after {'Sim(3)' if sim3 else 'SE(3)'} Umeyama "
             "alignment; RPE frame to frame; time is the mean per frame (bundle adjustment runs on "
             "keyframes only: a median would hide it).", ""]
    lines += table(result) + [""] + pics
    notes = result.get("notes") or []
    if notes:
        lines += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
    lines += ["Trajectories: " + ", ".join(f"`trajectory_{n}.tum`" for n in result["methods"]), ""]
    atomic_write_bytes(str(out / "report.md"), ("\n".join(lines) + "\n").encode())
    return out / "report.md"
