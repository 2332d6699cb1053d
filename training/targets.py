"""Keypoint target estimation (paper §4, §4.1, Fig. 2), batched in torch.

The network learns to output keypoints that it can reproduce (an EM-like
scheme): candidates K from P and K_h from P_h are matched by position *and*
by descriptor; where both agree and are close, the midpoint becomes the
target K'_h in I_h and its back-projection K' in I.  No gradient flows
through the targets: everything here runs on detached tensors.

Shapes: B images, m = (S/32)² candidates in I, n = (S/16)² in I_h.  All
points are (x, y) pixels, pixel centres at integers.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# one plane geometry for training and evaluation (docs/conventions.md)
from goodpoint_ros.core.geometry import in_frame
from goodpoint_ros.core.geometry import warp_points_torch as warp_points
from goodpoint_ros.core.keypoints import sample_descriptors


def cell_maxima(prob: torch.Tensor, cell: int):
    """One maximum per ``cell``×``cell`` block (eq. 5–6).

    prob [B,H,W] → points [B,n,2] float (x, y) and scores [B,n].
    """
    b, h, w = prob.shape
    scores, idx = F.max_pool2d(prob[:, None], cell, cell, return_indices=True)
    idx = idx.reshape(b, -1)
    pts = torch.stack([idx % w, torch.div(idx, w, rounding_mode="floor")], dim=-1)
    return pts.to(prob.dtype), scores.reshape(b, -1)


def lookup_mask(mask: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """Nearest-pixel lookup. mask bool [B,H,W], pts [B,N,2] → bool [B,N] (False outside)."""
    b, h, w = mask.shape
    x = pts[..., 0].round().long()
    y = pts[..., 1].round().long()
    ok = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    flat = mask.reshape(b, -1)
    idx = (y.clamp(0, h - 1) * w + x.clamp(0, w - 1))
    return ok & flat.gather(1, idx)


@dataclass
class Targets:
    """Result of :func:`estimate_targets` (all detached).

    K [B,m,2] candidates in I; K_proj [B,m,2] = H·K; valid [B,m]: K lies in
    I's valid mask and K_proj in I_h's; K_h [B,n,2], valid_h [B,n];
    idx_geom, idx_desc [B,m] (indices into K_h); dist_geom [B,m] px;
    good [B,m]: idx_geom == idx_desc ∧ dist_geom < θ_dist ∧ valid (∧ K' in I);
    target_h = K'_h [B,m,2]; target = K' [B,m,2] (meaningful where ``good``).
    """
    K: torch.Tensor
    K_proj: torch.Tensor
    valid: torch.Tensor
    K_h: torch.Tensor
    valid_h: torch.Tensor
    idx_geom: torch.Tensor
    dist_geom: torch.Tensor
    idx_desc: torch.Tensor
    good: torch.Tensor
    target: torch.Tensor
    target_h: torch.Tensor


@torch.no_grad()
def estimate_targets(prob: torch.Tensor, prob_h: torch.Tensor, desc: torch.Tensor,
                     desc_h: torch.Tensor, H: torch.Tensor, mask: torch.Tensor,
                     mask_h: torch.Tensor, theta_dist: float = 4.0, cell_k: int = 32,
                     cell_kh: int = 16) -> Targets:
    """§4.1 steps 1–4 for a batch.

    prob, prob_h [B,S,S]; desc, desc_h [B,C,S/8,S/8] (unit); H [3,3] (I → I_h);
    mask, mask_h bool [B,S,S] (pixels with real content).
    """
    prob, prob_h = prob.detach().float(), prob_h.detach().float()
    b, h, w = prob.shape
    H = H.to(prob.device, torch.float32)
    K, _ = cell_maxima(prob, cell_k)
    K_h, _ = cell_maxima(prob_h, cell_kh)
    K_proj = warp_points(H, K)
    valid = lookup_mask(mask, K) & in_frame(K_proj, (w, h)) & lookup_mask(mask_h, K_proj)
    valid_h = lookup_mask(mask_h, K_h)

    big = torch.finfo(torch.float32).max
    dist = torch.cdist(K_proj, K_h)                                     # [B,m,n]
    dist = dist.masked_fill(~valid_h[:, None, :], big)
    dist_geom, idx_geom = dist.min(dim=2)

    D = sample_descriptors(desc.detach().float(), K)                    # [B,m,C]
    D_h = sample_descriptors(desc_h.detach().float(), K_h)              # [B,n,C]
    sim = (D @ D_h.transpose(1, 2)).masked_fill(~valid_h[:, None, :], -big)
    idx_desc = sim.argmax(dim=2)

    good = valid & (idx_geom == idx_desc) & (dist_geom < theta_dist)
    matched = K_h.gather(1, idx_geom[..., None].expand(-1, -1, 2))
    target_h = 0.5 * (K_proj + matched)                                  # eq. 9
    target = warp_points(torch.linalg.inv(H), target_h)                  # eq. 10
    good = good & in_frame(target, (w, h))
    return Targets(K, K_proj, valid, K_h, valid_h, idx_geom, dist_geom, idx_desc, good,
                   target, target_h)
