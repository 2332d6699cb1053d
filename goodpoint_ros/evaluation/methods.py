"""The feature front ends compared by the evaluator: GoodPoint, ORB, SIFT, AKAZE.

Each method detects :class:`~goodpoint_ros.core.keypoints.Features` (keypoints in
the core's convention, strongest first, capped at ``max_keypoints`` by
response) and matches two of them with the matcher the paper pairs it with
(§6.1):

=========  ==========================================================
goodpoint  the core's matcher: mutual NN, L2 between unit descriptors ≤ θ_desc
orb        mutual NN on Hamming distance
akaze      mutual NN on Hamming distance + Lowe ratio 0.8
sift       mutual NN on L2 distance + Lowe ratio 0.8
=========  ==========================================================

All matchers build the full distance matrix (BLAS) and call the core's
:func:`~goodpoint_ros.core.matching.mutual_nn_match`, so only the distance differs.

OpenCV's ORB and SIFT keypoints are moved onto the pixel-centre convention of
``cv2.resize`` (:func:`orb_pixel_centres`, :func:`sift_pixel_centres`): as OpenCV returns
them, ORB's coarse pyramid levels sit up to 1.3 px towards the top-left and SIFT's
keypoints 0.25 px towards the bottom-right; a level-dependent offset biases
triangulation (mono VO: new ORB landmarks came out 4.6 % too close per keyframe).
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

import cv2
import numpy as np

from goodpoint_ros.core.config import GoodPointConfig, field_info
from goodpoint_ros.core.keypoints import Features, to_gray_float
from goodpoint_ros.core.matching import match_descriptors, mutual_nn_match
from goodpoint_ros.core.pipeline import FeatureExtractor

#: Methods in the order of the paper's tables.
METHOD_NAMES = ("goodpoint", "orb", "sift", "akaze")

#: ORB detects up to this many before the global top-k cut.
ORB_BUDGET = 100000

#: Lowe ratio for SIFT and AKAZE (paper §6.1).
LOWE_RATIO = 0.8


# --------------------------------------------------------------------------- distances

def hamming_distances(d0: np.ndarray, d1: np.ndarray) -> np.ndarray:
    """Hamming distances between binary descriptors. uint8 [N0,B], [N1,B] → float32 [N0,N1].

    Bits are unpacked to 0/1 floats so the count is one matrix product:
    ham = |a| + |b| − 2·a·bᵀ — exact in float32 (integers ≤ 2²⁴), fast on BLAS.
    """
    if d0.shape[1:] != d1.shape[1:]:
        raise ValueError(f"descriptor sizes differ: {d0.shape[1:]} vs {d1.shape[1:]}")
    a = np.unpackbits(np.ascontiguousarray(d0, np.uint8), axis=1).astype(np.float32)
    b = np.unpackbits(np.ascontiguousarray(d1, np.uint8), axis=1).astype(np.float32)
    return a.sum(1)[:, None] + b.sum(1)[None, :] - 2.0 * (a @ b.T)


def l2_distances(d0: np.ndarray, d1: np.ndarray) -> np.ndarray:
    """Euclidean distances. float [N0,D], [N1,D] → float32 [N0,N1]."""
    a = np.asarray(d0, np.float32)
    b = np.asarray(d1, np.float32)
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(d2, 0.0))


# --------------------------------------------------------------------------- methods

def gray_uint8(image: np.ndarray) -> np.ndarray:
    """Any image the extractor accepts → gray uint8 [H,W] (what OpenCV detectors want)."""
    return np.clip(to_gray_float(image) * 255.0 + 0.5, 0, 255).astype(np.uint8)


class Method:
    """A detector + descriptor + matcher.  ``detect(image) → Features``; ``match(f0, f1) → [K,2]``."""

    name = "method"

    def detect(self, image: np.ndarray) -> Features:
        raise NotImplementedError

    def match(self, f0: Features, f1: Features) -> np.ndarray:
        raise NotImplementedError

    def settings(self) -> dict:
        """What this method ran with (echoed in the JSON)."""
        return {}


class GoodPointMethod(Method):
    """GoodPoint through the core's :class:`~goodpoint_ros.core.pipeline.FeatureExtractor`."""

    name = "goodpoint"

    def __init__(self, extractor, config: GoodPointConfig):
        self.extractor = extractor
        self.extractor.set_config(config)
        self.config = self.extractor.config            # θ_keypoint resolved from metadata

    def detect(self, image: np.ndarray) -> Features:
        return self.extractor(image)

    def match(self, f0: Features, f1: Features) -> np.ndarray:
        return match_descriptors(f0.descriptors, f1.descriptors, self.config)[0]

    def settings(self) -> dict:
        s = self.config.to_dict()
        s["backend"] = type(self.extractor.backend).__name__
        s["resize"] = list(self.extractor.resize) if self.extractor.resize else None
        return s


#: OpenCV's SIFT detects on the image doubled by linear interpolation (Lowe 2004 §3.3),
#: where base pixel b covers image position b/2 − 0.25, and reports b/2: every keypoint
#: lies this far (px, both axes) beyond the image's pixel centres.  Subtracted rather
#: than detected again with ``enable_precise_upscale``, which changes the keypoints too.
SIFT_OFFSET = 0.25


def keypoint_positions(kps, detector=None) -> np.ndarray:
    """OpenCV keypoints → [N,2] positions as reported (AKAZE's are on pixel centres)."""
    return np.array([k.pt for k in kps], np.float32).reshape(-1, 2)


