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

import dataclasses
import math

import numpy as np

from vpr_node.core.errors import VprPriorError
from vpr_node.core.maps.camera import CameraModel
from vpr_node.core.priors.samples import ALTITUDE, HEADING, KINDS, POSITION, PriorBuffer, Sample
from vpr_node.core.priors.tile_grid import TileGrid
from vpr_node.core.views.geometry import crop_to_ground, rotate_to_north_up


@dataclasses.dataclass
class PriorState:
    """What was applied to one frame (reported in VprResult, diagnostics and the recorder)."""

    heading: str = "off"  # off (not configured) | ok | absent | stale | error
    altitude: str = "off"
    position: str = "off"  # ... | uncertain | outside_map
    heading_deg: float = float("nan")
    altitude_m: float = float("nan")
    position_sigma_m: float = float("nan")
    position_lat: float = float("nan")  # the position prior itself (what the verifier checks a fix against)
    position_lon: float = float("nan")
    tile_scale_m: float = float("nan")
    candidates_searched: int = 0

    def applied(self, kind: str) -> bool:
        return getattr(self, kind) == "ok"

    def label(self) -> str:
        return " ".join(f"{k}:{getattr(self, k)}" for k in KINDS)


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
        self._grid = TileGrid(index.tile_array("lat"), index.tile_array("lon"))

    def _sample(self, kind: str, stamp_ns: int, max_s: float) -> tuple[Sample | None, str]:
        return self.buffer.nearest(kind, stamp_ns, int(max_s * 1e9))

    def apply(self, rgb: np.ndarray, stamp_ns: int) -> tuple[np.ndarray, np.ndarray | None, PriorState]:
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
                state.position_sigma_m, state.position_lat, state.position_lon = sigma, lat, lon
                if sigma > cfg.position_max_sigma_m:
                    state.position = "uncertain"
                else:
                    radius = max(cfg.position_min_radius_m, cfg.position_k_sigma * sigma)
                    near = self._grid.within(lat, lon, radius)
                    if allowed is not None:
                        near = np.intersect1d(near, allowed)
                    if len(near) == 0:
                        state.position = "outside_map"
                    else:
                        allowed = near
        state.candidates_searched = 0 if allowed is None else int(len(allowed))
        return rgb, allowed, state


