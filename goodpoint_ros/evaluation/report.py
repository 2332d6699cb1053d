"""The evaluation report: Markdown tables like the paper's Tables 1–2 and PNG plots.

:func:`write_report` takes the JSON result of ``goodpoint eval`` (homography or
bag) and writes into a directory:

* ``report.md`` — the paper-style table (Table 2 layout — Light/View
  Replication, Accuracy, Coverage, harmonic mean — when the pairs carry the
  HPatches splits; Table 1 layout — precision, repeatability, coverage,
  harmonic mean — otherwise), then what SLAM users care about: keypoints,
  matches, homography accuracy or pose AUC, time per frame;
* ``metrics.png`` — P, R, C and harmonic mean per method (bars, ε = 3 and 5);
* ``harmonic_per_pair.png`` — each pair's harmonic mean along the sequence or
  trajectory, one line per method;
* ``matches_<pair>_<method>.png`` — a few match pictures, correct matches
  green, wrong ones red.

Every file is written atomically.  matplotlib is imported here only.
"""
from __future__ import annotations

import ctypes
import errno
import io
import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from goodpoint_ros.core.visualize import draw_matches, write_image
from goodpoint_ros.core.weights import atomic_write_bytes
from goodpoint_ros.evaluation.metrics import METRICS, eps_key

#: Paper wording (Table 2) for the metrics and splits.
ROW_NAMES = {"repeatability": "Replication", "precision": "Accuracy", "coverage": "Coverage"}
SPLIT_NAMES = {"i": "Light", "v": "View"}


def fmt(v, digits: int = 2) -> str:
    """Number → table cell; undefined (None/nan) → '–', inf → '∞'."""
    if v is None:
        return "–"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(int(v))
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isnan(f):
        return "–"
    if math.isinf(f):
        return "∞"
    return f"{f:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _eps_block(summary: Dict, eps: float, first: bool) -> Dict:
    return summary if first else summary.get(eps_key(eps), {})


def paper_table(result: Dict, eps_list: Sequence[float]) -> List[str]:
    """The Table 1 / Table 2 style table as Markdown lines."""
    methods = list(result.get("methods", {}))
    splits = list(result.get("splits", {}))
    header = ["metric"] + [f"{m} {eps:g}px" for eps in eps_list for m in methods]
    rows = []
    cols = [(m, eps, k == 0) for k, eps in enumerate(eps_list) for m in methods]
    if splits:
        for metric in ("repeatability", "precision", "coverage"):
            for s in splits:
                label = f"{SPLIT_NAMES.get(s, s)} {ROW_NAMES[metric]}"
                summ = result["splits"][s]["methods"]
                rows.append([label] + [fmt(_eps_block(summ.get(m, {}), e, f).get(metric))
                                       for m, e, f in cols])
    else:
        for metric in METRICS:
            rows.append([metric] + [fmt(_eps_block(result["methods"][m], e, f).get(metric))
                                    for m, e, f in cols])
    rows.append(["**Harmonic mean**"] + [
        "**" + fmt(_eps_block(result["methods"][m], e, f).get("harmonic_mean")) + "**"
        for m, e, f in cols])
    return _table(header, rows)


def slam_table(result: Dict) -> List[str]:
    """Keypoints, matches, geometric accuracy and time per method."""
    methods = result.get("methods", {})
    if not methods:
        return []
    any_h = any("homography_accuracy" in s for s in methods.values())
    any_p = any("pose_auc" in s for s in methods.values())
    header = ["method", "keypoints", "matches", "correct (3px)"]
    if any_h:
        header += ["H acc ≤1px", "≤3px", "≤5px"]
    if any_p:
        header += ["pose AUC@5°", "@10°", "@20°"]
    header += ["detect ms/frame", "match ms/pair"]
    rows = []
    for name, s in methods.items():
        r = [name, fmt(s.get("keypoints"), 0), fmt(s.get("matches"), 0),
             fmt(s.get("correct_matches"), 0)]
        if any_h:
            acc = s.get("homography_accuracy", {})
            r += [fmt(acc.get(k)) for k in ("1", "3", "5")]
        if any_p:
            auc = s.get("pose_auc", {})
            r += [fmt(auc.get(k)) for k in ("5", "10", "20")]
        r += [fmt(s.get("detect_ms"), 1), fmt(s.get("match_ms"), 1)]
        rows.append(r)
    return _table(header, rows)


