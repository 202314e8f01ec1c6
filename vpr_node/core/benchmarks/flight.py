"""The flight benchmark: a GNSS-denied flight over a mission-sized map whose centre is real imagery.

- The map (maps/composite.py): procedural landscape around the developer imagery, which keeps its true coordinates.
  The index is what the operator ships: `vpr prepare-mission` on that map (footprint tiles, adaptation,
  verifier calibration).
- The flight: a closed star polygon {7/3} centred on the real imagery, so every leg crosses it; frames at
  `rate_hz` and `speed_mps`, heading along the track, altitude varying smoothly over the planned range, small
  camera tilt, the photometric condition of the benchmark (`changed`: ground changed since the map was captured).
- The priors, as the autopilot would give them: heading and altitude with noise, and the VIO position whose error
  grows with distance flown (a bias of `drift_pct` of the distance in a random direction plus a random walk), with
  the covariance the autopilot reports. An accepted verified fix resets the VIO estimate to the fix (its error
  becomes the fix's error) in configurations that use the position prior.
- Per frame: retrieval over the whole map, retrieval restricted to the real imagery's tiles (the small-map
  reference on the same frames and priors), verification of the full-map candidates. Per configuration: recall@1/10
  at 25 m over the flight and over its real part, accepted fixes, their error, the share of the flight with a
  recent fix, the VIO error. Plots against distance flown and the flight drawn on the map.
"""
from __future__ import annotations

import dataclasses
import math
import pathlib

import numpy as np
from tqdm import tqdm

from vpr_node.core.errors import ConfigurationError
from vpr_node.core.evaluation.verified import frame_record, summarise
from vpr_node.core.maps.camera import CameraModel
from vpr_node.core.maps.composite import RealPart, real_mask
from vpr_node.core.maps.geo import haversine_m, metres_per_degree
from vpr_node.core.options import option
from vpr_node.core.priors.apply import PriorApplier, PriorConfig
from vpr_node.core.priors.samples import ALTITUDE, HEADING, POSITION
from vpr_node.core.views.queries import condition_view, render_from_raster

CONFIGS = {  # name -> (heading, altitude, position)
    "none": (False, False, False),
    "heading+altitude": (True, True, False),
    "position": (False, False, True),
    "all": (True, True, True),
}
STAR = (7, 3)  # star polygon {7/3}: every edge passes within 0.22 R of the centre


@dataclasses.dataclass
class FlightConfig:
    map_km: float = option(10.0, "side of the square map (km); 10 = 100 km2")
    gsd_m: float = option(0.25, "map ground sample distance (m/px)")
    path_km: float = option(12.0, "length of the flight (km)")
    speed_mps: float = option(15.0, "ground speed (m/s)")
    rate_hz: float = option(3.0, "frames per second")
    altitude_m: tuple[float, float] = option((70.0, 100.0), "altitude above ground MIN MAX (m): the flight varies "
                                                            "within it, the tiles are matched to it")
    max_tilt_deg: float = option(5.0, "largest camera tilt (deg)")
    condition: str = option("changed", "frames' photometric condition: strong | changed (ground changed too)")
    drift_pct: float = option(2.0, "VIO position bias: grows by this percentage of the distance flown")
    walk_m: float = option(0.3, "VIO random walk: this many metres per square root of a metre flown")
    start_sigma_m: float = option(5.0, "position 1-sigma when GNSS is lost (the flight's start)")
    heading_sigma_deg: float = option(3.0, "heading prior noise (deg, 1-sigma)")
    altitude_sigma_pct: float = option(5.0, "altitude prior noise (percent of the altitude, 1-sigma)")
    fix_valid_s: float = option(5.0, "the position counts as fixed this long after an accepted fix (s)")
    k: int = option(10, "candidates retrieved per frame")
    radius_m: float = option(25.0, "a candidate or fix is correct within this distance (m)")
    seed: int = option(500, "seed of the flight's frames and noise (never an adaptation's or calibration's)")

    def __post_init__(self):
        if self.condition not in ("strong", "changed"):
            raise ConfigurationError(f"condition must be strong or changed, got {self.condition}",
                                     parameter="condition")

    @property
    def spacing_m(self) -> float:
        return self.speed_mps / self.rate_hz

    def star_radius_m(self) -> float:
        n, k = STAR
        return self.path_km * 1000.0 / (n * 2.0 * math.sin(math.pi * k / n))


