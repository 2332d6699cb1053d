"""Accuracy gate for reduced precision (int8, fp16, bf16) and compiled engines.

With the backends: ``--backend auto`` and the TensorRT engine builder gate what they
choose on this machine; ``goodpoint_ros.deploy.gate`` records a verdict in an ONNX file.

A faster backend is only worth shipping if it finds the same keypoints and
descriptors as the fp32 reference.  Both run through the *same* shared
post-processing and top-k (:class:`~goodpoint_ros.core.pipeline.FeatureExtractor`
with one :class:`~goodpoint_ros.core.config.GoodPointConfig`), on real images:

* repeatability vs fp32: fraction of the reference keypoints that have a
  candidate keypoint within 1 px — must be ≥ 0.90;
* descriptor cosine: mean cosine between the candidate's descriptor map
  sampled at the reference keypoints and the reference descriptors — ≥ 0.98.

Averaged over images (each image weighted by its reference keypoints).  A
reference with no keypoints cannot vouch for anything: the gate then fails
with that reason rather than passing vacuously.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np

from goodpoint_ros.core.config import GoodPointConfig
from goodpoint_ros.core.imageio import read_image
from goodpoint_ros.core.keypoints import Features, postprocess, sample_descriptors

MIN_REPEATABILITY = 0.90
MIN_COSINE = 0.98
RADIUS_PX = 1.0
SAMPLE_DIR = Path(__file__).resolve().parents[2] / "data" / "hpatches_v_churchill"
#: Shipped inside the package (3 of the sample's photos at 320×240, gray) so an
#: installed robot can gate the engine it builds without the repository's data.
PACKAGE_IMAGES = Path(__file__).resolve().parents[1] / "deploy" / "gate_images"


def agreement(ref: Features, test: Features, test_desc: np.ndarray,
              radius: float = RADIUS_PX) -> Tuple[float, float]:
    """(repeatability, mean descriptor cosine) of ``test`` against ``ref``.

    ref, test: features of the same image; test_desc: the candidate's dense
    descriptor map [1,D,h,w] (sampled at the reference keypoints).  NaN when
    the reference has no keypoints.
    """
    if len(ref) == 0:
        return float("nan"), float("nan")
    cos = float((sample_descriptors(test_desc, ref.keypoints[None])[0] * ref.descriptors).sum(1).mean())
    if len(test) == 0:
        return 0.0, cos
    d = np.linalg.norm(ref.keypoints[:, None] - test.keypoints[None], axis=2)
    return float((d.min(axis=1) <= radius).mean()), cos


@dataclass
class GateResult:
    repeatability: float
    descriptor_cosine: float
    images: int
    reference_keypoints: int
    passed: bool
    reason: str
    min_repeatability: float = MIN_REPEATABILITY
    min_cosine: float = MIN_COSINE
    per_image: List[Tuple[float, float, int]] = field(default_factory=list)

    def to_dict(self):
        return asdict(self)

    def summary(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (f"{verdict}: repeatability {self.repeatability:.3f} (≥ {self.min_repeatability}), "
                f"descriptor cosine {self.descriptor_cosine:.4f} (≥ {self.min_cosine}) on "
                f"{self.images} images, {self.reference_keypoints} reference keypoints"
                + (f" — {self.reason}" if self.reason else ""))


def sample_images(paths: Optional[Sequence[Path]] = None) -> List[np.ndarray]:
    """The gate's real images: ``paths``, else the repository's HPatches sample,
    else the three copies shipped in the package."""
    paths = (list(paths) if paths else sorted(SAMPLE_DIR.glob("*.png"))
             or sorted(PACKAGE_IMAGES.glob("*.png")))
    if not paths:
        raise FileNotFoundError(f"no gate images ({SAMPLE_DIR} and {PACKAGE_IMAGES} are missing)")
    return [read_image(p) for p in paths]


def _run(backend, image, config: GoodPointConfig, resize) -> Tuple[Features, np.ndarray]:
    # the pipeline builds on the backends: imported on use (a gate runs rarely)
    from goodpoint_ros.core.pipeline import FeatureExtractor
    ex = FeatureExtractor(backend, config, resize=resize)
    x, size, _ = ex.preprocess(image)
    prob, desc = backend.infer(np.ascontiguousarray(x, np.float32))
    return postprocess(prob, desc, size, ex.config), desc


def accuracy_gate(reference, candidate, images: Iterable[np.ndarray],
                  config: Optional[GoodPointConfig] = None,
                  resize: Optional[Tuple[int, int]] = None) -> GateResult:
    """Compare ``candidate`` with the fp32 ``reference`` backend (see module doc)."""
    config = (config or GoodPointConfig()).resolved(getattr(reference, "metadata", {}))
    per = []
    for img in images:
        ref, _ = _run(reference, img, config, resize)
        test, test_desc = _run(candidate, img, config, resize)
        rep, cos = agreement(ref, test, test_desc)
        per.append((rep, cos, len(ref)))
    n = np.array([k for _, _, k in per], np.float64)
    if n.sum() == 0:
        return GateResult(float("nan"), float("nan"), len(per), 0, False,
                          f"the fp32 reference finds no keypoints at θ_keypoint="
                          f"{config.keypoint_threshold:g}: nothing to compare", per_image=per)
    rep = float(np.nansum([r * k for r, _, k in per]) / n.sum())
    cos = float(np.nansum([c * k for _, c, k in per]) / n.sum())
    passed = rep >= MIN_REPEATABILITY and cos >= MIN_COSINE
    reason = "" if passed else ("repeatability too low" if rep < MIN_REPEATABILITY
                                else "descriptors differ too much")
    return GateResult(rep, cos, len(per), int(n.sum()), passed, reason, per_image=per)