def markdown_report(result: Dict, title: str = "GoodPoint evaluation",
                    pictures: Sequence[str] = ()) -> str:
    """The whole ``report.md`` text."""
    settings = result.get("settings", {})
    eps_list = settings.get("eps") or [3, 5]
    lines = [f"# {title}", ""]
    if result.get("run_id"):      # the same id is in the --json file of this run
        lines += [f"Run `{result['run_id']}`.", ""]
    src = settings.get("source") or settings.get("bag") or ""
    lines.append(f"{result.get('pairs', 0)} pairs evaluated"
                 + (f", {result.get('skipped', 0)} skipped" if result.get("skipped") else "")
                 + (f" — `{src}`" if src else "") + ".")
    lines.append("")
    splits = result.get("splits", {})
    if splits:
        lines.append("Precision (accuracy), repeatability (replication) and coverage per split "
                     "(Light = `i_*`, View = `v_*`); harmonic mean of the split means, as the "
                     "paper's Table 2.")
    else:
        lines.append("Means over pairs (each pair the mean of a→b and b→a); harmonic mean of the "
                     "three means, as the paper's Table 1.")
    lines.append("")
    lines += paper_table(result, eps_list)
    lines.append("")
    lines.append("## Keypoints, matches, geometry, time")
    lines.append("")
    lines += slam_table(result)
    datasets = result.get("datasets") or {}
    if len(datasets) > 1:
        lines += ["", "## Per data set (ε = 3 px)", ""]
        header = ["data set", "pairs"] + [f"{m} P/R/C/H" for m in result.get("methods", {})]
        rows = []
        for ds, block in datasets.items():
            cells = []
            for m in result.get("methods", {}):
                s = block.get("methods", {}).get(m, {})
                cells.append(" / ".join(fmt(s.get(k)) for k in (*METRICS, "harmonic_mean")))
            rows.append([ds, str(block.get("pairs", 0))] + cells)
        lines += _table(header, rows)
    timing = result.get("timing_s") or {}
    if timing:
        lines += ["", "Time split (s): " + ", ".join(f"{k} {fmt(v)}" for k, v in timing.items())
                  + (f"; {fmt(result['frames_per_second'], 1)} frames/s"
                     if result.get("frames_per_second") else "")]
    if result.get("skipped_reasons"):
        lines += ["", "## Skipped", ""]
        lines += [f"- {r}" for r in result["skipped_reasons"][:50]]
    if pictures:
        lines += ["", "## Plots", ""]
        lines += [f"![{p}]({p})" for p in pictures]
    lines += ["", "Settings:", "", "```", _settings_text(settings), "```", ""]
    return "\n".join(lines)


def _settings_text(settings: Dict) -> str:
    return json.dumps(settings, indent=1, default=str)


# --------------------------------------------------------------------------- plots

