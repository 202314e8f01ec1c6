"""Tile corpora: cut georeferenced north-up rasters into square tiles of set ground sizes.

Sources (`load_maps`): a corner-coordinates table (filename, top-left lat/lon, bottom-right lat/lon,
width/height px: the format of wildnav's tiles.csv), GeoTIFF/COG orthophotos in any CRS (geotiff.py:
windowed reads, nodata, overviews) or an XYZ/slippy `z/x/y.png` folder (one zoom or several). A corpus folder holds
`tiles/*.png`, `tiles.csv` (tile id, zoom, centre lat/lon, bounds, source, pixel box, ground size)
and `corpus.json` (the tile plan: ground sizes and strides, and the camera/altitudes they came from).

Tile ground size should match what the camera sees: `plan_for_camera` takes the planned altitude
range and the camera (camera.py) and picks one size or several (a multi-scale corpus), with tile
centres close enough that every ground point is within reach of the recall radius.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import pathlib

import cv2
import numpy as np

from vpr_node.core.errors import ConfigurationError
from vpr_node.core.geo import GeoImage, slippy_zoom_for_gsd
from vpr_node.core.types import TileId

TILE_FIELDS = (
    "tile_id",
    "zoom",
    "lat",
    "lon",
    "north",
    "south",
    "west",
    "east",
    "source",
    "x0",
    "y0",
    "x1",
    "y1",
    "path",
    "ground_m",
    "src_crs",
    "src_bounds",
)


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
    from vpr_node.core.geotiff import GEOTIFF_SUFFIXES, load_geotiffs

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
    ground_m: float = 0.0  # tile side on the ground (metres); 0 in tables written before it was recorded
    src_crs: str = ""  # GeoTIFF sources: the orthophoto's CRS ...
    src_bounds: str = ""  # ... and the tile's "minx miny maxx maxy" in it

    def tile(self) -> TileId:
        return TileId(self.zoom, self.lat, self.lon, self.tile_id)


@dataclasses.dataclass
class TilePlan:
    """Tile ground sizes and centre spacings of a corpus, and why (written as corpus.json)."""

    scales: list[tuple[float, float]]  # (tile ground size m, stride m)
    reason: str = "explicit"
    camera: dict | None = None
    altitude_m: tuple[float, float] | None = None
    radius_m: float | None = None

    @classmethod
    def single(cls, tile_m: float = 60.0, overlap: float = 0.5) -> "TilePlan":
        if not 0.0 <= overlap < 1.0:
            raise ConfigurationError(f"tile overlap must be in [0, 1), got {overlap}")
        return cls(
            [(float(tile_m), float(tile_m) * (1.0 - overlap))], reason=f"explicit: {tile_m:g} m, overlap {overlap:g}"
        )

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def read(cls, corpus_dir) -> "TilePlan | None":
        p = pathlib.Path(corpus_dir) / "corpus.json"
        if not p.is_file():
            return None
        d = json.loads(p.read_text())
        d["scales"] = [tuple(x) for x in d["scales"]]
        d["altitude_m"] = tuple(d["altitude_m"]) if d.get("altitude_m") else None
        return cls(**d)


def plan_for_camera(camera, altitude_min_m: float, altitude_max_m: float, radius_m: float = 25.0,
                    max_scale_step: float = 1.5) -> TilePlan:
    """Tiles matched to the camera's ground footprint over the planned altitude range (camera.py)."""
    from vpr_node.core.camera import stride_for_radius, tile_sizes_for_altitudes
    sizes = tile_sizes_for_altitudes(camera, altitude_min_m, altitude_max_m, max_scale_step)
    lo, hi = camera.square_footprint_m(altitude_min_m), camera.square_footprint_m(altitude_max_m)
    return TilePlan(
        [(t, stride_for_radius(t, radius_m)) for t in sizes],
        reason=f"camera footprint {lo:.1f}-{hi:.1f} m at {altitude_min_m:g}-{altitude_max_m:g} m "
        f"(hfov {camera.hfov_deg:.1f} deg, {camera.width_px}x{camera.height_px}); scales at most "
        f"x{max_scale_step:g} apart; stride keeps every point within 0.85 x {radius_m:g} m of a centre",
        camera={
            "width_px": camera.width_px,
            "height_px": camera.height_px,
            "fx": camera.fx,
            "hfov_deg": round(camera.hfov_deg, 3),
        },
        altitude_m=(float(altitude_min_m), float(altitude_max_m)),
        radius_m=float(radius_m),
    )


