"""The map pixels a frame is verified against: the tile images an index folder owns (`tiles/`, each checked
against its SHA-256 in `tile_images.sha256` when first read), their ground geometry (bounds, metres per pixel),
and their local features, cached with a bound on memory (least recently used first out)."""
from __future__ import annotations

import collections
import hashlib
import json
import pathlib
import threading

import cv2
import numpy as np

from vpr_node.core.errors import ConfigurationError, IndexUnavailableError
from vpr_node.core.index.folder import TILE_IMAGES
from vpr_node.core.io.hashing import sha256_file
from vpr_node.core.maps.geo import metres_per_degree
from vpr_node.core.maps.tiles import read_tile_columns
from vpr_node.core.verification.matchers.base import LocalFeatures

TILE_FIELDS = ("tile_id", "lat", "lon", "north", "south", "west", "east", "path", "ground_m")


class TileImages:
    """Tile pixels, geometry and cached features of one index folder (rows of its tile table)."""

    def __init__(self, index_dir, cache_mib: float = 256.0):
        self.root = pathlib.Path(index_dir)
        mpath = self.root / "manifest.json"
        try:
            manifest = json.loads(mpath.read_text())
        except (OSError, ValueError) as exc:
            raise IndexUnavailableError(f"index folder {self.root} has no readable manifest.json: {exc}") from exc
        listing = self.root / TILE_IMAGES
        if not listing.is_file():
            raise ConfigurationError(f"index {self.root} carries no tile images ({TILE_IMAGES} is missing): rebuild it "
                                     f"with this release's `vpr build-index` or `vpr prepare-mission`",
                                     field="tile_images")
        if manifest.get("files", {}).get(TILE_IMAGES) != sha256_file(listing):
            raise IndexUnavailableError(f"{listing} was changed after the build (its SHA-256 differs from the "
                                        f"manifest's); rebuild the index", file=TILE_IMAGES)
        self.manifest = manifest
        self.index_id = manifest["files"]["index.faiss"][:16]
        self._sha = {}
        for line in listing.read_text().splitlines():
            digest, _, rel = line.partition("  ")
            self._sha[rel] = digest
        cols = read_tile_columns(self.root / "tiles.csv", TILE_FIELDS)
        self.cols = cols
        self.row_of = {str(t): i for i, t in enumerate(cols["tile_id"])}
        self.cache_bytes = int(cache_mib * 2**20)
        self._cache: collections.OrderedDict = collections.OrderedDict()
        self._cached_bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.row_of)

    def row(self, tile_id: str) -> int:
        if tile_id not in self.row_of:
            raise IndexUnavailableError(f"tile {tile_id!r} is not in the index's tile table ({self.root}): the result "
                                        f"comes from another index", tile_id=tile_id)
        return self.row_of[tile_id]

    def image(self, row: int) -> np.ndarray:
        """RGB uint8 pixels of a tile, checked against their SHA-256."""
        rel = str(self.cols["path"][row])
        path = self.root / rel
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise IndexUnavailableError(f"tile image {path} is missing: {exc}", tile_id=str(self.cols["tile_id"][row]),
                                        file=rel) from exc
        if hashlib.sha256(data).hexdigest() != self._sha.get(rel):
            raise IndexUnavailableError(f"tile image {path} is corrupt or was changed after the build",
                                        tile_id=str(self.cols["tile_id"][row]), file=rel)
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise IndexUnavailableError(f"tile image {path} cannot be decoded", file=rel)
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    def features(self, row: int, matcher, max_features: int) -> LocalFeatures:
        """The tile's local features by a classic matcher (computed on first use, kept while the cache has room)."""
        key = (row, matcher.name, max_features)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        feats = matcher.extract(self.image(row), max_features)
        with self._lock:
            self._cache[key] = feats
            self._cached_bytes += feats.nbytes
            while self._cached_bytes > self.cache_bytes and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._cached_bytes -= old.nbytes
        return feats

    @property
    def cached_mib(self) -> float:
        return self._cached_bytes / 2**20

    def tile_to_latlon(self, row: int, x: float, y: float, size: tuple[int, int]) -> tuple[float, float]:
        """lat/lon of pixel (x, y) of a tile image of `size` (width, height): north-up, linear within its bounds."""
        c = self.cols
        w, h = size
        return (float(c["north"][row] + (c["south"][row] - c["north"][row]) * y / h),
                float(c["west"][row] + (c["east"][row] - c["west"][row]) * x / w))

    def ground_m(self, row: int) -> float:
        """The tile's ground side (m): the table's, or from its bounds in tables written before it was recorded."""
        g = float(self.cols["ground_m"][row]) if "ground_m" in self.cols else 0.0
        if g > 0:
            return g
        m_lat, _ = metres_per_degree(float(self.cols["lat"][row]))
        return abs(float(self.cols["north"][row]) - float(self.cols["south"][row])) * m_lat

    def where(self, row: int, size: tuple[int, int]) -> "TilePixels":
        """A tile image of `size` as a map side of a fit (to_latlon, metres_per_pixel), like a map-feature window."""
        return TilePixels(self, row, size)

    def metres_per_pixel(self, row: int, size: tuple[int, int]) -> tuple[float, float]:
        """(east, north) metres per tile pixel."""
        c = self.cols
        m_lat, m_lon = metres_per_degree(float(c["lat"][row]))
        return (abs(c["east"][row] - c["west"][row]) * m_lon / size[0],
                abs(c["north"][row] - c["south"][row]) * m_lat / size[1])


class TilePixels:
    """Pixels of one tile image at one size: where a fix made against the tile lies."""

    def __init__(self, tiles: TileImages, row: int, size: tuple[int, int]):
        self.tiles, self.row, self.size = tiles, row, size

    def to_latlon(self, x: float, y: float) -> tuple[float, float]:
        return self.tiles.tile_to_latlon(self.row, x, y, self.size)

    def metres_per_pixel(self) -> tuple[float, float]:
        return self.tiles.metres_per_pixel(self.row, self.size)
