"""Synthesise drone-like nav-camera frames from georeferenced maps, with ground-truth positions.

Each query: random position, yaw 0-360 deg, a ground footprint (from an altitude range and the camera
model, or a nominal footprint +-30 %), camera tilt (a pinhole camera's perspective), photometric change (a profile of
`augment`). Deterministic by seed. Written as images + queries.csv.

`QuerySpec.benchmark()` is the developer benchmark's protocol: 1280x720 camera with 86 deg horizontal
field of view at 55-110 m above ground (the centred square crop sees 58-115 m), unknown yaw, tilt up
to 15 deg, `strong` photometric change (another season, time of day and sensor than the map);
`QuerySpec.benchmark(photometric="changed")` is its changed-ground condition (changed.py) at the same positions.
"""
from __future__ import annotations

import csv
import dataclasses
import math
import pathlib

import cv2
import numpy as np

from vpr_node.core.maps.camera import CameraModel
from vpr_node.core.maps.sources import GeoRaster
from vpr_node.core.views import augment, changed

CHANGED_STREAM = 7  # the changed-ground generator's stream of a query: (seed, query number, 7)


@dataclasses.dataclass
class QuerySpec:
    camera: tuple[int, int] = (1280, 720)  # (width, height) px
    footprint_m: float = 60.0  # without altitude_m: ground extent of the frame's SHORT side at nominal altitude
    scale_jitter: float = 0.30  # without altitude_m: footprint x U(1 - j, 1 + j)
    yaw_deg: tuple[float, float] = (0.0, 360.0)
    max_tilt_deg: float = 10.0
    photometric: bool | str = True  # True = "standard", False = "none", or an `augment` profile name
    altitude_m: tuple[float, float] | None = None  # altitude above ground, uniform in this range
    hfov_deg: float = 86.0  # with altitude_m: the camera's horizontal field of view

    @classmethod
    def benchmark(cls, **over) -> "QuerySpec":
        """The developer benchmark's query protocol (module docstring)."""
        return cls(**{"altitude_m": (55.0, 110.0), "max_tilt_deg": 15.0, "photometric": "strong", **over})

    @property
    def profile(self) -> str:
        if isinstance(self.photometric, str):
            return self.photometric
        return "standard" if self.photometric else "none"

    def camera_model(self) -> CameraModel:
        return CameraModel.from_hfov(self.hfov_deg, *self.camera)

    def footprint_range_m(self) -> tuple[float, float]:
        """Smallest and largest ground side of the frames' centred square crop."""
        if self.altitude_m:
            cam = self.camera_model()
            return cam.square_footprint_m(self.altitude_m[0]), cam.square_footprint_m(self.altitude_m[1])
        return self.footprint_m * (1 - self.scale_jitter), self.footprint_m * (1 + self.scale_jitter)


@dataclasses.dataclass
class Query:
    name: str
    lat: float
    lon: float
    yaw_deg: float
    scale: float
    tilt_deg: float
    source: str
    image: np.ndarray | None = None
    altitude_m: float | None = None  # above ground, when the spec had an altitude range
    footprint_m: float | None = None  # ground side of the frame's centred square crop
    tilt_dir_deg: float = 0.0  # where the tilt leans, clockwise from the frame's 'up'


MAX_RAY_DEG = 70.0  # a rendered view's corner rays stay this far from the horizon (its far ground stays on the map)


def tilt_limit_deg(camera: tuple[int, int], hfov_deg: float) -> float:
    """The largest tilt at which the frame's corner rays stay within MAX_RAY_DEG of nadir."""
    cw, ch = camera
    f = CameraModel.from_hfov(hfov_deg, cw, ch).fx
    return max(0.0, MAX_RAY_DEG - math.degrees(math.atan(math.hypot(cw / 2, ch / 2) / f)))


