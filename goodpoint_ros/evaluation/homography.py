"""Homography sets: HPatches, EVD and the retina pair (paper §6.2, §6.3).

Layouts found under a directory (searched a few levels deep, so the root of
``../shared/data`` works as well as one sequence):

* **HPatches** ``<seq>/1.<ext> … 6.<ext>`` with ``H_1_2 … H_1_6`` (3×3 text,
  pixels of 1 → pixels of k).  Image 1 is paired with every k that has an
  ``H_1_k``; sizes may differ within a sequence.  ``i_*`` sequences are the
  photometric split, ``v_*`` the viewpoint split;
* **EVD** ``1/<name>.<ext>``, ``2/<name>.<ext>``, ``h/<name>.txt`` (1 → 2);
* **retina** two images and a text file of putative matches
  ``x1 y1 x2 y2 is_correct``: the ground-truth homography is the least-squares
  fit to the labelled-correct matches (the fundus use case of §6.3).

Convention check (see docs/evaluation.md): with SIFT matches the stored
HPatches/Oxford homographies fit *as is* in the core's convention (pixel
centres at integers) — converting them from a corner convention makes the
median residual worse on 8 of 10 pairs — so they are used unchanged.

:func:`evaluate_pairs` runs every method on every pair (features of image 1
are computed once per sequence) and returns per-pair records for
:func:`~goodpoint_ros.evaluation.aggregate.aggregate`.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from goodpoint_ros.core.config import STILL_PAIR
from goodpoint_ros.core.imageio import ImageError, read_image
from goodpoint_ros.core.matching import verify_homography
from goodpoint_ros.evaluation.metrics import corner_error, homography_warp, pair_metrics
from goodpoint_ros.evaluation.scoring import FeatureCache, correct_matches, example_entry

#: Image file extensions recognised in a data set.
IMAGE_EXTS = (".ppm", ".png", ".jpg", ".jpeg", ".pgm", ".bmp", ".tif", ".tiff", ".webp")

#: How deep below the given directory data sets are looked for.
MAX_DEPTH = 3


@dataclass
class HomographyPair:
    """One evaluation pair: image a, image b and the homography a → b (pixels)."""
    name: str                      # e.g. "v_wall/1-3", "evd/adam", "retina"
    split: Optional[str]           # "i", "v" (HPatches) or None
    dataset: str                   # "hpatches", "evd", "retina"
    path_a: Path
    path_b: Path
    H: np.ndarray
    sequence: str = ""
    notes: Dict = field(default_factory=dict)


# --------------------------------------------------------------------------- reading

def read_homography(path: Path) -> np.ndarray:
    """A 3×3 homography text file → [3,3] float64 (ValueError with the reason if malformed)."""
    try:
        H = np.loadtxt(str(path), dtype=np.float64, ndmin=2)
    except (ValueError, OSError) as exc:
        raise ValueError(f"{path}: not a 3x3 matrix of numbers ({str(exc).splitlines()[0]})")
    if H.size != 9:
        raise ValueError(f"{path}: expected a 3x3 matrix, found {H.size} numbers")
    H = H.reshape(3, 3)
    if not np.isfinite(H).all():
        raise ValueError(f"{path}: homography has non-finite entries")
    if abs(np.linalg.det(H)) < 1e-12:
        raise ValueError(f"{path}: homography is singular")
    return H


def _images(d: Path) -> Dict[str, Path]:
    """stem → image path for the image files directly in d (first extension wins)."""
    out: Dict[str, Path] = {}
    for p in sorted(d.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTS:
            out.setdefault(p.stem, p)
    return out


def split_of(sequence: str) -> Optional[str]:
    """HPatches split of a sequence name: ``i_*`` → "i", ``v_*`` → "v", else None.

    A prefix such as ``hpatches_v_churchill`` (the repo's bundled copy) counts:
    the first ``i_`` / ``v_`` at the start or after ``_`` / ``-`` decides.
    """
    m = re.search(r"(?:^|[_-])([iv])_", sequence.lower())
    return m.group(1) if m else None


def is_hpatches_sequence(d: Path) -> bool:
    return "1" in _images(d) and any(d.glob("H_1_*"))


def is_evd(d: Path) -> bool:
    return all((d / s).is_dir() for s in ("1", "2", "h"))


def _retina_matches_file(d: Path) -> Optional[Path]:
    for p in sorted(d.glob("*.txt")):
        try:
            with open(p) as fh:
                head = [ln for ln in (fh.readline() for _ in range(5)) if ln.strip()]
        except (OSError, UnicodeDecodeError):
            continue
        rows = [ln.split() for ln in head if not ln.lstrip().startswith("#")]
        if rows and all(len(r) == 5 for r in rows):
            return p
    return None


def is_retina(d: Path) -> bool:
    return len(_images(d)) == 2 and _retina_matches_file(d) is not None


def hpatches_pairs(d: Path, problems: List[str]) -> List[HomographyPair]:
    """Pairs (1, k) of one HPatches-layout sequence; bad H files go to ``problems``."""
    imgs = _images(d)
    seq = d.name
    out = []
    for hp in sorted(d.glob("H_1_*"), key=lambda p: (len(p.name), p.name)):
        k = hp.name[len("H_1_"):]
        if k not in imgs:
            problems.append(f"{seq}/{hp.name}: no image {k}.* for it")
            continue
        try:
            H = read_homography(hp)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        out.append(HomographyPair(f"{seq}/1-{k}", split_of(seq), "hpatches", imgs["1"], imgs[k], H,
                                  sequence=seq))
    return out


def evd_pairs(d: Path, problems: List[str]) -> List[HomographyPair]:
    """EVD layout: ``1/<name>``, ``2/<name>``, ``h/<name>.txt`` (homography 1 → 2)."""
    one, two = _images(d / "1"), _images(d / "2")
    out = []
    for hp in sorted((d / "h").glob("*.txt")):
        name = hp.stem
        if name not in one or name not in two:
            problems.append(f"{d.name}/h/{hp.name}: image {name} missing in 1/ or 2/")
            continue
        try:
            H = read_homography(hp)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        out.append(HomographyPair(f"{d.name}/{name}", None, "evd", one[name], two[name], H,
                                  sequence=d.name))
    return out


def fit_homography_from_matches(pts_a: np.ndarray, pts_b: np.ndarray) -> Tuple[np.ndarray, float]:
    """Least-squares H from labelled-correct correspondences → (H, RMS residual px).

    On ``../shared/data/retina`` (49 correct of 101) the residual is 3.2 px
    median, 6.1 px RMS: a retina is not a plane, so ε = 3 px is strict there.

    All points are ground truth, so no robust estimator: plain DLT + LM refine
    (``cv2.findHomography`` method 0).
    """
    if len(pts_a) < 4:
        raise ValueError(f"need at least 4 correct matches to fit a homography, got {len(pts_a)}")
    H, _ = cv2.findHomography(pts_a.astype(np.float64), pts_b.astype(np.float64), 0)
    if H is None:
        raise ValueError("the labelled-correct matches do not determine a homography")
    proj = cv2.perspectiveTransform(pts_a.reshape(-1, 1, 2).astype(np.float64), H).reshape(-1, 2)
    rms = float(np.sqrt(np.mean(np.sum((proj - pts_b) ** 2, axis=1))))
    return H, rms


def retina_pairs(d: Path, problems: List[str]) -> List[HomographyPair]:
    """The retina pair: images sorted by name (a, b) and H fitted to the correct matches."""
    imgs = sorted(_images(d).values())
    mf = _retina_matches_file(d)
    try:
        rows = np.loadtxt(str(mf), dtype=np.float64, ndmin=2, comments="#")
        if rows.shape[1] != 5:
            raise ValueError(f"{mf}: expected 5 columns x1 y1 x2 y2 is_correct")
        good = rows[rows[:, 4] > 0.5]
        H, rms = fit_homography_from_matches(good[:, :2], good[:, 2:4])
    except ValueError as exc:
        problems.append(f"{d.name}: {str(exc).splitlines()[0]}")
        return []
    return [HomographyPair(d.name, None, "retina", imgs[0], imgs[1], H, sequence=d.name,
                           notes={"correct_matches": int(len(good)), "fit_rms_px": rms})]


def discover_pairs(root) -> Tuple[List[HomographyPair], List[str]]:
    """All pairs of every homography data set under ``root`` → (pairs, problems).

    Raises ``ValueError`` when ``root`` is missing or holds no data set at all.
    ``problems`` lists what was skipped (malformed H files, missing images).
    """
    root = Path(root)
    if not root.exists():
        raise ValueError(f"{root}: no such directory")
    if not root.is_dir():
        raise ValueError(f"{root}: not a directory (give a folder of sequences or one sequence)")
    pairs: List[HomographyPair] = []
    problems: List[str] = []

    def visit(d: Path, depth: int) -> None:
        try:
            if is_hpatches_sequence(d):
                pairs.extend(hpatches_pairs(d, problems))
                return
            if any(d.glob("H_1_*")):
                problems.append(f"{d.name}: has H_1_* files but no image 1.* to pair them with")
                return
            if is_evd(d):
                pairs.extend(evd_pairs(d, problems))
                return
            if is_retina(d):
                pairs.extend(retina_pairs(d, problems))
                return
            if depth >= MAX_DEPTH:
                return
            subdirs = sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))
        except PermissionError as exc:
            problems.append(f"{d}: {exc.strerror}")
            return
        for sub in subdirs:
            visit(sub, depth + 1)

    visit(root, 0)
    if not pairs:
        hint = f" ({len(problems)} problems: {problems[0]})" if problems else ""
        raise ValueError(f"{root}: no homography sequences found (expected HPatches <seq>/1.png + "
                         f"H_1_k, EVD 1/ 2/ h/, or a retina pair with its matches file){hint}")
    return pairs, problems


# --------------------------------------------------------------------------- resizing

def scale_matrix(sx: float, sy: float) -> np.ndarray:
    """Pixel map of a resize by (sx, sy) in the centre convention: x' = (x + 0.5)s − 0.5."""
    return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]], np.float64)


