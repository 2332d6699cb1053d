"""tools/photos/build_photo_set.py: the pure parts (filtering, near-duplicates, manifest, union).

Real photos only: the repository's HPatches sample (always present) and, where it is
beside the repository, ``../shared/train-images``.  No network, no packages fetched.
"""
from __future__ import annotations

import csv
import io
import sys
import zipfile

import cv2
import numpy as np
import pytest

from conftest import REPO, SAMPLE, SHARED

sys.path.insert(0, str(REPO / "tools" / "photos"))
import build_photo_set as bps  # noqa: E402

TRAIN_IMAGES = SHARED / "train-images"


def photo(i: int = 1) -> np.ndarray:
    """A real photo of the sample sequence, RGB uint8 [H,W,3]."""
    bgr = cv2.imread(str(SAMPLE / f"{i}.png"), cv2.IMREAD_COLOR)
    assert bgr is not None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def png_bytes(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


# ------------------------------------------------------------------ candidate filtering
def test_real_photo_passes_filter():
    st = bps.image_stats(photo())
    assert bps.reject_reason(st) == ""
    assert st.short_side == min(photo().shape[:2])


def test_train_images_mostly_pass_filter():
    """The hand-picked photos of the existing set: the filter keeps the great majority."""
    if not TRAIN_IMAGES.is_dir():
        pytest.skip(f"{TRAIN_IMAGES} not present")
    files = sorted(TRAIN_IMAGES.glob("*.jpg"))[::8]
    kept = 0
    for f in files:
        img, why = bps.decode(f.read_bytes(), bps.FilterConfig())
        assert img is not None, (f.name, why)
        kept += bps.reject_reason(bps.image_stats(img)) == ""
    assert kept >= 0.85 * len(files)


def test_line_art_and_flat_graphics_rejected():
    """The same photo turned into line art, a poster (few flat colours) and a gradient."""
    rgb = photo()
    edges = cv2.Canny(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 80, 160)
    line_art = np.where(edges > 0, 0, 255).astype(np.uint8)
    assert bps.reject_reason(bps.image_stats(line_art)) != ""
    poster = cv2.resize(cv2.resize(rgb, (12, 9), interpolation=cv2.INTER_AREA), rgb.shape[1::-1],
                        interpolation=cv2.INTER_NEAREST)
    assert bps.reject_reason(bps.image_stats(poster)) != ""
    smooth = cv2.resize(cv2.resize(rgb, (6, 4), interpolation=cv2.INTER_AREA), rgb.shape[1::-1],
                        interpolation=cv2.INTER_CUBIC)
    assert bps.reject_reason(bps.image_stats(smooth)) in ("smooth", "flat", "few colours", "low entropy")


def test_small_image_rejected_by_size():
    crop = photo()[:200, :300]
    assert bps.reject_reason(bps.image_stats(crop)) == "small"
    img, why = bps.decode(png_bytes(crop), bps.FilterConfig())
    assert img is None and why == "small"


def test_decode_rejects_cutouts_and_keeps_grey():
    rgb = photo()
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[: rgb.shape[0] // 3, :, 3] = 0    # a third transparent: a sprite / stamp
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    img, why = bps.decode(buf.tobytes(), bps.FilterConfig())
    assert img is None and why == "transparent"
    grey_rgb = np.repeat(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    img, why = bps.decode(png_bytes(grey_rgb), bps.FilterConfig())
    assert why == "" and img.ndim == 2
    img, why = bps.decode(b"not an image", bps.FilterConfig())
    assert img is None and why.startswith("undecodable")


def test_decode_scales_16_bit():
    g16 = cv2.cvtColor(photo(), cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257
    img, why = bps.decode(png_bytes(g16), bps.FilterConfig())
    assert why == "" and img.dtype == np.uint8
    assert abs(int(img.max()) - int(g16.max() // 257)) <= 1


@pytest.mark.parametrize("rel,bad", [
    ("art/textures/terrain/grass_01.png", False),
    ("textures/rock/granite.jpg", False),
    ("textures/rock/granite_norm.tga", True),
    ("textures/rock/granite_n.png", True),
    ("Textures/Terrain/gravel_spec.png", True),
    ("data/gui/icons/start.png", True),
    ("pak0.pk3!textures/base/metal_gloss.jpg", True),
    ("pak0.pk3!textures/base/concrete.jpg", False),
])
def test_path_reason(rel, bad):
    assert (bps.path_reason(rel) != "") == bad


# ------------------------------------------------------------------ near-duplicates
def test_near_duplicates_found_across_resize_jpeg_and_flip():
    idx = bps.NearDuplicateIndex()
    a = photo(1)
    idx.add(bps.thumbnails(bps.to_gray(a))[0])
    again = cv2.imdecode(np.frombuffer(bps.encode_jpeg(bps.resize_max(a[:, ::-1], 400), 70), np.uint8),
                         cv2.IMREAD_GRAYSCALE)
    assert idx.max_correlation(bps.thumbnails(again)) > bps.FilterConfig().dedup


def test_different_photos_are_not_duplicates():
    if not TRAIN_IMAGES.is_dir():
        pytest.skip(f"{TRAIN_IMAGES} not present")
    files = sorted(TRAIN_IMAGES.glob("*.jpg"))[:40:4]
    idx = bps.NearDuplicateIndex()
    for f in files:
        th = bps.thumbnails(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE))
        assert idx.max_correlation(th) < bps.FilterConfig().dedup, f.name
        idx.add(th[0])
    assert len(idx) == len(files)


def test_index_grows_past_its_first_allocation():
    idx = bps.NearDuplicateIndex()
    g = cv2.cvtColor(photo(2), cv2.COLOR_RGB2GRAY)
    rng = np.random.default_rng(0)
    h, w = g.shape
    for _ in range(299):
        y, x = rng.integers(0, h // 3), rng.integers(0, w // 3)
        idx.add(bps.thumbnails(g[y:y + h // 2, x:x + w // 2])[0])
    crop = g[h // 2:, w // 2:]
    before = idx.max_correlation(bps.thumbnails(crop))
    idx.add(bps.thumbnails(crop)[0])   # the 300th: past the first block of 256 rows
    assert len(idx) == 300
    assert idx.max_correlation(bps.thumbnails(crop)) > 0.999 > before


def test_video_frames_are_decimated(tmp_path):
    """A pan across a real photo: consecutive frames are near-duplicates, kept frames are not."""
    g = photo(1)
    path = tmp_path / "pan.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    if not w.isOpened():
        pytest.skip("OpenCV has no MJPG writer here")
    n = 60
    for i in range(n):
        x = int(i * (g.shape[1] - 320) / (n - 1))
        w.write(cv2.cvtColor(np.ascontiguousarray(g[100:340, x:x + 320]), cv2.COLOR_RGB2BGR))
    w.release()
    frames = list(bps.video_frames(path, every=2, dedup=0.8))
    assert 1 <= len(frames) < n // 2
    th = [bps.thumbnails(bps.to_gray(f))[0] for _, f in frames]
    for i in range(len(th)):
        for j in range(i):
            assert float(th[i] @ th[j]) <= 0.8


# ------------------------------------------------------------------ archives, output
def test_candidates_read_archive_members_and_filter_paths(tmp_path):
    data = png_bytes(photo())
    (tmp_path / "usr" / "share" / "game").mkdir(parents=True)
    with zipfile.ZipFile(tmp_path / "usr/share/game/pak0.pk3", "w") as z:
        z.writestr("textures/rock.png", data)
        z.writestr("sounds/x.png", data)
    (tmp_path / "usr/share/game/loose.png").write_bytes(data)
    (tmp_path / "usr/share/game/readme.txt").write_text("x")
    src = bps.Source("game", include=r"textures/|loose")
    got = {c.original: c for c in bps.candidates(tmp_path, src)}
    assert set(got) == {"usr/share/game/pak0.pk3!textures/rock.png", "usr/share/game/loose.png"}
    assert got["usr/share/game/pak0.pk3!textures/rock.png"].load() == data


def test_manifest_round_trip_and_missing_field(tmp_path):
    rows = [dict(file="x_001.jpg", source="x", registry="debian", version="1:2.0-1",
                 original="usr/share/a, b.jpg", width=800, height=600, channels=3, licence="GPL-2+ / CC0")]
    bps.write_manifest(tmp_path / "manifest.csv", rows)
    back = list(csv.DictReader(io.StringIO((tmp_path / "manifest.csv").read_text())))
    assert back == [{k: str(v) for k, v in rows[0].items()}]
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(ValueError, match="lacks licence"):
        bps.write_manifest(tmp_path / "m2.csv", [{k: v for k, v in rows[0].items() if k != "licence"}])
    assert not (tmp_path / "m2.csv").exists()


def test_licence_summary_of_dep5_text():
    text = ("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
            "Files: *\nCopyright: 2010 A\nLicense: GPL-2+\n This program is free software\n\n"
            "Files: art/*\nCopyright: 2011 B\nLicense: CC-BY-SA-3.0\n\n"
            "Files: debian/*\nLicense: GPL-2+\n\nLicense: GPL-2+\n full text\n")
    assert bps.licence_summary(text) == "GPL-2+ / CC-BY-SA-3.0"
    assert bps.licence_summary("Copyright (c) 1999 someone, all rights reserved") == ""


def test_numbering_continues_the_base_set_and_union(tmp_path):
    base, out, union = tmp_path / "base", tmp_path / "out", tmp_path / "union"
    base.mkdir()
    out.mkdir()
    jpg = bps.encode_jpeg(photo(), 90)
    for n in ("mate-backgrounds_001.jpg", "mate-backgrounds_012.jpg", "opencv-doc_003.jpg"):
        (base / n).write_bytes(jpg)
    nums = bps.next_numbers([p.name for p in base.iterdir()] + ["README.md"])
    assert nums == {"mate-backgrounds": 12, "opencv-doc": 3}
    (out / "mate-backgrounds_013.jpg").write_bytes(jpg)
    assert bps.make_union(union, base, out) == 4
    assert sorted(p.name for p in union.iterdir()) == sorted(
        ["mate-backgrounds_001.jpg", "mate-backgrounds_012.jpg", "opencv-doc_003.jpg",
         "mate-backgrounds_013.jpg"])
    assert (union / "mate-backgrounds_013.jpg").resolve() == (out / "mate-backgrounds_013.jpg").resolve()
    (out / "opencv-doc_003.jpg").write_bytes(jpg)
    with pytest.raises(ValueError, match="collision"):
        bps.make_union(union, base, out)


def test_out_inside_repository_refused(capsys):
    assert bps.main(["--out", str(REPO / "photos"), "--only", "none"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "inside the repository" in err[0]


def test_per_file_licence_last_matching_stanza_wins():
    text = ("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
            "Files: *\nCopyright: 2010 A\nLicense: GPL-2+\n\n"
            "Files: data/textures/rock*.png\n data/sky/*\nCopyright: 2011 B\nLicense: CC-BY-SA-3.0\n\n"
            "Files: data/textures/rock_old.png\nCopyright: 2012 C\nLicense: CC0-1.0\n")
    st = bps.dep5_stanzas(text)
    assert [lic for _, lic in st] == ["GPL-2+", "CC-BY-SA-3.0", "CC0-1.0"]
    assert st[1][0] == ["data/textures/rock*.png", "data/sky/*"]
    pre = "usr/share/games/g/"
    assert bps.file_licence(pre + "data/textures/rock1.png", st, "?") == "CC-BY-SA-3.0"
    assert bps.file_licence(pre + "data/textures/rock_old.png", st, "?") == "CC0-1.0"
    assert bps.file_licence(pre + "pak.pk3!data/sky/day.jpg", st, "?") == "CC-BY-SA-3.0"
    assert bps.file_licence(pre + "data/textures/grass.png", st, "?") == "GPL-2+"
    assert bps.file_licence("x.png", [], "fallback") == "fallback"


def test_normal_map_made_from_a_photo_is_rejected():
    """A tangent-space normal map of a real photo (its height field): bluish, rejected."""
    g = cv2.cvtColor(photo(), cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)
    n = np.dstack([-gx, -gy, np.ones_like(g)])
    n /= np.linalg.norm(n, axis=2, keepdims=True)
    rgb = np.clip((n * 0.5 + 0.5) * 255, 0, 255).astype(np.uint8)
    st = bps.image_stats(rgb)
    assert st.normal_map
    assert bps.reject_reason(st) != ""
    assert not bps.image_stats(photo()).normal_map


def test_strip_rejected_once_resized_short_side_would_be_too_small():
    """A 240-px-high strip of a real photo, 4× as wide: 800 px long → 200 px short: rejected."""
    rgb = photo()
    strip = cv2.resize(rgb, (rgb.shape[1] * 4, 240), interpolation=cv2.INTER_CUBIC)
    assert bps.reject_reason(bps.image_stats(strip)) == "elongated"
    ok = cv2.resize(rgb, (800, 240), interpolation=cv2.INTER_AREA)    # 800 × 240 stays 240 px high
    assert bps.reject_reason(bps.image_stats(ok)) == ""
