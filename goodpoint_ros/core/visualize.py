"""Pictures a person looks at: keypoints on an image, matches side by side."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from goodpoint_ros.core.imageio import to_bgr8
from goodpoint_ros.core.weights import atomic_write_bytes

GREEN, RED, YELLOW = (60, 200, 60), (40, 40, 230), (0, 215, 255)


def caption(canvas: np.ndarray, text: str) -> np.ndarray:
    """Write ``text`` at the top left of a BGR ``canvas`` (in place), white on a dark outline
    so it reads on any image, shrunk to fit the width (Hershey fonts: ASCII only)."""
    room = canvas.shape[1] - 20
    (w07, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.7, 2)
    scale = max(0.3, min(0.7, 0.7 * room / max(w07, 1)))
    line = max(1, round(2 * scale / 0.7))
    while len(text) > 4 and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale,
                                            line)[0][0] > room:
        text = text[:-4] + "..."             # a thumbnail: the start says the most
    y = int(10 + 20 * scale)
    # The outline is the text itself shifted around, not a thicker stroke: a Hershey glyph's
    # advance grows with the thickness, so a thick copy drifts out from under the text.
    for dx, dy in ((-1, -1), (1, -1), (-1, 1), (1, 1), (0, 2), (0, -2), (2, 0), (-2, 0)):
        cv2.putText(canvas, text, (10 + dx, y + dy), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (0, 0, 0), line, cv2.LINE_AA)
    cv2.putText(canvas, text, (10, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), line,
                cv2.LINE_AA)
    return canvas


def draw_keypoints(image: np.ndarray, keypoints: np.ndarray, scores: Optional[np.ndarray] = None,
                   radius: int = 3) -> np.ndarray:
    """BGR picture with keypoints [N,2] as circles, colour by score (jet: blue low, red
    high), and a caption saying so with the score range."""
    out = to_bgr8(image).copy()
    if len(keypoints) == 0:
        return caption(out, "0 keypoints")
    if scores is None or len(scores) == 0 or np.ptp(scores) == 0:
        colors = np.tile(np.array(YELLOW, np.uint8), (len(keypoints), 1))
        text = f"{len(keypoints)} keypoints"
    else:
        s = ((scores - scores.min()) / np.ptp(scores) * 255).astype(np.uint8)
        colors = cv2.applyColorMap(s[:, None], cv2.COLORMAP_JET)[:, 0]
        text = f"{len(keypoints)} keypoints; score {scores.min():.2f} blue, {scores.max():.2f} red"
    for (x, y), c in zip(np.round(keypoints).astype(int), colors):
        cv2.circle(out, (int(x), int(y)), radius, tuple(int(v) for v in c), 1, cv2.LINE_AA)
    return caption(out, text)


def draw_matches(image0: np.ndarray, image1: np.ndarray, kpts0: np.ndarray, kpts1: np.ndarray,
                 matches: np.ndarray, inliers: Optional[np.ndarray] = None,
                 max_lines: int = 400, label: str = "inliers") -> np.ndarray:
    """Side-by-side picture: inlier matches green, outliers red, keypoints yellow.

    ``label`` names the green ones in the caption ("521 matches, 454 inliers"): the
    evaluator's pictures colour by ground truth and say "correct within 3 px"."""
    a, b = to_bgr8(image0), to_bgr8(image1)
    h = max(a.shape[0], b.shape[0])
    canvas = np.zeros((h, a.shape[1] + b.shape[1], 3), np.uint8)
    canvas[:a.shape[0], :a.shape[1]] = a
    canvas[:b.shape[0], a.shape[1]:] = b
    off = np.array([a.shape[1], 0], np.float32)
    for p in np.round(kpts0).astype(int):
        cv2.circle(canvas, (int(p[0]), int(p[1])), 2, YELLOW, -1, cv2.LINE_AA)
    for p in np.round(kpts1 + off).astype(int):
        cv2.circle(canvas, (int(p[0]), int(p[1])), 2, YELLOW, -1, cv2.LINE_AA)
    if inliers is None:
        inliers = np.ones(len(matches), bool)
    idx = np.arange(len(matches))
    if len(idx) > max_lines:   # draw a spread sample, inliers last so they stay on top
        idx = np.random.default_rng(0).choice(idx, max_lines, replace=False)
    idx = idx[np.argsort(inliers[idx], kind="stable")]
    for k in idx:
        i, j = matches[k]
        p0 = tuple(int(v) for v in np.round(kpts0[i]))
        p1 = tuple(int(v) for v in np.round(kpts1[j] + off))
        cv2.line(canvas, p0, p1, GREEN if inliers[k] else RED, 1, cv2.LINE_AA)
    return caption(canvas, f"{len(matches)} matches, {int(inliers.sum())} {label}")


def write_image(path, image: np.ndarray) -> None:
    """Atomically write an image file (format from the extension)."""

    ext = Path(path).suffix or ".png"
    ok, buf = cv2.imencode(ext, image)
    if not ok:
        raise ValueError(f"cannot encode an image as {ext}")
    atomic_write_bytes(path, buf.tobytes())
