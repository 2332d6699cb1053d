"""The GoodPoint network (paper §3): SuperPoint's architecture, unsupervised heads.

* Shared VGG encoder: 64,64 | 64,64 | 128,128 | 128,128 with three 2×2 max-pools
  (stride 8 in total).
* Detector head: 128→256 (3×3) → 64 (1×1), **no dustbin**.  Softmax over the 64
  channels, then depth-to-space (``pixel_shuffle``, channel ``c = dy·8 + dx``) to
  a full-resolution confidence map ``P``.  A featureless cell scores 1/64.
* Descriptor head: 128→256 (3×3) → 256 (1×1), L2-normalised, semi-dense (H/8, W/8).

Layer recipe of the authors' code (singnet/image-matching): every conv is
followed by LeakyReLU(0.01) and then BatchNorm, except the descriptor's final
1×1, which is linear before the L2 normalisation.  We follow it exactly so the
released weights could be exchanged with theirs.

Input: grayscale float in [0, 1], shape [B, 1, H, W] with H, W multiples of 8
(:func:`goodpoint_ros.core.keypoints.pad_to_multiple` pads any image and the
post-processor undoes it).
"""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

LEAKY_SLOPE = 0.01
DESCRIPTOR_DIM = 256
CELL = 8

#: (name, in, out, kernel) of every conv, in order; names are the state-dict keys.
ENCODER = [("conv1a", 1, 64), ("conv1b", 64, 64),
           ("conv2a", 64, 64), ("conv2b", 64, 64),
           ("conv3a", 64, 128), ("conv3b", 128, 128),
           ("conv4a", 128, 128), ("conv4b", 128, 128)]


class ConvBlock(nn.Sequential):
    """conv → LeakyReLU(0.01) → BatchNorm (the authors' order)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, padding=kernel // 2),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
            nn.BatchNorm2d(cout))


class GoodPointNet(nn.Module):
    """GoodPoint: ``forward(image [B,1,H,W]) → {"prob": [B,H,W], "desc": [B,256,H/8,W/8]}``."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.ModuleDict({name: ConvBlock(cin, cout) for name, cin, cout in ENCODER})
        self.det_a = ConvBlock(128, 256, 3)
        self.det_b = ConvBlock(256, CELL * CELL, 1)
        self.desc_a = ConvBlock(128, 256, 3)
        self.desc_b = nn.Conv2d(256, DESCRIPTOR_DIM, 1)   # linear, then L2 norm
        self.pool = nn.MaxPool2d(2, 2)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """[B,1,H,W] → features [B,128,H/8,W/8]."""
        x = image
        for i, block in enumerate(self.encoder.values()):
            x = block(x)
            if i in (1, 3, 5):      # after conv1b, conv2b, conv3b
                x = self.pool(x)
        return x

    def detector_logits(self, feat: torch.Tensor) -> torch.Tensor:
        """features → cell logits [B,64,H/8,W/8] (no dustbin)."""
        return self.det_b(self.det_a(feat))

    def descriptors(self, feat: torch.Tensor) -> torch.Tensor:
        """features → unit descriptors [B,256,H/8,W/8]."""
        return F.normalize(self.desc_b(self.desc_a(feat)), p=2, dim=1)

    def forward(self, image: torch.Tensor) -> Dict[str, torch.Tensor]:
        if image.dim() != 4 or image.shape[1] != 1:
            raise ValueError(f"expected a [B,1,H,W] grayscale batch, got {tuple(image.shape)}")
        if image.shape[-1] % CELL or image.shape[-2] % CELL:
            raise ValueError(f"H and W must be multiples of {CELL}, got {tuple(image.shape[-2:])}")
        feat = self.encode(image)
        prob = logits_to_prob(self.detector_logits(feat))
        return {"prob": prob, "desc": self.descriptors(feat)}


def logits_to_prob(logits: torch.Tensor) -> torch.Tensor:
    """Cell logits [B,64,h,w] → confidence map [B,8h,8w] (softmax, depth-to-space)."""
    return F.pixel_shuffle(logits.float().softmax(dim=1), CELL)[:, 0]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

