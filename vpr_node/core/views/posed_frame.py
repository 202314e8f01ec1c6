"""Nav-camera frames cut from a REAL posed photograph: the frame's pinhole intrinsics and world-to-camera pose give,
for any sub-window of it, the ground point under the window's centre (the ray through it meets the ground plane),
its heading and its ground footprint, so crops at several rotations and footprints become queries with ground truth
(`PosedFrame.crops`), like the synthesised views but seen by a real camera in another season than the map.

World frame: x east, y north, z up, metres (a local metric frame); `to_latlon` places it on the globe. Crops of one
photograph are correlated: a benchmark on them says so.
"""
from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from vpr_node.core.maps.camera import CameraModel
from vpr_node.core.views.queries import Query


@dataclasses.dataclass
class PosedFrame:
    image: np.ndarray  # RGB
    K: np.ndarray  # 3x3
    R: np.ndarray  # world -> camera rotation
    t: np.ndarray  # world -> camera translation
    ground_z: float  # height of the ground plane in the world frame
    to_latlon: object  # (east, north) metres -> (lat, lon)
    name: str = "frame"

    @property
    def centre(self) -> np.ndarray:
        return -self.R.T @ self.t

    def ground(self, u: float, v: float) -> np.ndarray:
        """(east, north) where the ray through pixel (u, v) meets the ground plane."""
        ray = self.R.T @ np.linalg.solve(self.K, np.array([u, v, 1.0]))
        c = self.centre
        if ray[2] >= 0:
            raise ValueError(f"pixel ({u}, {v}) looks above the horizon")
        return (c + (self.ground_z - c[2]) / ray[2] * ray)[:2]

    def crop(self, u0: float, v0: float, width_px: float, angle_deg: float, out_size: tuple[int, int]):
        """The window of the photograph centred on (u0, v0), `width_px` wide (the output's aspect), its 'up' turned
        `angle_deg` clockwise, resampled to out_size; None where it leaves the photograph. Returns (image,
        (east, north) under its centre, heading of its 'up' clockwise from north, ground length of its short and
        long sides through the centre)."""
        ow, oh = out_size
        cw, ch = width_px, width_px * oh / ow
        a = math.radians(angle_deg)
        ux, uy = math.sin(a), -math.cos(a)  # the crop's 'up' in photograph pixels
        rx, ry = -uy, ux
        corners = np.array([[u0 - rx * cw / 2 + ux * ch / 2, v0 - ry * cw / 2 + uy * ch / 2],
                            [u0 + rx * cw / 2 + ux * ch / 2, v0 + ry * cw / 2 + uy * ch / 2],
                            [u0 + rx * cw / 2 - ux * ch / 2, v0 + ry * cw / 2 - uy * ch / 2],
                            [u0 - rx * cw / 2 - ux * ch / 2, v0 - ry * cw / 2 - uy * ch / 2]], np.float32)
        h, w = self.image.shape[:2]
        if corners.min() < 0 or corners[:, 0].max() > w or corners[:, 1].max() > h:
            return None
        g = np.array([self.ground(*c) for c in corners])
        centre = self.ground(u0, v0)
        up = self.ground(u0 + ux * 10, v0 + uy * 10) - centre
        heading = math.degrees(math.atan2(up[0], up[1])) % 360.0
        short = float(np.linalg.norm((g[0] + g[1]) / 2 - (g[2] + g[3]) / 2))
        long = float(np.linalg.norm((g[0] + g[3]) / 2 - (g[1] + g[2]) / 2))
        m = cv2.getPerspectiveTransform(corners, np.float32([[0, 0], [ow, 0], [ow, oh], [0, oh]]))
        img = cv2.warpPerspective(self.image, m, (ow, oh), flags=cv2.INTER_AREA)
        return img, centre, heading, short, long

    def crops(self, n: int, seed: int, footprint_m: tuple[float, float], camera: CameraModel, inside=None,
              max_tries: int = 200000) -> list[Query]:
        """n crops at random centres, rotations and sizes whose short side sees footprint_m (min, max) metres of
        ground, as queries for a nav camera `camera` (its image size; altitude_m is where a nadir camera of its
        focal length would see that footprint). `inside(east, north)` may refuse crops whose ground leaves the map."""
        rng = np.random.default_rng(seed)
        h, w = self.image.shape[:2]
        out: list[Query] = []
        for _ in range(max_tries):
            if len(out) == n:
                break
            angle, width = float(rng.uniform(0, 360)), float(rng.uniform(0.25, 1.0) * w)
            u0, v0 = float(rng.uniform(0, w)), float(rng.uniform(0, h))
            got = self.crop(u0, v0, width, angle, (camera.width_px, camera.height_px))
            if got is None:
                continue
            img, (e, nn), heading, short, long = got
            if not footprint_m[0] <= short <= footprint_m[1]:
                continue
            if inside is not None and not inside(e, nn, long):
                continue
            lat, lon = self.to_latlon(e, nn)
            altitude = short * camera.fx / min(camera.width_px, camera.height_px)
            out.append(Query(f"{self.name}_c{len(out):03d}", float(lat), float(lon), heading, 1.0, 0.0, self.name,
                             img, altitude, short))
        if len(out) < n:
            raise ValueError(f"only {len(out)} of {n} crops fit the photograph with footprints {footprint_m} m")
        return out
