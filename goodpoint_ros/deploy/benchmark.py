"""Latency benchmark of the full per-frame pipeline (used by ``goodpoint bench``).

Measures; never asserts.  Every figure is also a ratio to an in-process
reference measured in the same run, because absolute milliseconds move by
machine and by load (a shared 2-core VM moved them by 2× between runs):

* the reference is a SuperPoint-style eager fp32 PyTorch run of the same
  network (contiguous NCHW, no autocast, no channels-last: how SuperPoint's
  own demo runs it), through the same pre/post-processing and matching;
* per backend × precision × size: median / p90 of preprocess, network,
  post-processing (keypoints + descriptors) and matching to the previous
  frame, the total, the post-processing share, peak RSS during the run, and
  the accuracy gate's verdict against the reference
  (:func:`goodpoint_ros.deploy.gate.accuracy_gate` on the gate's photos at
  that size);
* the machine: CPU model and the flags that pick kernels (AVX-512 BF16,
  VNNI, AMX), core count, library versions, load average.
"""
from __future__ import annotations

import io
import os
import resource
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from goodpoint_ros.backends import BackendUnavailable, create_backend
from goodpoint_ros.backends.auto import cpu_signature, library_versions
from goodpoint_ros.core.config import GoodPointConfig
from goodpoint_ros.core.matching import match_descriptors
from goodpoint_ros.core.pipeline import FeatureExtractor
from goodpoint_ros.core.weights import atomic_write_bytes, load_model
from goodpoint_ros.deploy.flops import network_flops
from goodpoint_ros.deploy.gate import accuracy_gate, sample_images
from goodpoint_ros.deploy.inductor import InductorBackend

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "data" / "hpatches_v_churchill"
#: Sizes of the latency-vs-size plot (W, H).
PLOT_SIZES = ((320, 240), (640, 480), (960, 720), (1280, 960))
REFERENCE = ("reference", "fp32")


# --------------------------------------------------------------------------- machine

def machine_info() -> Dict:
    """CPU model, kernel-relevant flags, cores, library versions, load (for the report)."""
    model, flags, cpus = cpu_signature()
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {"cpu_model": model, "cpu_flags": flags, "cpus": cpus,
            "libraries": {k: v for k, v in library_versions().items() if v != "-"},
            "load_average": load}


def format_machine(info: Dict) -> str:
    libs = ", ".join(f"{k} {v}" for k, v in info["libraries"].items())
    return (f"CPU: {info['cpu_model']} ({info['cpus']} logical CPUs); flags: "
            f"{info['cpu_flags'] or '-'}\nlibraries: {libs}; load average "
            f"{info['load_average']} at the start")


# --------------------------------------------------------------------------- helpers

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


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux ``clear_refs`` 5), so each run's peak is its own."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    """Peak resident memory (MB): VmHWM since the last reset, else the process's maximum."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class EagerReference:
    """SuperPoint-style eager fp32 PyTorch (NCHW, no autocast): the ratios' denominator."""

    name, precision = "reference", "fp32"

    def __init__(self, weights=None, threads: Optional[int] = None):
        import torch  # lazy: optional heavy dependency, only the bench's reference needs it
        if threads:
            torch.set_num_threads(int(threads))
        self._torch = torch
        self.model, self.metadata = load_model(weights, device="cpu")
        self.model.eval()

    def infer(self, image: np.ndarray):
        torch = self._torch
        with torch.no_grad():
            out = self.model(torch.from_numpy(image))
        return out["prob"].numpy(), out["desc"].contiguous().numpy()


def make_backend(backend: str, precision: str, weights=None, threads=None):
    """A backend for the bench: ``reference`` is :class:`EagerReference`, ``inductor``
    the PyTorch 2 compiled paths (:mod:`goodpoint_ros.deploy.inductor`, bench only)."""
    if (backend, precision) == REFERENCE:
        return EagerReference(weights, threads)
    if backend == "inductor":
        return InductorBackend(weights, precision=precision, threads=threads)
    kw = {"threads": threads} if threads else {}
    return create_backend(backend, weights=weights, precision=precision, device="auto", **kw)


