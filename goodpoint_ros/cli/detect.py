"""Detect GoodPoint keypoints in one image.

Prints a one-line summary; --json writes keypoints ([[x, y], ...] in original
pixels, centres at integers), scores, descriptor_dim, image_size ([W, H]) and,
with --descriptors, the descriptors; --out draws the keypoints.

Colour images are converted to gray, 16-bit ones scaled by 1/65535.
"""
from __future__ import annotations

from goodpoint_ros.cli.common import (
    add_feature_args,
    add_model_args,
    check_outputs,
    extractor_from_args,
    write_json,
)
from goodpoint_ros.core.imageio import read_image
from goodpoint_ros.core.visualize import draw_keypoints, write_image


def add_arguments(p):
    p.add_argument("image", help="image file (png, jpg, ppm, pgm, tiff, ...)")
    p.add_argument("--out", help="write a picture with the keypoints (e.g. vis.png)")
    p.add_argument("--json", help="write the keypoints as JSON")
    p.add_argument("--descriptors", action="store_true", help="include descriptors in the JSON")
    add_model_args(p)
    add_feature_args(p)


def run(args) -> int:
    check_outputs([args.image, args.weights], [args.json], [args.out])
    image = read_image(args.image)
    extractor = extractor_from_args(args)
    feats = extractor(image)
    if args.json:
        payload = {"image": args.image, "image_size": list(feats.image_size),
                   "keypoints": feats.keypoints.tolist(), "scores": feats.scores.tolist(),
                   "descriptor_dim": int(feats.descriptors.shape[1]),
                   "backend": extractor.backend.name, "settings": extractor.config.to_dict()}
        if args.descriptors:
            payload["descriptors"] = feats.descriptors.tolist()
        write_json(args.json, payload)
    if args.out:
        write_image(args.out, draw_keypoints(image, feats.keypoints, feats.scores))
    print(f"{args.image}: {len(feats)} keypoints ({feats.image_size[0]}x{feats.image_size[1]}, "
          f"{extractor.backend.name}, network {extractor.times.network:.1f} ms)")
    return 0
