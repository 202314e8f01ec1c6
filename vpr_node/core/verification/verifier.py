"""The verifier (the spec's C2.5 re-ranker): a frame and its top-K retrieval candidates -> local features matched
against each candidate's map -> robust homography -> candidates re-ranked by inliers, and a metric fix of the
camera's boresight ground point with its heading, covariance and calibrated confidence.

Two kinds of matcher (matchers/), and a cascade of one of each:
- classic (`sift`, `orb`, `akaze`) against the index folder's tile images: the frame resized so that its short side
  has `query_px` pixels (about the tiles' resolution: tiles are cut to the camera's footprint), features extracted
  once, each tile's from a bounded cache; rotation invariant;
- learned (`xfeat`, `xfeat-mnn`, `aliked`) against windows of the map features prepared before flight at one ground
  resolution: the frame resampled to that resolution (its footprint from the altitude prior, else the candidate
  tile's ground size) and turned north-up (the heading prior, else `heading_tries` headings, the one with most
  mutual nearest neighbours kept); one window per place (candidates it covers share it), `learned_windows` per frame.
The first matcher verifies the first `verify_k` candidates (C2.5's top 10); on a frame they leave without an accepted
fix it goes on down the list to `deeper_k`, all re-ranked together (on changed ground the right place is often just
below the top 10). `fallback_matcher` runs only on frames the first matcher gives no accepted fix (BENCHMARKS.md
"Verification on real imagery": SIFT verifies rendered views quickly and fails on a real camera, where XFeat +
LighterGlue holds).
Candidates whose homography is implausible for a down-looking camera keep the reason. Among the valid ones the most
inliers wins; its fix is accepted when the calibration (confidence.py) says it is confident.
"""
from __future__ import annotations

import dataclasses
import math
import time

import cv2
import numpy as np

from vpr_node.core.errors import VprVerificationError
from vpr_node.core.maps.geo import haversine_m
from vpr_node.core.options import option
from vpr_node.core.verification import evidence, geometry
from vpr_node.core.verification.confidence import Calibration, feature_vector
from vpr_node.core.verification.map_features import MapFeatures
from vpr_node.core.verification.matchers import MAP_SOURCE, check_name, make_matcher
from vpr_node.core.verification.matchers.base import LocalFeatures, mutual_nearest
from vpr_node.core.verification.result import FitRecord, Fix, FrameHints, Verification, VerifiedCandidate
from vpr_node.core.verification.tiles import TileImages


def _runtime_check(v):
    return None if v in ("auto", "pytorch", "onnxruntime") else "choose auto, pytorch or onnxruntime"


