"""Decode camera frames to HxWx3 uint8 RGB without cv_bridge.

Covers the encodings nav cameras really send: rgb8, bgr8, rgba8, bgra8, mono8, mono16, the four
8-bit Bayer patterns, and compressed JPEG/PNG. Every failure is a `VprPreprocessError` that says
what was wrong with the frame; nothing is silently fixed up.
"""
from __future__ import annotations

import cv2
import numpy as np

from vpr_node.core.errors import VprPreprocessError

MAX_PIXELS = 8192 * 8192  # refuse absurd frames before allocating for them

_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8uc1": 1, "8uc3": 3,
             "bayer_rggb8": 1, "bayer_bggr8": 1, "bayer_gbrg8": 1, "bayer_grbg8": 1}
_BAYER = {"bayer_rggb8": cv2.COLOR_BayerRGGB2RGB, "bayer_bggr8": cv2.COLOR_BayerBGGR2RGB,
          "bayer_gbrg8": cv2.COLOR_BayerGBRG2RGB, "bayer_grbg8": cv2.COLOR_BayerGRBG2RGB}
SUPPORTED_ENCODINGS = tuple(sorted(list(_CHANNELS) + ["mono16", "16uc1"]))


def decode_raw(encoding: str, width: int, height: int, step: int, data, is_bigendian: bool = False) -> np.ndarray:
    """Decode a sensor_msgs/Image payload to RGB uint8 (H, W, 3)."""
    enc = (encoding or "").lower()
    if enc not in _CHANNELS and enc not in ("mono16", "16uc1"):
        raise VprPreprocessError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}", encoding=encoding
        )
    if width <= 0 or height <= 0:
        raise VprPreprocessError(f"image has zero size ({width}x{height})", width=width, height=height)
    if width * height > MAX_PIXELS:
        raise VprPreprocessError(
            f"image {width}x{height} exceeds the {MAX_PIXELS}-pixel limit", width=width, height=height
        )
    bytes_per_px = 2 if enc in ("mono16", "16uc1") else _CHANNELS[enc]
    row = width * bytes_per_px
    if step < row:
        raise VprPreprocessError(f"step {step} is smaller than width*bytes_per_pixel = {row}", step=step, width=width)
    buf = (
        np.frombuffer(memoryview(data), dtype=np.uint8)
        if not isinstance(data, np.ndarray)
        else data.reshape(-1).view(np.uint8)
    )
    if buf.size < step * (height - 1) + row:
        raise VprPreprocessError(
            f"image data has {buf.size} bytes; {encoding} {width}x{height} step {step} needs {step * height}",
            size=int(buf.size),
            expected=step * height,
        )
    rows = np.lib.stride_tricks.as_strided(buf, shape=(height, row), strides=(step, 1))
    if enc in ("mono16", "16uc1"):
        img16 = rows.copy().view(">u2" if is_bigendian else "<u2").reshape(height, width)
        mono = (img16 >> 8).astype(np.uint8)
        return cv2.cvtColor(mono, cv2.COLOR_GRAY2RGB)
    img = (
        np.ascontiguousarray(rows).reshape(height, width, _CHANNELS[enc])
        if _CHANNELS[enc] > 1
        else np.ascontiguousarray(rows)
    )
    if enc in ("rgb8", "8uc3"):
        return img.copy()
    if enc == "bgr8":
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if enc == "rgba8":
        return cv2.cvtColor(img, cv2.COLOR_RGBA2RGB)
    if enc == "bgra8":
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    if enc in ("mono8", "8uc1"):
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(img, _BAYER[enc])


def decode_compressed(fmt: str, data) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage payload (jpeg/png) to RGB uint8 (H, W, 3)."""
    buf = np.frombuffer(memoryview(data), dtype=np.uint8)
    if buf.size == 0:
        raise VprPreprocessError("compressed image is empty", format=fmt)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        raise VprPreprocessError(f"compressed image ({fmt or 'unknown format'}, {buf.size} bytes) could not be decoded",
                                 format=fmt, size=int(buf.size))
    if img.shape[0] * img.shape[1] > MAX_PIXELS:
        raise VprPreprocessError(f"decoded image {img.shape[1]}x{img.shape[0]} exceeds the pixel limit")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def encode_raw(rgb: np.ndarray, encoding: str = "rgb8") -> tuple[bytes, int]:
    """Inverse of decode_raw for rgb8/bgr8/mono8 (used by replay and tests): returns (data, step)."""
    enc = encoding.lower()
    if enc == "rgb8":
        out = rgb
    elif enc == "bgr8":
        out = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    elif enc == "mono8":
        out = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    else:
        raise ValueError(f"encode_raw supports rgb8, bgr8, mono8, not {encoding}")
    out = np.ascontiguousarray(out)
    return out.tobytes(), out.shape[1] * (out.shape[2] if out.ndim == 3 else 1)


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()
