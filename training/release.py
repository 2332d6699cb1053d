"""From a training checkpoint to the core's released weights format.

``goodpoint export weights RUN_DIR/best.ckpt --out model.safetensors`` calls
:func:`export_weights`.  The checkpoint is read with
``torch.load(weights_only=True)`` (no unpickling of arbitrary objects); the
output is safetensors + JSON metadata written atomically by
:func:`goodpoint_ros.core.weights.save_weights`, recording the θ_keypoint and NMS
radius chosen on the validation split and where the weights came from.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch
import yaml

from goodpoint_ros.core.config import FLAT_CELL_SCORE, GoodPointConfig
from goodpoint_ros.core.model import GoodPointNet
from goodpoint_ros.core.weights import (
    WeightsError,
    atomic_write_bytes,
    default_metadata,
    load_weights,
    save_weights,
)

from .checkpoint import load_checkpoint
from .validation import load_pairs, run_network, sweep_thresholds


def checkpoint_metadata(state: Dict[str, Any]) -> Dict[str, Any]:
    """Training facts worth recording in the released file."""
    cfg = yaml.safe_load(state.get("config", "") or "") or {}
    return {"step": int(state.get("step", 0)), "epoch": int(state.get("epoch", 0)),
            "validation_harmonic_mean": float(state.get("best", float("nan"))),
            "crop": cfg.get("crop"), "batch_size": cfg.get("batch_size"),
            "precision": cfg.get("precision"), "homography": cfg.get("homography"),
            "wide_fraction": cfg.get("wide_fraction"), "homography_wide": cfg.get("homography_wide"),
            "images": os.path.basename(str(cfg.get("images", "")).rstrip("/")) or None,
            "paper": "Belikov & Potapov 2020, GoodPoint (unsupervised, §4-5)"}


def load_release_source(path) -> Dict[str, Any]:
    """A training checkpoint, or released ``.safetensors`` weights (to re-release them with
    other detection defaults) → a checkpoint-like ``{"model", "step", ...}`` dict."""
    p = Path(path)
    if p.suffix != ".safetensors":
        return load_checkpoint(p)
    try:
        tensors, meta = load_weights(p)
    except WeightsError as exc:
        raise ValueError(str(exc)) from None
    train = meta.get("training", {}) or {}
    return {"model": {k: torch.from_numpy(np.array(v)) for k, v in tensors.items()},
            "step": train.get("step", 0), "epoch": train.get("epoch", 0),
            "best": train.get("validation_harmonic_mean", float("nan")),
            "threshold": meta.get("detection", {}).get("keypoint_threshold"),
            # the recorded training facts stand in for the run's config, whole: a key list
            # here would drop whatever checkpoint_metadata learns to record later
            "config": yaml.safe_dump(train),
            "validation": meta.get("validation"), "source": meta.get("source")}


def export_weights(checkpoint_path, out_path, keypoint_threshold: Optional[float] = None,
                   nms_radius: Optional[int] = None, extra: Optional[Dict[str, Any]] = None,
                   pyramid_levels: int = GoodPointConfig.DEFAULT_PYRAMID_LEVELS,
                   pyramid_factor: float = GoodPointConfig.DEFAULT_PYRAMID_FACTOR,
                   upsample_below: int = GoodPointConfig.DEFAULT_UPSAMPLE_BELOW
                   ) -> Dict[str, Any]:
    """Write ``out_path`` (.safetensors) from a training checkpoint → its metadata.

    ``keypoint_threshold``: θ_keypoint to record; ``None`` keeps the value the
    checkpoint's validation chose (``state["threshold"]``) or the paper's 0.021.
    Raises ``ValueError`` (one line) on a bad checkpoint or threshold.
    """
    state = load_release_source(checkpoint_path)
    if keypoint_threshold is None:
        keypoint_threshold = float(state.get("threshold") or GoodPointConfig.DEFAULT_KEYPOINT_THRESHOLD)
    if not (FLAT_CELL_SCORE < float(keypoint_threshold) < 1.0):
        raise ValueError(f"keypoint_threshold must be in (1/64, 1), got {keypoint_threshold}")
    nms = int(nms_radius if nms_radius is not None else GoodPointConfig.DEFAULT_NMS_RADIUS)
    tensors = {}
    for k, v in state["model"].items():
        arr = v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float32)
            if not np.isfinite(arr).all():
                raise ValueError(f"{checkpoint_path}: tensor {k} has NaN/inf values")
        tensors[k] = arr
    GoodPointConfig(pyramid_levels=int(pyramid_levels),                # one range check
                    pyramid_factor=float(pyramid_factor),
                    upsample_below=int(upsample_below)).validate()
    meta = default_metadata(keypoint_threshold=float(keypoint_threshold), nms_radius=nms,
                            pyramid_levels=int(pyramid_levels),
                            pyramid_factor=float(pyramid_factor),
                            upsample_below=int(upsample_below),
                            training=checkpoint_metadata(state), source=Path(checkpoint_path).name)
    if state.get("validation") is not None:       # re-release: the old sweep stays on record
        meta["validation"] = state["validation"]
    if state.get("source"):     # the first checkpoint's name, and the latest file it came through
        first = state["source"].split(" (re-released from ")[0]
        meta["source"] = f"{first} (re-released from {Path(checkpoint_path).name})"
    if extra:
        meta.update(extra)
    # Check the tensors fit the network before writing anything.
    try:
        GoodPointNet().load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in tensors.items()})
    except RuntimeError as exc:
        raise ValueError(f"{checkpoint_path}: weights do not fit GoodPointNet "
                         f"({str(exc).splitlines()[0]})") from None
    save_weights(Path(out_path), tensors, meta)
    return meta


def choose_threshold(checkpoint_path, image_dir, names=None):
    """θ_keypoint maximising the validation harmonic mean (fp32, the shared
    post-processor and matcher) → (θ, {θ: metrics}).  Never uses ../shared/data."""
    state = load_release_source(checkpoint_path)
    model = GoodPointNet()
    model.load_state_dict(state["model"])
    pairs = load_pairs(Path(image_dir), names)
    if not pairs:
        raise ValueError(f"no validation photos found in {image_dir}")
    with torch.no_grad():
        outs = run_network(model, pairs, "cpu", "fp32")
    return sweep_thresholds(outs, pairs, GoodPointConfig())


def main(argv=None) -> int:
    """``python -m goodpoint_training.release CKPT --images DIR --out X.safetensors``:
    choose θ_keypoint on the validation split, then export."""
    p = argparse.ArgumentParser(prog="goodpoint_training.release", description=main.__doc__)
    p.add_argument("checkpoint", help="a training checkpoint (.ckpt) or released weights "
                                      "(.safetensors: re-released with new detection defaults)")
    p.add_argument("--images", required=True, help="folder holding the validation split's photos")
    p.add_argument("--out", required=True)
    p.add_argument("--threshold", type=float, help="skip the sweep and record this θ")
    p.add_argument("--table", help="write the sweep as JSON here")
    p.add_argument("--pyramid-levels", type=int, default=GoodPointConfig.DEFAULT_PYRAMID_LEVELS,
                   help="pyramid levels recorded as the weights' default for detection (chosen "
                        "on the validation split, training/README.md; default %(default)s)")
    p.add_argument("--pyramid-factor", type=float, default=GoodPointConfig.DEFAULT_PYRAMID_FACTOR,
                   help="size ratio between those levels recorded with them (default %(default).3f)")
    p.add_argument("--upsample-below", type=int, default=GoodPointConfig.DEFAULT_UPSAMPLE_BELOW,
                   help="recorded default: frames whose longer side is under this many pixels are "
                        "doubled before the network (0: never; default %(default)s)")
    args = p.parse_args(argv)
    try:   # before the sweep (minutes): a bad default must not surface only at the export
        GoodPointConfig(keypoint_threshold=args.threshold, pyramid_levels=args.pyramid_levels,
                        pyramid_factor=args.pyramid_factor,
                        upsample_below=args.upsample_below).validate()
    except ValueError as exc:
        p.error(str(exc))
    for out in filter(None, (args.out, args.table)):
        if Path(out).exists() and Path(out).samefile(args.checkpoint):
            p.error(f"refusing to write {out}: it is the input (pick another output path)")
    theta, table = (args.threshold, {}) if args.threshold else choose_threshold(
        args.checkpoint, args.images)
    for t, m in table.items():
        print(f"θ={t:<6g} P={m['precision']:.3f} R={m['repeatability']:.3f} "
              f"C={m['coverage']:.3f} HM={m['harmonic_mean']:.3f} kpts={m['keypoints']:.0f}"
              f"  mild HM={m.get('mild_harmonic_mean', float('nan')):.3f}"
              f"  strong HM={m.get('strong_harmonic_mean', float('nan')):.3f}"
              f"  wide HM={m.get('wide_harmonic_mean', float('nan')):.3f}")
    extra = {"validation": {"threshold_sweep_best": table.get(theta)}} if table else None
    meta = export_weights(args.checkpoint, args.out, keypoint_threshold=theta, extra=extra,
                          pyramid_levels=args.pyramid_levels,
                          pyramid_factor=args.pyramid_factor,
                          upsample_below=args.upsample_below)
    if args.table:
        atomic_write_bytes(args.table, json.dumps({str(k): v for k, v in table.items()},
                                                  indent=1).encode())
    print(f"θ_keypoint = {theta} → {args.out} ({json.dumps(meta['training'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
