"""Latency benchmark of the full per-frame pipeline (used by ``goodpoint bench``).

Measures; never asserts.  Ratios are against the first run measured in the
same process (PyTorch eager fp32 when it is in the list).
"""
from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

from goodpoint_ros.core.config import GoodPointConfig
from goodpoint_ros.core.matching import match_descriptors
from goodpoint_ros.core.pipeline import FeatureExtractor
from goodpoint_ros.deploy.flops import network_flops

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "data" / "hpatches_v_churchill"


def _frames(size: Tuple[int, int], n: int) -> List[np.ndarray]:
    """n real grayscale frames of ``size`` (W,H): a slow pan over a sample photo."""
    w, h = size
    src = None
    for cand in sorted(SAMPLE_DIR.glob("1.*")):
        src = cv2.imread(str(cand), cv2.IMREAD_GRAYSCALE)
    if src is None:   # installed without the repo's data: a synthetic texture
        rng = np.random.default_rng(0)
        src = cv2.GaussianBlur((rng.random((2 * h, 2 * w)) * 255).astype(np.uint8), (0, 0), 3)
    src = cv2.resize(src, (int(w * 1.3), int(h * 1.3)), interpolation=cv2.INTER_AREA)
    out = []
    for i in range(n):
        dx = int((src.shape[1] - w) * (0.5 + 0.5 * np.sin(i / 7)))
        dy = int((src.shape[0] - h) * (0.5 + 0.5 * np.cos(i / 11)))
        out.append(np.ascontiguousarray(src[dy:dy + h, dx:dx + w]))
    return out


def _stats(values: Sequence[float]) -> Dict[str, float]:
    v = np.asarray(values, np.float64)
    return {"median": float(np.median(v)), "p90": float(np.percentile(v, 90)),
            "p99": float(np.percentile(v, 99)), "mean": float(v.mean())}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def agreement(ref, test, radius: float = 1.0) -> Tuple[float, float]:
    """(fraction of ref keypoints with a test keypoint within radius px,
    mean cosine between test's descriptors sampled at ref keypoints and ref's).

    ``ref`` and ``test`` are (Features, desc map [1,D,h,w]) pairs; the
    accuracy gate's definition (:func:`goodpoint_ros.deploy.gate.agreement`).
    """
    from goodpoint_ros.deploy.gate import agreement as gate_agreement
    (fr, _), (ft, dt) = ref, test
    return gate_agreement(fr, ft, dt, radius)


def _bench_goodpoint(backend: str, precision: str, size, frames, warmup, weights, threads,
                     reference=None, threshold=None):
    kw = {"threads": threads} if threads else {}
    ex = FeatureExtractor(backend, GoodPointConfig(keypoint_threshold=threshold, max_keypoints=1000),
                          weights=weights, precision=precision, device="auto", **kw)
    imgs = _frames(size, frames + warmup)
    stages = {k: [] for k in ("preprocess", "network", "postprocess", "matching", "total")}
    prev = None
    outputs = []
    for i, img in enumerate(imgs):
        t0 = time.perf_counter()
        feats = ex(img)
        t1 = time.perf_counter()
        if prev is not None:
            match_descriptors(prev.descriptors, feats.descriptors, ex.config)
        t2 = time.perf_counter()
        prev = feats
        if i < warmup:
            continue
        stages["preprocess"].append(ex.times.preprocess)
        stages["network"].append(ex.times.network)
        stages["postprocess"].append(ex.times.postprocess)
        stages["matching"].append((t2 - t1) * 1e3)
        stages["total"].append((t2 - t0) * 1e3)
    # agreement with fp32 on a few frames: keep (features, raw desc map)
    for img in imgs[:5]:
        x, sz, _ = ex.preprocess(img)
        prob, desc = ex.backend.infer(x.astype(np.float32))
        from goodpoint_ros.core.keypoints import postprocess
        outputs.append((postprocess(prob, desc, sz, ex.config), desc))
    flops = network_flops(size[1], size[0])
    net = _stats(stages["network"])
    run = {"backend": ex.backend.name, "precision": precision, "width": size[0], "height": size[1],
           "network_ms": net, "total_ms": _stats(stages["total"]),
           "stages_ms": {k: _stats(v)["median"] for k, v in stages.items()},
           "fps": 1e3 / _stats(stages["total"])["median"],
           "gflop": flops / 1e9, "gflops_achieved": flops / 1e9 / (net["median"] / 1e3),
           "overhead_vs_network": (_stats(stages["total"])["median"] - net["median"]) / net["median"],
           "keypoints_mean": None, "peak_rss_mb": _peak_rss_mb(),
           "repeatability_vs_fp32": None, "descriptor_cosine_vs_fp32": None}
    run["keypoints_mean"] = float(np.mean([len(f) for f, _ in outputs]))
    if reference is not None:
        reps, coss = zip(*(agreement(r, t) for r, t in zip(reference, outputs)))
        run["repeatability_vs_fp32"] = float(np.nanmean(reps))
        run["descriptor_cosine_vs_fp32"] = float(np.nanmean(coss))
    return run, outputs