#: What ``bench_path`` runs: ``network`` — one pyramid level, frames as they are (figures per
#: network input size); ``defaults`` — the weights' detection defaults (their pyramid, small
#: frames doubled), what ``goodpoint match`` and the node run.
DETECTIONS = ("network", "defaults")


def bench_path(backend_obj, size: Tuple[int, int], frames: int, warmup: int,
               threshold: Optional[float] = None, detection: str = "network") -> Dict:
    """Time the full pipeline of one loaded backend at ``size`` (W,H); see the module doc."""
    if detection not in DETECTIONS:
        raise ValueError(f"detection must be one of {', '.join(DETECTIONS)}, got {detection!r}")
    cfg = (GoodPointConfig(keypoint_threshold=threshold, max_keypoints=1000)
           if detection == "defaults" else
           GoodPointConfig(keypoint_threshold=threshold, max_keypoints=1000, pyramid_levels=1,
                           upsample_below=0))
    ex = FeatureExtractor(backend_obj, cfg)
    imgs = _frames(size, frames + warmup)
    stages = {k: [] for k in ("preprocess", "network", "postprocess", "matching", "total")}
    keypoints, prev = [], None
    _reset_peak_rss()
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
        keypoints.append(len(feats))
    inputs = ex.network_sizes(size)
    flops = sum(network_flops(h, w) for w, h in inputs)
    net, total = _stats(stages["network"]), _stats(stages["total"])
    med = {k: _stats(v)["median"] for k, v in stages.items()}
    return {"backend": backend_obj.name, "precision": getattr(backend_obj, "precision", "?"),
            "width": size[0], "height": size[1], "frames": frames, "detection": detection,
            "network_inputs": [list(s) for s in inputs],
            "network_ms": net, "total_ms": total, "stages_ms": med,
            "stages_p90_ms": {k: _stats(v)["p90"] for k, v in stages.items()},
            # the post-processor alone (keypoints + descriptors, the < 10 % budget);
            # matching to the previous frame is its own stage
            "postprocess_share": med["postprocess"] / total["median"],
            "matching_share": med["matching"] / total["median"],
            "fps": 1e3 / total["median"], "gflop": flops / 1e9,
            "gflops_achieved": flops / 1e9 / (net["median"] / 1e3),
            "keypoints_mean": float(np.mean(keypoints)), "peak_rss_mb": _peak_rss_mb()}


def _gate(reference, backend_obj, size) -> Optional[Dict]:
    g = accuracy_gate(reference, backend_obj, sample_images(), resize=tuple(size))
    return {"passed": bool(g.passed), "repeatability": g.repeatability,
            "descriptor_cosine": g.descriptor_cosine, "reason": g.reason}


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
        if prev is not None and desc is not None:
            cv2.BFMatcher(norm, crossCheck=True).match(prev, desc)
        prev = desc
        if i >= warmup:
            totals.append((time.perf_counter() - t0) * 1e3)
    st = _stats(totals)
    return {"method": name, "width": size[0], "height": size[1], "total_ms": st,
            "fps": 1e3 / st["median"]}


