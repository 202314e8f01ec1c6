"""Views that produce wrong fixes, so the verifier's calibration sees some (mission/calibration.py) and benchmarks
can count them:

- `lookalike`: a view of the map in which a part of the ground (30-50 % of the frame, on one side of a random line)
  is replaced by the ground of another place of the same map at the same heading, scale and camera tilt (as the
  same camera would see it there): ground changed to
  look like elsewhere, and what repetitive real ground (identical roofs, parking lots, crop rows) does. The truth
  stays where the camera is: a homography to the other place is clean, its inliers sit in one part of the frame,
  and it is wrong.
- `elsewhere`: a view of another map (procedural ground of another seed): nothing in the mission map is right
  (truth NaN: any fix is wrong).

Both wrap a `ViewSet` of the benchmark protocol (queries.py) and yield `Query` objects in the same way (rendered as
they are iterated, deterministic by seed), after the `strong` photometric change.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from vpr_node.core.views import augment
from vpr_node.core.views.queries import QuerySpec, ViewSet, footprint_radius_px, render_from_raster, render_view

LOOKALIKE_STREAM, ELSEWHERE_STREAM = 11, 12


def _half_plane_mask(rng, w: int, h: int, share: float) -> np.ndarray:
    """A boolean mask of a random half-plane covering `share` of the frame (its centre too when share > 0.5)."""
    a = rng.uniform(0, 2 * math.pi)
    nx, ny = math.cos(a), math.sin(a)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    proj = (xx - w / 2) * nx + (yy - h / 2) * ny
    cut = np.quantile(proj, share)  # proj < cut covers `share` of the pixels; the centre (proj 0) when share > 0.5
    return proj < cut


def _another_place(rng, width: int, height: int, rad: float, cx: float, cy: float, min_dist_px: float):
    """A centre whose view stays inside the raster where it can (on a raster smaller than the view, its middle),
    at least min_dist_px from (cx, cy) when one of 50 draws is; else the farthest drawn."""
    lo_x, lo_y = min(rad, width / 2), min(rad, height / 2)
    hi_x, hi_y = max(width - rad, lo_x), max(height - rad, lo_y)
    best, best_d = (cx, cy), -1.0
    for _ in range(50):
        ox, oy = rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)
        d = math.hypot(ox - cx, oy - cy)
        if d >= min_dist_px:
            return ox, oy
        if d > best_d:
            best, best_d = (ox, oy), d
    return best


class LookalikeViews:
    """n views of the map with a large part replaced by ground from elsewhere in it (module docstring)."""

    def __init__(self, rasters, n: int, seed: int, spec: QuerySpec):
        self.rasters, self.seed = rasters, int(seed)
        self.base = ViewSet(rasters, n, seed, dataclasses.replace(spec, photometric="none"))

    def __len__(self) -> int:
        return len(self.base)

    def __iter__(self):
        by_name = {r.path.name: r for r in self.rasters}
        for i, q in enumerate(self.base):
            rng = np.random.default_rng([self.seed, i, LOOKALIKE_STREAM])
            raster = by_name[q.source]
            g = raster.geo
            side_px = q.footprint_m / g.gsd_m
            cx, cy = (float(v) for v in g.latlon_to_pixel(q.lat, q.lon))
            h, w = q.image.shape[:2]
            hfov = self.base.spec.hfov_deg
            rad = footprint_radius_px(side_px, (w, h), q.tilt_deg, hfov) * 1.2
            ox, oy = _another_place(rng, g.width, g.height, rad, cx, cy, 2 * q.footprint_m / g.gsd_m)
            # the other place as the same camera sees it: same heading, scale and tilt
            other = render_from_raster(raster, ox, oy, q.yaw_deg, side_px, (w, h), q.tilt_deg, q.tilt_dir_deg, hfov)
            mask = _half_plane_mask(rng, w, h, rng.uniform(0.3, 0.5))
            img = q.image.copy()
            img[mask] = other[mask]
            yield dataclasses.replace(q, name=f"l{q.name}", image=augment.strong(rng, img))


class ElsewhereViews:
    """n views of another map (procedural ground of another seed), at the protocol's scales: truth NaN."""

    def __init__(self, rasters, n: int, seed: int, spec: QuerySpec, size_px: int = 1400, gsd_m: float = 0.3):
        from vpr_node.core.maps.procedural import generate_sample_map

        self.n, self.seed, self.spec, self.gsd_m = int(n), int(seed), spec, gsd_m
        self.ground = generate_sample_map(size_px, size_px, seed=10_000 + int(seed))

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        from vpr_node.core.views.queries import Query, footprint_radius_px, lower_to_fit, tilt_limit_deg

        spec, h_map = self.spec, self.ground.shape[0]
        cam = spec.camera_model()
        for i in range(self.n):
            rng = np.random.default_rng([self.seed, i, ELSEWHERE_STREAM])
            altitude = float(rng.uniform(*spec.altitude_m))
            footprint = cam.square_footprint_m(altitude)
            side_px = footprint / self.gsd_m
            tilt = float(rng.uniform(0, min(spec.max_tilt_deg, tilt_limit_deg(spec.camera, spec.hfov_deg))))
            r = footprint_radius_px(side_px, spec.camera, tilt, spec.hfov_deg)
            if 2 * r >= h_map:  # too wide for the other map: a lower view of it
                side_px, footprint, altitude, r = lower_to_fit(side_px, r, h_map, self.gsd_m, cam)
            cx, cy = rng.uniform(r, h_map - r, 2)
            yaw = float(rng.uniform(0, 360))
            view = render_view(self.ground, cx, cy, yaw, side_px, spec.camera, tilt, float(rng.uniform(0, 360)),
                               spec.hfov_deg)
            yield Query(f"e{i:05d}", math.nan, math.nan, yaw, 1.0, tilt, "elsewhere", augment.strong(rng, view),
                        altitude, footprint)
