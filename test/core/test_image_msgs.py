"""Built-in sensor_msgs/Image decoder: every encoding, odd steps, big-endian, compressed."""
import array

import cv2
import numpy as np
import pytest

from goodpoint_ros.core.image_msgs import (
    SUPPORTED_ENCODINGS,
    UnsupportedEncoding,
    decode_compressed,
    decode_image,
    encode_bgr8,
    to_uint8,
)
from goodpoint_ros.core.keypoints import to_gray_float

RNG = np.random.default_rng(7)
H, W = 6, 10


def pack(pixels: np.ndarray, pad: int = 0, bigendian: bool = False):
    """numpy image → (step, bytes) like a camera driver lays it out, ``pad`` bytes per row."""
    px = pixels.reshape(pixels.shape[0], pixels.shape[1], -1)
    if px.dtype.itemsize > 1:
        px = px.astype(px.dtype.newbyteorder(">" if bigendian else "<"))
    rows = px.reshape(px.shape[0], -1).view(np.uint8)
    rows = np.concatenate([rows, np.full((rows.shape[0], pad), 0xAB, np.uint8)], axis=1)
    return rows.shape[1], rows.tobytes()


@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("encoding,dtype,channels", [
    ("mono8", np.uint8, 1), ("8UC1", np.uint8, 1), ("mono16", np.uint16, 1),
    ("16UC1", np.uint16, 1), ("bgr8", np.uint8, 3), ("bgra8", np.uint8, 4),
    ("bgr16", np.uint16, 3), ("32FC1", np.float32, 1)])
def test_direct_encodings_round_trip(encoding, dtype, channels, pad, bigendian):
    if np.dtype(dtype).kind == "f":
        img = RNG.uniform(-0.5, 1.5, (H, W)).astype(dtype)
    else:
        img = RNG.integers(0, np.iinfo(dtype).max, (H, W, channels), endpoint=True).astype(dtype)
        img = img[:, :, 0] if channels == 1 else img
    step, data = pack(img, pad, bigendian)
    out = decode_image(encoding, H, W, step, bigendian, data)
    assert out.dtype == dtype and out.dtype.isnative
    np.testing.assert_array_equal(out, img)


@pytest.mark.parametrize("encoding,code", [("rgb8", cv2.COLOR_BGR2RGB),
                                           ("rgba8", cv2.COLOR_BGRA2RGBA)])
def test_rgb_orders_are_swapped_to_bgr(encoding, code):
    bgr = RNG.integers(0, 256, (H, W, 3 if encoding == "rgb8" else 4), dtype=np.uint8)
    step, data = pack(cv2.cvtColor(bgr, code), pad=1)
    np.testing.assert_array_equal(decode_image(encoding, H, W, step, False, data), bgr)


def test_gray_scaling_is_documented():
    """mono16 ÷ 65535, mono8 ÷ 255, 32FC1 clipped to [0, 1] (NaN → 0)."""
    m16 = np.array([[0, 65535, 32768]], np.uint16)
    step, data = pack(m16)
    g = to_gray_float(decode_image("mono16", 1, 3, step, False, data))
    np.testing.assert_allclose(g, [[0.0, 1.0, 32768 / 65535]], rtol=1e-6)
    f = np.array([[-2.0, 0.25, 7.0, np.nan]], np.float32)
    step, data = pack(f, bigendian=True)
    g = to_gray_float(decode_image("32FC1", 1, 4, step, True, data))
    np.testing.assert_allclose(g, [[0.0, 0.25, 1.0, 0.0]])


def _bayer_mosaic(bgr: np.ndarray, pattern: str) -> np.ndarray:
    """Sample a BGR image on a Bayer pattern named as ROS does (first row, then second)."""
    idx = {"r": 2, "g": 1, "b": 0}
    out = np.zeros(bgr.shape[:2], bgr.dtype)
    for k, (dy, dx) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        out[dy::2, dx::2] = bgr[dy::2, dx::2, idx[pattern[k]]]
    return out


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
@pytest.mark.parametrize("depth", [8, 16])
def test_bayer_patterns_demosaic_to_the_right_colour(pattern, depth):
    dtype = np.uint8 if depth == 8 else np.uint16
    top = np.iinfo(dtype).max
    for colour in ([0, 0, top], [0, top, 0], [top, 0, 0]):           # pure red, green, blue (BGR)
        bgr = np.zeros((8, 8, 3), dtype)
        bgr[:] = colour
        step, data = pack(_bayer_mosaic(bgr, pattern), pad=2)
        out = decode_image(f"bayer_{pattern}{depth}", 8, 8, step, False, data)
        assert out.shape == (8, 8, 3) and out.dtype == dtype
        centre = out[3:5, 3:5].reshape(-1, 3).mean(0)
        assert int(np.argmax(centre)) == int(np.argmax(colour)), (pattern, colour, centre)


@pytest.mark.parametrize("encoding,cv_code", [("yuv422", cv2.COLOR_YUV2BGR_UYVY),
                                              ("yuv422_yuy2", cv2.COLOR_YUV2BGR_YUYV)])
def test_yuv422_matches_opencv(encoding, cv_code):
    # A flat mid-grey frame: Y = 128, U = V = 128 in either byte order.
    raw = np.full((H, W, 2), 128, np.uint8)
    raw[:, :, 0 if encoding == "yuv422_yuy2" else 1] = RNG.integers(16, 235, (H, W))  # luma bytes
    step, data = pack(raw, pad=5)
    out = decode_image(encoding, H, W, step, False, data)
    np.testing.assert_array_equal(out, cv2.cvtColor(raw, cv_code))
    luma = raw[:, :, 0 if encoding == "yuv422_yuy2" else 1].astype(np.float32)
    gray = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY).astype(np.float32)
    assert np.abs(gray - (luma - 16) * 255 / 219).max() < 3     # BT.601 video range