def run_benchmark(backends=("torch",), precisions=("fp32",), sizes=((320, 240),), frames=50,
                  warmup=5, weights=None, threads=None, threshold=None, opencv: bool = True,
                  gate: bool = True, progress: bool = True,
                  detections: Sequence[str] = ("network",)) -> Dict:
    """Every backend × precision × size, after the eager fp32 reference of that size.

    ``threshold`` overrides θ_keypoint (e.g. to time post-processing with
    keypoints on untrained weights).  A pair a backend cannot run is reported
    with its reason, not fatal.  Ratios: ``ratio_to_reference`` = total /
    reference total (lower is faster), ``speedup_vs_reference`` its inverse; both within
    one ``detection`` (:data:`DETECTIONS`).  With both detections, ``defaults_cost`` is a
    path's defaults total over its own network total, same size, same run.
    """
    info = machine_info()
    paths = [(b, p) for b in backends for p in precisions if (b, p) != REFERENCE]
    loaded, runs, baselines = {}, [], []
    try:
        reference = make_backend(*REFERENCE, weights=weights, threads=threads)
        paths = [REFERENCE] + paths
        loaded[REFERENCE] = reference
    except ImportError:     # a torch-free install: the first fp32 path is the reference
        reference = None
    jobs = [(s, d, bp) for s in sizes for d in detections for bp in paths]
    if progress:
        jobs = tqdm(jobs, desc="bench", unit="run")
    for size, det, (b, p) in jobs:
        row = {"backend": b, "precision": p, "width": size[0], "height": size[1], "detection": det}
        try:
            if (b, p) not in loaded:
                loaded[(b, p)] = make_backend(b, p, weights, threads)
            obj = loaded[(b, p)]
            if reference is None and p == "fp32":
                reference = obj
            run = bench_path(obj, size, frames, warmup, threshold, detection=det)
        except (BackendUnavailable, ImportError, ValueError, RuntimeError) as exc:
            row["error"] = f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            runs.append(row)
            continue
        row.update(run, backend=b, precision=p)
        if getattr(obj, "compile_seconds", None):   # inductor: quantise + compile, not timed
            row["compile_s"] = round(obj.compile_seconds.get(tuple(size), 0.0), 1)
        if gate and reference is not None and obj is not reference:
            row["gate"] = _gate(reference, obj, size)
        elif obj is reference:
            row["gate"] = {"passed": True, "repeatability": 1.0, "descriptor_cosine": 1.0,
                           "reason": "the reference"}
        runs.append(row)
    if opencv:
        for size in sizes:
            for name in ("orb", "sift"):
                baselines.append(_bench_opencv(name, size, frames, warmup))
    for size in sizes:
        for det in detections:
            ok = [r for r in runs if "error" not in r and (r["width"], r["height"]) == tuple(size)
                  and r["detection"] == det]
            base = next((r for r in ok if (r["backend"], r["precision"]) == REFERENCE),
                        ok[0] if ok else None)
            for r in ok:
                r["ratio_to_reference"] = r["total_ms"]["median"] / base["total_ms"]["median"]
                r["speedup_vs_reference"] = 1.0 / r["ratio_to_reference"]
                r["network_ratio_to_reference"] = (r["network_ms"]["median"]
                                                   / base["network_ms"]["median"])
                r["reference"] = f"{base['backend']}/{base['precision']}"
    network = {(r["backend"], r["precision"], r["width"], r["height"]): r for r in runs
               if "error" not in r and r["detection"] == "network"}
    for r in runs:
        key = (r["backend"], r["precision"], r["width"], r["height"])
        if "error" not in r and r["detection"] == "defaults" and key in network:
            r["defaults_cost"] = r["total_ms"]["median"] / network[key]["total_ms"]["median"]
    return {"machine": info, "runs": runs, "opencv": baselines, "frames": frames, "warmup": warmup}


