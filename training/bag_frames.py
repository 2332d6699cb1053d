"""Training frames from a robot's own rosbag2 (paper §1: adapt to the target domain, no labels).

``goodpoint train --bag BAG --image-topic T`` draws its photos from the bag instead of a
folder: every ``every``-th image message on the topic, decoded with the runtime's one
``sensor_msgs/Image`` decoder, turned to uint8 gray, and kept only if it differs enough from
the last kept frame (consecutive video frames are near-duplicates and would weigh a slow
stretch of the recording many times over).  The homographic pairs are then made exactly as
for photos (:class:`goodpoint_training.data.PairBatches`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Tuple

import cv2
import numpy as np

from goodpoint_ros.core.image_msgs import (
    UnsupportedEncoding,
    decode_compressed,
    decode_image,
    to_uint8,
)

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
THUMB = 32


@dataclass
class BagFrameReport:
    """What :func:`load_bag_frames` read, kept and skipped."""
    messages: int = 0
    sampled: int = 0
    kept: int = 0
    duplicates: int = 0
    undecodable: int = 0
    reasons: List[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.kept} frames from {self.messages} messages (every k-th: {self.sampled}; "
                f"{self.duplicates} near-duplicates, {self.undecodable} undecodable skipped)")


def thumbnail(gray: np.ndarray) -> np.ndarray:
    """[H,W] uint8 → [32,32] float32 zero-mean, unit-variance (lighting-invariant)."""
    t = cv2.resize(gray, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32)
    return (t - t.mean()) / max(float(t.std()), 1.0)


def is_near_duplicate(a: np.ndarray, b: np.ndarray, threshold: float) -> bool:
    """Two thumbnails closer than ``threshold`` in mean absolute difference."""
    return float(np.abs(a - b).mean()) < threshold


def _decode(msg) -> np.ndarray:
    if hasattr(msg, "format"):
        return decode_compressed(msg.format, msg.data)
    return decode_image(msg.encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian),
                        msg.data)


def load_bag_frames(path: Path, topic: str, every: int = 5, duplicate_threshold: float = 0.15,
                    min_size: int = 32, max_frames: int = 0) -> Tuple[List[np.ndarray], BagFrameReport]:
    """uint8 gray frames [H,W] from ``topic`` of a rosbag2 (``.mcap`` / ``.db3`` / folder).

    Raises ``ValueError`` (one line) for a missing bag, a missing topic or a topic that is
    not an image; undecodable messages are skipped and counted.
    """
    from rosbags.highlevel import AnyReader  # lazy: ~0.15 s, the trainer's --images path needs none
    from rosbags.typesys import Stores, get_typestore

    if every < 1:
        raise ValueError(f"--bag-every must be >= 1, got {every}")
    path = Path(path)
    if not path.exists():
        raise ValueError(f"bag not found: {path}")
    report = BagFrameReport()
    frames: List[np.ndarray] = []
    last = None
    try:
        reader = AnyReader([path], default_typestore=get_typestore(Stores.ROS2_JAZZY))
        reader.open()
    except Exception as exc:  # rosbags raises several types for a damaged or foreign file
        raise ValueError(f"cannot open bag {path}: {str(exc).splitlines()[0] if str(exc) else exc}")
    try:
        conns = [c for c in reader.connections if c.topic == topic]
        if not conns:
            topics = ", ".join(sorted({c.topic for c in reader.connections})) or "none"
            raise ValueError(f"bag {path} has no topic {topic!r} (topics: {topics})")
        if any(c.msgtype not in IMAGE_TYPES for c in conns):
            raise ValueError(f"topic {topic!r} is {conns[0].msgtype}, not an image")
        for conn, _, raw in reader.messages(connections=conns):
            report.messages += 1
            if (report.messages - 1) % every:
                continue
            report.sampled += 1
            try:
                gray = to_uint8(_decode(reader.deserialize(raw, conn.msgtype)), gray=True)
            except (UnsupportedEncoding, ValueError, cv2.error) as exc:
                report.undecodable += 1
                if len(report.reasons) < 5:
                    report.reasons.append(str(exc).splitlines()[0])
                continue
            if min(gray.shape) < min_size:
                report.undecodable += 1
                continue
            thumb = thumbnail(gray)
            if last is not None and is_near_duplicate(thumb, last, duplicate_threshold):
                report.duplicates += 1
                continue
            frames.append(gray)
            last = thumb
            if max_frames and len(frames) >= max_frames:
                break
    finally:
        reader.close()
    report.kept = len(frames)
    if not frames:
        raise ValueError(f"no usable frames on {topic!r} in {path}: {report.summary()}")
    return frames, report
