"""Map sources (`load_maps`): a corner-coordinates table (filename, top-left lat/lon, bottom-right lat/lon,
width/height px: the format of wildnav's tiles.csv), GeoTIFF/COG orthophotos in any CRS (geotiff.py: windowed
reads, nodata, overviews) or an XYZ/slippy `z/x/y.png` folder (one zoom or several). Each is a north-up
georeferenced raster with windowed reads."""
from __future__ import annotations

import csv
import dataclasses
import math
import pathlib

import cv2
import numpy as np

from vpr_node.core.errors import ConfigurationError
from vpr_node.core.maps.geo import GeoImage
from vpr_node.core.maps.geotiff import GEOTIFF_SUFFIXES, load_geotiffs

MAPS_HELP = ("the map: corner-coordinates CSV, GeoTIFF/COG orthophoto (any CRS) or a folder of them, or an XYZ "
             "z/x/y folder")


@dataclasses.dataclass
class GeoRaster:
    """One north-up georeferenced image on disk."""

    path: pathlib.Path
    geo: GeoImage

    src_crs = ""  # the corner table's lat/lon
    min_valid = 0.0  # no nodata in PNG/JPEG maps

    def read_rgb(self) -> np.ndarray:
        img = cv2.imread(str(self.path), cv2.IMREAD_COLOR)
        if img is None:
            raise ConfigurationError(f"cannot read map image {self.path}")
        if (img.shape[1], img.shape[0]) != (self.geo.width, self.geo.height):
            self.geo = GeoImage(
                img.shape[1], img.shape[0], (self.geo.lat0, self.geo.lon0), (self.geo.lat1, self.geo.lon1)
            )
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    def read_window(self, x0: int, y0: int, side: int, out_px: int | None):
        """(RGB tile, valid fraction 1.0); PNG/JPEG cannot be read by window, so the image is held until release()."""
        img = getattr(self, "_cached", None)
        if img is None:
            img = self._cached = self.read_rgb()
        crop = img[y0:y0 + side, x0:x0 + side]
        if out_px:
            crop = cv2.resize(crop, (out_px, out_px), interpolation=cv2.INTER_AREA)
        return crop, 1.0

    def source_bounds(self, north, south, west, east) -> tuple:
        return ()

    def release(self) -> None:
        self._cached = None


def load_corner_table(csv_path) -> list[GeoRaster]:
    """Rasters listed in a corner-coordinates CSV (paths relative to the CSV's folder)."""
    csv_path = pathlib.Path(csv_path)
    if not csv_path.is_file():
        raise ConfigurationError(f"map table {csv_path} does not exist")
    out = []
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            out.append(GeoRaster(csv_path.parent / row["filename"],
                                 GeoImage(int(row["width_px"]), int(row["height_px"]),
                                          (float(row["top_left_lat"]), float(row["top_left_lon"])),
                                          (float(row["bottom_right_lat"]), float(row["bottom_right_lon"])))))
    if not out:
        raise ConfigurationError(f"map table {csv_path} lists no images")
    return out


def slippy_tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """(north, west, south, east) of web-mercator tile z/x/y."""
    n = 2.0 ** z

    def lat(yy):
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * yy / n))))

    return lat(y), x / n * 360.0 - 180.0, lat(y + 1), (x + 1) / n * 360.0 - 180.0


def load_xyz_folder(root, zooms=None) -> list[GeoRaster]:
    """Every `z/x/y.(png|jpg)` tile under root (at the given zoom levels, default all) as a georeferenced
    raster (read lazily)."""
    root = pathlib.Path(root)
    out = []
    for p in sorted(root.glob("*/*/*")):
        if p.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            continue
        z, x, y = int(p.parent.parent.name), int(p.parent.name), int(p.stem)
        if zooms and z not in zooms:
            continue
        north, west, south, east = slippy_tile_bounds(z, x, y)
        h, w = cv2.imread(str(p)).shape[:2]
        out.append(GeoRaster(p, GeoImage(w, h, (north, west), (south, east))))
    if not out:
        raise ConfigurationError(f"no z/x/y tiles under {root}" + (f" at zoom {sorted(zooms)}" if zooms else ""))
    return out


def load_maps(path, xyz_zooms=None) -> list:
    """The mission map, whatever its form: a corner-coordinates .csv, a GeoTIFF (.tif/.tiff) or a folder of them,
    or an XYZ z/x/y folder (optionally only some zoom levels)."""

    p = pathlib.Path(path)
    if not p.exists():
        raise ConfigurationError(f"map {p} does not exist")
    if p.is_file() and p.suffix.lower() == ".csv":
        return load_corner_table(p)
    if p.suffix.lower() in GEOTIFF_SUFFIXES or (p.is_dir() and any(
            f.suffix.lower() in GEOTIFF_SUFFIXES for f in p.iterdir())):
        return load_geotiffs(p)
    if p.is_dir():
        return load_xyz_folder(p, xyz_zooms)
    raise ConfigurationError(f"map {p}: expected a corner-coordinates .csv, a GeoTIFF or an XYZ z/x/y folder")