@dataclasses.dataclass
class VerifyConfig:
    matcher: str = option("sift", "the matcher: sift (RootSIFT) | orb | akaze against the index's tile images, or a "
                                  "learned one (xfeat = XFeat + LighterGlue | xfeat-mnn | aliked) against windows of "
                                  "the index's map features", check=check_name)
    fallback_matcher: str = option("xfeat", "a learned matcher run on the frames the first gives no accepted fix ('' = "
                                            "none); it needs the index's map features (prepare-mission makes them)",
                                   check=lambda v: check_name(v, allow_empty=True))
    matcher_runtime: str = option("auto", "runtime of a learned matcher: auto (the ONNX export in the index's "
                                          "map_features/ where there is one, else pytorch) | onnxruntime | pytorch",
                                  check=_runtime_check)
    verify_k: int = option(10, "retrieval candidates verified per frame (the first K of VprResult)")
    deeper_k: int = option(30, "on a frame the first verify_k candidates give no accepted fix, the first matcher "
                               "also verifies VprResult's candidates up to this rank, re-ranked with them (0 = "
                               "off): on changed ground the right place is often just below the top 10 "
                               "(BENCHMARKS.md); the node's top_k must reach it")
    top_n: int = option(3, "verified candidates published per frame")
    query_px: int = option(400, "classic matchers: the frame's short side (px) when its features are extracted")
    query_features: int = option(2000, "classic matchers: most local features of a frame")
    tile_features: int = option(1500, "classic matchers: most local features of a tile")
    ratio: float = option(0.8, "classic matchers: Lowe's ratio test of the feature matching")
    ransac_px: float = option(4.0, "classic matchers: homography inlier threshold (tile px)")
    min_inliers: int = option(15, "fewest inliers of a valid homography")
    agree_m: float = option(20.0, "other candidates whose fix lies within this distance agree (confidence feature)")
    cache_mib: float = option(256.0, "memory for cached tile features (MiB; least recently used first out)")
    learned_windows: int = option(3, "learned matchers: map windows screened per frame (the places of the first "
                                     "candidates by retrieval rank; a candidate inside an earlier window shares it)")
    matched_windows: int = option(3, "learned matchers: screened windows the matcher runs on, most mutual nearest "
                                     "neighbours first (LighterGlue is the fallback's cost; 1 halves it and loses "
                                     "real-imagery fixes: BENCHMARKS.md 'Verification on real imagery')")
    window_scale: float = option(1.0, "learned matchers: a window's half side is this times the frame's footprint "
                                       "(about the frame's turned extent; a larger window spreads its keypoint budget "
                                       "over ground the frame does not see and starves LighterGlue)")
    frame_features: int = option(2048, "learned matchers: the frame's strongest keypoints kept (LighterGlue's cost "
                                       "grows with frame x window keypoints)")
    window_features: int = option(2048, "learned matchers: a window's strongest map features kept")
    window_ransac_m: float = option(1.5, "learned matchers: homography inlier threshold (m on the ground)")
    ambiguous_ratio: float = option(0.8, "a valid candidate elsewhere (its fix farther than agree_m) with at least "
                                         "this share of the best one's inliers makes the frame ambiguous: no fix")
    prior_gate: float = option(4.0, "a fix farther from the position prior than this many sigma (Mahalanobis, both "
                                    "covariances) is refused (far_from_prior)")
    heading_tries: int = option(6, "learned matchers without a heading prior: headings the frame is turned to "
                                   "(evenly spaced); the one with most mutual nearest neighbours is verified (6 "
                                   "verified the most real crops of 4, 6 and 8: BENCHMARKS.md)")

    @property
    def label(self) -> str:
        """The matchers, as a calibration records them: 'sift', 'sift>xfeat', 'sift@30>xfeat' (deeper_k 30), ..."""
        deeper = f"@{self.deeper_k}" if self.deeper_k > self.verify_k else ""
        return self.matcher + deeper + (f">{self.fallback_matcher}" if self.fallback_matcher else "")

    @property
    def candidates_needed(self) -> int:
        """How many retrieval candidates a frame should come with (verify_k, or deeper_k when it is deeper)."""
        return max(self.verify_k, self.deeper_k)