@dataclasses.dataclass
class Pose:
    """One frame's truth."""

    i: int
    s_m: float  # distance flown
    lat: float
    lon: float
    yaw_deg: float
    altitude_m: float
    tilt_deg: float
    tilt_dir_deg: float


def trajectory(cfg: FlightConfig, centre: tuple[float, float]) -> list[Pose]:
    """The star polygon around `centre`, sampled every spacing_m, starting at a vertex."""
    n, k = STAR
    r = cfg.star_radius_m()
    if r + 150.0 > cfg.map_km * 500.0:
        raise ConfigurationError(f"a {cfg.path_km:g} km flight needs a star of radius {r:.0f} m: the map "
                                 f"({cfg.map_km:g} km) is too small", parameter="path_km")
    angles = [2 * math.pi * (i * k % n) / n for i in range(n + 1)]
    verts = np.array([(r * math.sin(a), r * math.cos(a)) for a in angles])  # (east, north) m from the centre
    seg = np.diff(verts, axis=0)
    seg_len = np.hypot(seg[:, 0], seg[:, 1])
    total = float(seg_len.sum())
    rng = np.random.default_rng([cfg.seed, 0])
    m_lat, m_lon = metres_per_degree(centre[0])
    lo, hi = cfg.altitude_m
    phase = rng.uniform(0, 2 * math.pi)
    poses, cum = [], np.concatenate([[0.0], np.cumsum(seg_len)])
    for i, s in enumerate(np.arange(0.0, total, cfg.spacing_m)):
        j = min(int(np.searchsorted(cum, s, side="right")) - 1, len(seg) - 1)
        e, nn = verts[j] + seg[j] * (s - cum[j]) / seg_len[j]
        track = math.degrees(math.atan2(seg[j][0], seg[j][1])) % 360.0
        alt = (lo + hi) / 2 + 0.4 * (hi - lo) * math.sin(2 * math.pi * s / 3000.0 + phase)
        poses.append(Pose(i, float(s), centre[0] + nn / m_lat, centre[1] + e / m_lon,
                          (track + rng.normal(0, 2.0)) % 360.0, alt, float(rng.uniform(0, cfg.max_tilt_deg)),
                          float(rng.uniform(0, 360))))
    return poses


class FrameRenderer:
    """Frames of the nav camera over the composite map, rendered from a window of it (any map size)."""

    def __init__(self, raster, camera: CameraModel, cfg: FlightConfig):
        self.raster, self.camera, self.cfg = raster, camera, cfg

    def render(self, p: Pose) -> np.ndarray:
        g = self.raster.geo
        cx, cy = (float(v) for v in g.latlon_to_pixel(p.lat, p.lon))
        side_px = self.camera.square_footprint_m(p.altitude_m) / g.gsd_m
        view = render_from_raster(self.raster, cx, cy, p.yaw_deg, side_px,
                                  (self.camera.width_px, self.camera.height_px), p.tilt_deg, p.tilt_dir_deg,
                                  self.camera.hfov_deg)
        return condition_view(self.cfg.condition, np.random.default_rng([self.cfg.seed, p.i, 1]), view,
                              self.cfg.seed, p.i)


@dataclasses.dataclass
class FlightFrame:
    """One rendered frame with its truth, in the shape `io.bags.write_query_bag` writes."""

    image: np.ndarray
    lat: float
    lon: float
    yaw_deg: float
    altitude_m: float


def flight_frames(renderer: FrameRenderer, poses: list[Pose], progress: bool = True):
    """The flight's frames one at a time (a 12 km flight is 2,400 frames: never all in memory)."""
    for p in tqdm(poses, desc="flight bag", unit="frame", disable=not progress):
        yield FlightFrame(renderer.render(p), p.lat, p.lon, p.yaw_deg, p.altitude_m)


