"""Validation on held-out training photos warped by fixed homographies.

The photos listed in ``training/validation_split.txt`` are never trained on.
Each is resized / centre-cropped to a fixed size and warped by fixed
homographies (seeded): half of the photos with the paper's small rotations
(§5.2, "mild"), the other half with rotation to ±46° and zoom 0.8–1.3
("strong"), and every photo once more by a "wide" viewpoint change — rotation
30–45° *and* zoom 1.5–2.0 (in or out), the bark-like sequences the model is
weakest on — so the split can tell the training ranges apart and a wide-range
stage can be chosen on it.  Metrics are the evaluation package's (P, R, C at ε = 3 px and
their harmonic mean), computed with the *shared* post-processor and matcher,
exactly as a user of the released weights would get them.

This split — never ``../shared/data`` — picks the best checkpoint and the
θ_keypoint recorded in the released weights.
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from goodpoint_ros.core.config import GoodPointConfig
from goodpoint_ros.core.keypoints import postprocess
from goodpoint_ros.core.matching import match_descriptors
from goodpoint_ros.evaluation.metrics import harmonic_mean, homography_warp, pair_metrics

from .data import read_gray, read_split
from .homography import HomographyConfig, rotation_scale_about, sample_homography

#: Validation warps: even photos the paper's ranges, odd photos rotation + zoom.
MILD = HomographyConfig(corner_shift=14, perspective_shift=60, rotation=0.08, scale=(0.9, 1.1))
STRONG = HomographyConfig(corner_shift=14, perspective_shift=60, rotation=0.8, scale=(0.8, 1.3))
#: The wide tier (every photo): |rotation| and zoom (or 1/zoom) drawn from these ranges, on
#: top of STRONG's corner jitter and perspective.
WIDE_ROTATION = (np.deg2rad(30.0), np.deg2rad(45.0))
WIDE_ZOOM = (1.5, 2.0)
KINDS = ("mild", "strong", "wide")
VALIDATION_SIZE = (320, 240)
VALIDATION_SEED = 20200
EPSILON = 3.0
#: θ_keypoint candidates for the release sweep (all above the flat 1/64).
THRESHOLDS = (0.016, 0.017, 0.018, 0.019, 0.02, 0.021, 0.023, 0.025, 0.028, 0.032, 0.04,
              0.05, 0.065, 0.08, 0.1, 0.13, 0.17, 0.22, 0.3)


@dataclass
class ValidationPair:
    """image_a, image_b float32 [H,W] in [0,1]; H [3,3] pixels of a → b; kind mild|strong|wide."""
    name: str
    image_a: np.ndarray
    image_b: np.ndarray
    H: np.ndarray
    kind: str


def fit_crop(img: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Resize to cover (W, H) keeping the aspect ratio, then centre-crop."""
    w, h = size
    ih, iw = img.shape[:2]
    s = max(w / iw, h / ih)
    img = cv2.resize(img, (max(w, round(iw * s)), max(h, round(ih * s))),
                     interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    y0 = (img.shape[0] - h) // 2
    x0 = (img.shape[1] - w) // 2
    return img[y0:y0 + h, x0:x0 + w]


def wide_homography(rng: np.random.Generator, size: Tuple[int, int]) -> np.ndarray:
    """A wide viewpoint change of a (W, H) image: STRONG's jitter and perspective, then a
    rotation of 30–45° (either sign) and a zoom of 1.5–2.0 in or out about the centre."""
    w, h = size
    base = sample_homography(rng, size, dataclasses.replace(STRONG, rotation=0.0, scale=(1.0, 1.0)))
    angle = rng.uniform(*WIDE_ROTATION) * rng.choice([-1.0, 1.0])
    zoom = rng.uniform(*WIDE_ZOOM) ** rng.choice([-1.0, 1.0])
    H = rotation_scale_about(((w - 1) / 2.0, (h - 1) / 2.0), angle, zoom) @ base
    return H / H[2, 2]


def make_pair(image: np.ndarray, index: int, name: str = "", size=VALIDATION_SIZE,
              seed: int = VALIDATION_SEED, kind: Optional[str] = None) -> ValidationPair:
    """Fixed pair ``index`` from a uint8 gray photo (deterministic).

    ``kind`` None: mild for even ``index``, strong for odd (the original split);
    ``"wide"``: :func:`wide_homography`, from its own seed stream.
    """
    a = fit_crop(image, size).astype(np.float32) / 255.0
    if kind is None:
        kind = "mild" if index % 2 == 0 else "strong"
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "wide":
        H = wide_homography(np.random.default_rng([seed, index, 1]), size)
    else:
        H = sample_homography(np.random.default_rng([seed, index]), size,
                              MILD if kind == "mild" else STRONG)
    b = cv2.warpPerspective(a, H, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return ValidationPair(name, a, b, H, kind)


def load_pairs(image_dir: Path, names: Optional[Sequence[str]] = None,
               size=VALIDATION_SIZE, wide: bool = True) -> List[ValidationPair]:
    """The validation split's pairs: per photo its mild-or-strong pair and, with ``wide``,
    its wide pair (missing / unreadable files are skipped)."""
    names = list(names) if names is not None else read_split()
    pairs = []
    for i, name in enumerate(names):
        img = read_gray(Path(image_dir) / name)
        if img is not None:
            pairs.append(make_pair(img, i, name, size))
            if wide:
                pairs.append(make_pair(img, i, name, size, kind="wide"))
    return pairs


def run_network(model, pairs: Sequence[ValidationPair], device="cpu", precision: str = "fp32"):
    """Network outputs for both images of each pair → list of ((prob, desc), (prob, desc)).

    ``precision="bf16"`` runs under autocast (cheap validation during training);
    the release sweep uses fp32, what users of the weights get by default.
    """
    import torch  # lazy: torch is optional here (pairs are read and scored without it)
    was_training = model.training
    model.eval()
    outs = []
    dev = torch.device(device)
    amp = (torch.autocast(dev.type, dtype=torch.bfloat16) if precision == "bf16"
           else contextlib.nullcontext())
    with torch.no_grad(), amp:
        for p in pairs:
            x = torch.from_numpy(np.stack([p.image_a, p.image_b])[:, None]).to(device)
            o = model(x)
            prob, desc = o["prob"].float().cpu().numpy(), o["desc"].float().cpu().numpy()
            outs.append(((prob[:1], desc[:1]), (prob[1:], desc[1:])))
    model.train(was_training)
    return outs


def evaluate(outputs, pairs: Sequence[ValidationPair], config: GoodPointConfig,
             eps: float = EPSILON) -> Dict[str, float]:
    """Mean P, R, C over the pairs and the harmonic mean of those means (+ per kind)."""
    rows = []
    for ((pa, da), (pb, db)), p in zip(outputs, pairs):
        h, w = p.image_a.shape
        fa = postprocess(pa, da, (w, h), config)
        fb = postprocess(pb, db, (w, h), config)
        m = match_descriptors(fa.descriptors, fb.descriptors, config)[0]
        rows.append(score_pair(p, fa.keypoints, fb.keypoints, m, eps))
    return summarise(rows)


def score_pair(p: ValidationPair, kpts_a, kpts_b, matches, eps: float = EPSILON) -> Dict:
    """P, R, C of one pair: keypoints [N,2] / [M,2], matches [K,2] index pairs."""
    h, w = p.image_a.shape
    r = pair_metrics(kpts_a, kpts_b, matches, homography_warp(p.H, (w, h)),
                     homography_warp(np.linalg.inv(p.H), (w, h)), (w, h), (w, h),
                     eps_list=(eps,))
    r["kind"] = p.kind
    return r


def evaluate_method(method, pairs: Sequence[ValidationPair], eps: float = EPSILON) -> Dict:
    """The same metrics for any :class:`goodpoint_ros.evaluation.methods.Method`
    (ORB, SIFT, AKAZE: the split's reference figures)."""
    rows = []
    for p in pairs:
        fa, fb = (method.detect((img * 255).round().astype(np.uint8))
                  for img in (p.image_a, p.image_b))
        rows.append(score_pair(p, fa.keypoints, fb.keypoints, method.match(fa, fb), eps))
    return summarise(rows)


def summarise(rows: List[Dict]) -> Dict[str, float]:
    def block(sel):
        out = {}
        for k in ("precision", "repeatability", "coverage", "keypoints", "matches"):
            v = np.array([r[k] for r in sel], dtype=np.float64)
            v = v[~np.isnan(v)]
            out[k] = float(v.mean()) if len(v) else float("nan")
        out["harmonic_mean"] = harmonic_mean([out["precision"], out["repeatability"],
                                              out["coverage"]])
        return out
    res = block(rows)
    for kind in KINDS:
        sel = [r for r in rows if r["kind"] == kind]
        if sel:
            res.update({f"{kind}_{k}": v for k, v in block(sel).items()})
    return res


def sweep_thresholds(outputs, pairs, base: GoodPointConfig,
                     thresholds: Sequence[float] = THRESHOLDS):
    """Validation metrics for each θ_keypoint → (best θ, {θ: metrics}) by harmonic mean."""
    table = {}
    for t in thresholds:
        cfg = dataclasses.replace(base, keypoint_threshold=float(t))
        table[float(t)] = evaluate(outputs, pairs, cfg)
    scored = {t: (m["harmonic_mean"] if np.isfinite(m["harmonic_mean"]) else -1.0)
              for t, m in table.items()}
    best = max(scored, key=scored.get)
    return best, table


class Validator:
    """Holds the validation pairs; ``__call__(model)`` → metrics at θ (and best θ)."""

    def __init__(self, image_dir: Path, names=None, size=VALIDATION_SIZE):
        self.pairs = load_pairs(image_dir, names, size)

    def __len__(self):
        return len(self.pairs)

    def __call__(self, model, device="cpu", thresholds=(0.02, 0.025, 0.032, 0.05, 0.08, 0.13),
                 precision: str = "bf16"):
        outs = run_network(model, self.pairs, device, precision)
        best, table = sweep_thresholds(outs, self.pairs, GoodPointConfig(), thresholds)
        m = dict(table[best])
        m["threshold"] = best
        return m, outs
