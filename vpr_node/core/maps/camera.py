"""Nav-camera geometry: field of view, ground footprint at an altitude, and the tile sizes that match it.

A down-looking pinhole camera at altitude h above ground with focal length f (pixels) sees
`h * width_px / f` metres of ground across its width. The backbones embed the centred square crop of a
frame (its short side), so the ground that a query descriptor describes is `h * short_px / f` metres:
that is the footprint the map tiles should match. The camera comes from a horizontal field of view and
an image size, or from a sensor_msgs/CameraInfo YAML (the `camera_calibration` / `camera_info_manager`
format: image_width, image_height, camera_matrix.data = K row-major).
"""
from __future__ import annotations

import dataclasses
import math
import pathlib

import yaml

from vpr_node.core.errors import ConfigurationError


@dataclasses.dataclass(frozen=True)
class CameraModel:
    width_px: int
    height_px: int
    fx: float  # focal length in pixels (horizontal)
    fy: float | None = None
    cx: float | None = None
    cy: float | None = None

    @classmethod
    def from_hfov(cls, hfov_deg: float, width_px: int = 1280, height_px: int = 720) -> "CameraModel":
        if not 1.0 < hfov_deg < 179.0:
            raise ConfigurationError(f"horizontal field of view must be in (1, 179) degrees, got {hfov_deg}",
                                     parameter="hfov")
        fx = width_px / (2.0 * math.tan(math.radians(hfov_deg) / 2.0))
        return cls(int(width_px), int(height_px), fx, fx)

    @classmethod
    def from_camera_info_yaml(cls, path) -> "CameraModel":
        """A sensor_msgs/CameraInfo calibration file (as written by camera_calibration)."""
        p = pathlib.Path(path)
        try:
            data = yaml.safe_load(p.read_text())
            k = data["camera_matrix"]["data"] if "camera_matrix" in data else data["k"]
            w, h = int(data["image_width"] if "image_width" in data else data["width"]), \
                int(data["image_height"] if "image_height" in data else data["height"])
            fx, fy, cx, cy = float(k[0]), float(k[4]), float(k[2]), float(k[5])
        except (OSError, yaml.YAMLError, KeyError, IndexError, TypeError, ValueError) as exc:
            raise ConfigurationError(f"camera info {path} is not a CameraInfo YAML with image_width, image_height "
                                     f"and camera_matrix.data (K, row-major): {exc}", parameter="camera_info") from exc
        if fx <= 0 or w <= 0 or h <= 0:
            raise ConfigurationError(f"camera info {path}: focal length and image size must be positive",
                                     parameter="camera_info")
        return cls(w, h, fx, fy, cx, cy)

    @property
    def hfov_deg(self) -> float:
        return math.degrees(2.0 * math.atan(self.width_px / (2.0 * self.fx)))

    @property
    def short_side_px(self) -> int:
        return min(self.width_px, self.height_px)

    def square_footprint_m(self, altitude_m: float) -> float:
        """Ground side of the centred square crop the backbones embed, at this altitude above ground."""
        f = self.fx if self.width_px <= self.height_px else (self.fy or self.fx)
        return float(altitude_m) * self.short_side_px / f

    def altitude_for_footprint(self, footprint_m: float) -> float:
        return float(footprint_m) / self.square_footprint_m(1.0)


# The camera of the developer benchmark's synthesised flights: 1280x720, 86 deg horizontal field of view,
# so the centred square crop covers 1.05 x the altitude (58-115 m of ground at 55-110 m).
DEFAULT_CAMERA = CameraModel.from_hfov(86.0, 1280, 720)


def tile_sizes_for_altitudes(camera: CameraModel, altitude_min_m: float, altitude_max_m: float,
                             max_scale_step: float = 1.5) -> list[float]:
    """Tile ground sizes (metres) that cover the camera's footprint over an altitude range.

    One size (the geometric mean of the extreme footprints) while max/min footprint <= max_scale_step,
    otherwise sizes spaced geometrically so that neighbouring scales differ by at most max_scale_step
    and every footprint in the range is within sqrt(max_scale_step) of a tile size."""
    if altitude_min_m <= 0 or altitude_max_m < altitude_min_m:
        raise ConfigurationError(f"altitude range must be 0 < min <= max, got {altitude_min_m}..{altitude_max_m}",
                                 parameter="altitude")
    lo, hi = camera.square_footprint_m(altitude_min_m), camera.square_footprint_m(altitude_max_m)
    ratio = hi / lo
    if ratio <= max_scale_step:
        return [round(math.sqrt(lo * hi), 1)]
    n = math.ceil(math.log(ratio) / math.log(max_scale_step))
    step = ratio ** (1.0 / n)
    # centre each scale in its band of footprints: lo*sqrt(step), lo*step*sqrt(step), ...
    return [round(lo * step ** (i + 0.5), 1) for i in range(n)]


def stride_for_radius(tile_m: float, radius_m: float = 25.0, max_overlap: float = 0.85) -> float:
    """Tile centre spacing such that every ground point is within 0.85 * radius of a tile centre
    (grid diagonal stride/sqrt(2) <= 0.85 r), so a correct top-1 is geometrically possible everywhere;
    never more than half the tile (50 % overlap) nor an overlap above max_overlap."""
    by_radius = 0.85 * radius_m * math.sqrt(2.0)
    return round(max(tile_m * (1.0 - max_overlap), min(tile_m * 0.5, by_radius)), 2)
