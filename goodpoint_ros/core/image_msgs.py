"""sensor_msgs/Image and CompressedImage fields → numpy images, without ROS.

The node hands the message *fields* (encoding, height, width, step,
is_bigendian, data) to :func:`decode_image` / :func:`decode_compressed`, so
this module is testable and usable without rclpy or cv_bridge.

What comes out is an image :func:`goodpoint_ros.core.keypoints.to_gray_float`
understands, with the documented scaling to [0, 1] happening there:

=========================================  ==========================  ==========================
encoding                                    returned array              scaling to [0, 1]
=========================================  ==========================  ==========================
mono8, 8UC1                                 uint8 [H,W]                 ÷ 255
mono16, 16UC1                               uint16 [H,W]                ÷ 65535
bgr8, rgb8, 8UC3 (taken as bgr8)            uint8 [H,W,3] BGR           ÷ 255, then gray
bgra8, rgba8, 8UC4 (taken as bgra8)         uint8 [H,W,4] BGRA          ÷ 255, then gray
bgr16, rgb16, bgra16, rgba16                uint16 BGR(A)               ÷ 65535, then gray
32FC1                                       float32 [H,W]               clipped to [0, 1] (NaN → 0)
bayer_{rggb,bggr,gbrg,grbg}{8,16}           demosaiced BGR (cvtColor)   as 8 / 16 bit
yuv422 (UYVY), yuv422_yuy2 / yuyv (YUYV)    uint8 BGR (cvtColor)        ÷ 255
=========================================  ==========================  ==========================

Rows may be padded (``step`` > width × bytes per pixel) and multi-byte
samples may be big-endian (``is_bigendian``): both are honoured.  Anything
else raises :class:`UnsupportedEncoding` (a ``ValueError`` with a one-line
message) so the caller can log it once and skip the frame.
"""
from __future__ import annotations

import array
from typing import Dict, Optional, Tuple

import cv2
import numpy as np


class UnsupportedEncoding(ValueError):
    """The image cannot be decoded; the message says why in one line."""


#: encoding → (numpy dtype, channels, cv2 conversion to BGR or None).
#: OpenCV names Bayer patterns by the 2×2 block starting at pixel (1, 1), so
#: ROS's bayer_rggb (R at (0, 0)) is OpenCV's BayerBG — the mapping cv_bridge uses.
_RAW: Dict[str, Tuple[str, int, Optional[int]]] = {
    "mono8": ("u1", 1, None), "8UC1": ("u1", 1, None),
    "mono16": ("u2", 1, None), "16UC1": ("u2", 1, None),
    "bgr8": ("u1", 3, None), "8UC3": ("u1", 3, None),
    "rgb8": ("u1", 3, cv2.COLOR_RGB2BGR),
    "bgra8": ("u1", 4, None), "8UC4": ("u1", 4, None),
    "rgba8": ("u1", 4, cv2.COLOR_RGBA2BGRA),
    "bgr16": ("u2", 3, None), "16UC3": ("u2", 3, None),
    "rgb16": ("u2", 3, cv2.COLOR_RGB2BGR),
    "bgra16": ("u2", 4, None), "16UC4": ("u2", 4, None),
    "rgba16": ("u2", 4, cv2.COLOR_RGBA2BGRA),
    "32FC1": ("f4", 1, None),
    "bayer_rggb8": ("u1", 1, cv2.COLOR_BayerBG2BGR),
    "bayer_bggr8": ("u1", 1, cv2.COLOR_BayerRG2BGR),
    "bayer_gbrg8": ("u1", 1, cv2.COLOR_BayerGR2BGR),
    "bayer_grbg8": ("u1", 1, cv2.COLOR_BayerGB2BGR),
    "bayer_rggb16": ("u2", 1, cv2.COLOR_BayerBG2BGR),
    "bayer_bggr16": ("u2", 1, cv2.COLOR_BayerRG2BGR),
    "bayer_gbrg16": ("u2", 1, cv2.COLOR_BayerGR2BGR),
    "bayer_grbg16": ("u2", 1, cv2.COLOR_BayerGB2BGR),
    # Two bytes per pixel, interleaved chroma: decoded as [H, W, 2] uint8.
    "yuv422": ("u1", 2, cv2.COLOR_YUV2BGR_UYVY),
    "uyvy": ("u1", 2, cv2.COLOR_YUV2BGR_UYVY),
    "yuv422_yuy2": ("u1", 2, cv2.COLOR_YUV2BGR_YUYV),
    "yuyv": ("u1", 2, cv2.COLOR_YUV2BGR_YUYV),
}

SUPPORTED_ENCODINGS = tuple(_RAW)

#: CompressedImage formats OpenCV's imdecode handles (the part after ';' is a
#: hint of the original encoding, as image_transport writes it).
SUPPORTED_COMPRESSED = ("jpeg", "jpg", "png")


def _as_bytes(data) -> memoryview:
    """rclpy gives array.array('B') or bytes, rosbags a numpy uint8 array."""
    if isinstance(data, np.ndarray):
        return memoryview(np.ascontiguousarray(data, dtype=np.uint8)).cast("B")
    return memoryview(data).cast("B")


