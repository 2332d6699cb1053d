"""From per-pair metrics to the numbers of the paper's tables.

A per-pair record, as every evaluator (homography sets, bags) produces it::

    {"name": "v_wall/1-3", "split": "v" | "i" | None, "index": 7,
     "methods": {"orb": pair_metrics(...) + extras, "sift": {...}}}

Aggregation (§6.1–6.2):

* P, R, C (and every other number) are **means over pairs**, skipping pairs
  where a value is undefined (nan) — their count is reported under
  ``undefined``;
* homography sets (pairs carry a split): the means are also given per split
  (``i`` photometric, ``v`` viewpoint), and the overall harmonic mean is the
  harmonic mean of the six split means — P, R, C of each split — as Table 2
  (of three when only one split is present);
* bags (no split): the harmonic mean of the three overall means, as Table 1.

Extras understood when present in a method's pair record: ``corner_error``
(px; inf = no homography) → ``homography_accuracy`` at 1/3/5 px;
``pose_error_deg`` (max of rotation and translation angle) → ``pose_auc`` at
5/10/20°.
"""
from __future__ import annotations

import math
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from goodpoint_ros.evaluation.metrics import METRICS, accuracy_at, harmonic_mean, pose_auc

#: Keys summarised by a dedicated statistic instead of the mean.
_SPECIAL = ("corner_error", "pose_error_deg")


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def mean_records(records: Sequence[Dict]) -> Dict:
    """Nan-skipping mean of every numeric leaf over a list of (nested) dicts.

    Returns the means plus ``undefined``: {key: number of records where it was nan}
    for the top-level metrics.
    """
    out: Dict = {}
    keys: List[str] = []
    for r in records:
        for k in r:
            if k not in keys:
                keys.append(k)
    for k in keys:
        vals = [r[k] for r in records if k in r]
        if k in _SPECIAL:
            continue
        if all(isinstance(v, dict) for v in vals):
            out[k] = mean_records(vals)
            out[k].pop("undefined", None)
        elif all(_is_number(v) for v in vals):
            arr = np.asarray(vals, np.float64)
            finite = arr[~np.isnan(arr)]
            out[k] = float(finite.mean()) if len(finite) else float("nan")
    out["undefined"] = {k: int(sum(1 for r in records if _is_number(r.get(k))
                                   and math.isnan(r[k])))
                        for k in METRICS}
    return out


def _tables_harmonic(block: Dict, split_blocks: List[Dict]) -> float:
    """Harmonic mean the paper's way: of P, R, C of each split, else of the overall three."""
    if split_blocks:
        return harmonic_mean([b.get(m, float("nan")) for b in split_blocks for m in METRICS])
    return harmonic_mean([block.get(m, float("nan")) for m in METRICS])


def _summarise(records: List[Dict]) -> Dict:
    s = mean_records(records)
    s["pairs"] = len(records)
    errs = [r["corner_error"] for r in records if "corner_error" in r]
    if errs:
        s["homography_accuracy"] = accuracy_at(errs, (1, 3, 5))
        finite = np.asarray(errs, np.float64)
        finite = finite[np.isfinite(finite)]
        s["corner_error_median"] = float(np.median(finite)) if len(finite) else float("inf")
    pose = [r["pose_error_deg"] for r in records if "pose_error_deg" in r]
    if pose:
        s["pose_auc"] = pose_auc(pose, (5, 10, 20))
    return s


def split_names(per_pair: Iterable[Dict]) -> List[str]:
    """Splits present, in a stable order (``i`` before ``v``, others after)."""
    found = {p.get("split") for p in per_pair if p.get("split")}
    return sorted(found, key=lambda s: ({"i": 0, "v": 1}.get(s, 2), s))


def aggregate(per_pair: List[Dict], methods: Sequence[str],
              by_split: Optional[bool] = None) -> Dict:
    """Per-pair records → ``{"methods": {name: summary}, "splits": {s: {"methods", "pairs"}}}``.

    ``by_split``: None decides from the data (splits when any pair has one),
    True forces the Table 2 rule, False the Table 1 rule.
    """
    splits = split_names(per_pair) if by_split is not False else []
    out: Dict = {"methods": {}, "splits": {}}
    for s in splits:
        pairs_s = [p for p in per_pair if p.get("split") == s]
        out["splits"][s] = {"pairs": len(pairs_s), "methods": {}}
    for name in methods:
        records = [p["methods"][name] for p in per_pair if name in p.get("methods", {})]
        overall = _summarise(records)
        split_summaries = []
        for s in splits:
            recs = [p["methods"][name] for p in per_pair
                    if p.get("split") == s and name in p.get("methods", {})]
            ss = _summarise(recs)
            _set_harmonic(ss, [])
            out["splits"][s]["methods"][name] = ss
            split_summaries.append(ss)
        _set_harmonic(overall, split_summaries)
        out["methods"][name] = overall
    return out


def _set_harmonic(summary: Dict, split_summaries: List[Dict]) -> None:
    """Replace the mean-of-pair harmonic means with the tables' harmonic means."""
    summary["harmonic_mean"] = _tables_harmonic(summary, split_summaries)
    for key, block in summary.items():
        if key.startswith("eps") and isinstance(block, dict):
            block["harmonic_mean"] = _tables_harmonic(
                block, [s[key] for s in split_summaries if isinstance(s.get(key), dict)])


def json_safe(obj):
    """Nested result → plain JSON types: numpy scalars/arrays unwrapped, nan and ±inf → None.

    Strict JSON has no NaN; ``null`` means "undefined" (nan) or "failed" (inf,
    e.g. no homography found) — the summary's counts say which.
    """
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    return obj