def view_corners(cx: float, cy: float, yaw_deg: float, side_px: float, camera: tuple[int, int],
                 tilt_deg: float = 0.0, tilt_dir_deg: float = 0.0, hfov_deg: float = 86.0) -> np.ndarray:
    """Map pixels seen by the frame's corners (tl, tr, br, bl) for a pinhole camera whose optical axis meets the
    ground at map pixel (cx, cy): frame 'up' along heading `yaw_deg` (clockwise from north), at the altitude where
    looking straight down its short side would cover `side_px` map pixels, the optical axis tilted `tilt_deg` off
    nadir towards `tilt_dir_deg` (clockwise from the frame's 'up'). A tilted view foreshortens the ground as a real
    camera does: log(1/cos(tilt)) of anisotropy at the frame's centre."""
    cw, ch = camera
    f = CameraModel.from_hfov(hfov_deg, cw, ch).fx
    altitude = side_px / ch * f  # map px
    a = math.radians(yaw_deg)
    up = np.array([math.sin(a), -math.cos(a), 0.0])  # world: x east, y south (map rows), z down (right-handed)
    right = np.array([-up[1], up[0], 0.0])
    axes = np.stack([right, -up, np.array([0.0, 0.0, 1.0])], 1)  # camera x, y, z (columns) in the world, nadir
    t, d = math.radians(tilt_deg), math.radians(tilt_dir_deg)
    lean = np.array([math.sin(d), -math.cos(d), 0.0])  # the tilt's direction in camera coordinates
    k = np.cross([0.0, 0.0, 1.0], lean)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    axes = axes @ (np.eye(3) + math.sin(t) * kx + (1 - math.cos(t)) * kx @ kx)  # Rodrigues: z towards `lean`
    centre = np.array([cx, cy, 0.0]) - altitude / max(math.cos(t), 1e-6) * axes[:, 2]
    out = []
    for u, v in ((0, 0), (cw, 0), (cw, ch), (0, ch)):
        ray = axes @ np.array([(u - cw / 2) / f, (v - ch / 2) / f, 1.0])
        if ray[2] <= 1e-6:
            raise ValueError(f"a view tilted {tilt_deg:.1f} deg sees the horizon; keep tilt below "
                             f"{tilt_limit_deg(camera, hfov_deg):.1f} deg for this camera")
        out.append((centre - centre[2] / ray[2] * ray)[:2])
    return np.array(out, np.float32)


def render_view(map_rgb: np.ndarray, cx: float, cy: float, yaw_deg: float, side_px: float, camera: tuple[int, int],
                tilt_deg: float = 0.0, tilt_dir_deg: float = 0.0, hfov_deg: float = 86.0) -> np.ndarray:
    """Render a camera frame of the map (view_corners: looking at map pixel (cx, cy), 'up' along `yaw_deg`, the
    short side covering `side_px` map pixels when looking straight down, tilted as a pinhole camera)."""
    cw, ch = camera
    corners = view_corners(cx, cy, yaw_deg, side_px, camera, tilt_deg, tilt_dir_deg, hfov_deg)
    dst = np.array([[0, 0], [cw, 0], [cw, ch], [0, ch]], np.float32)
    m = cv2.getPerspectiveTransform(corners, dst)
    return cv2.warpPerspective(map_rgb, m, (cw, ch), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)


