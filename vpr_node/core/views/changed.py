"""Ground that has changed since the map was captured, applied to a rendered camera view.

The map is months or years old when the drone flies: fields are re-planted or harvested, ground is dug up for
construction, vehicles come and go, vegetation changes colour with the season, clouds cast shadows, and the nav
camera's lens distorts. `apply(rng, view)` makes a view of the map look like that (the `changed` photometric
profile: these changes, then `strong`'s sensor chain):

- re-planted fields: 1-3 convex patches of the view re-textured with another crop colour and row direction;
- construction: 0-2 bare-earth or gravel rectangles with tracks;
- vehicles: 0-12 small bright or dark rectangles with shadows;
- season: the hue and saturation of vegetation-coloured pixels shifted (green -> yellow/brown, or greener);
- cloud shadows: a smooth darkening field (0-2 clouds);
- lens distortion: radial barrel/pincushion distortion (k1 in [-0.12, 0.08]).

`resurvey(rng, view)` goes further, to what a real frame against an independent map looks like (the `resurveyed`
profile, measured against a real drone frame and its orthophoto of another season: a right fix there has a fifth of
a rendered view's inliers, 0.6 of its matches inliers, 2-3x its reprojection error, inliers over a fifth of the
frame): the changes above, then

- moved texture: in low-frequency regions covering 30-70 % of the view (vegetation, shadows, surfaces seen by another
  sensor in another season), the view's own texture shuffled in small cells turned at random: the same colours and
  statistics, no geometry a matcher can verify;
- relief and orthorectification: a smooth displacement field of 0.5-1.5 % of the view's size (buildings lean, trees
  stand, the map's own orthorectification is off by metres).

Every change is drawn from `rng`, so a seed gives the same changed view; the benchmark's changed-ground
condition uses seeds that adaptation never sees. Changes are in the view's own coordinates: what a single
frame of changed ground looks like (the map itself is never modified).
"""
from __future__ import annotations

import cv2
import numpy as np

CROP_COLOURS = np.array([[140, 150, 72], [170, 160, 100], [110, 90, 60], [80, 110, 50], [185, 175, 120],
                         [125, 140, 95], [200, 190, 130], [95, 120, 60]], np.float32)


def _polygon(rng, w: int, h: int, size: float) -> np.ndarray:
    cx, cy = rng.uniform(0.1 * w, 0.9 * w), rng.uniform(0.1 * h, 0.9 * h)
    n = int(rng.integers(4, 8))
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    rad = size * rng.uniform(0.6, 1.0, n)
    return np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1).astype(np.int32)


def replant_fields(rng, img: np.ndarray, n: int) -> np.ndarray:
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(n):
        mask = np.zeros((h, w), np.uint8)
        cv2.fillConvexPoly(mask, cv2.convexHull(_polygon(rng, w, h, rng.uniform(0.15, 0.35) * min(w, h))), 1)
        colour = CROP_COLOURS[rng.integers(len(CROP_COLOURS))] * rng.uniform(0.85, 1.15)
        ang, period = rng.uniform(0, np.pi), rng.uniform(4, 14) * max(w, h) / 1280
        rows = 1.0 + rng.uniform(0.04, 0.15) * np.sin((xx * np.cos(ang) + yy * np.sin(ang)) * 2 * np.pi / period)
        m = mask.astype(bool)
        img[m] = (colour[None, :] * rows[m, None]) * 0.85 + img[m] * 0.15
    return img


def construction(rng, img: np.ndarray, n: int) -> np.ndarray:
    h, w = img.shape[:2]
    for _ in range(n):
        size = rng.uniform(0.08, 0.22) * min(w, h)
        box = cv2.boxPoints(((rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h),
                             (size * rng.uniform(1.0, 2.0), size), rng.uniform(0, 180))).astype(np.int32)
        earth = np.array([[150, 125, 95], [170, 160, 150], [120, 100, 80]], np.float32)[rng.integers(3)]
        cv2.fillConvexPoly(img, box, earth.tolist(), lineType=cv2.LINE_AA)
        for _ in range(int(rng.integers(2, 6))):  # vehicle tracks
            p0, p1 = box[rng.integers(4)], box[rng.integers(4)]
            cv2.line(img, tuple(map(int, p0)), tuple(map(int, p1)), (earth * 0.75).tolist(), max(1, int(size / 25)))
    return img


