"""``make demo``: the main job on the bundled model and bundled data.

1. detect keypoints on the bundled HPatches image and draw them;
2. match it to a second view, verify with a homography and compare with the
   ground-truth homography;
3. evaluate GoodPoint beside ORB, SIFT and AKAZE on the bundled sequence;
4. generate a small AirSim-style rosbag2 and evaluate on it;
5. generate a rectified stereo sequence and run the visual odometry on it, GoodPoint
   beside ORB, SIFT and AKAZE through the same back end (trajectory error, top view).

Everything is written under ``--out`` (pictures, JSON, Markdown reports).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

from goodpoint_ros.cli import COMMANDS
from goodpoint_ros.cli import main as goodpoint
from goodpoint_ros.core.imageio import read_image
from goodpoint_ros.core.matching import match_features
from goodpoint_ros.core.pipeline import FeatureExtractor
from goodpoint_ros.core.visualize import draw_keypoints, draw_matches, write_image

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "hpatches_v_churchill"


def corner_error(H_est, H_true, w, h) -> float:
    c = np.array([[0, 0, 1], [w - 1, 0, 1], [w - 1, h - 1, 1], [0, h - 1, 1]], float).T
    a, b = H_est @ c, H_true @ c
    return float(np.linalg.norm(a[:2] / a[2] - b[:2] / b[2], axis=0).mean())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="out", help="output folder (default out/)")
    p.add_argument("--frames", type=int, default=30,
                   help="frames in the generated bag and stereo sequence (default 30)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    print("== 1. detection (bundled model, bundled image) ==")
    extractor = FeatureExtractor()
    meta = extractor.metadata
    print(f"backend {extractor.backend.name} ({extractor.backend.precision}), "
          f"θ_keypoint {extractor.config.keypoint_threshold:g}, "
          f"weights trained: {meta.get('trained', True)}")
    img0, img1 = read_image(SAMPLE / "1.png"), read_image(SAMPLE / "2.png")
    f0, f1 = extractor(img0), extractor(img1)
    write_image(out / "keypoints.png", draw_keypoints(img0, f0.keypoints, f0.scores))
    print(f"{len(f0)} keypoints in {extractor.times.network:.0f} ms network time -> {out / 'keypoints.png'}")

    print("== 2. matching 1 -> 2 ==")
    res = match_features(f0, f1, extractor.config, verify="homography")
    write_image(out / "matches.png", draw_matches(img0, img1, f0.keypoints, f1.keypoints,
                                                  res.matches, res.inliers))
    msg = f"{len(res)} mutual matches, {int(res.inliers.sum())} inliers"
    if res.model is not None:
        H_true = np.loadtxt(SAMPLE / "H_1_2")
        msg += f", homography corner error {corner_error(res.model, H_true, *f0.image_size):.1f} px"
    print(msg + f" -> {out / 'matches.png'}")

    rc = 0
    if "eval" in COMMANDS:
        print("== 3. evaluation on the bundled HPatches sequence ==")
        rc |= goodpoint(["eval", "homography", str(REPO / "data"), "--json",
                         str(out / "eval_homography.json"), "--report", str(out / "report_homography")])
        if "make-sample-bag" in COMMANDS:
            print("== 4. evaluation on a freshly generated AirSim-style bag ==")
            bag = out / "sample_bag"
            if bag.exists():
                shutil.rmtree(bag)
            rc |= goodpoint(["make-sample-bag", str(bag), "--frames", str(args.frames)])
            rc |= goodpoint(["eval", "bag", str(bag), "--json", str(out / "eval_bag.json"),
                             "--report", str(out / "report_bag")])
        if "make-sample-stereo" in COMMANDS:
            print("== 5. stereo visual odometry on a freshly generated sequence ==")
            seq = out / "sample_stereo"
            if seq.exists():
                shutil.rmtree(seq)
            rc |= goodpoint(["make-sample-stereo", str(seq), "--frames", str(args.frames),
                             "--no-progress"])
            rc |= goodpoint(["eval", "vo", str(seq), "--out", str(out / "report_vo"),
                             "--json", str(out / "eval_vo.json"), "--no-progress"])
    print(f"done: pictures and reports in {out}/")
    return rc


if __name__ == "__main__":
    sys.exit(main())
