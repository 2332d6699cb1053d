"""ONNX Runtime backend: the fast CPU path and the torch-free runtime.

One :class:`onnxruntime.InferenceSession` per backend, created once and reused
for every frame.  The model file is found from the weights:

* no weights → the ONNX files shipped beside the bundled weights
  (``goodpoint_default.onnx``, ``goodpoint_default.int8.onnx`` for int8);
* ``--weights x.onnx`` → that file;
* ``--weights x.safetensors`` → ``x.onnx`` / ``x.int8.onnx`` beside it, if
  its recorded weights hash matches; else, with torch installed, an fp32
  export into the user cache (``goodpoint_ros.backends.engine_cache.cache_root``).

An ONNX file whose recorded sha256 differs from its weights file is stale and
never used silently: it is re-exported (torch present) or refused with the
command that regenerates it.

Precision is separate from the backend: ``fp32`` (CPU or CUDA EP), ``int8``
(the static QDQ model; VNNI/AMX kernels on x86), ``fp16`` (CUDA EP only, the
fp32 model converted at load).  ``bf16`` is refused: ONNX Runtime's CPU
provider has no bf16 convolution kernels on x86 (its bf16 fast-math option is
ARM64-only), so ``--backend torch --precision bf16`` is the bf16 path.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from goodpoint_ros.backends import BackendUnavailable, check_input
from goodpoint_ros.backends.engine_cache import cache_root
from goodpoint_ros.backends.onnx_model import (
    ExportError,
    export_onnx,
    file_sha256,
    metadata_from_map,
    onnx_precision,
    read_onnx_metadata,
    warn_if_gate_failed,
)
from goodpoint_ros.core.weights import DEFAULT_WEIGHTS, load_weights, missing_file, resolve_path

try:
    import onnxruntime as ort
except ImportError as exc:  # pragma: no cover - exercised where onnxruntime is absent
    raise BackendUnavailable(f"onnxruntime is not installed ({exc})")

# Before any session: ONNX Runtime from PyPI otherwise makes telemetry (OneDS) DNS
# look-ups when a session is created; a robot must not phone home (docs/ros.md).
if hasattr(ort, "disable_telemetry_events"):
    ort.disable_telemetry_events()

LOG = logging.getLogger("goodpoint_ros.backends.onnxruntime")
#: Frames with more network pixels run in a session without the CPU memory arena
#: (goodpoint_ros.core.pipeline budgets them with the arena-less figure).
LARGE_FRAME_PIXELS = 1_000_000
PRECISIONS = ("fp32", "fp16", "int8")


def onnx_variant(path: Path, precision: str) -> Path:
    """x.safetensors / x.onnx → the ONNX file of ``precision`` beside it."""
    stem = path.name.split(".")[0]
    return path.with_name(stem + (".onnx" if precision == "fp32" else f".{precision}.onnx"))


def resolve_model(weights: Optional[os.PathLike], precision: str) -> Tuple[Path, str]:
    """(ONNX file to load, how it was found) for ``weights`` and ``precision``.

    Raises :class:`BackendUnavailable` with the command that makes the missing
    file when there is none this runtime can use.
    """
    if weights is not None and str(weights).endswith(".onnx"):
        p = Path(weights)
        if why := missing_file(p, "ONNX file"):
            raise BackendUnavailable(why)
        return p, "given"
    src = resolve_path(weights)
    if why := missing_file(src, "weights file"):
        raise BackendUnavailable(why)
    sha = file_sha256(src)
    # fp16 is made at load time from the fp32 file (CUDA provider only)
    cand = onnx_variant(src, "fp32" if precision == "fp16" else precision)
    # the shipped files live in the package: the export refuses to write there unless asked
    pkg = " --into-package" if src == DEFAULT_WEIGHTS else ""
    regen = (f"goodpoint export onnx{'' if src == DEFAULT_WEIGHTS else f' --weights {src}'} "
             f"--out {onnx_variant(src, 'fp32')}{pkg}")
    if precision == "int8":
        regen += (f" && goodpoint export int8 --onnx {onnx_variant(src, 'fp32')} --out {cand}{pkg}")
    if cand.is_file():
        try:
            recorded = read_onnx_metadata(cand)["weights_sha256"]
        except ExportError as exc:
            raise BackendUnavailable(f"{exc}; regenerate it: {regen}") from None
        if recorded == sha:
            return cand, "beside the weights"
        LOG.warning("%s is stale (exported from other weights than %s)", cand, src.name)
    # fp32 can be exported on the fly where torch is installed; int8 needs calibration photos
    if precision in ("fp32", "fp16"):
        cached = cache_root() / "onnx" / f"{sha[:16]}.onnx"
        if cached.is_file():
            return cached, "user cache"
        try:
            import torch  # noqa: F401  (lazy, optional: only to export a missing ONNX file)
        except ImportError:
            raise BackendUnavailable(f"no up-to-date ONNX file for {src} and no torch to export one; "
                                     f"run: {regen}") from None
        load_weights(src)     # an unreadable file is said now, not after "exporting"
        LOG.warning("exporting %s to %s (one-off)", src, cached)
        export_onnx(src, cached)
        return cached, "exported to the user cache"
    raise BackendUnavailable(f"no up-to-date {precision} ONNX file for {src}; run: {regen}")


def session_options(threads: Optional[int] = None, spin: bool = False,
                    arena: bool = True) -> "ort.SessionOptions":
    """Options for latency on a small CPU.

    All graph optimisations (conv + activation fusion, NCHWc layouts, QDQ →
    QLinearConv); one sequential inter-op thread because the graph is a chain;
    ``threads`` intra-op threads (default: all cores).  Worker threads do not
    busy-wait after a frame (``spin=False``, the default): on a 2-core CPU a
    spinning worker starved the post-processing and matching that follow the
    network — full pipeline 120 → 88 ms median under load (int8, 320×240);
    ``spin=True`` may win a little on an otherwise idle many-core machine.

    ``arena=False`` turns off the CPU memory arena: its chunks grow in powers
    of two and are kept, so a large frame's peak was 1179 B/px with it and
    627 B/px without (1280×960, ru_maxrss); it costs ~14 % latency at 640×480,
    so only frames over ``LARGE_FRAME_PIXELS`` use an arena-less session.
    """
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = int(threads or os.cpu_count() or 1)
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    if not spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not arena:
        so.enable_cpu_mem_arena = False
    return so


def check_contract(session, path) -> None:
    """Refuse a graph whose inputs/outputs do not fit the backend contract
    (float [1,1,H,W] in; prob [1,H,W] and desc [1,D,H/8,W/8] out), naming what
    differs, instead of failing on the first frame with an unpacking error."""
    ins, outs = session.get_inputs(), session.get_outputs()

    def desc(items):
        return ", ".join(f"{i.name} {i.type} {i.shape}" for i in items)
    problems = []
    if len(ins) != 1:
        problems.append(f"{len(ins)} inputs, expected 1 image [1,1,H,W]")
    elif ins[0].type != "tensor(float)" or len(ins[0].shape) != 4 or \
            ins[0].shape[1] not in (1, None) and not isinstance(ins[0].shape[1], str):
        problems.append(f"input {desc(ins)}, expected float [1,1,H,W]")
    if len(outs) != 2:
        problems.append(f"{len(outs)} outputs ({desc(outs)}), expected prob [1,H,W] and "
                        "desc [1,D,H/8,W/8]")
    else:
        if outs[0].type != "tensor(float)" or len(outs[0].shape) != 3:
            problems.append(f"first output {desc(outs[:1])}, expected float prob [1,H,W]")
        if outs[1].type != "tensor(float)" or len(outs[1].shape) != 4:
            problems.append(f"second output {desc(outs[1:])}, expected float desc [1,D,H/8,W/8]")
    if problems:
        raise BackendUnavailable(f"{path} is not a GoodPoint graph: " + "; ".join(problems))


def choose_providers(device: str, precision: str) -> List[str]:
    """Execution providers for ``device`` (auto | cpu | cuda[:N]) and ``precision``."""
    available = ort.get_available_providers()
    cuda = "CUDAExecutionProvider" in available
    if device.startswith("cuda"):
        if not cuda:
            raise BackendUnavailable("device cuda requested but this onnxruntime has no "
                                     "CUDAExecutionProvider (install onnxruntime-gpu)")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "auto" and cuda and precision != "int8":
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device not in ("auto", "cpu"):
        raise BackendUnavailable(f"unknown device {device!r} (auto, cpu or cuda[:N])")
    return ["CPUExecutionProvider"]


class OnnxRuntimeBackend:
    """``infer`` with ONNX Runtime (contract of :mod:`goodpoint_ros.backends`)."""

    name = "onnxruntime"

    def __init__(self, weights: Optional[os.PathLike] = None, device: str = "auto",
                 precision: str = "fp32", threads: Optional[int] = None, spin: bool = False, **_):
        if precision == "bf16":
            raise BackendUnavailable(
                "ONNX Runtime's CPU provider has no bf16 convolution kernels on x86; "
                "use --precision int8 here, or --backend torch --precision bf16")
        if precision not in PRECISIONS:
            raise BackendUnavailable(f"onnxruntime supports {', '.join(PRECISIONS)}; not {precision}")
        providers = choose_providers(device, precision)
        if precision == "fp16" and providers[0] != "CUDAExecutionProvider":
            raise BackendUnavailable("fp16 on onnxruntime needs the CUDA provider "
                                     "(on CPU use int8, or torch bf16)")
        path, how = resolve_model(weights, precision)
        self.precision = precision
        if how == "given":   # the file says what it is; fp16 is made from an fp32 file
            made = onnx_precision(path)
            if precision == "fp32" or made == precision:
                self.precision = made
            elif not (made == "fp32" and precision == "fp16"):
                raise BackendUnavailable(f"{path} is a {made} model, not {precision}")
        self.model_path = path
        self.model_source = how
        model: object = str(path)
        if self.precision == "fp16":
            import onnx  # lazy: optional extra (.[onnx]), only for the fp16 conversion
            from onnxruntime.transformers.float16 import convert_float_to_float16
            # softmax over 64 cells and the L2 norm stay fp32 (keypoint scores near θ)
            model = convert_float_to_float16(onnx.load(str(path)), keep_io_types=True,
                                             op_block_list=["Softmax", "ReduceL2", "Div"]
                                             ).SerializeToString()
        try:
            self.session = ort.InferenceSession(model, session_options(threads, spin),
                                                providers=providers)
        except Exception as exc:
            raise BackendUnavailable(f"onnxruntime cannot load {path}: "
                                     f"{str(exc).splitlines()[0]}") from None
        check_contract(self.session, path)
        # an arena-less twin for large frames, made on first use (see session_options)
        self._large = None
        self._large_args = (model, threads, spin, providers)
        try:
            info = metadata_from_map(self.session.get_modelmeta().custom_metadata_map, path)
        except ExportError as exc:
            raise BackendUnavailable(str(exc)) from None
        self.metadata: Dict = info["weights"]
        self.export_info: Dict = info["export"]
        warn_if_gate_failed(LOG, path, self.export_info, self.precision)
        self.providers = self.session.get_providers()
        self.device = "cuda" if self.providers[0] == "CUDAExecutionProvider" else "cpu"
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._binding = self.session.io_binding() if self.device == "cuda" else None

    def infer(self, image: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        check_input(image)
        if self._binding is None:
            session = self.session
            if image.shape[2] * image.shape[3] > LARGE_FRAME_PIXELS:
                if self._large is None:
                    model, threads, spin, providers = self._large_args
                    self._large = ort.InferenceSession(
                        model, session_options(threads, spin, arena=False), providers=providers)
                session = self._large
            prob, desc = session.run(self.output_names, {self.input_name: image})
            return prob, desc
        # CUDA: IO binding lets ORT allocate outputs on the device and copy once
        b = self._binding
        b.bind_cpu_input(self.input_name, image)
        for n in self.output_names:
            b.bind_output(n, "cpu")
        self.session.run_with_iobinding(b)
        prob, desc = b.copy_outputs_to_cpu()
        return prob, desc
