"""Geodesy helpers: great-circle distance and affine pixel <-> lat/lon on north-up images."""
from __future__ import annotations

import math

import numpy as np

EARTH_RADIUS_M = 6_371_008.8


def haversine_m(lat1, lon1, lat2, lon2):
    """Great-circle distance in metres; broadcasts over numpy arrays."""
    lat1, lon1, lat2, lon2 = (np.radians(np.asarray(v, dtype=np.float64)) for v in (lat1, lon1, lat2, lon2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def metres_per_degree(lat: float) -> tuple[float, float]:
    """(metres per degree latitude, metres per degree longitude) at a latitude."""
    m_lat = math.pi / 180.0 * EARTH_RADIUS_M
    return m_lat, m_lat * math.cos(math.radians(lat))


def slippy_zoom_for_gsd(gsd_m: float, lat: float) -> int:
    """The web-mercator zoom level whose 256-px tiles have about this ground sample distance."""
    z = math.log2(156543.03392 * math.cos(math.radians(lat)) / max(gsd_m, 1e-6))
    return int(max(0, min(24, round(z))))


class GeoImage:
    """A north-up georeferenced raster: linear map between pixel (x, y) and (lat, lon)."""

    def __init__(self, width: int, height: int, top_left: tuple[float, float], bottom_right: tuple[float, float]):
        self.width, self.height = int(width), int(height)
        self.lat0, self.lon0 = top_left
        self.lat1, self.lon1 = bottom_right

    def pixel_to_latlon(self, x, y):
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        lat = self.lat0 + (self.lat1 - self.lat0) * y / self.height
        lon = self.lon0 + (self.lon1 - self.lon0) * x / self.width
        return lat, lon

    def latlon_to_pixel(self, lat, lon):
        """The inverse of pixel_to_latlon: (x, y) in pixels, fractional."""
        x = (np.asarray(lon, dtype=np.float64) - self.lon0) / (self.lon1 - self.lon0) * self.width
        y = (np.asarray(lat, dtype=np.float64) - self.lat0) / (self.lat1 - self.lat0) * self.height
        return x, y

    @property
    def gsd_m(self) -> float:
        """Mean ground sample distance (metres per pixel)."""
        lat_c = (self.lat0 + self.lat1) / 2
        m_lat, m_lon = metres_per_degree(lat_c)
        gx = abs(self.lon1 - self.lon0) * m_lon / self.width
        gy = abs(self.lat1 - self.lat0) * m_lat / self.height
        return (gx + gy) / 2
