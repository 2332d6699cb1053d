"""Deployment artefacts: ONNX, int8 ONNX, TensorRT engine, released weights, accuracy gate.

  goodpoint export onnx [--weights W] [--out F.onnx] [--size WxH]   (default: regenerate
                                                                     the shipped ONNX)
  goodpoint export int8 [--onnx F.onnx] [--out F.int8.onnx]         (calibrated on the
                        [--calib-list training/validation_split.txt --calib-dir ../shared/train-images]
  goodpoint export engine --onnx F.onnx --out F.engine [--precision fp16|int8]
                        [--calib-images DIR] [--min-shape 160x120 --opt-shape 640x480
                        --max-shape 1920x1088]                      (needs tensorrt + GPU)
  goodpoint export weights CHECKPOINT --out W.safetensors           (needs goodpoint_training)
  goodpoint export gate --backend onnxruntime --precision int8      (accuracy vs fp32)

The gate compares a backend/precision with ONNX Runtime fp32 (same
post-processing, same top-k) on real images: repeatability within 1 px ≥ 0.90
and mean descriptor cosine ≥ 0.98; it exits 1 when the gate fails.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from goodpoint_ros.backends import BackendUnavailable, create_backend
from goodpoint_ros.backends.engine_cache import engine_dir, parse_profile
from goodpoint_ros.cli.common import UserError, bounded, check_outputs, parse_size, write_json
from goodpoint_ros.core.config import GoodPointConfig
from goodpoint_ros.core.imageio import read_image
from goodpoint_ros.core.weights import DEFAULT_ONNX, PACKAGE_WEIGHTS_DIR, atomic_write_bytes, resolve_path
from goodpoint_ros.deploy.export import (
    CALIBRATION_DIR,
    CALIBRATION_LIST,
    DEFAULT_INT8_ONNX,
    ExportError,
    calibration_images,
    calibration_tensors,
    export_onnx,
    file_sha256,
    int8_sensitivity,
    quantize_int8,
    read_onnx_metadata,
)
from goodpoint_ros.deploy.gate import accuracy_gate, record_gate, sample_images


def add_arguments(p):
    sub = p.add_subparsers(dest="what", metavar="WHAT", required=True)

    o = sub.add_parser("onnx", help="export weights to ONNX (opset 17, dynamic H/W)")
    o.add_argument("--weights", help="weights .safetensors (default: bundled)")
    o.add_argument("--out", help="output .onnx (default: X.onnx beside --weights X.safetensors, "
                                 "where the runtime looks for it)")
    o.add_argument("--into-package", action="store_true",
                   help="allow writing inside the installed package (regenerate the shipped "
                        "goodpoint_default.onnx; `make models` passes this)")
    o.add_argument("--size", type=parse_size, default=None,
                   help="fixed WxH instead of dynamic height/width")
    o.add_argument("--height", type=bounded(int, 8), help="fixed height (with --width; same as --size)")
    o.add_argument("--width", type=bounded(int, 8), help="fixed width (with --height)")
    o.add_argument("--dynamic", action="store_true", help="dynamic height/width (the default)")
    o.set_defaults(_what=_onnx)

    q = sub.add_parser("int8", help="static int8 (QDQ) quantisation calibrated on real photos")
    q.add_argument("--onnx", help="fp32 ONNX (default: the shipped one)")
    q.add_argument("--out", help="output (default: X.int8.onnx beside --onnx X.onnx)")
    q.add_argument("--into-package", action="store_true",
                   help="allow writing inside the installed package (regenerate the shipped "
                        "int8 model; `make models` passes this)")
    q.add_argument("--calib-list", default=str(CALIBRATION_LIST),
                   help="file listing the calibration photos (the training validation split)")
    q.add_argument("--calib-dir", default=str(CALIBRATION_DIR),
                   help="folder holding them")
    q.add_argument("--method", default="percentile", choices=["minmax", "entropy", "percentile"])
    q.add_argument("--percentile", type=bounded(float, above=0, high=100), default=99.99,
                   help="activation range percentile for --method percentile (99.99)")
    q.add_argument("--crops", type=bounded(int, 1), default=4, help="views per photo (full + random crops)")
    q.add_argument("--keep-float", default=None, metavar="LAYERS",
                   help="comma list of layers left in fp32 (default: the measured recipe, "
                        "conv1a,conv4a,det_b; layers conv1a … conv4b, det_a, det_b, desc_a, desc_b)")
    q.add_argument("--sensitivity", metavar="JSON",
                   help="write no model: quantise one layer at a time and report repeatability / "
                        "descriptor cosine vs fp32 on the calibration photos at 320x240 (JSON here)")
    q.set_defaults(_what=_int8)

    e = sub.add_parser("engine", help="build a TensorRT engine (Python API; needs a GPU)")
    e.add_argument("--onnx", help="ONNX model (default: the shipped one)")
    e.add_argument("--out", required=True, help="output .engine (+ .engine.json sidecar)")
    e.add_argument("--precision", default="fp16", choices=["fp32", "fp16", "int8"])
    e.add_argument("--calib-images", help="folder of real photos for INT8 calibration")
    e.add_argument("--min-shape", default="64x64", help="smallest WxH (multiple of 8)")
    e.add_argument("--opt-shape", default="640x480", help="WxH TensorRT optimises for")
    e.add_argument("--max-shape", default="1920x1088", help="largest WxH")
    e.add_argument("--timing-cache", help="timing cache file (default: in the engine cache)")
    e.add_argument("--no-gate", action="store_true", help="skip the accuracy gate (not advised)")
    e.set_defaults(_what=_engine)

    w = sub.add_parser("weights", help="release a training checkpoint as .safetensors")
    w.add_argument("checkpoint")
    w.add_argument("--out", required=True)
    w.add_argument("--threshold", type=float, default=None,
                   help="θ_keypoint to record (default: training's choice)")
    w.set_defaults(_what=_weights)

    g = sub.add_parser("gate", help="accuracy gate of a backend/precision against fp32")
    g.add_argument("--weights", help="weights (.safetensors or .onnx; default bundled)")
    g.add_argument("--backend", default="onnxruntime")
    g.add_argument("--precision", default="int8")
    g.add_argument("--reference-weights", help="fp32 reference weights (default: --weights, "
                                               "or the bundled ones for an .onnx)")
    g.add_argument("--threshold", type=float, default=None,
                   help="θ_keypoint (default: from the weights' metadata)")
    g.add_argument("--size", type=parse_size, default=(320, 240), help="network WxH (320x240)")
    g.add_argument("--images", nargs="*", help="images (default: bundled HPatches sample)")
    g.add_argument("--json", help="write the report as JSON")
    g.set_defaults(_what=_gate)


def run(args) -> int:
    try:
        return args._what(args)
    except ExportError as exc:      # a fixable problem with the inputs: one line, exit 2
        raise UserError(str(exc)) from None


def _outside_package(out, args) -> Path:
    """``out``, refused when it lies inside the installed package and the user did not
    pass ``--into-package``: the shipped models are what the torch-free runtime starts
    from, so overwriting one by accident breaks every later run."""
    out = Path(out)
    if not getattr(args, "into_package", False) and \
            out.resolve().is_relative_to(PACKAGE_WEIGHTS_DIR.resolve().parent):
        hint = " or --into-package to replace the shipped file" if hasattr(args, "into_package") \
            else ""
        raise UserError(f"refusing to write {out}: it is inside the installed package "
                        f"(pass --out FILE elsewhere{hint})")
    return out


def _onnx(args) -> int:
    # lazy: this module imports onnxruntime (heavy), which `goodpoint --help` must not pay
    from goodpoint_ros.backends.onnxruntime_backend import onnx_variant
    try:
        import torch  # noqa: F401  (optional heavy dependency: only the export needs it)
    except ImportError:
        raise UserError("ONNX export needs torch (pip install .[torch]); the runtime does not")
    size = args.size
    if (args.height is None) != (args.width is None):
        raise UserError("give both --height and --width (or --size WxH)")
    if args.height is not None:
        size = (args.width, args.height)
    if size is not None and args.dynamic:
        raise UserError("--dynamic and a fixed size exclude each other")
    out = _outside_package(args.out or onnx_variant(resolve_path(args.weights), "fp32"), args)
    check_outputs([resolve_path(args.weights)], [out])
    info = export_onnx(args.weights, out, size=size)
    shape = "dynamic HxW" if info["dynamic"] else f"{size[0]}x{size[1]}"
    print(f"wrote {info['out']} (opset {info['opset']}, {shape}, weights sha256 {info['sha256'][:12]})")
    return 0


def _int8(args) -> int:
    src = Path(args.onnx) if args.onnx else DEFAULT_ONNX
    out = args.out or (DEFAULT_INT8_ONNX if src == DEFAULT_ONNX
                       else src.with_name(src.name.split(".")[0] + ".int8.onnx"))
    if "shared/data" in str(Path(args.calib_dir).resolve()):
        raise UserError("never calibrate on the evaluation data (../shared/data)")
    out = _outside_package(out, args)
    check_outputs([src, args.calib_list], [out])
    keep = [s for s in args.keep_float.split(",") if s] if args.keep_float is not None else None
    try:
        paths = calibration_images(args.calib_list, args.calib_dir)
        calib = calibration_tensors(paths, crops_per_image=args.crops)
        if args.sensitivity:
            return _int8_sensitivity(args, src, calib, paths)
        info = quantize_int8(src, out, calib, method=args.method, percentile=args.percentile,
                             keep_float=keep, progress=sys.stderr.isatty())
    except ExportError as exc:
        raise UserError(str(exc)) from None
    print(f"wrote {info['out']} (int8 QDQ, {info['calibration']['images']} calibration views "
          f"from {len(paths)} photos, {args.method})")
    # the gate's verdict travels in the file: the runtime warns about a failed one
    result = record_gate(src, out)
    print(f"accuracy gate vs fp32: {result.summary()}")
    return 0


def _int8_sensitivity(args, src, calib, paths) -> int:
    """One layer at a time in int8 (the rest fp32), gated against fp32 on the photos."""
    check_outputs([src, args.calib_list], [args.sensitivity])
    rows = int8_sensitivity(src, calib, [read_image(p) for p in paths], method=args.method,
                            percentile=args.percentile)
    print(f"{'layer int8 alone':<18}{'repeatability':>14}{'cosine':>9}   "
          f"(vs fp32, {len(paths)} photos, 320x240)")
    for r in rows:
        print(f"{r['layer']:<18}{r['repeatability']:>14.3f}{r['descriptor_cosine']:>9.4f}")
    write_json(args.sensitivity, rows)
    return 0


def _engine(args) -> int:
    try:   # lazy: importing it imports tensorrt (optional, GPU machines only)
        from goodpoint_ros.backends import tensorrt_backend as trtb
    except (ImportError, BackendUnavailable) as exc:
        raise UserError(f"cannot build an engine here: {exc}") from None
    if args.onnx:
        onnx_path = Path(args.onnx)
    else:   # int8 without photos to calibrate on: the QDQ model carries its own scales
        onnx_path = (DEFAULT_INT8_ONNX if args.precision == "int8" and not args.calib_images
                     else DEFAULT_ONNX)
    profile = tuple(parse_profile(s) for s in (args.min_shape, args.opt_shape, args.max_shape))
    calib = None
    if args.precision == "int8" and args.calib_images:
        files = sorted(p for p in Path(args.calib_images).iterdir()
                       if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".ppm", ".pgm"))
        calib = calibration_tensors(files, size=(profile[1][1], profile[1][0]), crops_per_image=2)
    _outside_package(args.out, args)
    check_outputs([onnx_path, args.calib_images], [args.out, str(args.out) + ".json"])
    timing = args.timing_cache or engine_dir() / "timing.cache"
    try:
        data = trtb.build_engine(onnx_path, args.precision, profile, calib, timing_cache=timing)
    except RuntimeError as exc:     # parse / build failures: TensorRT's reason, one line
        raise UserError(str(exc)) from None
    meta = read_onnx_metadata(onnx_path)
    backend = trtb.TensorRTBackend(data, args.precision, meta["weights"])
    gate = None
    if not args.no_gate:
        ref = create_backend("onnxruntime", weights=str(onnx_path), precision="fp32")
        gate = accuracy_gate(ref, backend, sample_images(), resize=(profile[1][1], profile[1][0]))
        print(f"accuracy gate: {gate.summary()}")
        if not gate.passed:
            print("engine refused: not written")
            return 1
    atomic_write_bytes(args.out, data)
    key = trtb.engine_key(onnx_path, args.precision, profile)
    side = {"key": key.to_dict(), "engine_sha256": hashlib.sha256(data).hexdigest(),
            "onnx": str(onnx_path), "onnx_sha256": file_sha256(onnx_path),
            "weights": meta["weights"], "gate": gate.to_dict() if gate else None}
    write_json(str(args.out) + ".json", side)
    print(f"wrote {args.out} ({len(data) / 1e6:.1f} MB, {key.describe()})")
    return 0


def _weights(args) -> int:
    try:   # lazy: the training package (and torch) is an optional install
        from goodpoint_training.release import export_weights
    except ImportError as exc:
        raise UserError(f"`export weights` needs the training package (goodpoint_training): {exc}")
    if not Path(args.checkpoint).is_file():
        raise UserError(f"checkpoint not found: {args.checkpoint}")
    _outside_package(args.out, args)
    check_outputs([args.checkpoint], [args.out])
    info = export_weights(args.checkpoint, args.out, keypoint_threshold=args.threshold)
    print(f"wrote {args.out}: {info}")
    return 0


def _gate(args) -> int:
    check_outputs([args.weights, args.reference_weights, *(args.images or [])], [args.json])
    ref_weights = args.reference_weights or (
        None if args.weights and args.weights.endswith(".onnx") else args.weights)
    ref = create_backend("onnxruntime", weights=ref_weights, precision="fp32", device="cpu")
    cand = create_backend(args.backend, weights=args.weights, precision=args.precision)
    result = accuracy_gate(ref, cand, sample_images(args.images),
                           GoodPointConfig(keypoint_threshold=args.threshold), resize=args.size)
    print(f"{cand.name} {getattr(cand, 'precision', args.precision)} vs onnxruntime fp32: "
          f"{result.summary()}")
    if args.json:
        write_json(args.json, {"backend": cand.name, "precision": args.precision,
                               **result.to_dict()})
    return 0 if result.passed else 1
