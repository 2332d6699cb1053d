"""A small textured 3D scene and an exact renderer for it (numpy + OpenCV).

The sample-bag generator needs images whose depth and poses are known
*exactly*, so the evaluator's ground truth can be checked to the pixel.  A
scene is a list of textured rectangles (ground, walls, box-shaped houses) in a
NED world; rendering casts one ray per pixel and, per rectangle,

* intersects the rays with the rectangle's plane: the ray through pixel
  (x, y) is ``K⁻¹ (x, y, 1)`` (optical z = 1), so the ray parameter at the
  hit *is* the planar depth along the optical axis (what AirSim's
  ``DepthPlanar`` publishes);
* maps the hit to texture coordinates — pixel → plane is a homography, so
  this is the homography warp of the texture, done as an inverse map with
  ``cv2.remap`` (mip-mapped: each pixel reads the pyramid level matching its
  texel footprint, which keeps far surfaces from aliasing);
* keeps the nearest surface per pixel (z-buffer).

Conventions: world = NED (x north, y east, z down); camera = optical frame
(x right, y down, z forward); a pose ``T_world_cam`` is a 4×4 matrix mapping
camera coordinates to world coordinates.  Pixel centres are at integers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

#: Photos bundled for the renderer (see data/textures/LICENSE.md).
TEXTURE_DIR = Path(__file__).resolve().parents[2] / "data" / "textures"

#: Preferred order of the bundled photos (others follow by name).
TEXTURE_ORDER = ["immunohistochemistry", "hubble_deep_field"]

#: Planes closer than this (metres along the optical axis) are not drawn.
NEAR = 0.05


@dataclass
class Quad:
    """A textured rectangle ``origin + s·edge_u + t·edge_v``, s, t ∈ [0, 1].

    origin, edge_u, edge_v: (3,) world vectors (metres).  The texture's
    x axis runs along ``edge_u`` and its y axis along ``edge_v``.
    ``tile``: metres per texture repeat along (u, v); ``None`` stretches the
    texture once over the rectangle.  ``albedo``: brightness factor.
    """
    origin: np.ndarray
    edge_u: np.ndarray
    edge_v: np.ndarray
    texture: int
    tile: Optional[Tuple[float, float]] = None
    albedo: float = 1.0

    @property
    def normal(self) -> np.ndarray:
        n = np.cross(self.edge_u, self.edge_v)
        return n / np.linalg.norm(n)

    def corners(self) -> np.ndarray:
        """[4,3] world corners."""
        o, u, v = self.origin, self.edge_u, self.edge_v
        return np.stack([o, o + u, o + u + v, o + v])


@dataclass
class Scene:
    quads: List[Quad]
    textures: List[List[np.ndarray]]          # per texture: pyramid of float32 [h,w,3] in [0,1]
    sun: np.ndarray = field(default_factory=lambda: np.array([0.4, 0.3, -0.85]))  # NED, towards sun

    @property
    def sun_unit(self) -> np.ndarray:
        return self.sun / np.linalg.norm(self.sun)


def load_textures(directory: Path = TEXTURE_DIR, levels: int = 6) -> List[List[np.ndarray]]:
    """Bundled photos as mip-map pyramids (level 0 first), sorted by file name."""
    files = sorted(p for p in Path(directory).glob("*") if p.suffix.lower() in (".jpg", ".png"))
    # The most textured photos first: they pave the ground and the far wall.
    files.sort(key=lambda p: (p.stem not in TEXTURE_ORDER, TEXTURE_ORDER.index(p.stem)
                              if p.stem in TEXTURE_ORDER else 0, p.name))
    if not files:
        raise FileNotFoundError(f"no texture photos (*.jpg, *.png) in {directory}")
    out = []
    for path in files:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"cannot read texture {path}")
        pyr = [img.astype(np.float32) / 255.0]
        for _ in range(levels - 1):
            if min(pyr[-1].shape[:2]) < 8:
                break
            pyr.append(cv2.pyrDown(pyr[-1]))
        out.append(pyr)
    return out


def box(corner: Sequence[float], size: Sequence[float], textures: Sequence[int],
        tile: Optional[Tuple[float, float]] = None) -> List[Quad]:
    """A house: four walls and a flat roof of an axis-aligned box (NED world).

    corner: (x, y) of the north-west-ground corner; size: (dx, dy, height);
    ground at z = 0 so the box spans z ∈ [−height, 0].  Textures cycle over
    the faces; a wall's texture is upright (v axis pointing down).
    """
    x, y = corner
    dx, dy, h = size
    top = -h
    down = np.array([0.0, 0.0, h])
    faces = [
        (np.array([x, y, top]), np.array([dx, 0.0, 0.0]), down),          # west wall (y = y)
        (np.array([x + dx, y + dy, top]), np.array([-dx, 0.0, 0.0]), down),  # east wall
        (np.array([x, y + dy, top]), np.array([0.0, -dy, 0.0]), down),      # south wall (x = x)
        (np.array([x + dx, y, top]), np.array([0.0, dy, 0.0]), down),       # north wall
        (np.array([x, y, top]), np.array([dx, 0.0, 0.0]), np.array([0.0, dy, 0.0])),  # roof
    ]
    return [Quad(o, u, v, textures[i % len(textures)], tile) for i, (o, u, v) in enumerate(faces)]


def village(textures: Optional[List[List[np.ndarray]]] = None, seed: int = 0) -> Scene:
    """A street running north: textured ground, two rows of houses, a far wall.

    Deterministic for a given seed.  The camera flies along x ∈ [0, 40] at
    y ≈ 0, 2–4 m above ground (see :func:`trajectory`).  Texture 0 paves the
    ground, texture 1 the far wall, all of them the houses.
    """
    textures = textures if textures is not None else load_textures()
    rng = np.random.default_rng(seed)
    n = len(textures)
    quads = [Quad(np.array([-20.0, -40.0, 0.0]), np.array([120.0, 0.0, 0.0]),
                  np.array([0.0, 80.0, 0.0]), 0, tile=(3.0, 3.0), albedo=0.9)]
    for side in (-1, 1):
        x = -6.0
        while x < 70.0:
            dx = float(rng.uniform(4.0, 8.0))
            dy = float(rng.uniform(4.0, 7.0))
            h = float(rng.uniform(4.0, 9.0))
            off = float(rng.uniform(5.0, 7.5))
            y0 = off if side > 0 else -off - dy
            tex = [int(rng.integers(n)) for _ in range(5)]
            tile = float(rng.uniform(2.5, 4.0))
            quads += box((x, y0), (dx, dy, h), tex, tile=(tile, tile))
            x += dx + float(rng.uniform(0.5, 2.5))
    quads.append(Quad(np.array([75.0, -30.0, -20.0]), np.array([0.0, 60.0, 0.0]),
                      np.array([0.0, 0.0, 20.0]), 1 % n, tile=(8.0, 8.0)))
    return Scene(quads, textures)


# --------------------------------------------------------------------------- geometry

def rotation_rpy(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """Body → world rotation from roll, pitch, yaw (radians, aerospace ZYX order)."""
    cr, sr, cp, sp, cy, sy = (np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch),
                              np.cos(yaw), np.sin(yaw))
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    return rz @ ry @ rx


#: AirSim's camera mount: p_body(FRD) = (z, x, y)_optical.
R_BODY_OPTICAL = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def intrinsics(size: Tuple[int, int], hfov_deg: float = 90.0) -> np.ndarray:
    """3×3 K of a pinhole camera with AirSim's default 90° horizontal field of view."""
    w, h = size
    f = (w / 2.0) / np.tan(np.radians(hfov_deg) / 2.0)
    return np.array([[f, 0.0, w / 2.0], [0.0, f, h / 2.0], [0.0, 0.0, 1.0]])


