"""Tile corpora: cut georeferenced north-up rasters into square tiles of a set ground size.

Sources: a corner-coordinates table (filename, top-left lat/lon, bottom-right lat/lon, width/height
px: the format of wildnav's tiles.csv) or an XYZ/slippy `z/x/y.png` folder. A corpus folder holds
`tiles/*.png` plus `tiles.csv` (tile id, zoom, centre lat/lon, bounds, source, pixel box).
"""
from __future__ import annotations

import csv
import dataclasses
import math
import pathlib

import cv2
import numpy as np

from .errors import ConfigurationError
from .geo import GeoImage, slippy_zoom_for_gsd
from .types import TileId

TILE_FIELDS = ("tile_id", "zoom", "lat", "lon", "north", "south", "west", "east", "source", "x0", "y0", "x1", "y1", "path")


@dataclasses.dataclass
class GeoRaster:
    """One north-up georeferenced image on disk."""

    path: pathlib.Path
    geo: GeoImage

    def read_rgb(self) -> np.ndarray:
        img = cv2.imread(str(self.path), cv2.IMREAD_COLOR)
        if img is None:
            raise ConfigurationError(f"cannot read map image {self.path}")
        if (img.shape[1], img.shape[0]) != (self.geo.width, self.geo.height):
            self.geo = GeoImage(img.shape[1], img.shape[0], (self.geo.lat0, self.geo.lon0), (self.geo.lat1, self.geo.lon1))
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


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


def load_xyz_folder(root) -> list[GeoRaster]:
    """Every `z/x/y.(png|jpg)` tile under root as a georeferenced raster (256 px assumed, read lazily)."""
    root = pathlib.Path(root)
    out = []
    for p in sorted(root.glob("*/*/*")):
        if p.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            continue
        z, x, y = int(p.parent.parent.name), int(p.parent.name), int(p.stem)
        north, west, south, east = slippy_tile_bounds(z, x, y)
        h, w = cv2.imread(str(p)).shape[:2]
        out.append(GeoRaster(p, GeoImage(w, h, (north, west), (south, east))))
    if not out:
        raise ConfigurationError(f"no z/x/y tiles under {root}")
    return out


@dataclasses.dataclass
class TileRecord:
    tile_id: str
    zoom: int
    lat: float
    lon: float
    north: float
    south: float
    west: float
    east: float
    source: str
    x0: int
    y0: int
    x1: int
    y1: int
    path: str

    def tile(self) -> TileId:
        return TileId(self.zoom, self.lat, self.lon, self.tile_id)


def cut_tiles(rasters: list[GeoRaster], out_dir, tile_m: float = 60.0, overlap: float = 0.5,
              tile_px: int | None = None, progress: bool = True) -> list[TileRecord]:
    """Cut every raster into square tiles of `tile_m` metres with fractional `overlap`; write the corpus."""
    from tqdm import tqdm

    out_dir = pathlib.Path(out_dir)
    (out_dir / "tiles").mkdir(parents=True, exist_ok=True)
    if not 0.0 <= overlap < 1.0:
        raise ConfigurationError(f"tile overlap must be in [0, 1), got {overlap}")
    records: list[TileRecord] = []
    for r in tqdm(rasters, desc="cutting tiles", disable=not progress, unit="map"):
        img = r.read_rgb()
        side = int(round(tile_m / r.geo.gsd_m))
        if side > min(img.shape[:2]):
            raise ConfigurationError(f"tile size {tile_m} m ({side} px) is larger than map {r.path.name}")
        stride = max(1, int(round(side * (1.0 - overlap))))
        zoom = slippy_zoom_for_gsd(tile_m / (tile_px or side), (r.geo.lat0 + r.geo.lat1) / 2)
        ys = list(range(0, img.shape[0] - side + 1, stride))
        xs = list(range(0, img.shape[1] - side + 1, stride))
        for y0 in ys:
            for x0 in xs:
                crop = img[y0:y0 + side, x0:x0 + side]
                if tile_px:
                    crop = cv2.resize(crop, (tile_px, tile_px), interpolation=cv2.INTER_AREA)
                (lat, lon) = (float(v) for v in r.geo.pixel_to_latlon(x0 + side / 2, y0 + side / 2))
                north, west = (float(v) for v in r.geo.pixel_to_latlon(x0, y0))
                south, east = (float(v) for v in r.geo.pixel_to_latlon(x0 + side, y0 + side))
                tid = f"{r.path.stem}_{y0:05d}_{x0:05d}"
                rel = f"tiles/{tid}.png"
                cv2.imwrite(str(out_dir / rel), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
                records.append(TileRecord(tid, zoom, lat, lon, north, south, west, east, r.path.name,
                                          x0, y0, x0 + side, y0 + side, rel))
    write_tile_table(out_dir / "tiles.csv", records)
    return records


def write_tile_table(path, records: list[TileRecord]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=TILE_FIELDS)
        w.writeheader()
        for r in records:
            w.writerow(dataclasses.asdict(r))


def read_tile_table(path) -> list[TileRecord]:
    path = pathlib.Path(path)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    types = {f.name: f.type for f in dataclasses.fields(TileRecord)}
    conv = {"int": int, "float": float, "str": str}
    return [TileRecord(**{k: conv[types[k]](v) for k, v in row.items()}) for row in rows]


class TileCorpus:
    """A corpus folder: tile table + lazily read tile images."""

    def __init__(self, root):
        self.root = pathlib.Path(root)
        table = self.root / "tiles.csv"
        if not table.is_file():
            raise ConfigurationError(f"{self.root} is not a tile corpus (no tiles.csv); build one with `vpr make-corpus`")
        self.records = read_tile_table(table)

    def __len__(self):
        return len(self.records)

    def image(self, i: int) -> np.ndarray:
        p = self.root / self.records[i].path
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise ConfigurationError(f"tile image {p} is missing or unreadable")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
