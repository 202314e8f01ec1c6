"""Local features of the mission map at one ground resolution, prepared before flight (indexing/map_features.py
makes them), so that in flight only the frame is extracted and a candidate's map side is a look-up
(`MapFeatures.window`). The index folder holds, all hashed in its manifest:

  map_features/<extractor>/meta.json      matcher identity, ground resolution, origin, grid, counts
  map_features/<extractor>/features.npy   float32 (N, 3 + D): east, north (metres from the origin), score,
                                          descriptor; sorted by cell
  map_features/<extractor>/cells.npy      int64 (cells + 1,): the first row of each cell (row-major), and N
  map_features/xfeat/xfeat.onnx, lighterglue.onnx, matcher_onnx.json   the exported matcher (parity with PyTorch)

A window reads its cells' rows with pread (never a memory map: index/loaded.DescriptorRows).
"""
from __future__ import annotations

import dataclasses
import json
import math
import pathlib

import numpy as np

from vpr_node.core.errors import ConfigurationError, IndexUnavailableError
from vpr_node.core.index.loaded import DescriptorRows
from vpr_node.core.io.hashing import sha256_file
from vpr_node.core.maps.geo import metres_per_degree
from vpr_node.core.verification.matchers import FEATURES_OF
from vpr_node.core.verification.matchers.base import LocalFeatures

FOLDER = "map_features"  # index_dir/map_features/<extractor>/: one folder per learned extractor (xfeat, aliked)


def features_dir(index_dir, matcher_name: str) -> pathlib.Path:
    """Where a matcher's map features live (xfeat-mnn matches XFeat's: map_features/xfeat)."""
    return pathlib.Path(index_dir) / FOLDER / FEATURES_OF.get(matcher_name, matcher_name)
META, FEATURES, CELLS = "meta.json", "features.npy", "cells.npy"
FORMAT_VERSION = 1


class LocalFrame:
    """Equirectangular east/north metres about an origin: exact to centimetres over a mission map."""

    def __init__(self, lat0: float, lon0: float):
        self.lat0, self.lon0 = float(lat0), float(lon0)
        self.m_lat, self.m_lon = metres_per_degree(self.lat0)

    def to_en(self, lat, lon):
        return (np.asarray(lon, np.float64) - self.lon0) * self.m_lon, (np.asarray(lat, np.float64) - self.lat0) * \
            self.m_lat

    def to_latlon(self, east, north):
        return self.lat0 + np.asarray(north, np.float64) / self.m_lat, self.lon0 + np.asarray(east, np.float64) / \
            self.m_lon


@dataclasses.dataclass
class Window:
    """A square of the map at the features' ground resolution, centred on (east, north) metres: window pixels
    (x right = east, y down = south) <-> lat/lon."""

    frame: LocalFrame
    east: float
    north: float
    half_m: float
    gsd_m: float
    label: str = ""

    @property
    def size(self) -> tuple[int, int]:
        n = int(math.ceil(2 * self.half_m / self.gsd_m))
        return n, n

    def to_px(self, east, north):
        return (np.asarray(east) - (self.east - self.half_m)) / self.gsd_m, \
            ((self.north + self.half_m) - np.asarray(north)) / self.gsd_m

    def to_latlon(self, x: float, y: float) -> tuple[float, float]:
        lat, lon = self.frame.to_latlon(self.east - self.half_m + x * self.gsd_m, self.north + self.half_m
                                        - y * self.gsd_m)
        return float(lat), float(lon)

    def metres_per_pixel(self) -> tuple[float, float]:
        return self.gsd_m, self.gsd_m


