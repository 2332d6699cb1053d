"""The per-frame pipeline: image → :class:`Features`, shared by CLI, node, evaluator.

    extractor = FeatureExtractor()                    # bundled weights, best backend
    feats = extractor(image)                          # any uint8/uint16/float image
    feats.keypoints, feats.scores, feats.descriptors

Preprocess (gray float in [0,1], optional resize, pad to ×8) → ``backend.infer``
→ :func:`goodpoint_ros.core.keypoints.postprocess` → keypoints mapped back to the
original image's pixels (see ``docs/conventions.md``).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from goodpoint_ros.backends import create_backend
from goodpoint_ros.core.config import MAX_SIDE, GoodPointConfig
from goodpoint_ros.core.keypoints import (
    Features,
    pad_to_multiple,
    postprocess,
    scale_keypoints,
    to_gray_float,
)

LOG = logging.getLogger("goodpoint_ros.pipeline")

#: Peak memory of one frame per network pixel (bytes) and of the loaded runtime
#: (MB), measured as ru_maxrss of a fresh process (docs/bad-inputs.md).  Network
#: alone, 640×480 / 1280×960: ONNX Runtime fp32 with its CPU arena 1062 / 1179
#: B/px, arena off 705 / 627 B/px (large frames run arena-less, see
#: onnxruntime_backend); torch CPU 956 / 800 B/px.  Whole extractor call (ORT):
#: 292 MB at 640×480, 740 MB at 1280×960, 1081 MB at 1600×1200; torch 584 / 1263 MB.
#: The encoder's first 64-channel layers at full resolution (256 B/px each, input
#: and output alive) are most of it.  Rounded up: the estimate is an upper bound.
PEAK_BYTES_PER_PIXEL = {"onnxruntime": 1000, "onnxruntime-large": 650, "torch": 900}
RUNTIME_MB = {"onnxruntime": 150, "torch": 450}
#: Above this many network pixels ONNX Runtime runs without its memory arena
#: (the same constant as onnxruntime_backend's, not imported: onnxruntime is optional).
LARGE_FRAME_PIXELS = 1_000_000


def estimate_peak_mb(backend_name: str, width: int, height: int) -> float:
    """Upper estimate of the process's peak memory (MB) for a ``width``×``height``
    network input on ``backend_name`` (other backends: the largest per-pixel figure)."""
    px = int(width) * int(height)
    name = str(backend_name)
    if name == "onnxruntime" and px > LARGE_FRAME_PIXELS:
        name = "onnxruntime-large"
    bpp = PEAK_BYTES_PER_PIXEL.get(name, max(PEAK_BYTES_PER_PIXEL.values()))
    base = RUNTIME_MB.get(str(backend_name), 0.0)     # unmeasured (a GPU, a test double)
    return base + bpp * px / 1e6


def fit_budget(backend_name: str, width: int, height: int,
               budget_mb: float) -> Tuple[int, int]:
    """The largest (W, H) with the aspect of ``width``×``height`` (multiples of 8,
    at least 8) whose :func:`estimate_peak_mb` fits ``budget_mb``."""
    s = 1.0
    while s > 0.01:
        w, h = max(8, int(width * s) // 8 * 8), max(8, int(height * s) // 8 * 8)
        if estimate_peak_mb(backend_name, w, h) <= budget_mb:
            return w, h
        s *= 0.95
    return 8, 8


@dataclass
class StageTimes:
    """Milliseconds spent in each stage of the last call."""
    preprocess: float = 0.0
    network: float = 0.0
    postprocess: float = 0.0

    @property
    def total(self) -> float:
        return self.preprocess + self.network + self.postprocess


class FeatureExtractor:
    """GoodPoint features for one image at a time.

    Args:
        backend: a backend object (with ``infer``), or a name for
            :func:`create_backend` (``auto``, ``torch``, ``onnxruntime``,
            ``tensorrt``).  Checked here: a config passed first by mistake is a
            one-line ``TypeError``, not an ``AttributeError`` at the first frame.
        config: post-processing settings (a :class:`GoodPointConfig`); unset
            θ_keypoint comes from the weights' metadata.
        resize: optional (W, H) the network sees; keypoints are mapped back.
        scale: or a factor for every frame's size (2: the network sees each image
            doubled, as SIFT's first octave does by default, Lowe 2004 §3.3 — denser
            and finer keypoints from small images at 4× the network cost); keypoints
            are mapped back.  Not with ``resize``.  ``None`` (default): by the frame's
            size, ``config.upsample_below`` (small frames doubled, others as they are).
        oversize: what a frame over ``config.memory_budget_mb`` gets:
            ``refuse`` (a one-line ``ValueError`` before anything is allocated;
            the CLI) or ``downscale`` (run the network at the largest size that
            fits, keypoints mapped back, said once in :meth:`pop_notes`; the node).
        weights, device, precision: passed to the backend factory.
    """

    def __init__(self, backend="auto", config: Optional[GoodPointConfig] = None,
                 resize: Optional[Tuple[int, int]] = None, weights=None,
                 device: str = "auto", precision: str = "auto", oversize: str = "refuse",
                 scale: Optional[float] = None, **backend_kwargs):
        if isinstance(backend, GoodPointConfig):
            raise TypeError("FeatureExtractor's first argument is the backend (a name or an "
                            "object with infer); pass the settings as config=GoodPointConfig(...)")
        if not isinstance(backend, str) and not callable(getattr(backend, "infer", None)):
            raise TypeError("backend must be a name (auto, torch, onnxruntime, tensorrt) or an "
                            f"object with infer(), got {type(backend).__name__}")
        if config is not None and not isinstance(config, GoodPointConfig):
            raise TypeError(f"config must be a GoodPointConfig, got {type(config).__name__}")
        if oversize not in ("refuse", "downscale"):
            raise ValueError(f"oversize must be refuse or downscale, got {oversize!r}")
        if resize is not None and (min(resize) < 8):
            raise ValueError(f"resize {resize[0]}x{resize[1]} is too small (at least 8x8)")
        if scale is not None and not 0.1 <= float(scale) <= 4.0:
            raise ValueError(f"scale must be in [0.1, 4], got {scale}")
        if resize is not None and scale is not None and float(scale) != 1.0:
            raise ValueError("pass resize (a fixed W, H) or scale (a factor), not both")
        if isinstance(backend, str):
            if resize and "size" not in backend_kwargs:   # the auto probe measures this size
                backend_kwargs["size"] = tuple(resize)
            backend = create_backend(backend, weights=weights, device=device,
                                     precision=precision, **backend_kwargs)
        self.backend = backend
        self.metadata: Dict = getattr(backend, "metadata", {}) or {}
        self.config = (config or GoodPointConfig()).resolved(self.metadata)
        self.resize = tuple(resize) if resize else None
        self.scale = None if scale is None else float(scale)
        self.oversize = oversize
        self.times = StageTimes()
        self._notes: list = []        # one-time messages for the caller (node: its logger)
        self._noted: set = set()

    def _note(self, key, text: str) -> None:
        """Say ``text`` once per ``key``: logged, and kept for :meth:`pop_notes`."""
        if key not in self._noted:
            self._noted.add(key)
            self._notes.append(text)
            LOG.warning(text)

    def pop_notes(self) -> list:
        """One-time warnings since the last call (downscaled frames, input range)."""
        notes, self._notes = self._notes, []
        return notes

    def set_config(self, config: GoodPointConfig) -> None:
        """Swap thresholds at run time (validated first: a bad value leaves the old one)."""
        self.config = config.resolved(self.metadata)

    def frame_scale(self, size: Tuple[int, int]) -> float:
        """The factor a (W, H) frame is enlarged by for the network (1 with ``resize``)."""
        if self.resize:
            return 1.0
        return self.config.frame_scale(size) if self.scale is None else self.scale

    def network_size(self, size: Tuple[int, int]) -> Tuple[int, int]:
        """(W, H) the network sees for a (W, H) frame, before the memory budget's check."""
        if self.resize:
            return self.resize
        s = self.frame_scale(size)
        return max(8, int(round(size[0] * s))), max(8, int(round(size[1] * s)))

    def network_sizes(self, size: Tuple[int, int]) -> List[Tuple[int, int]]:
        """(W, H) of every network call for a (W, H) frame: each pyramid level of
        :meth:`network_size` (the budget's downscale aside)."""
        return level_sizes(self.network_size(size), self.config.scales)

    def preprocess(self, image: np.ndarray) -> Tuple[np.ndarray, Tuple[int, int], Tuple[float, float]]:
        """image → (net input [1,1,H',W'], network image size (W,H), scale net→original)."""
        image = np.asarray(image)
        if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0 or (
                image.ndim == 3 and image.shape[2] == 0):
            raise ValueError(f"empty or malformed image: shape {image.shape} (expected [H,W] "
                             "or [H,W,C] with H, W > 0)")
        h, w = image.shape[:2]
        if max(h, w) > MAX_SIDE:
            raise ValueError(f"image is {w}x{h}; the largest side decoded is {MAX_SIDE} px")
        # the budget is checked on the size the network will see, before any allocation
        net = self.network_size((w, h))
        name = getattr(self.backend, "name", "?")
        budget = self.config.memory_budget_mb
        need = estimate_peak_mb(name, *net)
        if need > budget:
            if self.oversize == "refuse":
                raise ValueError(
                    f"a {net[0]}x{net[1]} network input needs about {need / 1000:.1f} GB on "
                    f"{name}, over the memory budget of {budget / 1000:.1f} GB: pass --resize "
                    f"(e.g. {'x'.join(map(str, fit_budget(name, *net, budget)))}) or raise "
                    "--memory-budget (MB)")
            net = fit_budget(name, *net, budget)
            self._note(("downscale", (w, h)),
                       f"{w}x{h} frames need about {need / 1000:.1f} GB, over the memory budget "
                       f"of {budget / 1000:.1f} GB: the network runs at {net[0]}x{net[1]} "
                       "(keypoints mapped back; raise memory_budget_mb or set resize_width/height)")
        image = self._normalise_range(image)
        gray = to_gray_float(image)
        scale = (1.0, 1.0)
        if net != (w, h):
            rw, rh = net
            # area averaging to shrink (no aliasing), bilinear to enlarge
            gray = cv2.resize(gray, (rw, rh), interpolation=cv2.INTER_AREA if rw * rh < w * h
                              else cv2.INTER_LINEAR)
            scale = (w / rw, h / rh)
        size = (gray.shape[1], gray.shape[0])
        return pad_to_multiple(gray)[None, None], size, scale

    def _normalise_range(self, image: np.ndarray) -> np.ndarray:
        """Scale by ``config.input_max`` when set; else warn once when the frame uses a
        small part of its type's range (a 10/12-bit camera in mono16, floats in
        0..255): the network then sees a nearly black / white image."""
        top = self.config.input_max
        if top:
            return image.astype(np.float32) * np.float32(1.0 / top)
        if image.dtype == np.uint16 and image.size:
            m = int(image.max())
            if 0 < m <= 4095:
                bits = 10 if m <= 1023 else 12
                self._note("range-u16", f"16-bit image with maximum {m}: looks like a {bits}-bit "
                           f"camera; scaled ÷65535 it is nearly black (set input_max "
                           f"{2 ** bits - 1}, --input-max on the command line)")
        elif image.dtype.kind == "f" and image.size:
            m = float(np.nanmax(image)) if np.isfinite(image).any() else 0.0
            if m >= 1.5:
                self._note("range-float", f"float image with maximum {m:.4g}: floats are read "
                           "as 0..1 and clipped, so it is nearly white (set input_max, e.g. 255, "
                           "--input-max on the command line)")
        return image

    def _infer(self, x: np.ndarray):
        try:
            return self.backend.infer(np.ascontiguousarray(x, dtype=np.float32))
        except MemoryError:
            raise
        except Exception as exc:     # ONNX Runtime reports a failed allocation as its own type
            if "alloc" not in str(exc).lower():
                raise
            raise MemoryError(f"{getattr(self.backend, 'name', 'the backend')} ran out of memory "
                              f"for a {x.shape[3]}x{x.shape[2]} network input (memory budget "
                              f"{self.config.memory_budget_mb:.0f} MB): lower the budget or "
                              "resize") from None

    def __call__(self, image: np.ndarray) -> Features:
        t0 = time.perf_counter()
        x, size, scale = self.preprocess(image)
        t_pre = (time.perf_counter() - t0) * 1e3
        t_net = t_post = 0.0
        levels = []
        base = gray_of(x, size) if len(self.config.scales) > 1 else None
        for k, level_size in enumerate(level_sizes(size, self.config.scales)):
            t1 = time.perf_counter()
            if k:    # every level straight from the network-size image, area-averaged
                x = pad_to_multiple(cv2.resize(base, level_size,
                                               interpolation=cv2.INTER_AREA))[None, None]
            t2 = time.perf_counter()
            prob, desc = self._infer(x)
            t3 = time.perf_counter()
            feats = postprocess(prob, desc, level_size, self.config)
            if k:
                feats = replace(feats, keypoints=scale_keypoints(
                    feats.keypoints, size[0] / level_size[0], size[1] / level_size[1]),
                    image_size=size)
            levels.append(feats)
            t4 = time.perf_counter()
            t_pre += (t2 - t1) * 1e3
            t_net += (t3 - t2) * 1e3
            t_post += (t4 - t3) * 1e3
        t5 = time.perf_counter()
        feats = pool_levels(levels, self.config.max_keypoints)
        if scale != (1.0, 1.0):
            orig = (int(round(size[0] * scale[0])), int(round(size[1] * scale[1])))
            feats = replace(feats, keypoints=scale_keypoints(feats.keypoints, *scale),
                            image_size=orig)
        t_post += (time.perf_counter() - t5) * 1e3
        self.times = StageTimes(t_pre, t_net, t_post)
        return feats