def vehicles(rng, img: np.ndarray, n: int) -> np.ndarray:
    h, w = img.shape[:2]
    scale = max(w, h) / 1280
    for _ in range(n):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        ln, wd, ang = rng.uniform(28, 55) * scale, rng.uniform(13, 22) * scale, rng.uniform(0, 180)  # a car at 55-110 m
        box = cv2.boxPoints(((cx, cy), (ln, wd), ang)).astype(np.int32)
        cv2.fillConvexPoly(img, box + np.array([int(3 * scale), int(3 * scale)]), (30, 32, 30), lineType=cv2.LINE_AA)
        colour = [(230, 230, 230), (40, 40, 45), (180, 30, 30), (40, 60, 150), (200, 200, 60)][rng.integers(5)]
        cv2.fillConvexPoly(img, box, colour, lineType=cv2.LINE_AA)
    return img


def season(rng, img: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
    green = (hsv[..., 0] > 25) & (hsv[..., 0] < 90) & (hsv[..., 1] > 40)
    hsv[..., 0][green] = np.clip(hsv[..., 0][green] + rng.uniform(-22, 8), 0, 179)
    hsv[..., 1][green] *= rng.uniform(0.6, 1.3)
    return cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)


def cloud_shadows(rng, img: np.ndarray, n: int) -> np.ndarray:
    h, w = img.shape[:2]
    shade = np.zeros((h, w), np.float32)
    for _ in range(n):
        small = np.zeros((8, 8), np.float32)
        cv2.circle(small, (int(rng.integers(1, 7)), int(rng.integers(1, 7))), int(rng.integers(2, 4)), 1.0, -1)
        shade = np.maximum(shade, cv2.GaussianBlur(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC),
                                                   (0, 0), 0.05 * max(w, h)))
    return img * (1.0 - rng.uniform(0.25, 0.55) * np.clip(shade, 0, 1))[..., None]


def lens_distortion(rng, img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    k1 = rng.uniform(-0.12, 0.08)
    f = max(w, h)
    cam = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]], np.float64)
    mx, my = cv2.initUndistortRectifyMap(cam, np.array([k1, 0, 0, 0], np.float64), None, cam, (w, h), cv2.CV_32FC1)
    return cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def apply(rng, view: np.ndarray) -> np.ndarray:
    """The view of changed ground (RGB uint8 in, RGB uint8 out), before the camera's photometric chain."""
    img = view.astype(np.float32)
    img = replant_fields(rng, img, int(rng.integers(1, 4)))
    img = construction(rng, img, int(rng.integers(0, 3)))
    img = vehicles(rng, img, int(rng.integers(0, 13)))
    if rng.random() < 0.7:
        img = season(rng, img)
    if rng.random() < 0.6:
        img = cloud_shadows(rng, img, int(rng.integers(1, 3)))
    img = lens_distortion(rng, np.clip(img, 0, 255).astype(np.uint8))
    return img


def moved_texture(rng, img: np.ndarray, share: float) -> np.ndarray:
    """About `share` of the view (low-frequency regions) re-made from its own cells (3-6 % of the view's side),
    shuffled and turned by multiples of 90 deg."""
    h, w = img.shape[:2]
    cell = max(8, int(rng.uniform(0.03, 0.06) * max(w, h)))
    gh, gw = -(-h // cell), -(-w // cell)
    field = cv2.resize(rng.random((4, 6)).astype(np.float32), (gw, gh), interpolation=cv2.INTER_CUBIC)
    moved = field <= np.quantile(field, share)
    src = img.copy()
    cells = [(y, x) for y in range(gh) for x in range(gw) if (y + 1) * cell <= h and (x + 1) * cell <= w]
    for y, x in zip(*np.nonzero(moved), strict=True):
        sy, sx = cells[int(rng.integers(len(cells)))]
        patch = np.rot90(src[sy * cell:(sy + 1) * cell, sx * cell:(sx + 1) * cell], int(rng.integers(4)))
        ys, xs = slice(y * cell, min(h, (y + 1) * cell)), slice(x * cell, min(w, (x + 1) * cell))
        img[ys, xs] = patch[:ys.stop - ys.start, :xs.stop - xs.start]
    return img


def relief(rng, img: np.ndarray, amplitude: float) -> np.ndarray:
    """A smooth random displacement of up to `amplitude` x the view's size."""
    h, w = img.shape[:2]
    d = [cv2.resize(rng.uniform(-1, 1, (5, 7)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
         * amplitude * max(w, h) for _ in range(2)]
    xx, yy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(img, xx + d[0], yy + d[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def resurvey(rng, view: np.ndarray) -> np.ndarray:
    """The view as a real frame against an independent map (module docstring), before the camera's chain."""
    img = apply(rng, view)
    img = moved_texture(rng, np.clip(img, 0, 255).astype(np.uint8), float(rng.uniform(0.3, 0.7)))
    return relief(rng, img, float(rng.uniform(0.005, 0.015)))