def _bench_opencv(name: str, size, frames, warmup):
    if name == "orb":
        det, norm = cv2.ORB_create(1000), cv2.NORM_HAMMING
    else:
        det, norm = cv2.SIFT_create(1000), cv2.NORM_L2
    imgs = _frames(size, frames + warmup)
    totals, prev = [], None
    for i, img in enumerate(imgs):
        t0 = time.perf_counter()
        kps, desc = det.detectAndCompute(img, None)
        if prev is not None and desc is not None and prev is not None:
            bf = cv2.BFMatcher(norm, crossCheck=True)
            bf.match(prev, desc)
        prev = desc
        if i >= warmup:
            totals.append((time.perf_counter() - t0) * 1e3)
    st = _stats(totals)
    return {"method": name, "width": size[0], "height": size[1], "total_ms": st,
            "fps": 1e3 / st["median"]}


def run_benchmark(backends=("torch",), precisions=("fp32",), sizes=((320, 240),), frames=50,
                  warmup=5, weights=None, threads=None, threshold=None) -> Dict:
    """Every backend × precision × size.  ``threshold`` overrides θ_keypoint
    (e.g. to time post-processing and matching with keypoints on untrained
    weights).  Reduced precisions are compared with fp32 of the same size
    (the first backend's fp32 outputs)."""
    runs, baselines = [], []
    from tqdm import tqdm
    jobs = [(s, b, p) for s in sizes for b in backends for p in precisions]
    refs = {}
    for size, backend, precision in tqdm(jobs, desc="bench", unit="run"):
        if precision != "fp32" and size not in refs:
            try:
                _, refs[size] = _bench_goodpoint(backend, "fp32", size, 2, 1, weights, threads,
                                                 threshold=threshold)
            except Exception:   # no fp32 on this backend: agreement is left unmeasured
                pass
        try:
            run, outs = _bench_goodpoint(backend, precision, size, frames, warmup, weights, threads,
                                         reference=refs.get(size) if precision != "fp32" else None,
                                         threshold=threshold)
        except Exception as exc:  # a backend/precision that cannot run here is reported, not fatal
            runs.append({"backend": backend, "precision": precision, "width": size[0],
                         "height": size[1], "error": f"{exc.__class__.__name__}: {exc}"})
            continue
        if precision == "fp32":
            refs.setdefault(size, outs)
        runs.append(run)
    for size in sizes:
        for name in ("orb", "sift"):
            baselines.append(_bench_opencv(name, size, frames, warmup))
    # ratios against PyTorch eager fp32 of the same size when it ran, else the first run
    for size in sizes:
        ok = [r for r in runs if "error" not in r and (r["width"], r["height"]) == tuple(size)]
        if ok:
            base = next((r for r in ok if r["backend"] == "torch" and r["precision"] == "fp32"), ok[0])
            for r in ok:
                r["speedup_vs_baseline"] = base["total_ms"]["median"] / r["total_ms"]["median"]
                r["network_speedup_vs_baseline"] = (base["network_ms"]["median"]
                                                    / r["network_ms"]["median"])
                r["baseline"] = f"{base['backend']}/{base['precision']}"
    return {"runs": runs, "opencv": baselines, "frames": frames, "warmup": warmup}


def format_table(result: Dict) -> str:
    lines = [f"{'backend':<12}{'prec':<6}{'size':<10}{'net ms':>8}{'total ms':>10}{'p90':>8}"
             f"{'fps':>7}{'GFLOP/s':>9}{'ovh%':>6}{'rep':>6}{'cos':>6}"]
    for r in result["runs"]:
        size = f"{r['width']}x{r['height']}"
        if "error" in r:
            lines.append(f"{r['backend']:<12}{r['precision']:<6}{size:<10} unavailable: {r['error']}")
            continue
        rep = r["repeatability_vs_fp32"]
        cos = r["descriptor_cosine_vs_fp32"]
        lines.append(f"{r['backend']:<12}{r['precision']:<6}{size:<10}{r['network_ms']['median']:>8.1f}"
                     f"{r['total_ms']['median']:>10.1f}{r['total_ms']['p90']:>8.1f}{r['fps']:>7.1f}"
                     f"{r['gflops_achieved']:>9.0f}{100 * r['overhead_vs_network']:>6.1f}"
                     f"{'' if rep is None else f'{rep:.3f}':>6}{'' if cos is None else f'{cos:.3f}':>6}")
    for b in result["opencv"]:
        size = f"{b['width']}x{b['height']}"
        lines.append(f"{b['method']:<18}{size:<10}{'':>8}{b['total_ms']['median']:>10.1f}"
                     f"{b['total_ms']['p90']:>8.1f}{b['fps']:>7.1f}")
    return "\n".join(lines)
