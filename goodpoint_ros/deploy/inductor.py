"""PyTorch 2 compiled paths for the benchmark: Inductor fp32 / bf16 and PT2E int8.

Measured against the shipped ONNX Runtime paths by ``goodpoint bench
--backends inductor`` (docs/deployment.md, "PyTorch 2 paths"):

* ``fp32`` / ``bf16``: the model in channels-last under ``torch.compile``
  (Inductor, freezing on: weights are constants, convolutions go to oneDNN
  with fused post-ops); bf16 through CPU autocast (AMX where the CPU has it);
* ``int8``: PT2E static quantisation with the ``X86InductorQuantizer``
  (torchao: ``torch.ao.quantization.quantizer`` is gone from torch 2.13)
  — weights int8 per output channel, activations uint8, calibrated on the
  same validation photos as ``goodpoint export int8`` (never the evaluation
  data), the same layers kept in fp32 (:data:`~goodpoint_ros.deploy.export.INT8_KEEP_FLOAT`)
  — then lowered by Inductor to oneDNN ``qconv`` kernels (VNNI / AMX int8).

Not a runtime backend and not in ``--backend auto``'s probe: on the machine
measured here every one of them was slower than ONNX Runtime int8 (the
numbers are in the docs), calibration needs the training photos, and the
first call compiles for a minute.  Inductor's on-disk FX graph cache
(``TORCHINDUCTOR_CACHE_DIR``) makes a second process's compile cheaper.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from goodpoint_ros.backends import BackendUnavailable, check_input
from goodpoint_ros.core.weights import load_model
from goodpoint_ros.deploy.export import (
    CALIBRATION_DIR,
    CALIBRATION_LIST,
    INT8_KEEP_FLOAT,
    ExportError,
    calibration_images,
    calibration_tensors,
)

#: Photos (× 4 views) calibrated on: observers make each calibration frame slow.
CALIB_PHOTOS = 8
PRECISIONS = ("fp32", "bf16", "int8")


def quantizable_name(layer: str) -> str:
    """Layer name (``conv1a`` … ``desc_b``) → the module name of its convolution."""
    if layer.startswith("conv"):
        return f"encoder.{layer}.0"
    return layer if layer == "desc_b" else f"{layer}.0"


def pt2e_int8(model, example, calibration: Sequence[np.ndarray],
              keep_float: Sequence[str] = INT8_KEEP_FLOAT):
    """PT2E static int8 of ``model`` (eval mode) with the X86 Inductor quantizer.

    example: a [1,1,H,W] tensor fixing the exported shape; calibration:
    float32 [1,1,H,W] arrays of that shape; keep_float: layer names left fp32.
    Returns the converted GraphModule (run it under ``torch.compile``).
    """
    import torch  # lazy: heavy optional dependency
    try:   # lazy: optional, not a dependency of the package
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    except ImportError as exc:
        raise BackendUnavailable(f"PT2E int8 needs torchao (pip install torchao): {exc}") from None
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
    for layer in keep_float:
        quantizer.set_module_name_qconfig(quantizable_name(layer), None)
    with torch.no_grad(), warnings.catch_warnings():
        # "input of maxpool2d is not quantized": the pools stay fp32 by design (BN before them)
        warnings.simplefilter("ignore", UserWarning)
        gm = torch.export.export(model, (example,)).module()
        gm = prepare_pt2e(gm, quantizer)
        for x in calibration:
            gm(torch.from_numpy(x))
        return convert_pt2e(gm)


class InductorBackend:
    """The backend contract over a ``torch.compile``-d GoodPoint (see the module doc).

    One compiled graph per input shape: the first ``infer`` at a new size
    compiles (and, for int8, quantises) — call :meth:`prepare` before timing.
    """

    name = "inductor"

    def __init__(self, weights=None, precision: str = "fp32", threads: Optional[int] = None,
                 calib_list: Path = CALIBRATION_LIST, calib_dir: Path = CALIBRATION_DIR,
                 calib_photos: int = CALIB_PHOTOS, **_):
        import torch  # lazy: heavy optional dependency
        import torch._inductor.config as inductor_config
        if precision not in PRECISIONS:
            raise BackendUnavailable(f"inductor supports {', '.join(PRECISIONS)}; not {precision}")
        if threads:
            torch.set_num_threads(int(threads))
        inductor_config.freezing = True     # weights as constants: oneDNN prepacks them
        self._torch = torch
        self.precision = precision
        self.model, self.metadata = load_model(weights, device="cpu")
        self.model.eval()
        self.calibration = None
        if precision == "int8":
            try:
                paths = calibration_images(calib_list, calib_dir)[:calib_photos]
            except ExportError as exc:
                raise BackendUnavailable(f"int8 calibration photos: {exc}") from None
            self._paths = paths
        else:
            self.model = self.model.to(memory_format=torch.channels_last)
        self._compiled = {}
        self.compile_seconds = {}

    def prepare(self, size: Tuple[int, int]) -> float:
        """Quantise (int8) and compile for ``size`` (W, H); returns the seconds it took."""
        torch = self._torch
        w, h = size
        if (h, w) in self._compiled:
            return 0.0
        t0 = time.perf_counter()
        example = torch.zeros(1, 1, h, w)
        if self.precision == "int8":
            calib = calibration_tensors(self._paths, (w, h))
            net = pt2e_int8(self.model, example, calib)
        else:
            net = self.model
        compiled = torch.compile(net, dynamic=False)
        self._compiled[(h, w)] = compiled
        self._run(compiled, example)          # the compile happens on the first call
        self.compile_seconds[(w, h)] = time.perf_counter() - t0
        return self.compile_seconds[(w, h)]

    def _run(self, compiled, x):
        torch = self._torch
        if self.precision != "int8":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            if self.precision == "bf16":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return compiled(x)
            return compiled(x)

    def infer(self, image: np.ndarray):
        check_input(image)
        torch = self._torch
        h, w = image.shape[2:]
        self.prepare((w, h))
        out = self._run(self._compiled[(h, w)], torch.from_numpy(image))
        desc = torch.nn.functional.normalize(out["desc"].float(), dim=1)  # re-normalise (bf16)
        return out["prob"].float().numpy(), desc.contiguous().numpy()
