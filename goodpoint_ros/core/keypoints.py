"""From network outputs to keypoints and descriptors: the one post-processor.

Everything after ``backend.infer`` happens here, in numpy + OpenCV, so the CLI,
the ROS node, the evaluator and training's validation share it and none of
them needs torch.  See ``docs/conventions.md`` for the coordinate convention:

* keypoints are ``(x, y)`` in pixels of the *original* input image, pixel
  centres at integer coordinates (OpenCV / ROS convention);
* a resize by ``s`` maps ``x' = (x + 0.5)·s − 0.5`` (:func:`scale_keypoints`);
* descriptor cell ``(i, j)`` of the stride-8 map covers pixels ``8j..8j+7``, so
  its centre is pixel ``8j + 3.5``; :func:`sample_descriptors` interpolates
  bilinearly between cell centres and re-normalises.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np

from goodpoint_ros.core.config import GoodPointConfig

CELL = 8


# --------------------------------------------------------------------------- images

def to_gray_float(image: np.ndarray) -> np.ndarray:
    """Any image array → grayscale float32 [H,W] in [0, 1].

    uint8 ÷ 255, uint16 ÷ 65535, float clipped to [0, 1] (NaN → 0).  Three
    channels are taken as BGR (OpenCV order), four as BGRA.
    """
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 3:
        if img.shape[2] not in (3, 4):
            raise ValueError(f"expected 1, 3 or 4 channels, got {img.shape[2]}")
        code = cv2.COLOR_BGR2GRAY if img.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        if img.dtype not in (np.uint8, np.uint16, np.float32):
            img = img.astype(np.float32)
        img = cv2.cvtColor(img, code)
    if img.ndim != 2:
        raise ValueError(f"expected an image [H,W] or [H,W,C], got shape {img.shape}")
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"empty image ({img.shape[1]}x{img.shape[0]})")
    if img.dtype == np.uint8:
        return img.astype(np.float32) * np.float32(1 / 255)
    if img.dtype == np.uint16:
        return img.astype(np.float32) * np.float32(1 / 65535)
    if img.dtype == np.bool_:
        return img.astype(np.float32)
    if np.issubdtype(img.dtype, np.integer):
        raise ValueError(f"unsupported integer image dtype {img.dtype} (use uint8 or uint16)")
    out = np.nan_to_num(img.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(out, 0.0, 1.0)


def pad_to_multiple(image: np.ndarray, multiple: int = CELL) -> np.ndarray:
    """[H,W] → [H',W'] with H', W' the next multiples of ``multiple``.

    Padding replicates the last row/column so it creates no artificial edge;
    keypoints in the padding are dropped by :func:`select_keypoints` (which knows the
    original size).
    """
    h, w = image.shape[:2]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return image
    return cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_REPLICATE)


def scale_keypoints(keypoints: np.ndarray, sx: float, sy: Optional[float] = None) -> np.ndarray:
    """Map [N,2] keypoints through a resize by (sx, sy): ``x' = (x + 0.5)·s − 0.5``."""
    sy = sx if sy is None else sy
    out = np.asarray(keypoints, dtype=np.float64).copy()
    out[:, 0] = (out[:, 0] + 0.5) * sx - 0.5
    out[:, 1] = (out[:, 1] + 0.5) * sy - 0.5
    return out.astype(np.float32)


# --------------------------------------------------------------------------- detection

