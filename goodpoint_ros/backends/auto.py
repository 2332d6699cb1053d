"""``--backend auto``: the fastest backend × precision that passes the accuracy gate here.

Which path is fastest depends on the CPU (bf16 / VNNI / AMX kernels), the
library versions and the input size, so it is *measured*, once per machine:

1. every candidate of :data:`CANDIDATES` that loads is run on the gate's
   real photos (:mod:`goodpoint_ros.deploy.gate`) at the configured size;
   fp32 is the reference.  A reduced precision whose ONNX file records a
   failed gate is refused without running; any other is gated now (three
   photos: cheap).  A refused path is never chosen;
2. the survivors are timed on a few frames (``infer`` only: pre- and
   post-processing are the same numpy code for all of them);
3. the fastest is chosen, the result cached in
   ``<cache_root>/auto/probe-<digest>.json`` beside the TensorRT engines,
   keyed by :class:`ProbeKey` (CPU model and flags, library versions,
   weights and ONNX files' sha256, input size, device, threads) — any change
   re-probes — and logged in one line::

       auto: torch bf16 15.9 ms; onnxruntime fp32 37.7 ms; onnxruntime int8 refused by the gate

Overrides: name a backend and precision (``--backend torch --precision
bf16``); ``--precision fp32`` with ``--backend auto`` keeps the static order
(:data:`goodpoint_ros.backends.AUTO_ORDER`, no probe); ``GOODPOINT_AUTO=static``
does the same for every auto; ``GOODPOINT_AUTO=reprobe`` ignores the cache.

The node must not block on the probe: with ``probe="background"`` the safe
default (first fp32 backend of the static order) serves while a thread
probes, then :class:`~goodpoint_ros.backends.engine_cache.HotSwapBackend`
switches between frames.  A cached result costs nothing (no thread).
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import platform
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from goodpoint_ros.backends import BackendUnavailable
from goodpoint_ros.backends.engine_cache import SHUTTING_DOWN, cache_root
from goodpoint_ros.backends.gate import accuracy_gate, sample_images
from goodpoint_ros.backends.onnx_model import file_sha256
from goodpoint_ros.core.keypoints import to_gray_float
from goodpoint_ros.core.weights import atomic_write_bytes, resolve_path

LOG = logging.getLogger("goodpoint_ros.backends.auto")
PROBE_VERSION = 1
#: (backend, precision) the probe considers, safest first.  TensorRT is not
#: probed: where it loads, :func:`~goodpoint_ros.backends.create_backend` uses it (its own engine
#: build, gate and hot swap); a minutes-long build is no "short probe".
CANDIDATES: Tuple[Tuple[str, str], ...] = (
    ("onnxruntime", "fp32"), ("torch", "fp32"), ("openvino", "fp32"), ("torch", "bf16"),
    ("openvino", "bf16"), ("onnxruntime", "int8"), ("openvino", "int8"),
    ("torch", "fp16"), ("onnxruntime", "fp16"))
#: Size probed when the caller does not resize (native camera size unknown yet).
DEFAULT_SIZE = (640, 480)
PROBE_FRAMES = 5
WARMUP_FRAMES = 3         # oneDNN creates its bf16 primitives on the first calls
#: CPU flags that decide which kernels run (others do not change the ranking).
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
             "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve", "bf16", "i8mm")


# --------------------------------------------------------------------------- key

def cpu_signature(cpuinfo: Optional[str] = None) -> Tuple[str, str, int]:
    """(model name, relevant flags space-separated, logical CPUs) of this machine."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    model, flags = platform.processor() or platform.machine(), set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model") and value.strip():
            model = value.strip()
        elif key in ("flags", "features"):
            flags |= set(value.split())
    return model, " ".join(f for f in CPU_FLAGS if f in flags), os.cpu_count() or 1


def library_versions() -> Dict[str, str]:
    """Versions of the libraries whose kernels are timed (absent ones: '-')."""
    out = {}
    for dist in ("torch", "onnxruntime", "onnxruntime-gpu", "openvino", "numpy", "goodpoint_ros"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "-"
    return out


def model_fingerprint(weights: Optional[os.PathLike]) -> str:
    """sha256 over the weights file and the ONNX variants the backends would load.

    A regenerated int8 file (same weights, new calibration) changes the
    verdict, so it changes the key too.
    """
    src = Path(weights) if weights is not None and str(weights).endswith(".onnx") else resolve_path(weights)
    files = [src]
    if src.suffix != ".onnx":
        stem = src.name.split(".")[0]
        files += [src.with_name(stem + ".onnx"), src.with_name(stem + ".int8.onnx")]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"=" + (file_sha256(f).encode() if f.is_file() else b"-") + b";")
    return h.hexdigest()


