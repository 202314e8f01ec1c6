"""A mission-sized map with real imagery inside: procedural landscape (procedural.py) around real georeferenced
rasters (e.g. the developer maps), written as one tiled GeoTIFF on a north-up EPSG:4326 grid whose pixels are
square on the ground, centred on the real imagery and keeping its true coordinates.

Recall measured on the real part of such a map is recall on real imagery among mission-scale distractors.
Written block by block (memory: the real rasters resampled once, plus one block), so 100 km2 fits any machine.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib

import cv2
import numpy as np

from vpr_node.core.maps.geo import metres_per_degree
from vpr_node.core.maps.procedural import generate_sample_map

PROCEDURAL_GSD_M = 0.3  # the scale the procedural generator draws at (buildings 4-12 m, trees 1-2.5 m)


@dataclasses.dataclass(frozen=True)
class RealPart:
    """Where one real raster lies on the composite (lat/lon bounds)."""

    name: str
    north: float
    south: float
    west: float
    east: float

    def contains(self, lat, lon):
        lat, lon = np.asarray(lat), np.asarray(lon)
        return (lat <= self.north) & (lat >= self.south) & (lon >= self.west) & (lon <= self.east)


def real_mask(parts: list[RealPart], lat, lon) -> np.ndarray:
    """True where (lat, lon) lies on real imagery."""
    out = np.zeros(np.shape(lat), bool)
    for p in parts:
        out |= p.contains(lat, lon)
    return out


def _raster_bounds(r) -> tuple[float, float, float, float]:
    """(north, south, west, east) of one raster."""
    g = r.geo
    return max(g.lat0, g.lat1), min(g.lat0, g.lat1), min(g.lon0, g.lon1), max(g.lon0, g.lon1)


def write_composite_map(path, real_rasters, size_m: float = 10_000.0, gsd_m: float = 0.25, seed: int = 21,
                        block_m: float = 420.0, progress: bool = True) -> list[RealPart]:
    """Write the composite GeoTIFF (skipped when `path` exists for the same settings) and return where the real
    rasters lie on it (also in `<path>.json`)."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.transform import from_origin
    from rasterio.windows import Window
    from tqdm import tqdm

    path = pathlib.Path(path)
    meta_path = path.with_suffix(".json")
    key = {"real": sorted(str(r.path) for r in real_rasters), "size_m": size_m, "gsd_m": gsd_m, "seed": seed,
           "block_m": block_m}
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("key") == key:
            return [RealPart(**p) for p in meta["parts"]]
    bounds = [_raster_bounds(r) for r in real_rasters]
    north, south = max(b[0] for b in bounds), min(b[1] for b in bounds)
    west, east = min(b[2] for b in bounds), max(b[3] for b in bounds)
    lat_c, lon_c = (north + south) / 2, (west + east) / 2
    m_lat, m_lon = metres_per_degree(lat_c)
    res_lat, res_lon = gsd_m / m_lat, gsd_m / m_lon
    side = int(round(size_m / gsd_m))
    top, left = lat_c + side / 2 * res_lat, lon_c - side / 2 * res_lon

    placed = []  # (x0, y0, resampled RGB) of each real raster on the composite grid
    parts = []
    for r, (n, s, w, e) in zip(real_rasters, bounds, strict=True):
        x0, y0 = int(round((w - left) / res_lon)), int(round((top - n) / res_lat))
        x1, y1 = int(round((e - left) / res_lon)), int(round((top - s) / res_lat))
        rgb = cv2.resize(r.read_rgb(), (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
        r.release()
        placed.append((x0, y0, rgb))
        # the bounds of the pixels actually written
        parts.append(RealPart(r.path.name, top - y0 * res_lat, top - y1 * res_lat, left + x0 * res_lon,
                              left + x1 * res_lon))

    block_px = int(round(block_m / gsd_m))
    gen_px = int(round(block_m / PROCEDURAL_GSD_M))
    nb = -(-side // block_px)
    profile = {"driver": "GTiff", "width": side, "height": side, "count": 3, "dtype": "uint8", "crs": "EPSG:4326",
               "transform": from_origin(left, top, res_lon, res_lat), "tiled": True, "blockxsize": 256,
               "blockysize": 256, "compress": "deflate", "photometric": "RGB", "BIGTIFF": "IF_SAFER"}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        for b in tqdm(range(nb * nb), desc="composite map blocks", unit="block", disable=not progress):
            by, bx = divmod(b, nb)
            bx0, by0 = bx * block_px, by * block_px
            h, w = min(block_px, side - by0), min(block_px, side - bx0)
            img = cv2.resize(generate_sample_map(gen_px, gen_px, seed + b), (block_px, block_px),
                             interpolation=cv2.INTER_LINEAR)[:h, :w]
            for x0, y0, rgb in placed:  # paste the real imagery that falls into this block
                ix0, iy0 = max(x0, bx0), max(y0, by0)
                ix1, iy1 = min(x0 + rgb.shape[1], bx0 + w), min(y0 + rgb.shape[0], by0 + h)
                if ix0 < ix1 and iy0 < iy1:
                    img[iy0 - by0:iy1 - by0, ix0 - bx0:ix1 - bx0] = rgb[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
            dst.write(np.ascontiguousarray(img.transpose(2, 0, 1)), window=Window(bx0, by0, w, h))
        dst.build_overviews([2, 4, 8, 16, 32], Resampling.average)
    tmp.replace(path)
    meta_path.write_text(json.dumps({"key": key, "parts": [dataclasses.asdict(p) for p in parts],
                                     "centre": [lat_c, lon_c], "size_m": size_m, "gsd_m": gsd_m}, indent=1) + "\n")
    return parts
