"""Where in the image GoodPoint and SIFT detect, and whether foreshortening is why.

Renders 20 frames of the rendered-stereo tuning sequence (seed 1, cruise, 640×480) into a
temporary folder and detects on every 5th left image three ways: as rendered; stretched 2×
in y only (undoing the ground's foreshortening); stretched 2× in both axes (scale alone).
Counts are mapped back to the rendered rows: the lower third is mostly near ground, rows
1/2–2/3 farther ground and façades.  If foreshortening cost GoodPoint its ground points, the
y-only stretch would raise the lower third's share; see docs/odometry.md (session 16).

    python tools/vo/ground_density.py
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import cv2
import numpy as np

from goodpoint_ros.core.pipeline import FeatureExtractor
from goodpoint_ros.evaluation.vo.run import method_source
from goodpoint_ros.synthetic.stereo_sequence import StereoSequenceSpec, write_stereo_sequence

STRETCHES = (("as rendered", 1, 1), ("2x in y", 2, 1), ("2x both", 2, 2))


def row_counts(points_y: np.ndarray, height: int) -> tuple:
    """(total, rows > 2/3 H, rows in (1/2, 2/3] H) of keypoint rows [N]."""
    lower = int((points_y > 2 * height / 3).sum())
    middle = int(((points_y > height / 2) & (points_y <= 2 * height / 3)).sum())
    return len(points_y), lower, middle


def main():
    # the VO's own feature sources, GoodPoint through the reference runtime at 1x
    cfg = method_source("goodpoint", 2000).detect_fn.config
    sources = {"goodpoint": method_source(
                   "goodpoint", 2000,
                   extractor=FeatureExtractor("onnxruntime", cfg, precision="fp32", scale=1.0)),
               "sift": method_source("sift", 2000)}

    with tempfile.TemporaryDirectory() as tmp:
        seq = write_stereo_sequence(Path(tmp) / "seq",
                                    StereoSequenceSpec(frames=20, motion="cruise", seed=1))
        images = [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
                  for f in sorted((seq / "image_0").glob("*.png"))[::5]]
    print("| method | input | keypoints | lower third | rows 1/2–2/3 |")
    print("|---|---|---|---|---|")
    for name, source in sources.items():
        for label, fy, fx in STRETCHES:
            counts = []
            for img in images:
                h, w = img.shape
                big = cv2.resize(img, (w * fx, h * fy), interpolation=cv2.INTER_CUBIC)
                counts.append(row_counts(source.detect(big).keypoints[:, 1] / fy, h))
            total, lower, middle = np.mean(counts, axis=0)
            print(f"| {name} | {label} | {total:.0f} | {lower:.0f} | {middle:.0f} |", flush=True)


if __name__ == "__main__":
    main()
