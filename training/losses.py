"""GoodPoint's unsupervised losses (paper §4, eq. 1–4, 11–13).

L = λ1·L_d + λ2·L_p,  L_p = L_keypoints + L_heatmaps,  L_d = L_gt + L_wrong + L_random.

Every function takes the network outputs (with gradients) and the detached
:class:`~goodpoint_training.targets.Targets`; an empty selection gives a zero
that is still connected to the graph (so DDP sees every parameter used).
Coordinates are pixels, pixel centres at integers.
"""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F

from goodpoint_ros.core.geometry import in_frame, warp_points_torch
from goodpoint_ros.core.keypoints import sample_descriptors

from .config import LossConfig
from .targets import Targets

EPS = 1e-6


def _normalise(pts: torch.Tensor, size) -> torch.Tensor:
    """Pixel coordinates → grid_sample's [-1, 1] (align_corners=False)."""
    w, h = size
    return torch.stack([(pts[..., 0] + 0.5) / w * 2 - 1, (pts[..., 1] + 0.5) / h * 2 - 1], -1)


def bilinear_lookup(heatmap: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """Sub-pixel read of a map. heatmap [B,H,W], pts [B,N,2] → [B,N] (border clamped)."""
    b, h, w = heatmap.shape
    grid = _normalise(pts, (w, h))[:, :, None, :]                       # [B,N,1,2]
    out = F.grid_sample(heatmap[:, None], grid, mode="bilinear", padding_mode="border",
                        align_corners=False)
    return out[:, 0, :, 0]


def _masked_mean(values: torch.Tensor, mask: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    n = mask.sum()
    if n == 0:
        return anchor.sum() * 0.0
    return (values * mask).sum() / n


def keypoints_loss(prob: torch.Tensor, prob_h: torch.Tensor, t: Targets) -> torch.Tensor:
    """Eq. 3: −½(log P[K'] + log P_h[K'_h]), mean over good targets."""
    p = bilinear_lookup(prob, t.target).clamp_min(EPS)
    p_h = bilinear_lookup(prob_h, t.target_h).clamp_min(EPS)
    nll = -0.5 * (p.log() + p_h.log())
    return _masked_mean(nll, t.good.float(), prob)


def warp_heatmap(src: torch.Tensor, H: torch.Tensor, size, shift: float = 0.5):
    """Resample ``src`` [B,H,W] into the frame reached by ``H`` (src pixels → out pixels).

    Output pixel x is read bilinearly at ``H⁻¹(x + shift)`` (``shift`` in
    pixels on both axes).  Returns (map [B,h,w], inside bool [B,h,w]).
    """
    b = src.shape[0]
    w, h = size
    ys, xs = torch.meshgrid(torch.arange(h, device=src.device, dtype=torch.float32),
                            torch.arange(w, device=src.device, dtype=torch.float32), indexing="ij")
    pts = torch.stack([xs, ys], -1).reshape(1, -1, 2) + shift
    q = warp_points_torch(torch.linalg.inv(H.to(torch.float32)), pts)
    sh, sw = src.shape[-2:]
    inside = in_frame(q, (sw, sh)).reshape(1, h, w)
    grid = _normalise(q, (sw, sh)).reshape(1, h, w, 2).expand(b, -1, -1, -1)
    out = F.grid_sample(src[:, None], grid, mode="bilinear", padding_mode="zeros",
                        align_corners=False)[:, 0]
    return out, inside.expand(b, -1, -1)


def heatmap_difference(prob: torch.Tensor, prob_h: torch.Tensor, H: torch.Tensor,
                       mask: torch.Tensor, mask_h: torch.Tensor) -> torch.Tensor:
    """Eq. 4 in one direction: mean over the mask of (blr(P warped by H) − blr(P_h))².

    *blr* is bilinear resampling: both sides are read bilinearly at the same
    continuous points (pixel x + ½ of I_h), P through ``H⁻¹`` and P_h through
    the identity, so both are equally smooth (§4.1: without it the warped side
    is smoother and the loss stays high on matching maps).  The mask keeps
    points of I_h whose pre-image lies in I and that hold real content in both.
    """
    h, w = prob_h.shape[-2:]
    warped, inside = warp_heatmap(prob, H, (w, h))
    eye = torch.eye(3, device=prob.device)
    ident, _ = warp_heatmap(prob_h, eye, (w, h))
    m_src, _ = warp_heatmap(mask.float(), H, (w, h))
    m_dst, _ = warp_heatmap(mask_h.float(), eye, (w, h))
    valid = inside & (m_src > 0.999) & (m_dst > 0.999)
    return _masked_mean((warped - ident) ** 2, valid.float(), prob)


def heatmaps_loss(prob, prob_h, H, mask, mask_h, lambda_h: float = 2000.0) -> torch.Tensor:
    """λ_h · eq. 4, averaged over both directions (I → I_h and I_h → I)."""
    Hinv = torch.linalg.inv(H.to(torch.float32))
    return lambda_h * 0.5 * (heatmap_difference(prob, prob_h, H, mask, mask_h)
                             + heatmap_difference(prob_h, prob, Hinv, mask_h, mask))


def descriptor_losses(desc: torch.Tensor, desc_h: torch.Tensor, t: Targets,
                      theta_dist: float = 4.0, min_dist: float = 7.0,
                      generator: torch.Generator = None) -> Dict[str, torch.Tensor]:
    """§4.2: L_gt, L_wrong, L_random on descriptors interpolated at K and K_h.

    * L_gt = mean(1 − D_proj(i)·D_h[idx_geom(i)]) over geometric neighbours
      (dist_geom < θ_dist);
    * L_wrong = mean(D_proj(i)·D_h[idx_desc(i)]) where the descriptor match
      disagrees with the geometric one and lies > ``min_dist`` px from K_proj(i);
    * L_random = mean(D_proj(i)·D_h[r(i)]) for random partners r(i) that are
      not geometric neighbours (> ``min_dist`` px away).
    """
    D = sample_descriptors(desc.float(), t.K)                           # [B,m,C]
    D_h = sample_descriptors(desc_h.float(), t.K_h)                     # [B,n,C]
    sim = D @ D_h.transpose(1, 2)                                       # [B,m,n]
    g_geom = sim.gather(2, t.idx_geom[..., None])[..., 0]
    g_desc = sim.gather(2, t.idx_desc[..., None])[..., 0]

    gt = t.valid & (t.dist_geom < theta_dist)
    pos_desc = t.K_h.gather(1, t.idx_desc[..., None].expand(-1, -1, 2))
    wrong = t.valid & (t.idx_desc != t.idx_geom) & ((pos_desc - t.K_proj).norm(dim=-1) > min_dist)

    b, m = t.idx_geom.shape
    n = t.K_h.shape[1]
    r = torch.randint(0, n, (b, m), generator=generator).to(t.idx_geom.device)
    pos_r = t.K_h.gather(1, r[..., None].expand(-1, -1, 2))
    rand_ok = (t.valid & t.valid_h.gather(1, r)
               & ((pos_r - t.K_proj).norm(dim=-1) > min_dist))
    g_rand = sim.gather(2, r[..., None])[..., 0]
    return {"gt": _masked_mean(1 - g_geom, gt.float(), sim),
            "wrong": _masked_mean(g_desc, wrong.float(), sim),
            "random": _masked_mean(g_rand, rand_ok.float(), sim)}


def total_loss(out: Dict[str, torch.Tensor], out_h: Dict[str, torch.Tensor], t: Targets,
               H: torch.Tensor, mask: torch.Tensor, mask_h: torch.Tensor,
               cfg: LossConfig = LossConfig(), generator: torch.Generator = None):
    """Eq. 1.  ``out``/``out_h``: network outputs for I and I_h → (L, dict of terms)."""
    prob, prob_h = out["prob"].float(), out_h["prob"].float()
    terms = descriptor_losses(out["desc"], out_h["desc"], t, cfg.theta_dist, cfg.wrong_min_dist,
                              generator)
    terms["keypoints"] = keypoints_loss(prob, prob_h, t)
    terms["heatmaps"] = heatmaps_loss(prob, prob_h, H, mask, mask_h, cfg.lambda_heatmap)
    L_d = terms["gt"] + terms["wrong"] + terms["random"]
    L_p = terms["keypoints"] + terms["heatmaps"]
    loss = cfg.lambda_desc * L_d + cfg.lambda_points * L_p
    return loss, {k: float(v.detach()) for k, v in terms.items()}