#: Pyramid levels smaller than this (either side) are not run: too few cells to matter,
#: and below the TensorRT engines' default optimisation profile (64×64).
MIN_LEVEL_SIDE = 64


def pyramid_size(size: Tuple[int, int], s: float) -> Optional[Tuple[int, int]]:
    """(W, H) of the level at scale ``s`` of a (W, H) image, or None when too small."""
    w, h = max(int(round(size[0] * s)), 1), max(int(round(size[1] * s)), 1)
    return (w, h) if min(w, h) >= MIN_LEVEL_SIDE else None


def level_sizes(size: Tuple[int, int], scales) -> List[Tuple[int, int]]:
    """(W, H) of the pyramid levels run for a (W, H) network image: ``size`` itself, then
    each scale's, up to the first that is too small (:data:`MIN_LEVEL_SIDE`)."""
    out = [tuple(size)]
    for s in scales[1:]:
        level = pyramid_size(size, s)
        if level is None:
            break
        out.append(level)
    return out


def gray_of(x: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """The unpadded [H,W] image of a padded network input [1,1,H',W']."""
    return np.ascontiguousarray(x[0, 0, :size[1], :size[0]])


def pool_levels(levels, max_keypoints: Optional[int]) -> Features:
    """Keypoints of all pyramid levels (already in level-0 pixels) → one :class:`Features`,
    strongest first, at most ``max_keypoints``.  Keypoints of different levels at one
    place are all kept: their descriptors see different scales (as SIFT's do)."""
    if len(levels) == 1:
        return levels[0]
    kpts = np.concatenate([f.keypoints for f in levels])
    scores = np.concatenate([f.scores for f in levels])
    desc = np.concatenate([f.descriptors for f in levels])
    order = np.argsort(-scores, kind="stable")
    if max_keypoints:
        order = order[:max_keypoints]
    return Features(kpts[order], scores[order], desc[order], levels[0].image_size)
