"""What the drone already knows, applied to a frame before retrieval: heading, altitude and a position prior.

Plain Python (the ROS layer converts messages into the samples below and feeds a PriorBuffer):

- heading: the camera's heading (clockwise from north) at the frame's stamp -> the frame is rotated
  north-up, like the tiles, before embedding. From an orientation quaternion in ENU (REP 103: x east, y
  north, z up; yaw counter-clockwise from east) or NED (x north, y east, z down; yaw clockwise from
  north), plus the camera's mounting yaw on the body.
- altitude above ground: with the camera intrinsics it gives the ground side of the frame's centred
  square; the frame is cropped to the index's tile ground size (the nearest scale of a multi-scale
  index) and the search is restricted to tiles of that scale.
- position: search only tiles within k sigma of the prior (FAISS ID selector), never when the prior is
  absent, stale, too uncertain or outside the map (then the whole map, and the reason is reported).

Each prior falls back to the prior-free path on its own, and the frame's `PriorState` says what was
applied and why not. A malformed sample (NaN, zero-norm quaternion) is a `VprPriorError`: recorded and
counted, and the frame is served without that prior.
"""
from __future__ import annotations

import bisect
import dataclasses
import math
import threading
import time

import numpy as np

from vpr_node.core.errors import VprPriorError

HEADING, ALTITUDE, POSITION = "heading", "altitude", "position"
KINDS = (HEADING, ALTITUDE, POSITION)


def yaw_from_quaternion(x: float, y: float, z: float, w: float) -> float:
    """Yaw (rotation about the vertical axis, radians) of a unit quaternion; typed error when malformed."""
    q = np.array([x, y, z, w], np.float64)
    if not np.all(np.isfinite(q)):
        raise VprPriorError(f"orientation quaternion has non-finite components {q.tolist()}", prior=HEADING)
    n = float(np.linalg.norm(q))
    if n < 1e-6:
        raise VprPriorError("orientation quaternion has zero norm", prior=HEADING)
    x, y, z, w = q / n
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def heading_from_yaw(yaw_rad: float, frame: str = "enu") -> float:
    """Heading in degrees clockwise from north, [0, 360), from a yaw in an ENU or NED world frame."""
    if frame == "enu":  # yaw counter-clockwise from east
        return (90.0 - math.degrees(yaw_rad)) % 360.0
    if frame == "ned":  # yaw clockwise from north
        return math.degrees(yaw_rad) % 360.0
    raise VprPriorError(f"unknown world frame {frame!r}; use 'enu' (REP 103) or 'ned' (REP 105 aerial)", prior=HEADING)


@dataclasses.dataclass(frozen=True)
class Sample:
    stamp_ns: int
    value: tuple  # heading: (deg,); altitude: (metres above ground,); position: (lat, lon, sigma_m)