class MapFeatures:
    """An index folder's map features, checked against the manifest, read by window."""

    def __init__(self, index_dir, matcher_name: str = "xfeat"):
        self.index_dir = pathlib.Path(index_dir)
        self.root = features_dir(index_dir, matcher_name)
        rel = self.root.relative_to(self.index_dir).as_posix()
        extractor = self.root.name
        if not (self.root / META).is_file():
            raise ConfigurationError(f"index {index_dir} has no {extractor} map features ({rel}/) for the learned "
                                     f"matcher {matcher_name}: run `vpr map-features --index {index_dir} --maps MAP "
                                     f"--map-features-matcher {extractor}` (prepare-mission makes xfeat's), or verify "
                                     f"with a classic matcher only (fallback_matcher '')", field="map_features")
        files = json.loads((self.index_dir / "manifest.json").read_text()).get("files", {})
        for name in (META, CELLS):
            if files.get(f"{rel}/{name}") != sha256_file(self.root / name):
                raise IndexUnavailableError(f"{self.root / name} differs from the manifest's hash: run `vpr "
                                            f"map-features` again", file=f"{rel}/{name}")
        self.meta = json.loads((self.root / META).read_text())
        self.frame = LocalFrame(*self.meta["origin"])
        self.gsd_m = float(self.meta["gsd_m"])
        self.cells = np.load(self.root / CELLS)
        self.rows = DescriptorRows(self.root / FEATURES)
        if len(self.rows) != int(self.cells[-1]):
            raise IndexUnavailableError(f"{self.root / FEATURES} holds {len(self.rows)} rows, its cells "
                                        f"{int(self.cells[-1])}: it is truncated; run `vpr map-features` again",
                                        file=f"{rel}/{FEATURES}")
        self.ncy, self.ncx = self.meta["cells"]
        g = self.meta["grid"]
        self.west, self.north, self.cell_m = g["west_m"], g["north_m"], g["cell_m"]

    def check_matcher(self, matcher) -> None:
        """A ConfigurationError, with what to run, unless these features were made by this matcher's extractor."""
        want = {"matcher": FEATURES_OF.get(matcher.name, matcher.name), "version": matcher.version}
        have = {"matcher": self.meta.get("matcher"), "version": self.meta.get("version")}
        if want != have:
            raise ConfigurationError(f"the index's map features come from {have['matcher']} version {have['version']}, "
                                     f"the verifier's {matcher.name} needs {want['matcher']} version "
                                     f"{want['version']}: run `vpr map-features --index {self.index_dir} --maps MAP "
                                     f"--map-features-matcher {want['matcher']}`", field="map_features")

    def window(self, lat: float, lon: float, half_m: float, max_features: int, label: str = "") \
            -> tuple[LocalFeatures, Window]:
        """The strongest `max_features` features within half_m of (lat, lon), in the window's pixels."""
        e, n = (float(v) for v in self.frame.to_en(lat, lon))
        win = Window(self.frame, e, n, float(half_m), self.gsd_m, label)
        cx0 = max(0, int((e - half_m - self.west) // self.cell_m))
        cx1 = min(self.ncx - 1, int((e + half_m - self.west) // self.cell_m))
        cy0 = max(0, int((self.north - (n + half_m)) // self.cell_m))
        cy1 = min(self.ncy - 1, int((self.north - (n - half_m)) // self.cell_m))
        dim = self.rows.shape[1] - 3
        if cx0 > cx1 or cy0 > cy1:
            return LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, dim), np.float32), win.size,
                                 np.zeros(0, np.float32)), win
        runs = [np.arange(self.cells[cy * self.ncx + cx0], self.cells[cy * self.ncx + cx1 + 1])
                for cy in range(cy0, cy1 + 1)]
        d = self.rows[np.concatenate(runs)]
        x, y = win.to_px(d[:, 0], d[:, 1])
        w = win.size[0]
        inside = np.flatnonzero((x >= 0) & (x < w) & (y >= 0) & (y < w))
        if len(inside) > max_features:
            inside = inside[np.argsort(-d[inside, 2], kind="stable")[:max_features]]
        return LocalFeatures(np.stack([x[inside], y[inside]], 1).astype(np.float32), d[inside, 3:],
                             win.size, d[inside, 2]), win

    def covers(self, lat: float, lon: float) -> bool:
        e, n = (float(v) for v in self.frame.to_en(lat, lon))
        return self.west <= e <= self.west + self.ncx * self.cell_m and self.north - self.ncy * self.cell_m <= n \
            <= self.north

    def close(self) -> None:
        self.rows.close()
