"""Pictures of a verification: the frame beside its verified tile, the inlier matches as lines, the frame's outline
projected onto the tile and its centre (the fix) marked. Used by the verifier node's debug image topic and the
evaluation mosaics."""
from __future__ import annotations

import cv2
import numpy as np

from vpr_node.core.verification import geometry


def draw_verification(frame_rgb: np.ndarray, tile_rgb: np.ndarray, fit, frame_size: tuple[int, int],
                      height: int = 360, max_lines: int = 80, label: str = "") -> np.ndarray:
    """RGB image: the frame (as matched: `frame_size`) left, the tile right, at `height` px; `fit` a HomographyFit
    (None: the two images only)."""
    fw, fh = frame_size
    frame = cv2.resize(frame_rgb, (fw, fh), interpolation=cv2.INTER_AREA)
    sf, st = height / fh, height / tile_rgb.shape[0]
    left = cv2.resize(frame, (round(fw * sf), height), interpolation=cv2.INTER_AREA)
    right = cv2.resize(tile_rgb, (round(tile_rgb.shape[1] * st), height), interpolation=cv2.INTER_AREA)
    canvas = np.concatenate([left, right], 1).copy()
    off = left.shape[1]
    if fit is not None:
        outline = geometry.project(fit.H, [[0, 0], [fw, 0], [fw, fh], [0, fh]]) * st + [off, 0]
        cv2.polylines(canvas, [outline.astype(np.int32)], True, (255, 220, 0), 2, cv2.LINE_AA)
        centre = geometry.project(fit.H, [[fw / 2, fh / 2]])[0] * st + [off, 0]
        cv2.drawMarker(canvas, tuple(int(v) for v in centre), (255, 0, 255), cv2.MARKER_CROSS, 18, 2)
        step = max(1, fit.inliers // max_lines)
        for (x0, y0), (x1, y1) in zip(fit.src[::step], fit.dst[::step], strict=True):
            cv2.line(canvas, (int(x0 * sf), int(y0 * sf)), (int(x1 * st + off), int(y1 * st)), (0, 255, 0), 1,
                     cv2.LINE_AA)
    if label:
        cv2.putText(canvas, label, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
    return canvas


def map_picture(tiles, rec) -> np.ndarray:
    """The map side of a fit: the tile image, or for a map-feature window (which holds features, not pixels) the
    candidate's tile image placed where it lies in the window, on grey."""
    tile = tiles.image(rec.row)
    if hasattr(rec.where, "tiles"):  # TilePixels
        return cv2.resize(tile, rec.map_size, interpolation=cv2.INTER_AREA)
    win, c = rec.where, tiles.cols
    corners = [(c["north"][rec.row], c["west"][rec.row]), (c["north"][rec.row], c["east"][rec.row]),
               (c["south"][rec.row], c["east"][rec.row]), (c["south"][rec.row], c["west"][rec.row])]
    dst = np.array([win.to_px(*win.frame.to_en(lat, lon)) for lat, lon in corners], np.float32)
    th, tw = tile.shape[:2]
    m = cv2.getPerspectiveTransform(np.float32([[0, 0], [tw, 0], [tw, th], [0, th]]), dst)
    return cv2.warpPerspective(tile, m, rec.map_size, borderMode=cv2.BORDER_CONSTANT, borderValue=(96, 96, 96))


def verification_picture(verifier, frame_rgb: np.ndarray, v, height: int = 360) -> np.ndarray | None:
    """The picture of a Verification's chosen candidate (None without a valid one)."""
    if v.fix is None or v.fix.tile_id not in v.fits:
        return None
    rec = v.fits[v.fix.tile_id]
    label = (f"{v.matcher} {v.fix.tile_id}  {rec.fit.inliers} inliers  conf {v.fix.confidence:.2f}  "
             f"{'ACCEPTED' if v.accepted else v.reason}")
    return draw_verification(frame_rgb, map_picture(verifier.tiles, rec), rec.fit, rec.frame_size, height,
                             label=label)