class PriorBuffer:
    """Recent samples per prior kind, matched to a frame by stamp (nearest within max_skew)."""

    def __init__(self, max_skew_s: float = 0.2, keep: int = 400):
        self.max_skew_ns = int(max_skew_s * 1e9)
        self.keep = keep
        self._lock = threading.Condition()
        self._stamps = {k: [] for k in KINDS}
        self._values = {k: [] for k in KINDS}

    def add(self, kind: str, stamp_ns: int, *value: float) -> None:
        with self._lock:
            stamps, values = self._stamps[kind], self._values[kind]
            i = bisect.bisect_right(stamps, stamp_ns)
            stamps.insert(i, int(stamp_ns))
            values.insert(i, tuple(float(v) for v in value))
            if len(stamps) > self.keep:
                del stamps[0], values[0]
            self._lock.notify_all()

    def wait_until_covered(self, kinds, stamp_ns: int, timeout_s: float) -> bool:
        """Wait (at most timeout_s) until every kind has a sample stamped at or after stamp_ns: a frame and the
        attitude/altitude/position samples of its instant are separate messages, and the frame can arrive first.
        Returns whether they all did."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._lock:
            while True:
                if all(self._stamps[k] and self._stamps[k][-1] >= stamp_ns for k in kinds):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)

    def add_error(self, kind: str, stamp_ns: int) -> None:
        """A malformed sample at this stamp: frames matched to it are served without the prior ("error")."""
        self.add(kind, stamp_ns)

    def nearest(self, kind: str, stamp_ns: int, max_skew_ns: int | None = None) -> tuple[Sample | None, str]:
        """(sample, "ok") or (None, "absent" | "stale" | "error")."""
        skew = self.max_skew_ns if max_skew_ns is None else max_skew_ns
        with self._lock:
            stamps = self._stamps[kind]
            if not stamps:
                return None, "absent"
            i = bisect.bisect_left(stamps, stamp_ns)
            j = min((k for k in (i - 1, i) if 0 <= k < len(stamps)), key=lambda k: abs(stamps[k] - stamp_ns))
            if abs(stamps[j] - stamp_ns) > skew:
                return None, "stale"
            if not self._values[kind][j]:
                return None, "error"
            return Sample(stamps[j], self._values[kind][j]), "ok"


@dataclasses.dataclass
class PriorState:
    """What was applied to one frame (reported in VprResult, diagnostics and the recorder)."""

    heading: str = "off"  # off (not configured) | ok | absent | stale | error
    altitude: str = "off"
    position: str = "off"  # ... | uncertain | outside_map
    heading_deg: float = float("nan")
    altitude_m: float = float("nan")
    position_sigma_m: float = float("nan")
    tile_scale_m: float = float("nan")
    candidates_searched: int = 0

    def applied(self, kind: str) -> bool:
        return getattr(self, kind) == "ok"

    def label(self) -> str:
        return " ".join(f"{k}:{getattr(self, k)}" for k in KINDS)


def crop_to_ground(rgb: np.ndarray, footprint_m: float, target_m: float) -> np.ndarray:
    """Centred square crop whose ground side is target_m, from a square frame whose side covers footprint_m
    (no crop when the frame covers less than the target: it cannot be zoomed out)."""
    h, w = rgb.shape[:2]
    s = min(h, w)
    if footprint_m <= target_m:
        side = s
    else:
        side = max(16, int(round(s * target_m / footprint_m)))
    y0, x0 = (h - side) // 2, (w - side) // 2
    return np.ascontiguousarray(rgb[y0:y0 + side, x0:x0 + side])


@dataclasses.dataclass
class PriorSwitches:
    """Which of the three priors are in use."""

    heading: bool = False
    altitude: bool = False
    position: bool = False

    @property
    def any(self) -> bool:
        return self.heading or self.altitude or self.position


@dataclasses.dataclass
class PriorConfig(PriorSwitches):
    """Which priors a node uses and how much it trusts them (node parameters; see ros/params.py)."""

    heading_max_skew_s: float = 0.2
    altitude_max_skew_s: float = 0.5
    position_max_age_s: float = 2.0
    camera_yaw_offset_deg: float = 0.0  # camera "up" direction relative to the body heading, clockwise
    camera: object | None = None  # camera.CameraModel, for the altitude prior
    hfov_deg: float = 0.0  # without `camera`: the camera's horizontal field of view; the frame gives its size
    position_k_sigma: float = 3.0
    position_max_sigma_m: float = 1000.0  # beyond this the prior is "uncertain": the whole map is searched
    position_min_radius_m: float = 50.0
    sync_timeout_s: float = 0.0  # a frame waits at most this long for samples stamped at or after it (node: 0.1 s)


class PriorApplier:
    """Applies the configured priors to a frame: returns the frame to embed, the tiles to search and the
    PriorState. Samples arrive in `buffer` from the ROS layer (or a replay/benchmark)."""

    def __init__(self, cfg: PriorConfig, index, buffer: PriorBuffer | None = None):
        self.cfg, self.index = cfg, index
        self.buffer = buffer or PriorBuffer()
        self.errors: list[VprPriorError] = []
        ground = index.tile_array("ground_m").astype(np.float64)
        self.scales = sorted({float(g) for g in ground if g > 0})
        self._ground = ground

    def _sample(self, kind: str, stamp_ns: int, max_s: float) -> tuple[Sample | None, str]:
        return self.buffer.nearest(kind, stamp_ns, int(max_s * 1e9))

    def apply(self, rgb: np.ndarray, stamp_ns: int) -> tuple[np.ndarray, np.ndarray | None, PriorState]:
        from vpr_node.core.geo import haversine_m
        from vpr_node.core.preprocess import rotate_to_north_up

        cfg, state = self.cfg, PriorState()
        if cfg.sync_timeout_s > 0:
            self.buffer.wait_until_covered([k for k in KINDS if getattr(cfg, k)], stamp_ns, cfg.sync_timeout_s)
        h, w = rgb.shape[:2]
        side_px = float(min(h, w))
        ground_fraction = 1.0  # ground side of the current square / ground side of the original square
        allowed = None
        if cfg.heading:
            s, state.heading = self._sample(HEADING, stamp_ns, cfg.heading_max_skew_s)
            if s is not None:
                state.heading_deg = (s.value[0] + cfg.camera_yaw_offset_deg) % 360.0
                rgb = rotate_to_north_up(rgb, state.heading_deg)
                ground_fraction = min(rgb.shape[:2]) / side_px
        if cfg.altitude:
            s, state.altitude = self._sample(ALTITUDE, stamp_ns, cfg.altitude_max_skew_s)
            camera = cfg.camera
            if camera is None and cfg.hfov_deg > 0:
                from vpr_node.core.camera import CameraModel
                camera = CameraModel.from_hfov(cfg.hfov_deg, w, h)
            if s is not None and (camera is None or not self.scales):
                state.altitude = "unusable"  # no camera model, or an index without tile ground sizes
            elif s is not None:
                state.altitude_m = s.value[0]
                footprint = camera.square_footprint_m(s.value[0]) * ground_fraction
                fits = [g for g in self.scales if g <= footprint * 1.05]
                scale = max(fits) if fits else min(self.scales, key=lambda g: abs(math.log(g / footprint)))
                state.tile_scale_m = scale
                rgb = crop_to_ground(rgb, footprint, scale)
                if len(self.scales) > 1:
                    allowed = np.flatnonzero(self._ground == scale)
        if cfg.position:
            s, state.position = self._sample(POSITION, stamp_ns, cfg.position_max_age_s)
            if s is not None:
                lat, lon, sigma = s.value
                state.position_sigma_m = sigma
                if sigma > cfg.position_max_sigma_m:
                    state.position = "uncertain"
                else:
                    radius = max(cfg.position_min_radius_m, cfg.position_k_sigma * sigma)
                    d = haversine_m(lat, lon, self.index.tile_array("lat"), self.index.tile_array("lon"))
                    near = np.flatnonzero(d <= radius)
                    if allowed is not None:
                        near = np.intersect1d(near, allowed)
                    if len(near) == 0:
                        state.position = "outside_map"
                    else:
                        allowed = near
        state.candidates_searched = 0 if allowed is None else int(len(allowed))
        return rgb, allowed, state


@dataclasses.dataclass
class PriorNoise(PriorSwitches):
    """Simulated priors for benchmarks and synthesised bags: the truth of each query plus Gaussian noise
    (heading in degrees, altitude in percent of itself, position in metres per axis, reported as the
    prior's 1-sigma)."""

    heading_sigma_deg: float = 10.0
    altitude_sigma_pct: float = 10.0
    position_sigma_m: float = 200.0
    seed: int = 0

    def label(self) -> str:
        parts = []
        if self.heading:
            parts.append(f"heading +-{self.heading_sigma_deg:g} deg")
        if self.altitude:
            parts.append(f"altitude +-{self.altitude_sigma_pct:g} %")
        if self.position:
            parts.append(f"position +-{self.position_sigma_m:g} m")
        return ", ".join(parts) or "no prior"

    def sample(self, rng, yaw_deg: float, altitude_m: float | None, lat: float, lon: float) -> dict:
        """{kind: value tuple} for one frame (altitude only when the query has one)."""
        from vpr_node.core.geo import metres_per_degree
        out = {}
        if self.heading:
            out[HEADING] = ((yaw_deg + rng.normal(0, self.heading_sigma_deg)) % 360.0,)
        if self.altitude and altitude_m:
            out[ALTITUDE] = (max(1.0, altitude_m * (1 + rng.normal(0, self.altitude_sigma_pct / 100.0))),)
        if self.position:
            m_lat, m_lon = metres_per_degree(lat)
            dn, de = rng.normal(0, self.position_sigma_m, 2)
            out[POSITION] = (lat + dn / m_lat, lon + de / m_lon, self.position_sigma_m)
        return out

    def applier(self, index, camera, **cfg) -> PriorApplier:
        return PriorApplier(PriorConfig(heading=self.heading, altitude=self.altitude, position=self.position,
                                        camera=camera, **cfg), index)