def orb_pixel_centres(kps, detector) -> np.ndarray:
    """ORB keypoints → [N,2] positions in the image's pixel-centre convention.

    ORB detects on pyramid levels made by ``cv2.resize``, where level pixel x covers
    image position (x + 0.5)·s − 0.5 (s = the detector's scale factor ** level); OpenCV
    reports x·s, (s − 1)/2 px short in both axes.
    """
    if not len(kps):
        return np.zeros((0, 2), np.float32)
    pts = np.array([k.pt for k in kps], np.float64).reshape(-1, 2)
    s = float(detector.getScaleFactor()) ** np.array([k.octave for k in kps], np.float64)
    return (pts + 0.5 * (s - 1.0)[:, None]).astype(np.float32)


def sift_pixel_centres(kps, detector=None) -> np.ndarray:
    """SIFT keypoints → [N,2] positions in the image's pixel-centre convention."""
    return keypoint_positions(kps) - SIFT_OFFSET


class OpenCVMethod(Method):
    """An OpenCV Feature2D with a mutual-NN matcher on a chosen distance; ``positions``
    maps its keypoints onto the image's pixel centres (:func:`orb_pixel_centres`, ...)."""

    def __init__(self, name: str, detector, max_keypoints: int, binary: bool,
                 ratio: Optional[float], positions=keypoint_positions):
        self.name = name
        self.positions = positions
        self.detector = detector
        self.max_keypoints = max_keypoints
        self.binary = binary
        self.ratio = ratio

    def detect(self, image: np.ndarray) -> Features:
        gray = gray_uint8(image)
        size = (gray.shape[1], gray.shape[0])
        kps, desc = self.detector.detectAndCompute(gray, None)
        dim = self.detector.descriptorSize()
        dtype = np.uint8 if self.binary else np.float32
        if not kps or desc is None:
            return Features(np.zeros((0, 2), np.float32), np.zeros(0, np.float32),
                            np.zeros((0, dim), dtype), size)
        resp = np.array([k.response for k in kps], np.float32)
        order = np.argsort(-resp, kind="stable")
        if self.max_keypoints:
            order = order[:self.max_keypoints]
        pts = self.positions(kps, self.detector)
        return Features(pts[order], resp[order], np.asarray(desc, dtype)[order], size)

    def match(self, f0: Features, f1: Features) -> np.ndarray:
        if len(f0) == 0 or len(f1) == 0:
            return np.zeros((0, 2), np.int64)
        dist = (hamming_distances if self.binary else l2_distances)(f0.descriptors, f1.descriptors)
        return mutual_nn_match(dist, None, self.ratio, True)[0]

    def settings(self) -> dict:
        return {"max_keypoints": self.max_keypoints,
                "distance": "hamming" if self.binary else "l2",
                "mutual": True, "ratio_test": self.ratio}


#: OpenCV's default AKAZE detector response threshold.
AKAZE_THRESHOLD = 0.001


def _akaze_create(threshold: float = AKAZE_THRESHOLD):
    """AKAZE lives in ``cv2`` on OpenCV 4 and in ``cv2.xfeatures2d`` on OpenCV 5."""
    if hasattr(cv2, "AKAZE_create"):
        return cv2.AKAZE_create(threshold=threshold)
    xf = getattr(cv2, "xfeatures2d", None)
    if xf is not None and hasattr(xf, "AKAZE_create"):
        return xf.AKAZE_create(threshold=threshold)
    raise ValueError("this OpenCV build has no AKAZE (install opencv-contrib-python-headless)")


def make_method(name: str, max_keypoints: int = field_info("max_keypoints")["default"],
                extractor=None,
                config: Optional[GoodPointConfig] = None,
                akaze_threshold: float = AKAZE_THRESHOLD) -> Method:
    """A method by name: ``goodpoint``, ``orb``, ``sift`` or ``akaze``.

    ``max_keypoints`` (0 = no cap) keeps each method's strongest keypoints by
    response.  For GoodPoint, ``extractor`` is a ready
    :class:`~goodpoint_ros.core.pipeline.FeatureExtractor` (default: bundled
    weights, best backend) and ``config`` its thresholds; θ_keypoint left unset
    comes from the weights' metadata.  The extractor's config is replaced.
    ``akaze_threshold``: AKAZE's detector response threshold (OpenCV's default).
    """
    key = name.strip().lower()
    k = int(max_keypoints or 0)
    if k < 0:
        raise ValueError(f"max_keypoints must be >= 0, got {max_keypoints}")
    if key == "goodpoint":
        if extractor is None:
            extractor = FeatureExtractor("auto", config)
        base = config if config is not None else extractor.config
        return GoodPointMethod(extractor, dataclasses.replace(base, max_keypoints=k or None))
    if key == "orb":
        # ORB's own nfeatures splits the budget over pyramid levels, which is
        # not "the strongest k": detect (nearly) all, then keep the top k.
        return OpenCVMethod("orb", cv2.ORB_create(nfeatures=ORB_BUDGET), k, True, None,
                            orb_pixel_centres)
    if key == "sift":
        return OpenCVMethod("sift", cv2.SIFT_create(nfeatures=k), k, False, LOWE_RATIO,
                            sift_pixel_centres)
    if key == "akaze":
        return OpenCVMethod("akaze", _akaze_create(akaze_threshold), k, True, LOWE_RATIO)
    raise ValueError(f"unknown method {name!r} (choose from {', '.join(METHOD_NAMES)})")


def parse_methods(text: str) -> Tuple[str, ...]:
    """'goodpoint,orb' → ('goodpoint', 'orb'), validated, order kept, duplicates dropped."""
    names = []
    for part in text.split(","):
        p = part.strip().lower()
        if not p:
            continue
        if p not in METHOD_NAMES:
            raise ValueError(f"unknown method {p!r} (choose from {', '.join(METHOD_NAMES)})")
        if p not in names:
            names.append(p)
    if not names:
        raise ValueError("no method given (choose from goodpoint, orb, sift, akaze)")
    return tuple(names)