@dataclass(frozen=True)
class ProbeKey:
    """Everything the probe's verdict depends on."""
    cpu_model: str
    cpu_flags: str
    cpus: int
    libraries: Tuple[Tuple[str, str], ...]
    models_sha256: str
    size: Tuple[int, int]          # (W, H) the network sees
    device: str
    threads: int
    candidates: Tuple[Tuple[str, str], ...]

    def to_dict(self) -> Dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: Dict) -> "ProbeKey":
        d = dict(d)
        d["libraries"] = tuple(tuple(x) for x in d["libraries"])
        d["candidates"] = tuple(tuple(x) for x in d["candidates"])
        d["size"] = tuple(d["size"])
        return cls(**d)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:24]


def probe_key(weights=None, size=DEFAULT_SIZE, device="auto", threads=None,
              candidates: Optional[Sequence[Tuple[str, str]]] = None) -> ProbeKey:
    """The key of this machine's probe for these settings (candidates: :data:`CANDIDATES`)."""
    candidates = CANDIDATES if candidates is None else candidates
    model, flags, cpus = cpu_signature()
    return ProbeKey(model, flags, cpus, tuple(sorted(library_versions().items())),
                    model_fingerprint(weights), tuple(int(v) for v in size), str(device),
                    int(threads or 0), tuple(tuple(c) for c in candidates))


# --------------------------------------------------------------------------- cache

def probe_dir(env: Optional[Dict[str, str]] = None) -> Path:
    return cache_root(env) / "auto"


