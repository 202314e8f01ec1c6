"""The tile corpus folder: `tiles/*.png`, `tiles.csv` (tile id, zoom, centre lat/lon, bounds, source, pixel box,
ground size) and `corpus.json` (the tile plan: ground sizes and strides, and the camera/altitudes they came
from). tiling.py writes one; TileCorpus reads it; the index folder keeps a copy of the table.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import pathlib

import cv2
import numpy as np

from vpr_node.core.errors import ConfigurationError
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