def render_from_raster(raster, cx: float, cy: float, yaw_deg: float, side_px: float, camera: tuple[int, int],
                       tilt_deg: float = 0.0, tilt_dir_deg: float = 0.0, hfov_deg: float = 86.0) -> np.ndarray:
    """render_view on a map raster, from a window around the view (only the pixels it sees are read: memory does
    not grow with the map). Same pixels as rendering from the whole image."""
    w, h = raster.geo.width, raster.geo.height
    side = min(2 * int(math.ceil(footprint_radius_px(side_px, camera, tilt_deg, hfov_deg))) + 6, w, h)
    x0 = min(max(0, int(cx) - side // 2), w - side)
    y0 = min(max(0, int(cy) - side // 2), h - side)
    window, _ = raster.read_window(x0, y0, side, None)
    return render_view(window, cx - x0, cy - y0, yaw_deg, side_px, camera, tilt_deg, tilt_dir_deg, hfov_deg)


def footprint_radius_px(side_px: float, camera: tuple[int, int], tilt_deg: float, hfov_deg: float = 86.0) -> float:
    """The farthest map pixel a view sees from its centre, over headings and tilt directions (view_corners)."""
    far = max(float(np.linalg.norm(view_corners(0.0, 0.0, 0.0, side_px, camera, tilt_deg, d, hfov_deg), axis=1).max())
              for d in range(0, 360, 10))  # a heading turns the corners about the centre: their distance stays
    return far * 1.01


def condition_view(profile: str, rng, view: np.ndarray, seed: int, i: int) -> np.ndarray:
    """View i of a set with this seed under a photometric profile (augment.py). `changed` and `resurveyed` draw the
    ground changes from their own stream, so their positions and photometrics are those of `strong` with changed
    ground."""
    if profile in ("changed", "resurveyed"):
        ground = changed.apply if profile == "changed" else changed.resurvey
        return augment.strong(rng, ground(np.random.default_rng([seed, i, CHANGED_STREAM]), view))
    return augment.apply(profile, rng, view)


def lower_to_fit(side_px: float, radius_px: float, map_short_px: int, gsd_m: float, cam: CameraModel | None):
    """A view too wide for its map (the turned, tilted footprint's radius `radius_px` against the map's short side)
    made lower until it fits: (side px, footprint m, altitude m or None without a camera, radius px)."""
    allowed = map_short_px / 2 - 1
    side_px *= allowed / radius_px
    footprint = side_px * gsd_m
    return side_px, footprint, cam.altitude_for_footprint(footprint) if cam is not None else None, allowed


def synthesise_queries(rasters: list[GeoRaster], n: int, seed: int = 0, spec: QuerySpec | None = None):
    """Yield n Query objects (with image) whose whole footprint lies inside one map raster."""
    spec = spec or QuerySpec()
    rng = np.random.default_rng(seed)
    cam = spec.camera_model() if spec.altitude_m else None
    opened = set()
    made = 0
    attempts = 0
    while made < n:
        attempts += 1
        if attempts > 100 * n:
            raise ValueError("cannot place queries: maps are too small for the configured footprint")
        r = rasters[int(rng.integers(len(rasters)))]
        if r.path not in opened:  # a PNG/JPEG map is read whole here (and its size checked); a GeoTIFF by window
            r.read_window(0, 0, 1, None)
            opened.add(r.path)
        if cam is not None:
            altitude = float(rng.uniform(*spec.altitude_m))
            footprint = cam.square_footprint_m(altitude)
        else:
            altitude, footprint = (
                None,
                spec.footprint_m * float(rng.uniform(1 - spec.scale_jitter, 1 + spec.scale_jitter)),
            )
        tilt = float(rng.uniform(0, min(spec.max_tilt_deg, tilt_limit_deg(spec.camera, spec.hfov_deg))))
        side_px = footprint / r.geo.gsd_m
        rad = footprint_radius_px(side_px, spec.camera, tilt, spec.hfov_deg)
        h, w = r.geo.height, r.geo.width
        if 2 * rad >= min(w, h):  # the turned frame cannot fit: a lower view that does (rather than loop forever)
            side_px, footprint, altitude, rad = lower_to_fit(side_px, rad, min(w, h), r.geo.gsd_m, cam)
        cx = float(rng.uniform(rad, w - rad))
        cy = float(rng.uniform(rad, h - rad))
        yaw = float(rng.uniform(*spec.yaw_deg))
        tilt_dir = float(rng.uniform(0, 360))
        view = render_from_raster(r, cx, cy, yaw, side_px, spec.camera, tilt, tilt_dir, spec.hfov_deg)
        view = condition_view(spec.profile, rng, view, seed, made)
        lat, lon = (float(v) for v in r.geo.pixel_to_latlon(cx, cy))
        yield Query(f"q{made:05d}", lat, lon, yaw, footprint / spec.footprint_m, tilt, r.path.name, view, altitude,
                    footprint, tilt_dir)
        made += 1


class ViewSet:
    """n synthesised views kept as their recipe (maps, seed, spec): iterating renders them again, one at a time, and
    `meta` holds them without pixels. For the many views pre-flight fitting needs (1,000 views of 1280x720 are
    2.7 GB): memory stays that of one view, each pass costs the rendering again. Same views as synthesise_queries."""

    def __init__(self, rasters: list[GeoRaster], n: int, seed: int = 0, spec: QuerySpec | None = None):
        self.rasters, self.n, self.seed, self.spec = rasters, int(n), int(seed), spec
        self._meta: list[Query] | None = None

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        meta = []
        for q in synthesise_queries(self.rasters, self.n, self.seed, self.spec):
            meta.append(dataclasses.replace(q, image=None))
            yield q
        self._meta = meta

    @property
    def meta(self) -> list[Query]:
        """The views' positions, yaw, altitude and footprint (no image): one rendering pass the first time."""
        if self._meta is None:
            for _ in self:
                pass
        return self._meta


QUERY_FIELDS = ("name", "path", "lat", "lon", "yaw_deg", "scale", "tilt_deg", "source", "altitude_m", "footprint_m")


def write_queries(queries, out_dir) -> pathlib.Path:
    """Write query images (JPEG) and queries.csv; returns the CSV path."""
    out_dir = pathlib.Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "queries.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=QUERY_FIELDS)
        w.writeheader()
        for q in queries:
            rel = f"images/{q.name}.jpg"
            cv2.imwrite(str(out_dir / rel), cv2.cvtColor(q.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
            w.writerow({"name": q.name, "path": rel, "lat": f"{q.lat:.8f}", "lon": f"{q.lon:.8f}",
                        "yaw_deg": f"{q.yaw_deg:.2f}", "scale": f"{q.scale:.4f}", "tilt_deg": f"{q.tilt_deg:.2f}",
                        "source": q.source, "altitude_m": "" if q.altitude_m is None else f"{q.altitude_m:.2f}",
                        "footprint_m": "" if q.footprint_m is None else f"{q.footprint_m:.2f}"})
    return csv_path


def read_queries(csv_path, with_images: bool = True) -> list[Query]:
    csv_path = pathlib.Path(csv_path)
    out = []
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            img = None
            if with_images:
                bgr = cv2.imread(str(csv_path.parent / row["path"]), cv2.IMREAD_COLOR)
                img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            opt = {k: float(row[k]) if row.get(k) else None for k in ("altitude_m", "footprint_m")}
            out.append(Query(row["name"], float(row["lat"]), float(row["lon"]), float(row["yaw_deg"]),
                             float(row["scale"]), float(row["tilt_deg"]), row["source"], img, **opt))
    return out
