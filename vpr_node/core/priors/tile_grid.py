"""The tiles within a radius of a position, without measuring the distance to every tile: tile centres bucketed
into square cells of a local metric plane, so a position prior's selection reads only the cells its radius touches
and measures the exact great-circle distance there (the same rows, in the same order, as the distance to every
tile centre: test_priors.py).

The distance to every centre grows with the map (BENCHMARKS.md "search restricted by a position prior"); the grid
is NumPy only (a SciPy KD-tree would import SciPy into the node)."""
from __future__ import annotations

import numpy as np

from vpr_node.core.maps.geo import haversine_m, metres_per_degree

DEFAULT_CELL_M = 250.0
_MARGIN = 1.01  # the box in degrees is widened this much: metres_per_degree is a local approximation


class TileGrid:
    def __init__(self, lat, lon, cell_m: float = DEFAULT_CELL_M):
        self.lat, self.lon = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
        self.cell_m = float(cell_m)
        if len(self.lat) == 0:
            return  # within() finds nothing
        self.lat0, self.lon0 = float(self.lat.min()), float(self.lon.min())
        self.m_lat, self.m_lon = metres_per_degree(float(self.lat.mean()))
        # a sparse, wide tile table (maps far apart) gets wider cells: at most ~4 cells a tile
        area_m2 = ((self.lat.max() - self.lat0) * self.m_lat + 1.0) * ((self.lon.max() - self.lon0) * self.m_lon + 1.0)
        self.cell_m = max(self.cell_m, float(np.sqrt(area_m2 / (4 * len(self.lat) + 1024))))
        ix, iy = self._cells(self.lat, self.lon)
        self.nx, self.ny = int(ix.max()) + 1, int(iy.max()) + 1
        key = iy * self.nx + ix
        self.order = np.argsort(key, kind="stable")
        self.starts = np.searchsorted(key[self.order], np.arange(self.nx * self.ny + 1))

    def _cells(self, lat, lon) -> tuple[np.ndarray, np.ndarray]:
        ix = np.floor((np.asarray(lon) - self.lon0) * self.m_lon / self.cell_m).astype(np.int64)
        iy = np.floor((np.asarray(lat) - self.lat0) * self.m_lat / self.cell_m).astype(np.int64)
        return ix, iy

    def within(self, lat: float, lon: float, radius_m: float) -> np.ndarray:
        """Rows (ascending) of the tiles whose centre is within radius_m of (lat, lon)."""
        if len(self.lat) == 0 or radius_m < 0:
            return np.zeros(0, np.int64)
        m_lat, m_lon = metres_per_degree(lat)
        dlat = radius_m / m_lat * _MARGIN
        dlon = radius_m / max(m_lon, 1e-9) * _MARGIN
        (x0, x1), (y0, y1) = self._cells([lat - dlat, lat + dlat], [lon - dlon, lon + dlon])
        x0, x1 = max(int(x0), 0), min(int(x1), self.nx - 1)
        y0, y1 = max(int(y0), 0), min(int(y1), self.ny - 1)
        if x0 > x1 or y0 > y1:
            return np.zeros(0, np.int64)
        bands = [self.order[self.starts[y * self.nx + x0]:self.starts[y * self.nx + x1 + 1]] for y in range(y0, y1 + 1)]
        rows = np.concatenate(bands)
        rows = rows[haversine_m(lat, lon, self.lat[rows], self.lon[rows]) <= radius_m]
        return np.sort(rows)