# --------------------------------------------------------------------------- rendering

def _pixel_rays(K: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """[3,H,W] camera rays K⁻¹ (x, y, 1) (optical z = 1)."""
    w, h = size
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    Ki = np.linalg.inv(K)
    return np.einsum("ij,jhw->ihw", Ki, np.stack([xs, ys, np.ones_like(xs)]))


def _pixel_window(corners_cam: np.ndarray, K: np.ndarray, size: Tuple[int, int]):
    """Pixel box (x0, x1, y0, y1) that may show the quad, or None when it surely can't.

    A quad straddling the camera plane gets the whole image (its projection
    is unbounded); otherwise the box of its projected corners, clipped.
    """
    w, h = size
    z = corners_cam[:, 2]
    if np.all(z < NEAR):
        return None
    if np.any(z < NEAR):
        return 0, w, 0, h
    p = (K @ corners_cam.T).T
    x, y = p[:, 0] / p[:, 2], p[:, 1] / p[:, 2]
    x0, x1 = max(int(np.floor(x.min())), 0), min(int(np.ceil(x.max())) + 1, w)
    y0, y1 = max(int(np.floor(y.min())), 0), min(int(np.ceil(y.max())) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return None
    return x0, x1, y0, y1


def _sample(pyramid: List[np.ndarray], tx: np.ndarray, ty: np.ndarray, footprint: np.ndarray,
            wrap: bool) -> np.ndarray:
    """Texture colours at texel coords (tx, ty) [M], mip level from footprint [M] → [M,3]."""
    level = np.clip(np.floor(np.log2(np.maximum(footprint, 1e-6))), 0, len(pyramid) - 1)
    level = level.astype(np.int64)
    out = np.empty((len(tx), 3), np.float32)
    border = cv2.BORDER_WRAP if wrap else cv2.BORDER_REFLECT
    for lv in np.unique(level):
        sel = level == lv
        s = 2.0 ** lv
        out[sel] = remap_points(pyramid[lv], (tx[sel] + 0.5) / s - 0.5, (ty[sel] + 0.5) / s - 0.5,
                                border)
    return out


def remap_points(image: np.ndarray, x: np.ndarray, y: np.ndarray, border: int) -> np.ndarray:
    """Bilinear ``image`` values at M scattered points → [M,C].

    cv2.remap wants a 2D map smaller than 32767 per side, so the points are
    laid out in rows of 1024.
    """
    m = len(x)
    cols = 1024
    rows = -(-m // cols)
    mx = np.zeros(rows * cols, np.float32)
    my = np.zeros(rows * cols, np.float32)
    mx[:m], my[:m] = x, y
    out = cv2.remap(image, mx.reshape(rows, cols), my.reshape(rows, cols), cv2.INTER_LINEAR,
                    borderMode=border)
    return out.reshape(rows * cols, -1)[:m]


def render(scene: Scene, K: np.ndarray, T_world_cam: np.ndarray, size: Tuple[int, int],
           lighting: str = "day", seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Render → (bgr uint8 [H,W,3], planar depth float32 [H,W], inf where sky).

    ``lighting``: ``day`` (sun + sky, mild noise) or ``night`` (dark, a
    headlight on the camera falling off with distance, stronger noise).
    """
    if lighting not in ("day", "night"):
        raise ValueError(f"lighting must be 'day' or 'night', got {lighting!r}")
    w, h = size
    rays_flat = _pixel_rays(K, size).reshape(3, -1)            # [3,H·W]
    R, C = T_world_cam[:3, :3], T_world_cam[:3, 3]
    depth = np.full((h, w), np.inf)
    colour = np.zeros((h, w, 3), np.float32)
    for quad in scene.quads:
        corners_cam = (quad.corners() - C) @ R                  # world → camera: Rᵀ (p − C)
        window = _pixel_window(corners_cam, K, size)
        if window is None:
            continue
        x0, x1, y0, y1 = window
        pix = (np.arange(y0, y1)[:, None] * w + np.arange(x0, x1)[None, :]).ravel()
        rays_win = rays_flat[:, pix]
        n_c = R.T @ quad.normal                                 # plane in camera coordinates
        o_c = R.T @ (quad.origin - C)
        denom = n_c @ rays_win                                  # n·r per pixel
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (n_c @ o_c) / denom                             # ray parameter = planar depth
        hit = np.isfinite(z) & (z > NEAR) & (z < depth.ravel()[pix])
        if not hit.any():
            continue
        sel = np.nonzero(hit)[0]
        P = rays_win[:, sel] * z[sel] - o_c[:, None]            # hit − origin, camera coords
        u_c, v_c = R.T @ quad.edge_u, R.T @ quad.edge_v
        s = (u_c @ P) / (u_c @ u_c)
        t = (v_c @ P) / (v_c @ v_c)
        inside = (s >= 0) & (s <= 1) & (t >= 0) & (t <= 1)
        if not inside.any():
            continue
        sel, s, t = sel[inside], s[inside], t[inside]
        idx, zz, cos_num = pix[sel], z[sel], np.abs(denom[sel])
        pyr = scene.textures[quad.texture]
        th, tw = pyr[0].shape[:2]
        if quad.tile is None:
            reps = (1.0, 1.0)
        else:
            reps = (np.linalg.norm(quad.edge_u) / quad.tile[0],
                    np.linalg.norm(quad.edge_v) / quad.tile[1])
        tx, ty = s * reps[0] * tw, t * reps[1] * th
        if quad.tile is not None:
            tx, ty = np.mod(tx, tw), np.mod(ty, th)
        # Texels per pixel: a world length of z/f metres spans one pixel.
        cos = cos_num / np.linalg.norm(rays_flat[:, idx], axis=0)
        metres_per_px = zz / K[0, 0] / np.maximum(cos, 0.2)
        texel_per_m = max(reps[0] * tw / np.linalg.norm(quad.edge_u),
                          reps[1] * th / np.linalg.norm(quad.edge_v))
        rgb = _sample(pyr, tx, ty, metres_per_px * texel_per_m, quad.tile is not None)
        shade = _shading(scene, quad, lighting, zz, rays_flat[:, idx])
        colour.reshape(-1, 3)[idx] = rgb * (quad.albedo * shade)[:, None]
        depth.reshape(-1)[idx] = zz
    sky = ~np.isfinite(depth)
    rng = np.random.default_rng(seed)
    if lighting == "day":
        grad = np.linspace(0.75, 1.0, h, dtype=np.float32)[:, None, None]
        sky_bgr = np.array([0.95, 0.8, 0.6], np.float32) * grad          # [H,1,3]
        colour = np.where(sky[..., None], sky_bgr, colour)
        noise = 1.5 / 255
    else:
        colour[sky] = np.array([0.06, 0.03, 0.02], np.float32)
        colour = np.power(np.clip(colour, 0, 1), 1.2)
        noise = 3.0 / 255
    colour += rng.normal(0.0, noise, colour.shape).astype(np.float32)
    bgr = np.clip(colour * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return bgr, depth.astype(np.float32)


def _shading(scene: Scene, quad: Quad, lighting: str, z: np.ndarray, rays: np.ndarray) -> np.ndarray:
    """Brightness factor per hit pixel [M]."""
    if lighting == "day":
        lambert = abs(float(quad.normal @ scene.sun_unit))    # double-sided surfaces
        return np.full(len(z), 0.45 + 0.65 * lambert)
    # Night: a headlight on the camera, cos⁴ fall-off from the axis, 1/z² with distance.
    cos_axis = 1.0 / np.linalg.norm(rays, axis=0)
    return 0.04 + 1.6 * cos_axis ** 4 * np.minimum(1.0, (6.0 / z) ** 2)


# --------------------------------------------------------------------------- trajectory

MOTIONS = ("cruise", "turns")


def trajectory(t: np.ndarray, speed: float = 1.5,
               motion: str = "cruise") -> Tuple[np.ndarray, np.ndarray]:
    """Smooth body poses in NED at times t [N] (s) → (R_world_body [N,3,3], p [N,3]).

    ``cruise``: flies north down the street at ``speed`` m/s, swaying east-west,
    bobbing in height, with gentle yaw and roll (AirSim body frame FRD).
    ``turns`` (for odometry): the speed swings between 0.4× and 1.6× ``speed``
    and the heading turns ±25° towards the houses on either side.
    """
    t = np.asarray(t, np.float64)
    if motion not in MOTIONS:
        raise ValueError(f"motion must be one of {', '.join(MOTIONS)}, got {motion!r}")
    turns = motion == "turns"
    # x = ∫ speed·(1 + 0.6·sin(0.4 t)) dt for "turns"
    x = speed * (t + 1.5 * (1.0 - np.cos(0.4 * t))) if turns else speed * t
    y = 0.8 * np.sin(0.35 * t)
    z = -3.0 - 0.4 * np.sin(0.5 * t + 0.3)
    yaw = np.radians(25.0 if turns else 7.0) * np.sin(0.3 * t + 0.5)
    pitch = np.radians(-4.0) + np.radians(2.0) * np.sin(0.45 * t)
    roll = np.radians(3.0) * np.sin(0.6 * t)
    R = np.stack([rotation_rpy(r, p, yw) for r, p, yw in zip(roll, pitch, yaw)])
    return R, np.stack([x, y, z], axis=1)
