"""PyTorch backend: the reference implementation (CPU, or CUDA when present)."""
from __future__ import annotations

import re
from typing import Optional, Tuple

import numpy as np

from goodpoint_ros.backends import BackendUnavailable, check_input
from goodpoint_ros.core.weights import load_model

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised in the torch-free venv
    raise BackendUnavailable(f"torch is not installed ({exc})")


class TorchBackend:
    """``infer`` with the PyTorch model.

    precision: ``fp32``; ``bf16`` (autocast; CPUs with AVX-512 BF16 and GPUs);
    ``fp16`` (CUDA only).  ``channels_last`` is used on CPU, where it is faster.
    """

    name = "torch"

    def __init__(self, weights: Optional[str] = None, device: str = "auto",
                 precision: str = "fp32", threads: Optional[int] = None, **_):
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(device)):
            # torch.device("gpu") would raise a RuntimeError with a traceback
            raise BackendUnavailable(f"unknown device {device!r} (auto, cpu or cuda[:N])")
        if weights is not None and str(weights).lower().endswith(".onnx"):
            raise BackendUnavailable(f"the torch backend reads .safetensors weights, not {weights} "
                                     "(use --backend onnxruntime for an .onnx file)")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable("device cuda requested but torch sees no CUDA device")
        if precision not in ("fp32", "bf16", "fp16"):
            raise BackendUnavailable(f"torch backend supports fp32, bf16, fp16; not {precision}")
        if precision == "fp16" and not device.startswith("cuda"):
            raise BackendUnavailable("fp16 on the torch backend needs CUDA (use bf16 on CPU)")
        if threads:
            torch.set_num_threads(int(threads))
        self.device = torch.device(device)
        self.precision = precision
        self.model, self.metadata = load_model(weights, device=str(self.device))
        if self.device.type == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def infer(self, image: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        check_input(image)
        x = torch.from_numpy(image).to(self.device)
        if self.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        if dtype is not None:
            with torch.autocast(self.device.type, dtype=dtype):
                out = self.model(x)
        else:
            out = self.model(x)
        prob = out["prob"].float().cpu().numpy()
        desc = out["desc"].float()
        desc = torch.nn.functional.normalize(desc, dim=1)   # re-normalise after reduced precision
        return prob, desc.contiguous().cpu().numpy()