def write_flight_bag(renderer: FrameRenderer, poses: list[Pose], cfg: FlightConfig, path,
                     progress: bool = True) -> pathlib.Path:
    """The flight as the aircraft would record it (frames as JPEG CompressedImage at `rate_hz`, /gps/fix truth,
    heading and altitude priors with the flight's noise), for `vpr replay-ros BAG --verify --autopilot ...`: the
    same frames through the three nodes. The VIO position prior is not written: it is reset by the fixes, a loop
    a recorded bag cannot close."""
    from vpr_node.core.io.bags import write_query_bag
    from vpr_node.core.priors.noise import PriorNoise

    noise = PriorNoise(heading=True, altitude=True, heading_sigma_deg=cfg.heading_sigma_deg,
                       altitude_sigma_pct=cfg.altitude_sigma_pct, seed=cfg.seed)
    return write_query_bag(flight_frames(renderer, poses, progress), path, rate_hz=cfg.rate_hz, compressed=True,
                           priors=noise)


class VioDrift:
    """The autopilot's VIO position: error = bias (drift_pct of the distance since the last reset, in a random
    direction) + random walk; reported 1-sigma = sqrt(sigma0^2 + (bias)^2 + walk^2 * d)."""

    def __init__(self, cfg: FlightConfig, seed):
        self.cfg, self.rng = cfg, np.random.default_rng(seed)
        self.err = self.rng.normal(0, cfg.start_sigma_m, 2)
        self.sigma0, self.d = cfg.start_sigma_m, 0.0
        self._new_bias()

    def _new_bias(self):
        a = self.rng.uniform(0, 2 * math.pi)
        self.bias = np.array([math.sin(a), math.cos(a)])

    def advance(self, ds: float) -> None:
        self.d += ds
        self.err = self.err + self.cfg.drift_pct / 100.0 * ds * self.bias \
            + self.cfg.walk_m * math.sqrt(ds) * self.rng.standard_normal(2)

    @property
    def sigma_m(self) -> float:
        return math.sqrt(self.sigma0 ** 2 + (self.cfg.drift_pct / 100.0 * self.d) ** 2 + self.cfg.walk_m ** 2 * self.d)

    def reset(self, err_en, sigma_m: float) -> None:
        """An accepted fix: the estimate is the fix now (its error), and drift starts again from it."""
        self.err, self.sigma0, self.d = np.asarray(err_en, float), float(sigma_m), 0.0
        self._new_bias()

    def estimate(self, lat: float, lon: float) -> tuple[float, float]:
        m_lat, m_lon = metres_per_degree(lat)
        return lat + self.err[1] / m_lat, lon + self.err[0] / m_lon


def _distances(p: Pose, cands, k: int) -> np.ndarray:
    d, cands = np.full(k, np.inf), list(cands)[:k]
    if cands:
        d[:len(cands)] = haversine_m(p.lat, p.lon, [c.tile.lat for c in cands], [c.tile.lon for c in cands])
    return d