def test_rclpy_array_and_rosbags_ndarray_data_are_accepted():
    img = RNG.integers(0, 256, (H, W), dtype=np.uint8)
    step, data = pack(img, pad=1)
    for buf in (array.array("B", data), np.frombuffer(data, np.uint8), bytearray(data)):
        np.testing.assert_array_equal(decode_image("mono8", H, W, step, False, buf), img)


def test_last_row_without_padding_is_accepted():
    img = RNG.integers(0, 256, (H, W), dtype=np.uint8)
    step, data = pack(img, pad=2)
    np.testing.assert_array_equal(decode_image("mono8", H, W, step, False, data[:-2]), img)


@pytest.mark.parametrize("args,match", [
    (("8UC2", H, W, 2 * W, False, bytes(2 * W * H)), "unsupported image encoding"),
    (("mono8", H, W, W - 1, False, bytes(W * H)), "step"),
    (("mono16", H, W, 2 * W, False, bytes(W * H)), "data has"),
    (("mono8", 0, W, W, False, b""), "empty"),
])
def test_bad_images_raise_one_line_errors(args, match):
    with pytest.raises(UnsupportedEncoding, match=match) as err:
        decode_image(*args)
    assert "\n" not in str(err.value)


#: bytes per pixel of every encoding the issue lists (REP-104 / sensor_msgs/image_encodings.h).
BYTES_PER_PIXEL = {
    "mono8": 1, "8UC1": 1, "mono16": 2, "16UC1": 2, "bgr8": 3, "8UC3": 3, "rgb8": 3,
    "bgra8": 4, "8UC4": 4, "rgba8": 4, "bgr16": 6, "16UC3": 6, "rgb16": 6, "bgra16": 8,
    "16UC4": 8, "rgba16": 8, "32FC1": 4, "bayer_rggb8": 1, "bayer_bggr8": 1, "bayer_gbrg8": 1,
    "bayer_grbg8": 1, "bayer_rggb16": 2, "bayer_bggr16": 2, "bayer_gbrg16": 2, "bayer_grbg16": 2,
    "yuv422": 2, "uyvy": 2, "yuv422_yuy2": 2, "yuyv": 2,
}


def test_every_supported_encoding_decodes():
    assert set(SUPPORTED_ENCODINGS) == set(BYTES_PER_PIXEL)
    for enc, bpp in BYTES_PER_PIXEL.items():
        data = RNG.integers(0, 256, H * (W * bpp + 1), dtype=np.uint8).tobytes()
        out = decode_image(enc, H, W, W * bpp + 1, False, data)
        assert out.shape[:2] == (H, W), enc
        assert to_gray_float(out).shape == (H, W), enc


@pytest.mark.parametrize("fmt,ext", [("jpeg", ".jpg"), ("bgr8; jpeg compressed bgr8", ".jpg"),
                                     ("png", ".png"), ("mono16; png compressed", ".png")])
def test_compressed_jpeg_and_png(fmt, ext):
    if "mono16" in fmt:
        img = RNG.integers(0, 65536, (H, W), dtype=np.uint16)
    else:
        img = np.zeros((16, 16, 3), np.uint8)
        img[:, :8] = (255, 0, 0)                      # blue left half
    ok, buf = cv2.imencode(ext, img)
    out = decode_compressed(fmt, array.array("B", buf.tobytes()))
    assert out.shape == img.shape and out.dtype == img.dtype
    if ext == ".png":
        np.testing.assert_array_equal(out, img)
    else:
        assert out[8, 2, 0] > 200 and out[8, 2, 2] < 60   # still blue, not swapped to red


@pytest.mark.parametrize("fmt,data,match", [
    ("tiff", b"xx", "unsupported compressed"),
    ("16UC1; compressedDepth", b"xx", "compressedDepth"),
    ("jpeg", b"", "no data"),
    ("jpeg", b"not a jpeg at all", "cannot decode"),
])
def test_bad_compressed_images_raise(fmt, data, match):
    with pytest.raises(UnsupportedEncoding, match=match):
        decode_compressed(fmt, data)


def test_encode_bgr8_round_trips_through_the_decoder():
    img = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)
    f = encode_bgr8(img)
    out = decode_image(f["encoding"], f["height"], f["width"], f["step"], f["is_bigendian"], f["data"])
    np.testing.assert_array_equal(out, img)


def test_to_uint8_keeps_colour_or_makes_gray_and_scales_by_the_maximum():
    """One helper for bag replay (colour kept) and training frames (gray)."""
    bgra = RNG.integers(0, 256, (H, W, 4), dtype=np.uint8)
    np.testing.assert_array_equal(to_uint8(bgra), bgra[..., :3])
    np.testing.assert_array_equal(to_uint8(bgra, gray=True), cv2.cvtColor(bgra, cv2.COLOR_BGRA2GRAY))
    twelve_bit = RNG.integers(0, 4096, (H, W), dtype=np.uint16)     # 12-bit camera in mono16
    out = to_uint8(twelve_bit)
    assert out.dtype == np.uint8 and out.max() == 255
    np.testing.assert_allclose(out, twelve_bit * (255.0 / twelve_bit.max()), atol=1)
    depthish = np.array([[np.nan, np.inf], [0.5, 1.0]], np.float32)   # NaN / inf count as 0
    np.testing.assert_array_equal(to_uint8(depthish), [[0, 0], [127, 255]])