def format_table(result: Dict) -> str:
    lines = [format_machine(result["machine"]) if "machine" in result else "",
             f"{'backend':<12}{'prec':<6}{'size':<10}{'ratio':>6}{'total':>8}{'p90':>7}"
             f"{'pre':>6}{'net':>7}{'post':>6}{'match':>6}{'post%':>6}{'RSS MB':>7}  gate"]
    if any(r.get("detection") == "defaults" for r in result["runs"]):
        lines.append("size*: the weights' detection defaults (pyramid, small frames doubled); "
                     "x N after the gate: their cost over the same path's one plain level")
    for r in result["runs"]:
        size = f"{r['width']}x{r['height']}" + ("*" if r.get("detection") == "defaults" else "")
        if "error" in r:
            lines.append(f"{r['backend']:<12}{r['precision']:<6}{size:<10} unavailable: {r['error']}")
            continue
        s = r["stages_ms"]
        g = r.get("gate")
        verdict = ("-" if g is None else ("PASS" if g["passed"] else "FAIL")
                   + (f" {g['repeatability']:.3f}/{g['descriptor_cosine']:.4f}"
                      if g and g.get("reason") != "the reference" else ""))
        if r.get("compile_s"):          # inductor: the untimed first-call cost
            verdict += f"  (compile {r['compile_s']:.0f} s)"
        if r.get("defaults_cost"):
            verdict += f"  x {r['defaults_cost']:.1f}"
        lines.append(f"{r['backend']:<12}{r['precision']:<6}{size:<10}{r.get('ratio_to_reference', 0):>6.2f}"
                     f"{r['total_ms']['median']:>8.1f}{r['total_ms']['p90']:>7.1f}{s['preprocess']:>6.1f}"
                     f"{s['network']:>7.1f}{s['postprocess']:>6.1f}{s['matching']:>6.1f}"
                     f"{100 * r['postprocess_share']:>6.1f}{r['peak_rss_mb']:>7.0f}  {verdict}")
    for b in result.get("opencv", []):
        size = f"{b['width']}x{b['height']}"
        lines.append(f"{'opencv ' + b['method']:<18}{size:<10}{'':>6}{b['total_ms']['median']:>8.1f}"
                     f"{b['total_ms']['p90']:>7.1f}")
    lines.append("ratio: total / SuperPoint-style eager fp32 reference of the same size, same run "
                 "(lower is faster); times in ms (median); gate: repeatability/cosine vs the reference")
    return "\n".join(ln for ln in lines if ln)


def plot_latency(result: Dict, path: os.PathLike) -> Path:
    """Latency vs input size, one line per path: median total ms (left, log) and the ratio
    to the same run's eager fp32 reference (right: what survives the machine's load).
    Written atomically."""
    import matplotlib  # lazy: heavy, and only --plot needs it
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    series: Dict[str, List[Tuple[int, float, Optional[float], str]]] = {}
    for r in result["runs"]:
        if "error" in r:
            continue
        label = f"{r['backend']} {r['precision']}"
        if r.get("detection") == "defaults":
            label += " (weights' defaults)"
        if r.get("gate") and not r["gate"]["passed"]:
            label += " (fails gate)"
        series.setdefault(label, []).append((r["width"] * r["height"], r["total_ms"]["median"],
                                             r.get("ratio_to_reference"),
                                             f"{r['width']}x{r['height']}"))
    fig, (ax, axr) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=110)
    ticks = {}
    for label, pts in series.items():
        pts.sort()
        style = "--" if "reference" in label or "fails" in label else "-"
        x = [p[0] / 1e6 for p in pts]
        ax.plot(x, [p[1] for p in pts], marker="o", label=label, linestyle=style)
        axr.plot(x, [p[2] if p[2] is not None else float("nan") for p in pts], marker="o",
                 label=label, linestyle=style)
        ticks.update({p[0] / 1e6: p[3] for p in pts})
    for a in (ax, axr):
        a.set_xticks(sorted(ticks), [ticks[k] for k in sorted(ticks)])
        a.set_xlabel("network input (W×H)")
        a.grid(True, which="both", alpha=0.3)
    ax.set_ylabel("full pipeline, median ms / frame")
    ax.set_yscale("log")
    axr.set_ylabel("ratio to eager fp32 reference, same run (lower = faster)")
    axr.set_ylim(bottom=0)
    m = result.get("machine", {})
    load = (m.get("load_average") or ["?"])[0]
    fig.suptitle(f"GoodPoint latency vs size — {m.get('cpu_model', '?')}, {m.get('cpus', '?')} "
                 f"CPUs, load average {load} at the start", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
