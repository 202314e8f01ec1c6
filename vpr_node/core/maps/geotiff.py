"""GeoTIFF / Cloud-Optimised GeoTIFF orthophotos as map rasters (rasterio/GDAL).

Any CRS: a file is read through a GDAL warped VRT onto an EPSG:4326 grid whose pixels are square on the
ground at the file's own resolution, so the tile cutter's linear pixel <-> lat/lon model holds and a
tile of N metres is N metres both ways; nothing is written to disk. (A file already on such a grid is
read directly, and then decimated reads use its overviews.) Reads are windowed: one tile at a time, so
the whole orthophoto is never in memory while tiles are cut. Nodata, alpha bands and internal masks give a
per-tile valid fraction (tiles mostly outside the image are skipped); 1-2 band files are grey, 3+ band
files take their red/green/blue bands (colour interpretation, else bands 1-3); non-8-bit data are
stretched to 8 bits by the 2nd-98th percentiles of a decimated read of the whole file.
"""
from __future__ import annotations

import math
import os
import pathlib

import numpy as np

from vpr_node.core.errors import ConfigurationError
from vpr_node.core.maps.geo import GeoImage, metres_per_degree

GEOTIFF_SUFFIXES = (".tif", ".tiff")
WGS84 = "EPSG:4326"


GDAL_CACHE_MIB = "256"  # GDAL's block cache (default 5 % of RAM): tiles are cut row by row, a band of blocks suffices


def _rasterio():
    os.environ.setdefault("GDAL_CACHEMAX", GDAL_CACHE_MIB)  # read at GDAL's first cache use; a user's value wins
    try:
        import rasterio  # noqa: F401
        import rasterio.transform  # noqa: F401
        import rasterio.vrt  # noqa: F401
        import rasterio.warp  # noqa: F401
        import rasterio.windows  # noqa: F401
    except ImportError as exc:  # a dependency in requirements.txt / setup.py
        raise ConfigurationError("GeoTIFF maps need rasterio (pip install rasterio)") from exc
    return rasterio


