"""TensorRT engine cache and the background build with hot switch.

A serialised TensorRT engine is only valid for the exact TensorRT version, GPU
model and optimisation profile it was built for (the most frequent complaint
in peer projects' issue trackers is a stale engine crashing or silently
mis-computing).  So engines live in a cache keyed by everything they depend on:

    EngineKey(onnx_sha256, trt_version, gpu_name, compute_capability, precision, profile)

Each entry is ``<digest>.engine`` (raw TensorRT bytes: ``trtexec --loadEngine``
reads it) plus ``<digest>.json`` (the key, the engine's sha256, build time,
accuracy-gate result).  An entry whose sidecar is missing, whose key differs,
whose bytes do not hash to the recorded sha256, or that TensorRT refuses to
deserialise is *corrupt*: it is deleted and rebuilt, never used.  Builds hold an
``fcntl`` lock per key so two processes (two nodes at launch) build once.

:class:`HotSwapBackend` serves frames with a fallback backend (ONNX Runtime)
while a thread builds the engine, then switches on the caller's thread.
Everything here is TensorRT-free: the builder and loader are injected, so the
logic is tested on CPU with fakes.
"""
from __future__ import annotations

import atexit
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from goodpoint_ros.core.weights import atomic_write_bytes

LOG = logging.getLogger("goodpoint_ros.backends.engine_cache")

#: (height, width) triples for the optimisation profile: min, opt, max.
Profile = Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int]]
#: Default profile: anything from 64×64 to 1920×1088, tuned for 640×480.
DEFAULT_PROFILE: Profile = ((64, 64), (480, 640), (1088, 1920))
SIDECAR_VERSION = 1


def cache_root(env: Optional[Dict[str, str]] = None) -> Path:
    """``$ROS_HOME/goodpoint``, else ``$XDG_CACHE_HOME/goodpoint``, else ``~/.cache/goodpoint``."""
    env = os.environ if env is None else env
    if env.get("ROS_HOME"):
        return Path(env["ROS_HOME"]) / "goodpoint"
    if env.get("XDG_CACHE_HOME"):
        return Path(env["XDG_CACHE_HOME"]) / "goodpoint"
    return Path(env.get("HOME") or Path.home()) / ".cache" / "goodpoint"


def engine_dir(env: Optional[Dict[str, str]] = None) -> Path:
    return cache_root(env) / "engines"


