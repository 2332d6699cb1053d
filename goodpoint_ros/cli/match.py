"""Match two images with GoodPoint.

Mutual nearest neighbours with θ_desc on the L2 distance between unit
descriptors, then a homography fitted with OpenCV USAC/MAGSAC marks inliers.
--json writes keypoints0/1, matches ([[i, j], ...]), inliers (bool per match)
and homography (3x3, image0 → image1 pixels) when one was found.
"""
from __future__ import annotations

from goodpoint_ros.cli.common import (
    add_feature_args,
    add_model_args,
    bounded,
    check_outputs,
    extractor_from_args,
    write_json,
)
from goodpoint_ros.core.config import STILL_PAIR
from goodpoint_ros.core.imageio import read_image
from goodpoint_ros.core.matching import match_features
from goodpoint_ros.core.visualize import draw_matches, write_image


def add_arguments(p):
    p.add_argument("image0")
    p.add_argument("image1")
    p.add_argument("--out", help="write a side-by-side picture (inliers green, outliers red)")
    p.add_argument("--json", help="write keypoints, matches, inliers and homography as JSON")
    p.add_argument("--ransac-threshold", type=bounded(float, above=0), default=STILL_PAIR.ransac_threshold,
                   help=f"inlier threshold in pixels for the homography "
                        f"(default {STILL_PAIR.ransac_threshold:g})")
    p.add_argument("--no-verify", action="store_true", help="skip geometric verification")
    add_model_args(p)
    add_feature_args(p)


def run(args) -> int:
    check_outputs([args.image0, args.image1, args.weights], [args.json], [args.out])
    img0, img1 = read_image(args.image0), read_image(args.image1)
    extractor = extractor_from_args(args)
    f0, f1 = extractor(img0), extractor(img1)
    res = match_features(f0, f1, extractor.config, verify="none" if args.no_verify else "homography",
                         ransac_threshold=args.ransac_threshold)
    if args.json:
        payload = {"image0": args.image0, "image1": args.image1,
                   "image_size0": list(f0.image_size), "image_size1": list(f1.image_size),
                   "keypoints0": f0.keypoints.tolist(), "keypoints1": f1.keypoints.tolist(),
                   "matches": res.matches.tolist(), "distances": res.distances.tolist(),
                   "inliers": res.inliers.tolist(), "settings": extractor.config.to_dict()}
        if res.model_type == "homography":
            payload["homography"] = res.model.tolist()
        write_json(args.json, payload)
    if args.out:
        write_image(args.out, draw_matches(img0, img1, f0.keypoints, f1.keypoints,
                                           res.matches, res.inliers))
    print(f"{len(f0)} / {len(f1)} keypoints, {len(res)} matches, {int(res.inliers.sum())} inliers"
          + (" (homography found)" if res.model_type == "homography" else ""))
    return 0