def nms(prob: np.ndarray, radius: int) -> np.ndarray:
    """Max-pool non-maximum suppression. prob [H,W] → bool mask [H,W].

    A pixel survives if it is the maximum of its (2r+1)² window.  Exact ties
    (saturated softmax cells give several 1.0) are broken by a second pass on
    a unique rank, so any two survivors are more than ``radius`` apart.
    """
    if radius <= 0:
        return prob > 0
    k = 2 * radius + 1
    kernel = np.ones((k, k), np.uint8)
    local_max = cv2.dilate(prob, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    keep = (prob == local_max) & (prob > 0)
    ys, xs = np.nonzero(keep)
    if len(ys) < 2:
        return keep
    vals = prob[ys, xs]
    if len(np.unique(vals)) == len(vals):
        return keep                      # no two survivors share a score: no tie to break
    # Unique ranks: higher score first, then raster order.  float32 holds
    # integers exactly up to 2^24, far more candidates than any image has.
    order = np.lexsort((ys * prob.shape[1] + xs, -vals))
    rank = np.zeros(prob.shape, np.float32)
    rank[ys[order], xs[order]] = np.arange(len(order), 0, -1, dtype=np.float32)
    rank_max = cv2.dilate(rank, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return keep & (rank == rank_max)


def bucket(keypoints: np.ndarray, scores: np.ndarray, image_size: Tuple[int, int],
           cells: Tuple[int, int], per_cell: int) -> np.ndarray:
    """Indices (strongest first within each cell) keeping ≤ ``per_cell`` per grid cell.

    keypoints [N,2], scores [N], image_size (W,H), cells (cols, rows) → idx [M].
    """
    w, h = image_size
    cols, rows = cells
    cx = np.clip((keypoints[:, 0] + 0.5) * cols / w, 0, cols - 1).astype(np.int64)
    cy = np.clip((keypoints[:, 1] + 0.5) * rows / h, 0, rows - 1).astype(np.int64)
    cell = cy * cols + cx
    order = np.lexsort((-scores, cell))                # by cell, then strongest first
    sorted_cell = cell[order]
    first = np.searchsorted(sorted_cell, sorted_cell, side="left")
    rank_in_cell = np.arange(len(order)) - first
    return order[rank_in_cell < per_cell]


def select_keypoints(prob: np.ndarray, image_size: Tuple[int, int],
                     config: GoodPointConfig) -> Tuple[np.ndarray, np.ndarray]:
    """Confidence map → keypoints.  prob [H',W'] (maybe padded), image_size (W,H).

    Threshold θ_keypoint, NMS, border removal (on the original size), optional
    bucketing, top-k.  Returns keypoints [N,2] float32 (x, y) and scores [N]
    float32, strongest first.
    """
    if config.keypoint_threshold is None:
        raise ValueError("config.keypoint_threshold is unset: call config.resolved(metadata)")
    w, h = image_size
    prob = np.ascontiguousarray(prob[:h, :w], dtype=np.float32)
    # cv2's TOZERO keeps values strictly above θ, as ``np.where(prob > θ, prob, 0)``, ~4× faster
    masked = cv2.threshold(prob, float(config.keypoint_threshold), 0, cv2.THRESH_TOZERO)[1]
    radius = config.nms_radius if config.nms_radius is not None else config.DEFAULT_NMS_RADIUS
    keep = nms(masked, radius)
    b = config.border
    if b > 0:
        keep[:b, :] = False
        keep[:, :b] = False
        keep[max(h - b, 0):, :] = False
        keep[:, max(w - b, 0):] = False
    ys, xs = np.nonzero(keep)
    scores = prob[ys, xs]
    kpts = np.stack([xs, ys], axis=1).astype(np.float32)
    if config.bucket_cells is not None and config.max_per_bucket > 0 and len(scores):
        idx = bucket(kpts, scores, (w, h), tuple(config.bucket_cells), config.max_per_bucket)
        kpts, scores = kpts[idx], scores[idx]
    order = np.argsort(-scores, kind="stable")
    k = config.max_keypoints
    if k:
        order = order[:k]
    return refine_subpixel(prob, kpts[order], config.subpixel, config.subpixel_radius), scores[order]


def _window(prob: np.ndarray, x: np.ndarray, y: np.ndarray, radius: int) -> np.ndarray:
    """[N] integer centres → [N, 2r+1, 2r+1] float64 windows of prob (edges replicated)."""
    h, w = prob.shape
    offs = np.arange(-radius, radius + 1)
    xx = np.clip(x[:, None] + offs, 0, w - 1)
    yy = np.clip(y[:, None] + offs, 0, h - 1)
    return prob[yy[:, :, None], xx[:, None, :]].astype(np.float64)


def refine_subpixel(prob: np.ndarray, keypoints: np.ndarray, mode: str = "softargmax",
                    radius: int = 2) -> np.ndarray:
    """Sub-pixel keypoint positions from the full-resolution confidence map.

    prob [H,W] (the unmasked map); keypoints [N,2] integer (x, y) NMS peaks →
    [N,2] float32.  ``softargmax``: the probability-weighted centroid of the
    (2r+1)² window around the peak (5×5 by default: on the validation split it
    beat 3×3, 7×7 and the parabola fit at ε = 1 px, training/README.md).
    ``quadratic``: a parabola through the peak and its two neighbours per
    axis, offset clipped to ±0.5 px.  ``none``: unchanged.
    """
    if mode == "none" or len(keypoints) == 0:
        return np.asarray(keypoints, np.float32)
    x = np.asarray(keypoints[:, 0]).astype(np.int64)
    y = np.asarray(keypoints[:, 1]).astype(np.int64)
    if mode == "softargmax":
        win = _window(prob, x, y, radius)
        offs = np.arange(-radius, radius + 1, dtype=np.float64)
        total = np.maximum(win.sum((1, 2)), 1e-12)
        dx = (win.sum(1) * offs).sum(-1) / total
        dy = (win.sum(2) * offs).sum(-1) / total
    elif mode == "quadratic":
        win = _window(prob, x, y, 1)

        def offset(lo, c, hi):
            curv = lo - 2 * c + hi          # < 0 at a strict maximum
            safe = np.where(curv < -1e-12, curv, -np.inf)
            return np.clip(0.5 * (lo - hi) / safe, -0.5, 0.5)

        dx = offset(win[:, 1, 0], win[:, 1, 1], win[:, 1, 2])
        dy = offset(win[:, 0, 1], win[:, 1, 1], win[:, 2, 1])
    else:
        raise ValueError(f"subpixel must be 'softargmax', 'quadratic' or 'none', got {mode!r}")
    return np.stack([x + dx, y + dy], axis=1).astype(np.float32)


# --------------------------------------------------------------------------- descriptors

def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def sample_descriptors(desc, keypoints, cell: int = CELL):
    """Bilinear descriptors at keypoints, re-normalised to unit length.

    desc [B,C,h,w] semi-dense map; keypoints [B,N,2] (x, y) in pixels of the
    image the map was computed on (pixel centres at integers) → [B,N,C].

    Works on numpy arrays (runtime) and on torch tensors (training, with
    gradients to ``desc``): the same arithmetic, one definition.  Cell j's
    centre is pixel ``cell·j + (cell−1)/2``; outside the outermost centres the
    nearest cell is used.
    """
    torch_mode = _is_torch(desc)
    b, c, h, w = desc.shape
    n = keypoints.shape[1]
    u = (keypoints[..., 0] - (cell - 1) / 2) / cell
    v = (keypoints[..., 1] - (cell - 1) / 2) / cell
    u = u.clip(0, w - 1)
    v = v.clip(0, h - 1)
    u0 = u.floor().clip(0, max(w - 2, 0)) if torch_mode else np.floor(u).clip(0, max(w - 2, 0))
    v0 = v.floor().clip(0, max(h - 2, 0)) if torch_mode else np.floor(v).clip(0, max(h - 2, 0))
    fu, fv = u - u0, v - v0
    if torch_mode:
        u0, v0 = u0.long(), v0.long()
    else:
        u0, v0 = u0.astype(np.int64), v0.astype(np.int64)
    u1 = (u0 + 1).clip(max=w - 1) if torch_mode else np.minimum(u0 + 1, w - 1)
    v1 = (v0 + 1).clip(max=h - 1) if torch_mode else np.minimum(v0 + 1, h - 1)
    flat = desc.reshape(b, c, h * w)

    if not torch_mode:
        return _bilinear_numpy(flat, [v0 * w + u0, v0 * w + u1, v1 * w + u0, v1 * w + u1],
                               [(1 - fu) * (1 - fv), fu * (1 - fv), (1 - fu) * fv, fu * fv])

    def gather(iy, ix):  # → [B,N,C]
        idx = iy * w + ix
        return flat.gather(2, idx[:, None, :].expand(b, c, n)).transpose(1, 2)

    fu, fv = fu[..., None], fv[..., None]
    out = (gather(v0, u0) * (1 - fu) * (1 - fv) + gather(v0, u1) * fu * (1 - fv)
           + gather(v1, u0) * (1 - fu) * fv + gather(v1, u1) * fu * fv)
    return out / out.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _bilinear_numpy(flat: np.ndarray, idx, weights) -> np.ndarray:
    """flat [B,C,h·w]; idx, weights: 4 corner index / weight arrays [B,N] → unit [B,N,C].

    Gathers whole descriptor columns (``flat[i][:, idx]``, [C,N]) rather than
    broadcasting an index per channel: on 640×480 it is ~3× faster, and the
    post-processor must stay a small part of the frame.
    """
    b, c, _ = flat.shape
    n = idx[0].shape[1]
    out = np.empty((b, n, c), np.float32)
    for i in range(b):
        acc = flat[i][:, idx[0][i]] * weights[0][i].astype(np.float32)
        for k in range(1, 4):
            acc += flat[i][:, idx[k][i]] * weights[k][i].astype(np.float32)
        norm = np.sqrt(np.einsum("cn,cn->n", acc, acc))
        out[i] = (acc / np.maximum(norm, 1e-12)).T
    return out


# --------------------------------------------------------------------------- result

@dataclass
class Features:
    """What the extractor gives for one image.

    keypoints [N,2] float32 (x, y) original-image pixels; scores [N] float32;
    descriptors [N,D] float32 unit rows; image_size (W, H).
    """
    keypoints: np.ndarray
    scores: np.ndarray
    descriptors: np.ndarray
    image_size: Tuple[int, int]

    def __len__(self) -> int:
        return len(self.keypoints)

    @classmethod
    def empty(cls, image_size, dim: int = 256) -> "Features":
        return cls(np.zeros((0, 2), np.float32), np.zeros(0, np.float32),
                   np.zeros((0, dim), np.float32), tuple(image_size))


def postprocess(prob: np.ndarray, desc: np.ndarray, image_size: Tuple[int, int],
                config: GoodPointConfig) -> Features:
    """The shared post-processor: backend outputs → :class:`Features`.

    prob [1,H',W'] and desc [1,D,H'/8,W'/8] from ``backend.infer`` on the padded
    image; image_size (W,H) of the unpadded image.
    """
    kpts, scores = select_keypoints(np.asarray(prob)[0], image_size, config)
    desc = np.asarray(desc, dtype=np.float32)
    if len(kpts) == 0:
        return Features.empty(image_size, desc.shape[1])
    d = sample_descriptors(desc, kpts[None])[0]
    return Features(kpts, scores.astype(np.float32), d, tuple(image_size))
