"""Options and helpers shared by the subcommands."""
from __future__ import annotations

import argparse
import json
from typing import Any


class UserError(RuntimeError):
    """Bad input from the user: printed as one line, exit status 2."""


def user_errors():
    """Exception types that mean bad input, not a bug (no traceback for these)."""
    from goodpoint_ros.backends import BackendUnavailable
    from goodpoint_ros.core.imageio import ImageError
    from goodpoint_ros.core.weights import WeightsError
    return (UserError, ImageError, WeightsError, BackendUnavailable, ValueError,
            FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def parse_size(text: str):
    """'320x240' → (320, 240)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 320x240, got {text!r}")
    if w < 8 or h < 8:
        raise argparse.ArgumentTypeError(f"size too small: {text}")
    return w, h


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--weights", help="GoodPoint weights (.safetensors); default: bundled model")
    g.add_argument("--backend", default="auto",
                   help="auto | torch | onnxruntime | tensorrt (default: auto = fastest available)")
    g.add_argument("--precision", default="auto",
                   help="auto | fp32 | bf16 | fp16 | int8 (default auto: with --backend auto the "
                        "fastest path that passes the accuracy gate on this machine, measured once "
                        "and cached; with a named backend its reference precision)")
    g.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default auto)")
    g.add_argument("--threads", type=int, default=None, help="CPU threads for the network")


def add_feature_args(p: argparse.ArgumentParser, max_keypoints: int = 1000) -> None:
    g = p.add_argument_group("keypoints and matching")
    g.add_argument("--threshold", type=float, default=None,
                   help="θ_keypoint (must exceed 1/64); default: value in the weights' metadata")
    g.add_argument("--nms", type=int, default=8, help="NMS radius in pixels (default 8)")
    g.add_argument("--border", type=int, default=4, help="drop keypoints this close to the edge (4)")
    g.add_argument("--max-keypoints", type=int, default=max_keypoints,
                   help=f"keep the strongest k, 0 = all (default {max_keypoints})")
    g.add_argument("--desc-threshold", type=float, default=0.8,
                   help="θ_desc: max L2 distance between unit descriptors (default 0.8)")
    g.add_argument("--ratio", type=float, default=None, help="optional Lowe ratio test, e.g. 0.9")
    g.add_argument("--resize", type=parse_size, default=None,
                   help="run the network at WxH; keypoints are mapped back to the original pixels")


def config_from_args(args):
    from goodpoint_ros.core.config import GoodPointConfig
    return GoodPointConfig(keypoint_threshold=args.threshold, nms_radius=args.nms,
                           border=args.border, max_keypoints=args.max_keypoints or None,
                           descriptor_threshold=args.desc_threshold, ratio_test=args.ratio).validate()


def extractor_from_args(args):
    from goodpoint_ros.core.pipeline import FeatureExtractor
    kw = {}
    if getattr(args, "threads", None):
        kw["threads"] = args.threads
    return FeatureExtractor(args.backend, config_from_args(args), resize=args.resize,
                            weights=args.weights, device=args.device, precision=args.precision, **kw)


def write_json(path: str, payload: Any) -> None:
    from goodpoint_ros.core.weights import atomic_write_bytes
    atomic_write_bytes(path, (json.dumps(payload, indent=2) + "\n").encode())