def _save_figure(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def plot_metric_bars(result: Dict, path: Path) -> None:
    """Grouped bars: P, R, C, H per method, one panel per ε."""
    import matplotlib.pyplot as plt
    fig = metric_bars_figure(result)
    _save_figure(fig, path)
    plt.close(fig)


def metric_bars_figure(result: Dict):
    """The figure of :func:`plot_metric_bars`.  One legend above the panels, in a row: inside
    a panel it covered the tallest bars (the harmonic means, the number people look for)."""
    import matplotlib  # lazy: ~0.5 s at import, only reports draw plots
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eps_list = result.get("settings", {}).get("eps") or [3, 5]
    methods = list(result.get("methods", {}))
    names = [*METRICS, "harmonic_mean"]
    fig, axes = plt.subplots(1, len(eps_list), figsize=(5.5 * len(eps_list), 3.6), squeeze=False)
    width = 0.8 / max(len(methods), 1)
    for ax, (k, eps) in zip(axes[0], enumerate(eps_list)):
        for j, m in enumerate(methods):
            block = _eps_block(result["methods"][m], eps, k == 0)
            vals = [np.nan_to_num(float(block.get(n, np.nan) if block.get(n) is not None
                                        else np.nan)) for n in names]
            ax.bar(np.arange(len(names)) + (j - (len(methods) - 1) / 2) * width, vals, width,
                   label=m)
        ax.set_xticks(np.arange(len(names)))
        ax.set_xticklabels(["precision", "repeatability", "coverage", "harmonic"])
        ax.set_ylim(0, 1)
        ax.set_title(f"ε = {eps:g} px")
        ax.grid(axis="y", alpha=0.3)
    if methods:
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.tight_layout(rect=(0, 0, 1, 0.9))
        fig.legend(handles, labels, loc="upper center", ncol=len(methods), frameon=False,
                   bbox_to_anchor=(0.5, 1.0), fontsize=9)
    return fig


def plot_harmonic_per_pair(result: Dict, path: Path) -> None:
    """Each pair's harmonic mean (ε = 3) along the run, one line per method."""
    import matplotlib  # lazy: ~0.5 s at import, only reports draw plots
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_pair = result.get("per_pair", [])
    methods = list(result.get("methods", {}))
    fig, ax = plt.subplots(figsize=(max(6.0, min(0.25 * len(per_pair), 16.0)), 3.6))
    x = np.arange(len(per_pair))
    for m in methods:
        y = [p["methods"].get(m, {}).get("harmonic_mean") for p in per_pair]
        y = np.array([np.nan if v is None else float(v) for v in y])
        ax.plot(x, y, marker="o", markersize=3, label=m)
    if 0 < len(per_pair) <= 40:
        ax.set_xticks(x)
        ax.set_xticklabels([p.get("name", str(i)) for i, p in enumerate(per_pair)],
                           rotation=70, fontsize=7)
    else:
        ax.set_xlabel("pair")
    ax.set_ylim(0, 1)
    ax.set_ylabel("harmonic mean (ε = 3 px)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save_figure(fig, path)
    plt.close(fig)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "pair"


def write_match_pictures(examples: Sequence[Dict], out_dir: Path) -> List[str]:
    """``examples``: [{"name", "image_a", "image_b", "methods": {m: {"kpts_a", "kpts_b",
    "matches", "correct", "eps"}}}] → file names written (correct matches green, wrong
    red; the caption says within how many px, or "inliers" where there is no ground truth)."""

    names = []
    for ex in examples:
        for m, d in ex.get("methods", {}).items():
            eps = d.get("eps")
            img = draw_matches(ex["image_a"], ex["image_b"], d["kpts_a"], d["kpts_b"],
                               np.asarray(d["matches"]).reshape(-1, 2),
                               np.asarray(d["correct"], bool), max_lines=300,
                               label=f"correct within {eps:g} px" if eps else "inliers")
            fname = f"matches_{_safe_name(ex['name'])}_{m}.png"
            write_image(out_dir / fname, img)
            names.append(fname)
    return names


#: A folder ``--report`` may replace: one this module wrote (it holds report.md) or an
#: empty one.  Anything else is refused rather than deleted.
REPORT_MARKER = "report.md"


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where the
    system cannot, and the caller falls back to two renames."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    return fn(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0


def _writer_alive(tmp: Path) -> bool:
    """Whether the run that made the temporary folder ``.NAME.tmp-PID-XXXX`` still runs
    (a name without a PID is an older run's: gone)."""
    try:
        pid = int(tmp.name.rsplit(".tmp-", 1)[1].split("-", 1)[0])
    except (IndexError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:               # another user's process: alive
        pass
    return True


def replace_folder(tmp: Path, out: Path) -> None:
    """Put the finished folder ``tmp`` at ``out`` as a whole: a reader sees the old
    folder or the new one, never a mixture (no stale file of an earlier run stays)."""
    if not out.exists():
        try:
            tmp.rename(out)
            return
        except OSError as exc:           # another writer put its folder there meanwhile
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
    old = out.with_name(f".{out.name}.old-{tmp.name.rsplit('-', 1)[-1]}")
    if _exchange(tmp, out):              # tmp now holds the old folder
        shutil.rmtree(tmp, ignore_errors=True)
        return
    out.rename(old)                      # the two-rename fallback: a moment with no folder
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def check_report_folder(out_dir) -> Path:
    """``out_dir`` as a Path, or ``ValueError`` when it may not be replaced by a report
    (a file, or a folder with other things in it): the CLI checks before evaluating."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / REPORT_MARKER).is_file():
        raise ValueError(f"{out} is a folder that is not a report (no {REPORT_MARKER}); "
                         "--report replaces its folder as a whole: pick a new or report folder")
    return out


def write_report(result: Dict, out_dir, examples: Optional[Sequence[Dict]] = None,
                 title: str = "GoodPoint evaluation") -> List[Path]:
    """Write report.md, the plots and match pictures as the folder ``out_dir`` → paths.

    Everything is made in a temporary folder beside it, which then replaces
    ``out_dir`` whole (:func:`replace_folder`): a run killed midway leaves the
    previous report as it was, and a re-run with fewer methods leaves no stale
    picture of the old one.  An existing ``out_dir`` that is not a report
    folder (no report.md, not empty) is refused, never deleted.
    """
    out = check_report_folder(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.tmp-*"):
        if not _writer_alive(stale):      # left by a killed run, not another one at work
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    try:
        paths = _write_report_files(result, tmp, examples, title)
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)         # mkdtemp makes 0700; the usual folder mode
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [out / p.relative_to(tmp) for p in paths]


def _write_report_files(result: Dict, out: Path, examples, title: str) -> List[Path]:
    pictures = []
    if result.get("methods"):
        plot_metric_bars(result, out / "metrics.png")
        pictures.append("metrics.png")
    if result.get("per_pair"):
        plot_harmonic_per_pair(result, out / "harmonic_per_pair.png")
        pictures.append("harmonic_per_pair.png")
    pictures += write_match_pictures(examples or [], out)
    atomic_write_bytes(out / "report.md", markdown_report(result, title, pictures).encode())
    return [out / "report.md"] + [out / p for p in pictures]
