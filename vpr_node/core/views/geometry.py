"""Image geometry shared by frames and tiles: tiles at several headings, a frame turned north-up by a known
heading, a frame cropped to a ground size."""
from __future__ import annotations

import cv2
import numpy as np


def crop_to_ground(rgb: np.ndarray, footprint_m: float, target_m: float) -> np.ndarray:
    """Centred square crop whose ground side is target_m, from a square frame whose side covers footprint_m
    (no crop when the frame covers less than the target: it cannot be zoomed out)."""
    h, w = rgb.shape[:2]
    s = min(h, w)
    if footprint_m <= target_m:
        side = s
    else:
        side = max(16, int(round(s * target_m / footprint_m)))
    y0, x0 = (h - side) // 2, (w - side) // 2
    return np.ascontiguousarray(rgb[y0:y0 + side, x0:x0 + side])


def rotate_to_north_up(rgb: np.ndarray, yaw_deg: float) -> np.ndarray:
    """Undo a known camera heading (clockwise from north) so the frame is north-up like the tiles.

    The output is the largest axis-aligned square that stays inside the rotated frame (no borders)."""
    h, w = rgb.shape[:2]
    s = min(h, w)
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), -yaw_deg, 1.0)
    rot = cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    a = np.radians(yaw_deg % 90)
    inner = int(s / (np.cos(a) + np.sin(a)))
    y0, x0 = (h - inner) // 2, (w - inner) // 2
    return np.ascontiguousarray(rot[y0:y0 + inner, x0:x0 + inner])


def rotated_views(img: np.ndarray, rotations: int) -> list[np.ndarray]:
    """The tile at `rotations` headings evenly spaced over 360 deg (1, 2 or 4 use exact 90-deg turns)."""
    if rotations not in (1, 2, 4, 8):
        raise ValueError("rotations must be 1, 2, 4 or 8")
    views = [np.ascontiguousarray(np.rot90(img, k)) for k in range(0, 4, 4 // min(rotations, 4))]
    if rotations == 8:
        h, w = img.shape[:2]
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 45, 1.0)
        r45 = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        views += [np.ascontiguousarray(np.rot90(r45, k)) for k in range(4)]
    return views