class GeoTiffRaster:
    """One orthophoto: `geo` (north-up EPSG:4326 grid), windowed tile reads, the source CRS kept for records."""

    def __init__(self, path, min_valid: float = 0.95):
        rio = _rasterio()
        self.path = pathlib.Path(path)
        if not self.path.is_file():
            raise ConfigurationError(f"map {self.path} does not exist")
        self.min_valid = float(min_valid)
        try:
            self._src = rio.open(self.path)
        except rio.errors.RasterioIOError as exc:
            raise ConfigurationError(f"cannot open {self.path} as a GeoTIFF: {exc}") from exc
        if self._src.crs is None:
            raise ConfigurationError(f"{self.path} has no CRS: georeference it (e.g. gdal_translate -a_srs) first")
        self.src_crs = self._src.crs.to_string()
        self.src_transform = tuple(self._src.transform)[:6]
        self._ds = self._vrt_square_in_metres(rio)
        t, w, h = self._ds.transform, self._ds.width, self._ds.height
        if abs(t.b) > 1e-12 or abs(t.d) > 1e-12:
            raise ConfigurationError(f"{self.path}: rotated geotransforms are not supported")
        self.geo = GeoImage(w, h, (t.f, t.c), (t.f + t.e * h, t.c + t.a * w))
        self._bands = self._pick_bands()
        self._stretch = self._stretch_for(self._src)

    def _vrt_square_in_metres(self, rio):
        """The source itself when it is already a north-up EPSG:4326 grid whose pixels are square on the ground
        (within 1 %); else a warped VRT onto EPSG:4326 with pixels square in metres at the source's resolution."""
        src = self._src
        west, south, east, north = rio.warp.transform_bounds(src.crs, WGS84, *src.bounds)
        m_lat, m_lon = metres_per_degree((north + south) / 2)
        if src.crs.is_geographic:
            gsd = min(abs(src.res[0]) * m_lon, abs(src.res[1]) * m_lat)
        else:
            gsd = min(abs(src.res[0]), abs(src.res[1])) * (src.crs.linear_units_factor[1] or 1.0)
        if src.crs == rio.crs.CRS.from_string(WGS84) and abs(src.res[0] * m_lon / (src.res[1] * m_lat) - 1) < 0.01:
            return src
        res_lon, res_lat = gsd / m_lon, gsd / m_lat
        width, height = int(math.ceil((east - west) / res_lon)), int(math.ceil((north - south) / res_lat))
        return rio.vrt.WarpedVRT(src, crs=WGS84, transform=rio.transform.from_origin(west, north, res_lon, res_lat),
                                 width=width, height=height, resampling=rio.enums.Resampling.bilinear)

    def _pick_bands(self) -> list[int]:
        src = self._src
        if src.count < 3:
            return [1]
        ci = [c.name for c in src.colorinterp]
        if all(name in ci for name in ("red", "green", "blue")):
            return [ci.index("red") + 1, ci.index("green") + 1, ci.index("blue") + 1]
        return [1, 2, 3]

    def _stretch_for(self, src):
        if all(dt == "uint8" for dt in src.dtypes):
            return None
        scale = max(1, max(src.width, src.height) // 1024)
        shape = (max(1, src.height // scale), max(1, src.width // scale))
        data = src.read(self._bands, out_shape=(len(self._bands), *shape), masked=True).astype(np.float64)
        lo, hi = [], []
        for band in data:
            valid = band.compressed()
            lo.append(np.percentile(valid, 2) if valid.size else 0.0)
            hi.append(np.percentile(valid, 98) if valid.size else 1.0)
        return np.array(lo)[:, None, None], np.maximum(np.array(hi)[:, None, None], np.array(lo)[:, None, None] + 1e-9)

    def _to_rgb(self, data: np.ndarray) -> np.ndarray:
        if self._stretch is not None:  # (8-bit data go through as they are: no float copy of a large read)
            lo, hi = self._stretch
            data = np.clip((data.astype(np.float32) - lo) / (hi - lo) * 255.0, 0, 255)
        data = data.astype(np.uint8, copy=False)
        rgb = np.repeat(data, 3, axis=0) if data.shape[0] == 1 else data
        return np.ascontiguousarray(rgb.transpose(1, 2, 0))

    def read_window(self, x0: int, y0: int, side: int, out_px: int | None):
        """(RGB tile out_px x out_px, valid fraction) of the square window at (x0, y0) of the EPSG:4326 grid."""
        rio = _rasterio()
        win = rio.windows.Window(x0, y0, side, side)
        n = out_px or side
        data = self._ds.read(self._bands, window=win, out_shape=(len(self._bands), n, n),
                             resampling=rio.enums.Resampling.average, boundless=False)
        mask = self._ds.dataset_mask(window=win, out_shape=(n, n))
        return self._to_rgb(data), float((mask > 0).mean())

    def read_rgb(self) -> np.ndarray:
        """The whole map (query synthesis and training views); tile cutting uses read_window instead."""
        return self._to_rgb(self._ds.read(self._bands))

    def source_bounds(self, north: float, south: float, west: float, east: float) -> tuple[float, ...]:
        """A tile's (minx, miny, maxx, maxy) in the source CRS (so a user can go back to the orthophoto)."""
        return tuple(_rasterio().warp.transform_bounds(WGS84, self.src_crs, west, south, east, north))

    def release(self) -> None:
        """Nothing cached: windows are read on demand."""

    def close(self) -> None:
        if self._ds is not self._src:
            self._ds.close()
        self._src.close()


def load_geotiffs(path, min_valid: float = 0.95) -> list[GeoTiffRaster]:
    """A .tif/.tiff file, or every one in a folder, as map rasters."""
    p = pathlib.Path(path)
    files = [p] if p.is_file() else sorted(f for f in p.iterdir() if f.suffix.lower() in GEOTIFF_SUFFIXES)
    if not files:
        raise ConfigurationError(f"no GeoTIFF (.tif/.tiff) at {p}")
    return [GeoTiffRaster(f, min_valid) for f in files]