def fly(name: str, strategy, verifier, renderer: FrameRenderer, poses: list[Pose], real_rows: np.ndarray,
        parts: list[RealPart], camera: CameraModel, cfg: FlightConfig, progress: bool = True) -> list[dict]:
    """One configuration over the whole flight, frame by frame (priors depend on earlier fixes)."""
    heading, altitude, position = CONFIGS[name]
    applier = PriorApplier(PriorConfig(heading=heading, altitude=altitude, position=position, camera=camera),
                           strategy.index)
    vio = VioDrift(cfg, [cfg.seed, 2])
    records, prev_s = [], 0.0
    for p in tqdm(poses, desc=f"flight [{name}]", unit="frame", disable=not progress):
        frame = renderer.render(p)
        vio.advance(p.s_m - prev_s)
        prev_s = p.s_m
        stamp = int(p.i * 1e9 / cfg.rate_hz)
        noise = np.random.default_rng([cfg.seed, p.i, 3])
        applier.buffer.add(HEADING, stamp, (p.yaw_deg + noise.normal(0, cfg.heading_sigma_deg)) % 360.0)
        applier.buffer.add(ALTITUDE, stamp, p.altitude_m * (1 + noise.normal(0, cfg.altitude_sigma_pct / 100.0)))
        applier.buffer.add(POSITION, stamp, *vio.estimate(p.lat, p.lon), vio.sigma_m)
        img, allowed, state = applier.apply(frame, stamp)
        d = strategy.embed_query(img)
        cands = strategy.retrieve_topk(d, max(cfg.k, verifier.cfg.candidates_needed), allowed)
        real = bool(real_mask(parts, p.lat, p.lon))
        rec = {"i": p.i, "s_m": round(p.s_m, 1), "real": real, "dist_m": _distances(p, cands, cfg.k).tolist(),
               "prior": state.label(), "searched": state.candidates_searched,
               "vio_error_m": round(float(np.hypot(*vio.err)), 2), "vio_sigma_m": round(vio.sigma_m, 2)}
        if real:  # the small-map reference: the same descriptor and priors, only the real imagery's tiles
            small = real_rows if allowed is None else np.intersect1d(allowed, real_rows)
            rec["small_dist_m"] = _distances(p, strategy.retrieve_topk(d, cfg.k, small) if len(small) else [],
                                             cfg.k).tolist()
        v = verifier.verify(frame, cands)
        rec["verification"] = frame_record(v, p.lat, p.lon)
        if position and v.accepted:
            m_lat, m_lon = metres_per_degree(p.lat)
            fix_sigma = math.sqrt(max(np.linalg.eigvalsh(np.asarray(v.fix.cov_en)).max(), 0.0))
            vio.reset([(v.fix.lon - p.lon) * m_lon, (v.fix.lat - p.lat) * m_lat], fix_sigma)
        records.append(rec)
    return records


def _recall(rows: list, n: int, radius_m: float) -> float | None:
    if not rows:
        return None
    return round(float(np.mean([min(r[:n]) <= radius_m for r in rows])), 4)


def summarise_flight(records: list[dict], cfg: FlightConfig) -> dict:
    """Totals of one configuration: recall over the flight and its real part (full map and small map), fixes."""
    real = [r for r in records if r["real"]]
    ver = summarise([r["verification"] for r in records], cfg.radius_m)
    fixed_until, fixed = -math.inf, 0
    since, gaps = None, []
    for r in records:
        t = r["i"] / cfg.rate_hz
        if r["verification"]["accepted"]:
            fixed_until = t + cfg.fix_valid_s
            if since is not None:
                gaps.append(t - since)
            since = t
        fixed += t < fixed_until
    vio = np.array([r["vio_error_m"] for r in records])
    sig = np.array([r["vio_sigma_m"] for r in records])
    out = {"frames": len(records), "real_frames": len(real),
           "flight_km": round(records[-1]["s_m"] / 1000.0, 2) if records else 0.0}
    for n in (1, 10):
        out[f"recall_at_{n}"] = _recall([r["dist_m"] for r in records], n, cfg.radius_m)
        out[f"real_recall_at_{n}"] = _recall([r["dist_m"] for r in real], n, cfg.radius_m)
        out[f"real_small_map_recall_at_{n}"] = _recall([r["small_dist_m"] for r in real], n, cfg.radius_m)
        out[f"procedural_recall_at_{n}"] = _recall([r["dist_m"] for r in records if not r["real"]], n, cfg.radius_m)
    out.update({"accepted_fixes": ver["accepted"], "acceptance_rate": ver["acceptance_rate"],
                "fix_precision": ver["precision"], "fix_error_m_p50": ver["error_m_p50"],
                "fix_error_m_p95": ver["error_m_p95"], "verified_recall_at_1": ver["verified_recall_at_1"],
                "real_verified_recall_at_1": summarise([r["verification"] for r in real], cfg.radius_m)
                ["verified_recall_at_1"] if real else None,
                "share_fixed": round(fixed / len(records), 4) if records else None,
                "longest_gap_s": round(max(gaps), 1) if gaps else None,
                "vio_error_m_p50": round(float(np.percentile(vio, 50)), 1),
                "vio_error_m_p95": round(float(np.percentile(vio, 95)), 1),
                "vio_error_m_max": round(float(vio.max()), 1),
                "vio_within_3sigma": round(float(np.mean(vio <= 3 * sig)), 4),
                "verify_ms_p50": ver["verify_ms_p50"]})
    return out