def decode_image(encoding: str, height: int, width: int, step: int,
                 is_bigendian: bool, data) -> np.ndarray:
    """sensor_msgs/Image fields → numpy image (see the module table).

    Returns uint8 / uint16 [H,W] or BGR(A) [H,W,C], or float32 [H,W] for
    32FC1, always a fresh array (the message buffer may be reused).
    """
    if encoding not in _RAW:
        raise UnsupportedEncoding(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    kind, channels, conversion = _RAW[encoding]
    height, width, step = int(height), int(width), int(step)
    if height <= 0 or width <= 0:
        raise UnsupportedEncoding(f"empty image ({width}x{height})")
    if channels == 2 and width % 2:
        # 4:2:2 shares one chroma pair between two pixels: an odd width cannot exist
        raise UnsupportedEncoding(f"{encoding} image {width}x{height}: 4:2:2 needs an even width")
    if conversion is not None and encoding.startswith("bayer") and (width < 2 or height < 2):
        raise UnsupportedEncoding(f"{encoding} image {width}x{height}: a Bayer mosaic needs "
                                  "at least 2x2 pixels")
    itemsize = int(kind[1])
    row_bytes = width * channels * itemsize
    if step < row_bytes:
        raise UnsupportedEncoding(
            f"{encoding} image {width}x{height}: step {step} < width x bytes per pixel = {row_bytes}")
    buf = _as_bytes(data)
    if len(buf) < step * (height - 1) + row_bytes:
        raise UnsupportedEncoding(
            f"{encoding} image {width}x{height}, step {step}: data has {len(buf)} bytes, "
            f"needs {step * height}")
    # Rows are `step` bytes apart; a strided view skips the padding, and the
    # explicit byte order honours is_bigendian for multi-byte samples.
    dtype = np.dtype(kind).newbyteorder(">" if is_bigendian else "<") if itemsize > 1 else np.dtype(kind)
    rows = np.frombuffer(buf, dtype=np.uint8, count=min(len(buf), step * height))
    if len(rows) < step * height:                  # the last row may come unpadded
        rows = np.concatenate([rows, np.zeros(step * height - len(rows), np.uint8)])
    rows = rows.reshape(height, step)[:, :row_bytes]
    image = np.ascontiguousarray(rows).view(dtype).reshape(height, width, channels)
    image = image.astype(dtype.newbyteorder("="), copy=True)  # native order, own memory
    if channels == 1:
        image = image[:, :, 0]
    if conversion is not None:
        try:
            image = cv2.cvtColor(image, conversion)
        except cv2.error as exc:      # any other shape OpenCV refuses: one line, skipped
            raise UnsupportedEncoding(f"{encoding} image {width}x{height}: OpenCV cannot "
                                      f"convert it ({str(exc).strip().splitlines()[-1]})") from None
    return image


def decode_compressed(fmt: str, data) -> np.ndarray:
    """sensor_msgs/CompressedImage fields → numpy image (uint8/uint16, gray or BGR)."""
    # image_transport writes e.g. "jpeg", "bgr8; jpeg compressed bgr8", "mono16; png compressed".
    words = fmt.replace(";", " ").lower().split()
    if "compresseddepth" in words:
        raise UnsupportedEncoding(f"compressedDepth images are not supported (format {fmt!r})")
    if not any(w in SUPPORTED_COMPRESSED for w in words):
        raise UnsupportedEncoding(
            f"unsupported compressed format {fmt!r}; supported: jpeg, png")
    buf = np.frombuffer(_as_bytes(data), dtype=np.uint8)
    if buf.size == 0:
        raise UnsupportedEncoding("compressed image has no data")
    image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise UnsupportedEncoding(f"cannot decode the {fmt!r} compressed image")
    if "rgb8" in words and image.ndim == 3 and image.shape[2] == 3 and "bgr8" not in words:
        # "rgb8; jpeg compressed rgb8": the encoder was fed RGB, so imdecode's "BGR" is RGB.
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    return image


def encode_bgr8(image: np.ndarray) -> dict:
    """BGR uint8 [H,W,3] → sensor_msgs/Image fields (no header) for ~/debug_image."""
    img = np.ascontiguousarray(image, dtype=np.uint8)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected a BGR image [H,W,3], got shape {img.shape}")
    h, w = img.shape[:2]
    data = array.array("B")            # what rclpy's uint8[] setter takes without a copy loop
    data.frombytes(img.tobytes())
    return {"height": h, "width": w, "encoding": "bgr8", "is_bigendian": 0,
            "step": 3 * w, "data": data}


def to_uint8(image: np.ndarray, gray: bool = False) -> np.ndarray:
    """A decoded image (uint8 / uint16 / float, gray or BGR(A)) → uint8: gray [H,W] when
    ``gray``, else as it came with BGRA → BGR (bag replay, training frames from a bag).

    Other types are scaled by the image's own maximum (NaN and ±inf count as 0): a
    12-bit camera in ``mono16`` would otherwise give nearly black frames.
    """
    img = image
    if img.ndim == 3 and gray:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY if img.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if img.dtype == np.uint8:
        return img
    f = np.nan_to_num(img.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    top = float(f.max()) if f.size else 0.0
    return np.clip(f * (255.0 / max(top, 1e-6)), 0, 255).astype(np.uint8)