def resize_pair(img_a: np.ndarray, img_b: np.ndarray, H: np.ndarray,
                size: Optional[Tuple[int, int]]):
    """Resize both images to ``size`` (W, H) and update H → (img_a, img_b, H')."""
    if size is None:
        return img_a, img_b, H
    out = []
    scales = []
    for img in (img_a, img_b):
        h, w = img.shape[:2]
        scales.append(scale_matrix(size[0] / w, size[1] / h))
        out.append(img if (w, h) == tuple(size) else
                   cv2.resize(img, tuple(size), interpolation=cv2.INTER_AREA))
    return out[0], out[1], scales[1] @ H @ np.linalg.inv(scales[0])


# --------------------------------------------------------------------------- evaluation

def _size(img: np.ndarray) -> Tuple[int, int]:
    return int(img.shape[1]), int(img.shape[0])


def evaluate_pair_method(method, feats_a, feats_b, H: np.ndarray, size_a, size_b,
                         eps_list: Sequence[float], coverage_radius: float,
                         ransac_threshold: float = STILL_PAIR.ransac_threshold
                         ) -> Tuple[Dict, np.ndarray]:
    """Match one pair with one method and score it → (record, matches [K,2]).

    The record is :func:`pair_metrics` plus ``corner_error`` (homography from
    the matches with USAC/MAGSAC vs the ground truth), ``inliers`` and
    ``match_ms``.
    """
    t0 = time.perf_counter()
    matches = method.match(feats_a, feats_b)
    t1 = time.perf_counter()
    rec = pair_metrics(feats_a.keypoints, feats_b.keypoints, matches,
                       homography_warp(H, size_b), homography_warp(np.linalg.inv(H), size_a),
                       size_a, size_b, eps_list, coverage_radius)
    t2 = time.perf_counter()
    H_est, inl = verify_homography(feats_a.keypoints, feats_b.keypoints, matches, ransac_threshold)
    rec["corner_error"] = corner_error(H_est, H, size_a)
    rec["inliers"] = int(inl.sum())
    rec["match_ms"] = (t1 - t0) * 1e3
    rec["metrics_ms"] = (t2 - t1) * 1e3
    rec["verify_ms"] = (time.perf_counter() - t2) * 1e3
    return rec, matches