def _scaled(rgb: np.ndarray, scale: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    size = (max(32, round(w * scale)), max(32, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def turned(rgb: np.ndarray, heading_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """The image turned so that north is up for a camera whose 'up' points `heading_deg` clockwise from north, on a
    canvas that keeps every pixel, and the 2x3 affine from the image's pixels to the turned image's.

    The canvas around the turned frame is the frame mirrored, not black: a black surround puts a strong false edge
    along the frame's border, where a learned detector spends its keypoint budget and whose descriptors mix in the
    black (BENCHMARKS.md 'Verification on real imagery': with the exact heading on the real crops, 29 -> 33 fixes,
    median inliers 39 -> 59). Keypoints outside the frame are dropped by the caller."""
    h, w = rgb.shape[:2]
    a = math.radians(heading_deg)
    cw, ch = int(math.ceil(w * abs(math.cos(a)) + h * abs(math.sin(a)))), \
        int(math.ceil(w * abs(math.sin(a)) + h * abs(math.cos(a))))
    m = cv2.getRotationMatrix2D((w / 2, h / 2), -heading_deg, 1.0)
    m[:, 2] += (cw / 2 - w / 2, ch / 2 - h / 2)
    return cv2.warpAffine(rgb, m, (cw, ch), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101), m


@dataclasses.dataclass
class _Place:
    """One map window: a candidate and the lower-ranked candidates it covers."""

    lead: object  # retrieval candidate
    row: int
    footprint_m: float
    members: list


class Verifier:
    """Verifies frames against the tiles and map features of one index folder."""

    def __init__(self, tiles: TileImages, cfg: VerifyConfig | None = None, calibration: Calibration | None = None):
        """A learned matcher's map features are read from the tiles' index folder (map_features/<extractor>/)."""
        self.tiles, self.cfg, self.calibration = tiles, cfg or VerifyConfig(), calibration
        self.primary = self._make(self.cfg.matcher)
        self.fallback = self._make(self.cfg.fallback_matcher) if self.cfg.fallback_matcher else None
        self.label = self.cfg.label
        self.run_all_stages = False  # calibration: every stage on every frame, each stage's fix a sample
        self.coverage = evidence.MapCoverage(self.tiles.cols)  # where a wrong fix can land (a prior's evidence)

    @classmethod
    def for_index(cls, index_dir, cfg: VerifyConfig | None = None, require_calibration: bool = False,
                  calibrated: bool = True) -> "Verifier":
        """The verifier of an index folder: its tiles, its map features where a learned matcher needs them, and its
        calibration (fitted for these matchers; `calibrated=False`: none, e.g. to compare matchers' raw fixes)."""
        cfg = cfg or VerifyConfig()
        tiles = TileImages(index_dir, cfg.cache_mib)
        calibration = Calibration.for_index(index_dir, required=require_calibration, verifier=cfg.label) \
            if calibrated else None
        return cls(tiles, cfg, calibration)

    def _make(self, name: str):
        cfg = self.cfg
        if MAP_SOURCE.get(name) != "windows":
            return make_matcher(name, max_features=cfg.query_features, ratio=cfg.ratio)
        features = MapFeatures(self.tiles.root, name)
        runtime = cfg.matcher_runtime
        if runtime == "auto":
            runtime = "onnxruntime" if name.startswith("xfeat") and (features.root / "matcher_onnx.json").is_file() \
                else "pytorch"
        matcher = make_matcher(name, max_features=int(features.meta["max_features"]), runtime=runtime,
                               onnx_dir=features.root)
        features.check_matcher(matcher)
        matcher.map_features = features
        return matcher

    # --- one frame -----------------------------------------------------------------------------------------
    def verify(self, rgb: np.ndarray, candidates, hints: FrameHints | None = None) -> Verification:
        """`candidates`: retrieval candidates (types.Candidate, or anything with rank, tile.name/lat/lon, distance);
        `hints`: the frame's heading and footprint where the drone knows them."""
        if not candidates:
            raise VprVerificationError("the retrieval result has no candidates to verify", reason="no_candidates")
        t0 = time.perf_counter()
        hints = hints or FrameHints()
        cfg, cache = self.cfg, {}
        every = list(candidates)[:cfg.candidates_needed]
        rows = [self.tiles.row(c.tile.name) for c in every]  # a tile of another index: typed error before any work
        k = cfg.verify_k

        def unverified(r: Verification) -> bool:  # what the later stages run on (uncalibrated: frames without a fix)
            return r.fix is None if self.calibration is None else not r.accepted

        result = self._stage(self.primary, 0, rgb, every[:k], rows[:k], hints, cache)
        if len(every) > k and unverified(result):  # the same matcher on the next candidates, re-ranked with the first
            result = self._stage(self.primary, 0, rgb, every[k:], rows[k:], hints, cache, earlier=result)
        stages = [result]
        if self.fallback is not None and (unverified(result) or self.run_all_stages):  # calibration: every stage
            second = self._stage(self.fallback, 1, rgb, every[:k], rows[:k], hints, cache)
            stages.append(second)
            if second.accepted or (second.fix is not None and result.fix is None):
                result = second
        result.stages = stages
        result.latency_ms = (time.perf_counter() - t0) * 1e3
        return result

    def _stage(self, matcher, stage: int, rgb, cands, rows, hints: FrameHints, cache: dict,
               earlier: Verification | None = None) -> Verification:
        """One matcher on `cands`; `earlier`: the same matcher's result on the candidates before them, merged."""
        t0 = time.perf_counter()
        if matcher.map_source == "tiles":
            out, fits, t_feat = self._against_tiles(matcher, rgb, cands, rows, cache)
        else:
            out, fits, t_feat = self._against_windows(matcher, rgb, cands, rows, hints)
        if earlier is not None:
            out, fits = list(earlier.candidates) + out, {**earlier.fits, **fits}
            t_feat += earlier.features_ms / 1e3
        valid = sorted((v for v in out if v.valid), key=lambda v: (-v.inliers, v.retrieval_rank))
        ranked = valid + sorted((v for v in out if not v.valid), key=lambda v: v.retrieval_rank)
        result = Verification(ranked, None, "", features_ms=t_feat * 1e3, fits=fits, matcher=matcher.name,
                              stage=stage)
        if not valid:
            result.reason = next((v.reason for v in out if v.reason not in (
                "too_few_matches", "no_homography", "too_few_inliers", "same_window", "not_verified",
                "outside_map_features")), None) or max(out, key=lambda v: v.matches).reason
        else:
            best = valid[0]
            result.agree = sum(1 for v in valid[1:]
                               if haversine_m(best.fix_lat, best.fix_lon, v.fix_lat, v.fix_lon) <= self.cfg.agree_m)
            result.fix = fix = self._fix(best, fits[best.tile_id])
            result.features = x = feature_vector(result, self.cfg.agree_m)
            prior = evidence.against_prior(fix.lat, fix.lon, fix.cov_en, hints.prior_lat, hints.prior_lon,
                                           hints.prior_sigma_m)
            if self.calibration is None:
                result.reason = "uncalibrated"
            else:
                fix.confidence = self.calibration.confidence(x)
                if prior is not None:  # where the fix lands against an independent prior (evidence.py)
                    area, mass = self.coverage.within_gate(hints.prior_lat, hints.prior_lon, prior.cov_en,
                                                           self.cfg.prior_gate)
                    fix.confidence = evidence.with_log_ratio(
                        fix.confidence, evidence.prior_log_ratio(prior.distance, prior.cov_en, area, mass))
                # a less certain fix reports a larger covariance: the calibrated one over its confidence
                fix.cov_en = self.calibration.scaled(fix.cov_en) / max(fix.confidence, 0.05)
                fix.accepted = fix.confidence >= self.calibration.threshold
                result.reason = "" if fix.accepted else "low_confidence"
            if evidence.rival_ratio(valid, self.cfg.agree_m) >= self.cfg.ambiguous_ratio:
                fix.accepted, result.reason = False, "ambiguous"  # two places nearly as good: neither
            elif prior is not None and prior.distance > self.cfg.prior_gate:
                fix.accepted, result.reason = False, "far_from_prior"
        result.latency_ms = (time.perf_counter() - t0) * 1e3 + (earlier.latency_ms if earlier is not None else 0.0)
        return result

    def _check(self, vc: VerifiedCandidate, src, dst, frame_size, map_size, where, row, threshold_px: float,
               scale_range: tuple[float, float], fits: dict) -> None:
        """Homography from matched points, its plausibility and the fix it implies, into `vc` (and `fits`)."""
        fit, vc.reason = geometry.estimate(src, dst, threshold_px, self.cfg.min_inliers)
        if fit is None:
            return
        vc.inliers, vc.inlier_ratio, vc.reprojection_px = fit.inliers, fit.inlier_ratio, fit.rms_px
        vc.reason = geometry.implausible(fit, frame_size, map_size, scale_range)
        centre = geometry.project(fit.H, [[frame_size[0] / 2, frame_size[1] / 2]])[0]
        vc.fix_lat, vc.fix_lon = where.to_latlon(centre[0], centre[1])
        fits[vc.tile_id] = FitRecord(fit, frame_size, map_size, where, row)

    # --- classic: the index's tile images --------------------------------------------------------------------
    def _against_tiles(self, matcher, rgb, cands, rows, cache: dict):
        t0 = time.perf_counter()
        h, w = rgb.shape[:2]
        if matcher.name not in cache:  # the frame's features, once per frame and matcher
            cache[matcher.name] = matcher.extract(_scaled(rgb, self.cfg.query_px / min(h, w)), self.cfg.query_features)
        frame = cache[matcher.name]
        t_feat = time.perf_counter() - t0
        out, fits = [], {}
        for c, row in zip(cands, rows, strict=True):
            vc = VerifiedCandidate(int(c.rank), c.tile.name, float(c.tile.lat), float(c.tile.lon), float(c.distance))
            tile = self.tiles.features(row, matcher, self.cfg.tile_features)
            qi, ti = matcher.match(frame, tile)
            vc.matches = int(len(qi))
            self._check(vc, frame.xy[qi], tile.xy[ti], frame.size, tile.size, self.tiles.where(row, tile.size), row,
                        self.cfg.ransac_px, (0.2, 5.0), fits)
            out.append(vc)
        return out, fits, t_feat

    # --- learned: windows of map features --------------------------------------------------------------------
    def _places(self, cands, rows, hints: FrameHints) -> list[_Place]:
        """Candidates grouped into map windows: a candidate whose centre lies within a quarter of an earlier
        window's half side from its centre shares that window."""
        places: list[_Place] = []
        for c, row in zip(cands, rows, strict=True):
            for p in places:
                if haversine_m(p.lead.tile.lat, p.lead.tile.lon, c.tile.lat, c.tile.lon) <= \
                        0.25 * self.cfg.window_scale * p.footprint_m:
                    p.members.append(c)
                    break
            else:
                footprint = hints.footprint_m if math.isfinite(hints.footprint_m) else self.tiles.ground_m(row)
                places.append(_Place(c, row, footprint, [c]))
        return places

    def _frame(self, matcher, rgb, footprint_m: float, heading_deg: float, cache: dict):
        """The frame's strongest keypoints at the map features' resolution, extracted from the frame turned
        north-up: (features in the turned image's pixels, what the matcher sees: LightGlue's positional encoding
        needs the upright geometry; the same keypoints in the resampled, unturned frame's pixels, where the
        homography and the fix are computed; that frame's size)."""
        key = (round(footprint_m, 1), round(heading_deg % 360.0, 1))
        if key not in cache:
            h, w = rgb.shape[:2]
            scale = min(2.0, footprint_m / min(h, w) / matcher.map_features.gsd_m)
            small = _scaled(rgb, scale)
            img, m = turned(small, heading_deg)
            f = matcher.extract(img)
            inv = cv2.invertAffineTransform(m)
            xy = f.xy @ inv[:, :2].T + inv[:, 2]
            sw, sh = small.shape[1], small.shape[0]
            keep = np.flatnonzero((xy[:, 0] >= 2) & (xy[:, 0] < sw - 2) & (xy[:, 1] >= 2) & (xy[:, 1] < sh - 2))
            keep = keep[np.argsort(-f.scores[keep], kind="stable")[:self.cfg.frame_features]]
            cache[key] = (f.take(keep), xy[keep].astype(np.float32), (sw, sh))
        return cache[key]

    def _against_windows(self, matcher, rgb, cands, rows, hints: FrameHints):
        """Screen the first `learned_windows` places cheaply (mutual nearest neighbours through a homography, at
        each heading tried), then run the matcher on the `matched_windows` best screened ones."""
        cfg, mf = self.cfg, matcher.map_features
        t_feat, cache, out, fits, screened = 0.0, {}, [], {}, []
        headings = [hints.heading_deg] if math.isfinite(hints.heading_deg) else \
            [k * 360.0 / max(1, cfg.heading_tries) for k in range(max(1, cfg.heading_tries))]
        for i, place in enumerate(self._places(cands, rows, hints)):
            lead = place.lead
            entries = [VerifiedCandidate(int(c.rank), c.tile.name, float(c.tile.lat), float(c.tile.lon),
                                         float(c.distance)) for c in place.members]
            out += entries
            for other in entries[1:]:
                other.reason = "same_window"
            if i >= cfg.learned_windows:
                for e in entries:
                    e.reason = "not_verified"
                continue
            if not mf.covers(lead.tile.lat, lead.tile.lon):
                entries[0].reason = "outside_map_features"
                continue
            t0 = time.perf_counter()
            frames = [self._frame(matcher, rgb, place.footprint_m, hd, cache) for hd in headings]
            t_feat += time.perf_counter() - t0
            ref, win = mf.window(lead.tile.lat, lead.tile.lon, cfg.window_scale * place.footprint_m,
                                 cfg.window_features, lead.tile.name)
            support, frame = max(((self._support(f[0], ref, mf.gsd_m), k) for k, f in enumerate(frames)))
            screened.append((support, -i, entries[0], place, ref, win, frames[frame]))
        for rank, (_, _, vc, place, ref, win, (upright, xy, size)) in enumerate(sorted(screened, reverse=True)):
            if rank >= cfg.matched_windows:
                vc.reason = "not_verified"
                continue
            qi, ti = matcher.match(upright, ref)
            vc.matches = int(len(qi))
            self._check(vc, xy[qi], ref.xy[ti], size, win.size, win, place.row, cfg.window_ransac_m / mf.gsd_m,
                        (0.4, 2.5), fits)
        return out, fits, t_feat

    def _support(self, frame: LocalFeatures, ref: LocalFeatures, gsd_m: float) -> int:
        """Inliers of a homography through the mutual nearest neighbours: a cheap score of a frame's heading."""
        qi, ti = mutual_nearest(frame.descriptors, ref.descriptors)
        fit, _ = geometry.estimate(frame.xy[qi], ref.xy[ti], self.cfg.window_ransac_m / gsd_m, 4)
        return fit.inliers if fit is not None else 0

    def _fix(self, best: VerifiedCandidate, rec: FitRecord):
        (x, y, heading), cov = geometry.fix_covariance(rec.fit, rec.frame_size)
        mx, my = rec.where.metres_per_pixel()
        d = np.diag([mx, -my])  # map px (x right, y down) -> metres (east, north)
        cov_en = d @ cov[:2, :2] @ d.T
        lat, lon = rec.where.to_latlon(x, y)
        return Fix(lat, lon, float(heading), cov_en, float(math.sqrt(max(cov[2, 2], 0.0))), best.tile_id,
                   best.inliers)