def cut_corpus(rasters: list[GeoRaster], out_dir, plan: TilePlan, tile_px: int | None = 320,
               progress: bool = True) -> list[TileRecord]:
    """Cut every raster at every scale of the plan; write tiles/, tiles.csv and corpus.json."""
    from tqdm import tqdm

    out_dir = pathlib.Path(out_dir)
    (out_dir / "tiles").mkdir(parents=True, exist_ok=True)
    multi = len(plan.scales) > 1
    records: list[TileRecord] = []
    skipped = 0
    for r in tqdm(rasters, desc="cutting tiles", disable=not progress, unit="map"):
        width, height = r.geo.width, r.geo.height
        for tile_m, stride_m in plan.scales:
            side = int(round(tile_m / r.geo.gsd_m))
            if side > min(width, height):
                raise ConfigurationError(f"tile size {tile_m} m ({side} px) is larger than map {r.path.name}")
            stride = max(1, int(round(stride_m / r.geo.gsd_m)))
            zoom = slippy_zoom_for_gsd(tile_m / (tile_px or side), (r.geo.lat0 + r.geo.lat1) / 2)
            for y0 in range(0, height - side + 1, stride):
                for x0 in range(0, width - side + 1, stride):
                    crop, valid = r.read_window(x0, y0, side, tile_px)
                    if valid < r.min_valid:
                        skipped += 1  # mostly nodata (outside the orthophoto's footprint)
                        continue
                    (lat, lon) = (float(v) for v in r.geo.pixel_to_latlon(x0 + side / 2, y0 + side / 2))
                    north, west = (float(v) for v in r.geo.pixel_to_latlon(x0, y0))
                    south, east = (float(v) for v in r.geo.pixel_to_latlon(x0 + side, y0 + side))
                    tid = f"{r.path.stem}{f'_m{tile_m:g}' if multi else ''}_{y0:05d}_{x0:05d}"
                    rel = f"tiles/{tid}.png"
                    cv2.imwrite(str(out_dir / rel), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
                    src_bounds = " ".join(f"{v:.3f}" for v in r.source_bounds(north, south, west, east))
                    records.append(TileRecord(tid, zoom, lat, lon, north, south, west, east, r.path.name,
                                              x0, y0, x0 + side, y0 + side, rel, float(tile_m), r.src_crs,
                                              src_bounds))
        r.release()
    if not records:
        raise ConfigurationError(f"no tiles cut: every window was mostly nodata or the maps are smaller than "
                                 f"{min(t for t, _ in plan.scales):g} m")
    write_tile_table(out_dir / "tiles.csv", records)
    (out_dir / "skipped.json").write_text(json.dumps({"nodata_windows": skipped}) + "\n")
    (out_dir / "corpus.json").write_text(json.dumps(plan.to_json(), indent=2) + "\n")
    return records


def cut_tiles(rasters: list[GeoRaster], out_dir, tile_m: float = 60.0, overlap: float = 0.5,
              tile_px: int | None = None, progress: bool = True) -> list[TileRecord]:
    """One scale: square tiles of `tile_m` metres with fractional `overlap`."""
    return cut_corpus(rasters, out_dir, TilePlan.single(tile_m, overlap), tile_px, progress)


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


def read_tile_columns(path, fields=("tile_id", "zoom", "lat", "lon", "ground_m")) -> dict[str, np.ndarray]:
    """Some columns of a tile table as arrays, without a Python object per tile: what the node keeps of a table of
    hundreds of thousands of tiles (TileRecord objects would take ~1 KB each)."""
    types = {f.name: f.type for f in dataclasses.fields(TileRecord)}
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        present = [c for c in fields if c in header]
        cols: dict[str, list] = {c: [] for c in present}
        where = [(cols[c], header.index(c)) for c in present]
        for row in reader:
            for col, i in where:
                col.append(row[i])
    conv = {"int": np.int32, "float": np.float64, "str": object}
    return {c: np.array(v, dtype=conv[types[c]]) for c, v in cols.items()}


class TileCorpus:
    """A corpus folder: tile table + lazily read tile images."""

    def __init__(self, root):
        self.root = pathlib.Path(root)
        table = self.root / "tiles.csv"
        if not table.is_file():
            raise ConfigurationError(
                f"{self.root} is not a tile corpus (no tiles.csv); build one with `vpr make-corpus`"
            )
        self.records = read_tile_table(table)
        self.plan = TilePlan.read(self.root)

    def __len__(self):
        return len(self.records)

    def image(self, i: int) -> np.ndarray:
        p = self.root / self.records[i].path
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise ConfigurationError(f"tile image {p} is missing or unreadable")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