class ProbeCache:
    """Probe results on disk (one JSON per key), validated on load."""

    def __init__(self, root: Optional[os.PathLike] = None):
        self.root = Path(root) if root else probe_dir()

    def path(self, key: ProbeKey) -> Path:
        return self.root / f"probe-{key.digest()}.json"

    def load(self, key: ProbeKey) -> Optional[Dict]:
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            info = json.loads(p.read_text())
            ok = (info.get("version") == PROBE_VERSION and ProbeKey.from_dict(info["key"]) == key
                  and isinstance(info.get("choice"), list) and len(info["choice"]) == 2)
        except (OSError, ValueError, KeyError, TypeError):
            ok = False
        if not ok:     # unreadable or from another key: probe again, never trust it
            LOG.warning("auto: discarding unreadable probe cache %s", p)
            with contextlib.suppress(OSError):
                p.unlink()
            return None
        return info

    def store(self, key: ProbeKey, result: Dict) -> Path:
        info = {"version": PROBE_VERSION, "key": key.to_dict(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **result}
        atomic_write_bytes(self.path(key), (json.dumps(info, indent=2) + "\n").encode())
        return self.path(key)

    @contextlib.contextmanager
    def lock(self, key: ProbeKey):
        """Two nodes starting together probe once (and not against each other)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.path(key).with_suffix(".lock"), "a+") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------- probe

def probe_frames(size: Tuple[int, int]) -> List[np.ndarray]:
    """The gate's real photos at ``size`` (W,H) as network inputs [1,1,H,W]."""
    out = []
    for img in sample_images():
        g = cv2.resize(to_gray_float(img), tuple(size), interpolation=cv2.INTER_AREA)
        out.append(np.ascontiguousarray(g[None, None], dtype=np.float32))
    return out


def time_backend(backend, frames: Sequence[np.ndarray], n: int = PROBE_FRAMES,
                 warmup: int = WARMUP_FRAMES) -> float:
    """Median ``infer`` latency (ms) over ``n`` frames after ``warmup``."""
    for i in range(warmup):
        backend.infer(frames[i % len(frames)])
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        backend.infer(frames[i % len(frames)])
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def recorded_gate(backend) -> Optional[bool]:
    """The verdict stored in the model file (ONNX int8), or None when unrecorded."""
    gate = (getattr(backend, "export_info", None) or {}).get("gate") or {}
    return gate.get("passed") if isinstance(gate.get("passed"), bool) else None


def choose(results: Sequence[Dict]) -> Optional[Dict]:
    """The fastest result that passed the gate (None when none did)."""
    ok = [r for r in results if r["status"] == "ok"]
    return min(ok, key=lambda r: r["ms"]) if ok else None


def summary_line(results: Sequence[Dict], choice: Optional[Dict]) -> str:
    """``auto: torch bf16 15.9 ms; onnxruntime fp32 37.7 ms; onnxruntime int8 refused by the gate``.

    The choice first, then the others by speed, then the refused; candidates
    that cannot run here (fp16 without CUDA...) only in the JSON.
    """
    order = sorted((r for r in results if r["status"] != "unavailable"),
                   key=lambda r: (r is not choice, r["status"] != "ok", r.get("ms") or 0))
    parts = [f"{r['backend']} {r['precision']} {r['ms']:.1f} ms" if r["status"] == "ok"
             else f"{r['backend']} {r['precision']} refused by the gate" for r in order]
    return "auto: " + ("; ".join(parts) if parts else "nothing could run")


Factory = Callable[[str, str], object]


def run_probe(factory: Factory, candidates: Sequence[Tuple[str, str]] = CANDIDATES,
              size: Tuple[int, int] = DEFAULT_SIZE, frames: int = PROBE_FRAMES,
              keep: bool = False) -> Dict:
    """Measure every candidate (see the module doc); return the probe result.

    factory(backend, precision) → a loaded backend, or raises
    :class:`BackendUnavailable`.  Result: ``{"choice": [b, p] | None,
    "results": [{"backend", "precision", "status": ok|refused|unavailable,
    "ms", "reason", "gate"}], "line", "size"}``; with ``keep`` also
    ``"backend"``, the chosen backend object (saves loading it again).
    """
    inputs = probe_frames(size)
    images = [x[0, 0] for x in inputs]
    results, loaded, reference = [], {}, None
    for name, precision in candidates:
        row = {"backend": name, "precision": precision, "status": "unavailable", "ms": None,
               "reason": "", "gate": None}
        results.append(row)
        if SHUTTING_DOWN.is_set():          # the interpreter is exiting: stop measuring
            row["reason"] = "not probed: the process is exiting"
            continue
        try:
            b = factory(name, precision)
        except (BackendUnavailable, ImportError, ValueError) as exc:
            row["reason"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            continue
        if precision != "fp32":
            if recorded_gate(b) is False:
                row.update(status="refused", reason="its file records a failed accuracy gate")
                continue
            if reference is None:
                row.update(status="unavailable", reason="no fp32 reference loaded to gate it")
                continue
            g = accuracy_gate(reference, b, images)
            row["gate"] = {"repeatability": g.repeatability, "descriptor_cosine": g.descriptor_cosine,
                           "passed": g.passed}
            if not g.passed:
                row.update(status="refused", reason=g.summary())
                continue
        elif reference is None:
            reference = b
        try:
            row["ms"] = time_backend(b, inputs, n=frames)
        except Exception as exc:   # a path that crashes while timing is not a choice
            row.update(status="unavailable", reason=f"{type(exc).__name__}: {exc}")
            continue
        row["status"] = "ok"
        loaded[(name, precision)] = b
    best = choose(results)
    out = {"choice": [best["backend"], best["precision"]] if best else None,
           "results": results, "line": summary_line(results, best), "size": list(size)}
    if keep and best:
        out["backend"] = loaded[(best["backend"], best["precision"])]
    return out


def probe_mode(explicit: Optional[str] = None) -> str:
    """``explicit`` if given, else ``GOODPOINT_AUTO`` (probe | static | reprobe), else probe."""
    mode = explicit or os.environ.get("GOODPOINT_AUTO", "probe")
    if mode not in ("probe", "static", "reprobe"):
        raise ValueError(f"GOODPOINT_AUTO must be probe, static or reprobe, not {mode!r}")
    return mode


def cached_or_probe(factory: Factory, key: ProbeKey, cache: Optional[ProbeCache] = None,
                    reprobe: bool = False, keep: bool = False) -> Dict:
    """The cached probe result for ``key``, else a fresh probe (stored)."""
    cache = cache or ProbeCache()
    with cache.lock(key):
        info = None if reprobe else cache.load(key)
        if info is not None:
            info["cached"] = True
            return info
        t0 = time.monotonic()
        result = run_probe(factory, key.candidates, key.size, keep=keep)
        result["probe_seconds"] = round(time.monotonic() - t0, 1)
        # an interrupted probe (process exiting) measured only some candidates: not kept
        if result["choice"] is not None and not SHUTTING_DOWN.is_set():
            cache.store(key, {k: v for k, v in result.items() if k != "backend"})
        result["cached"] = False
        return result
