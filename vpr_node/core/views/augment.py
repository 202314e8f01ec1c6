"""Photometric changes between the map imagery and a drone camera frame, by named profile.

- `standard`: the original query protocol (brightness, contrast, small hue shift, blur, noise, JPEG).
- `strong`: the developer benchmark's queries: another season, time of day and sensor than the map
  (contrast/brightness/gamma, white balance, hue and saturation, blur, noise, JPEG at low quality).
- `changed`: ground that has changed since the map was captured (changed.py: re-planted fields,
  construction, vehicles, season, cloud shadows, lens distortion), then `strong`'s sensor chain.
- `resurveyed`: what a real frame against an independent map looks like (changed.resurvey: changed ground, then
  texture that moved and relief displacement), then `strong`'s chain; the verifier's calibration views.
- `adaptation`: what mission adaptation trains on, deliberately broader than `strong` and built from
  other operations too (cloud shadows, haze, vignetting, grey sensor, resolution loss, sharpening), so
  the adapted model learns invariance rather than the benchmark generator's own distribution.

Every function takes a numpy Generator and an RGB uint8 image and returns a new RGB uint8 image.
"""
from __future__ import annotations

import cv2
import numpy as np

from vpr_node.core.views import changed

PROFILES = ("none", "standard", "strong", "changed", "resurveyed", "adaptation")


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _hue_sat(out: np.ndarray, hue_shift: float, sat_gain: float) -> np.ndarray:
    hsv = cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + hue_shift) % 180
    hsv[..., 1] *= sat_gain
    return cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)


def _low_freq_field(rng, h: int, w: int, cells: int) -> np.ndarray:
    small = rng.standard_normal((cells, cells)).astype(np.float32)
    f = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return (f - f.min()) / max(1e-6, float(f.max() - f.min()))


def _sensor_chain(rng, out: np.ndarray, contrast, brightness, hue, saturation, blur, noise, quality) -> np.ndarray:
    """Contrast and brightness, hue and saturation, blur, noise, JPEG: the camera-side steps both query
    profiles share (in this order, so each profile's random draws stay reproducible)."""
    out = (out - 128.0) * rng.uniform(*contrast) + 128.0 + rng.uniform(-brightness, brightness)
    out = _hue_sat(out, rng.uniform(-hue, hue), rng.uniform(*saturation))
    sigma = rng.uniform(0, blur)
    if sigma > 0.3:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    out += rng.normal(0, rng.uniform(0, noise), out.shape)
    return _jpeg(np.clip(out, 0, 255).astype(np.uint8), int(rng.integers(*quality)))


def standard(rng, img: np.ndarray) -> np.ndarray:
    """The original query photometrics (bit-for-bit, for reproducing earlier numbers)."""
    return _sensor_chain(rng, img.astype(np.float32), (0.75, 1.25), 30, 8, (0.7, 1.3), 1.5, 6, (55, 95))


def strong(rng, img: np.ndarray) -> np.ndarray:
    """Another season / time of day / sensor than the map."""
    out = np.power(np.clip(img.astype(np.float32) / 255.0, 0, 1), rng.uniform(0.6, 1.6)) * 255.0  # time of day
    out *= rng.uniform(0.8, 1.2, size=3).astype(np.float32)  # white balance / sensor colour response
    return _sensor_chain(rng, out, (0.6, 1.4), 40, 15, (0.5, 1.4), 2.0, 10, (40, 95))  # season: hue, saturation


def adaptation(rng, img: np.ndarray) -> np.ndarray:
    """Training-time photometrics for mission adaptation (broader than `strong`, other operations too)."""
    h, w = img.shape[:2]
    out = img.astype(np.float32)
    if rng.random() < 0.5:  # cloud shadows / uneven illumination
        field = _low_freq_field(rng, h, w, int(rng.integers(2, 6)))
        out *= (1.0 - rng.uniform(0.2, 0.6) * field)[..., None]
    out = np.power(np.clip(out / 255.0, 0, 1), rng.uniform(0.5, 1.8)) * 255.0
    out *= rng.uniform(0.75, 1.25, size=3).astype(np.float32)
    out = (out - 128.0) * rng.uniform(0.5, 1.5) + 128.0 + rng.uniform(-50, 50)
    out = _hue_sat(out, rng.uniform(-20, 20), rng.uniform(0.3, 1.6))
    if rng.random() < 0.3:  # haze
        a = rng.uniform(0.05, 0.4)
        out = out * (1 - a) + a * rng.uniform(170, 235)
    if rng.random() < 0.3:  # vignetting
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
        out *= (1.0 - rng.uniform(0.1, 0.4) * np.clip(r2 / 2, 0, 1))[..., None]
    if rng.random() < 0.2:  # grey (panchromatic / monochrome sensor)
        g = cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float32)
        out = np.repeat(g[..., None], 3, axis=2)
    if rng.random() < 0.3:  # resolution loss (a coarser sensor or map)
        f = rng.uniform(0.3, 0.8)
        small = cv2.resize(np.clip(out, 0, 255), (max(8, int(w * f)), max(8, int(h * f))), interpolation=cv2.INTER_AREA)
        out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    sigma = rng.uniform(0, 2.5)
    if sigma > 0.3:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    elif rng.random() < 0.3:  # sharpening (unsharp mask)
        blur = cv2.GaussianBlur(out, (0, 0), 1.5)
        out = out + rng.uniform(0.3, 1.0) * (out - blur)
    out += rng.normal(0, rng.uniform(0, 12), out.shape)
    return _jpeg(np.clip(out, 0, 255).astype(np.uint8), int(rng.integers(30, 95)))


def apply(profile: str, rng, img: np.ndarray) -> np.ndarray:
    if profile == "none":
        return img
    if profile == "standard":
        return standard(rng, img)
    if profile == "strong":
        return strong(rng, img)
    if profile == "changed":
        return strong(rng, changed.apply(rng, img))
    if profile == "resurveyed":
        return strong(rng, changed.resurvey(rng, img))
    if profile == "adaptation":
        return adaptation(rng, img)
    raise ValueError(f"unknown photometric profile {profile!r}; choose one of {', '.join(PROFILES)}")