def evaluate_pairs(pairs: Sequence[HomographyPair], methods: Dict[str, object],
                   eps_list: Sequence[float] = (3, 5), coverage_radius: float = 25.0,
                   resize: Optional[Tuple[int, int]] = None,
                   ransac_threshold: float = STILL_PAIR.ransac_threshold,
                   progress: bool = True, keep_matches: int = 0,
                   timing: Optional[Dict[str, float]] = None):
    """Run every method on every pair → (per_pair records, skipped [(name, reason)], examples).

    ``examples`` keeps up to ``keep_matches`` pairs' images, keypoints and
    matches per method for the report's pictures.  An unreadable image skips
    its pairs (reason recorded), never the run.  ``timing``, when given, is
    filled with seconds spent reading, extracting, matching, scoring
    (ground-truth warps + metrics) and verifying (USAC homography).
    """
    timing = timing if timing is not None else {}
    for k in ("read", "extraction", "matching", "metrics", "verification"):
        timing.setdefault(k, 0.0)

    per_pair: List[Dict] = []
    skipped: List[Tuple[str, str]] = []
    examples: List[Dict] = []
    cache = FeatureCache(lambda dt: timing.__setitem__("extraction", timing["extraction"] + dt))
    bad_images: Dict[str, str] = {}
    # picture pairs spread along the run, not just the first few
    keep = set(np.linspace(0, len(pairs) - 1, keep_matches).round().astype(int).tolist()) \
        if keep_matches and len(pairs) else set()

    def load(path: Path) -> np.ndarray:
        key = str(path)
        if key in bad_images:
            raise ImageError(bad_images[key])
        t0 = time.perf_counter()
        try:
            return read_image(path)
        except ImageError as exc:
            bad_images[key] = str(exc)
            raise
        finally:
            timing["read"] += time.perf_counter() - t0

    def detect(name, method, path, img):
        return cache.get((name, str(path), _size(img)), method, img)   # (method, path, size)

    bar = tqdm(pairs, desc="eval homography", unit="pair", disable=not progress, leave=False)
    for index, pair in enumerate(bar):
        try:
            img_a, img_b = load(pair.path_a), load(pair.path_b)
        except ImageError as exc:
            skipped.append((pair.name, str(exc)))
            continue
        img_a, img_b, H = resize_pair(img_a, img_b, pair.H, resize)
        size_a, size_b = _size(img_a), _size(img_b)
        record = {"name": pair.name, "split": pair.split, "dataset": pair.dataset,
                  "sequence": pair.sequence, "index": index,
                  "size_a": list(size_a), "size_b": list(size_b), "methods": {}}
        if pair.notes:
            record["notes"] = dict(pair.notes)
        example = {"name": pair.name, "image_a": img_a, "image_b": img_b, "methods": {}}
        try:
            for name, method in methods.items():
                fa, ms_a = detect(name, method, pair.path_a, img_a)
                fb, ms_b = detect(name, method, pair.path_b, img_b)
                rec, matches = evaluate_pair_method(method, fa, fb, H, size_a, size_b, eps_list,
                                                    coverage_radius, ransac_threshold)
                rec["detect_ms"] = (ms_a + ms_b) / 2.0
                timing["matching"] += rec["match_ms"] / 1e3
                timing["metrics"] += rec["metrics_ms"] / 1e3
                timing["verification"] += rec["verify_ms"] / 1e3
                record["methods"][name] = rec
                if index in keep:
                    warped, valid = homography_warp(H, size_b)(fa.keypoints)
                    ok = correct_matches(warped, valid, fb.keypoints, matches, eps_list[0])
                    example["methods"][name] = example_entry(fa.keypoints, fb.keypoints,
                                                             matches, ok, eps_list[0])
        except (ValueError, cv2.error) as exc:   # e.g. an image a detector rejects
            skipped.append((pair.name, (str(exc).strip().splitlines() or ["error"])[-1]))
            continue
        per_pair.append(record)
        if index in keep:
            examples.append(example)
    bar.close()
    return per_pair, skipped, examples