def profile_for(size: Optional[Tuple[int, int]]) -> Profile:
    """The profile for a node that resizes to ``size`` (W, H): that size as optimum."""
    if size is None:
        return DEFAULT_PROFILE
    w, h = size
    opt = (-(-h // 8) * 8, -(-w // 8) * 8)
    lo, hi = DEFAULT_PROFILE[0], DEFAULT_PROFILE[2]
    return (lo, opt, (max(hi[0], opt[0]), max(hi[1], opt[1])))


def parse_profile(text: str) -> Tuple[int, int]:
    """'640x480' (W×H, as every size in the CLI) → (H, W) multiples of 8."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"expected WIDTHxHEIGHT such as 640x480, got {text!r}") from None
    if w < 8 or h < 8 or w % 8 or h % 8:
        raise ValueError(f"profile shapes must be multiples of 8 and at least 8: {text}")
    return h, w


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialised engine depends on."""
    onnx_sha256: str
    trt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    profile: Profile

    def to_dict(self) -> Dict:
        d = dataclasses.asdict(self)
        d["profile"] = [list(s) for s in self.profile]
        return d

    @classmethod
    def from_dict(cls, d: Dict) -> "EngineKey":
        d = dict(d)
        d["profile"] = tuple(tuple(int(v) for v in s) for s in d["profile"])
        return cls(**d)

    def digest(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def describe(self) -> str:
        (h0, w0), (h1, w1), (h2, w2) = self.profile
        return (f"TensorRT {self.trt_version} {self.precision} on {self.gpu_name} "
                f"(sm {self.compute_capability}), {w0}x{h0}..{w1}x{h1}..{w2}x{h2}")


class EngineCache:
    """Engines on disk, validated on every load (see the module docstring)."""

    def __init__(self, root: Optional[os.PathLike] = None):
        self.root = Path(root) if root else engine_dir()

    def paths(self, key: EngineKey) -> Tuple[Path, Path]:
        stem = f"goodpoint-{key.precision}-{key.digest()}"
        return self.root / f"{stem}.engine", self.root / f"{stem}.json"

    @contextlib.contextmanager
    def lock(self, key: EngineKey):
        """Exclusive per-key ``fcntl`` lock (blocks while another process builds)."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.paths(key)[0].with_suffix(".lock")
        with open(path, "a+") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def entry(self, key: EngineKey) -> Optional[Dict]:
        """The sidecar of a valid entry, or ``None`` (a corrupt entry is removed)."""
        engine, side = self.paths(key)
        if not engine.exists() and not side.exists():
            return None
        reason = None
        try:
            info = json.loads(side.read_text())
            if info.get("version") != SIDECAR_VERSION:
                reason = f"sidecar version {info.get('version')}"
            elif EngineKey.from_dict(info["key"]) != key:
                reason = "key mismatch"
            elif not engine.is_file():
                reason = "engine file missing"
            elif hashlib.sha256(engine.read_bytes()).hexdigest() != info.get("engine_sha256"):
                reason = "engine bytes do not match their recorded sha256"
        except (OSError, ValueError, KeyError, TypeError) as exc:
            reason = f"unreadable sidecar ({exc.__class__.__name__})"
            info = None
        if reason:
            LOG.warning("engine cache: discarding %s: %s", engine.name, reason)
            self.remove(key)
            return None
        return info

    def load(self, key: EngineKey) -> Optional[bytes]:
        """Engine bytes of a valid entry, else ``None``."""
        return self.paths(key)[0].read_bytes() if self.entry(key) else None

    def store(self, key: EngineKey, engine: bytes, **extra) -> Path:
        path, side = self.paths(key)
        atomic_write_bytes(path, engine)
        info = {"version": SIDECAR_VERSION, "key": key.to_dict(),
                "engine_sha256": hashlib.sha256(engine).hexdigest(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **extra}
        atomic_write_bytes(side, (json.dumps(info, indent=2) + "\n").encode())
        return path

    def annotate(self, key: EngineKey, **extra) -> None:
        """Add fields (e.g. the accuracy gate's verdict) to an entry's sidecar."""
        side = self.paths(key)[1]
        info = json.loads(side.read_text())
        info.update(extra)
        atomic_write_bytes(side, (json.dumps(info, indent=2) + "\n").encode())

    def remove(self, key: EngineKey) -> None:
        for p in self.paths(key):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    def get_or_build(self, key: EngineKey, build: Callable[[], bytes]) -> bytes:
        """Cached engine bytes, building (under the lock) when absent or corrupt."""
        with self.lock(key):
            data = self.load(key)
            if data is not None:
                LOG.info("engine cache: hit %s", self.paths(key)[0])
                return data
            LOG.info("engine cache: building %s (this can take minutes)", key.describe())
            t0 = time.monotonic()
            data = build()
            self.store(key, data, build_seconds=round(time.monotonic() - t0, 1))
            LOG.info("engine cache: built in %.0f s → %s", time.monotonic() - t0,
                     self.paths(key)[0])
            return data


#: Set when the interpreter exits: a background build / probe stops at its next step.
SHUTTING_DOWN = threading.Event()
#: Seconds an exiting interpreter waits for a background build's current step.
EXIT_JOIN_S = 60.0
_RUNNING: "weakref.WeakSet[HotSwapBackend]" = weakref.WeakSet()


@atexit.register
def _join_background_builds() -> None:
    """Wait for background threads still inside a native runtime.

    A daemon thread left inside ONNX Runtime / OpenVINO while the interpreter
    finalises aborts the process ("terminate called without an active
    exception", exit 134), e.g. a node stopped during its auto probe.  atexit
    runs before finalisation, so the thread finishes its current step
    (:data:`SHUTTING_DOWN` ends the probe's loop) and the exit stays clean.
    """
    SHUTTING_DOWN.set()
    for swap in list(_RUNNING):
        swap._thread.join(EXIT_JOIN_S)


class HotSwapBackend:
    """Serve with ``fallback`` while ``make_fast()`` runs in a thread; then switch.

    ``make_fast`` builds (or loads) the engine and returns the *bytes* or any
    handle; ``open_fast(handle)`` turns it into a backend on the caller's
    thread at the next ``infer`` (CUDA objects stay on the inferring thread).
    ``accept(fast)`` is the accuracy gate: a backend it rejects is never used.
    The switch happens between frames, so no frame mixes backends.
    """

    def __init__(self, fallback, make_fast: Callable[[], object], open_fast: Callable[[object], object],
                 accept: Optional[Callable[[object], Tuple[bool, str]]] = None,
                 heartbeat_s: float = 30.0, start: bool = True, label: str = "engine build"):
        self.fallback = fallback
        self.label = label           # what runs in the thread, for the logs
        self.current = fallback
        self.metadata = getattr(fallback, "metadata", {})
        self.state = "building"          # building → switched | failed | refused
        self.reason = ""
        self._open, self._accept = open_fast, accept
        self._result: Optional[object] = None
        self._error: Optional[BaseException] = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(make_fast, heartbeat_s),
                                        name=f"goodpoint-{label.replace(' ', '-')}", daemon=True)
        if start:
            _RUNNING.add(self)
            self._thread.start()

    @property
    def name(self) -> str:
        return getattr(self.current, "name", "?")

    @property
    def precision(self) -> str:
        return getattr(self.current, "precision", "?")

    def _run(self, make_fast, heartbeat_s):
        t0 = time.monotonic()
        stop = threading.Event()

        def beat():   # TensorRT builds take minutes: say it is alive
            while not stop.wait(heartbeat_s):
                LOG.info("%s still running (%.0f s); serving with %s", self.label,
                         time.monotonic() - t0, getattr(self.fallback, "name", "fallback"))
        threading.Thread(target=beat, daemon=True).start()
        try:
            self._result = make_fast()
        except BaseException as exc:   # reported on the serving thread, never raised into it
            self._error = exc
        finally:
            stop.set()
            self._done.set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the build finished (tests, ``--wait-engine``); True if it did."""
        return self._done.wait(timeout)

    def _maybe_switch(self) -> None:
        if self.state != "building" or not self._done.is_set():
            return
        if self._error is not None:
            self.state, self.reason = "failed", f"{self._error.__class__.__name__}: {self._error}"
            LOG.error("%s failed, staying on %s: %s", self.label, self.fallback.name, self.reason)
            return
        try:
            fast = self._open(self._result)
        except Exception as exc:
            self.state, self.reason = "failed", f"cannot open engine: {exc}"
            LOG.error("%s; staying on %s", self.reason, self.fallback.name)
            return
        if self._accept is not None:
            try:
                ok, why = self._accept(fast)
            except Exception as exc:   # an engine that could not be checked is not used
                ok, why = False, f"the gate could not run: {exc.__class__.__name__}: {exc}"
            if not ok:
                self.state, self.reason = "refused", why
                LOG.error("engine refused by the accuracy gate (%s); staying on %s",
                          why, self.fallback.name)
                return
        self.current, self.state = fast, "switched"
        self.metadata = getattr(fast, "metadata", None) or self.metadata
        LOG.info("switched to %s (%s)", getattr(fast, "name", "?"), getattr(fast, "precision", "?"))

    def infer(self, image: np.ndarray):
        self._maybe_switch()
        return self.current.infer(image)
