"""The verifier (the spec's C2.5 re-ranker): a frame and its top-K retrieval candidates -> local features against
each candidate tile's pixels -> robust homography -> candidates re-ranked by inliers, and a metric fix of the
camera's boresight ground point with its heading, covariance and calibrated confidence.

The frame is resized so that its short side has `query_px` pixels (about the tiles' ground resolution: tiles are
cut to the camera's footprint), turned grey, and its features extracted once; each tile's features come from a
bounded cache. Candidates whose homography is implausible for a down-looking camera keep the reason. Among the
valid ones the most inliers wins; its fix is accepted when the calibration (confidence.py) says it is confident.
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
from vpr_node.core.verification import geometry
from vpr_node.core.verification.confidence import Calibration, feature_vector
from vpr_node.core.verification.features import DETECTORS, Matcher, extract, make_detector, to_gray
from vpr_node.core.verification.result import Fix, Verification, VerifiedCandidate
from vpr_node.core.verification.tiles import TileImages


@dataclasses.dataclass
class VerifyConfig:
    features: str = option("sift", "local features: sift (RootSIFT) | orb | akaze",
                           check=lambda v: None if v in DETECTORS else f"choose one of {', '.join(DETECTORS)}")
    verify_k: int = option(10, "retrieval candidates verified per frame (the first K of VprResult)")
    top_n: int = option(3, "verified candidates published per frame")
    query_px: int = option(400, "the frame's short side (px) when its features are extracted")
    query_features: int = option(2000, "most local features of a frame")
    tile_features: int = option(1500, "most local features of a tile")
    ratio: float = option(0.8, "Lowe's ratio test of the feature matching")
    ransac_px: float = option(4.0, "homography inlier threshold (tile px)")
    min_inliers: int = option(15, "fewest inliers of a valid homography")
    agree_m: float = option(20.0, "other candidates whose fix lies within this distance agree (confidence feature)")
    cache_mib: float = option(256.0, "memory for cached tile features (MiB; least recently used first out)")


class Verifier:
    """Verifies frames against the tiles of one index folder."""

    def __init__(self, tiles: TileImages, cfg: VerifyConfig | None = None, calibration: Calibration | None = None):
        self.tiles, self.cfg, self.calibration = tiles, cfg or VerifyConfig(), calibration
        self._detector = make_detector(self.cfg.features, self.cfg.query_features)
        self._matcher = Matcher(self.cfg.features, self.cfg.ratio)

    @classmethod
    def for_index(cls, index_dir, cfg: VerifyConfig | None = None, require_calibration: bool = False) -> "Verifier":
        cfg = cfg or VerifyConfig()
        tiles = TileImages(index_dir, cfg.cache_mib)
        return cls(tiles, cfg, Calibration.for_index(index_dir, required=require_calibration))

    def _frame(self, rgb: np.ndarray):
        h, w = rgb.shape[:2]
        s = self.cfg.query_px / min(h, w)
        small = cv2.resize(rgb, (max(8, round(w * s)), max(8, round(h * s))), interpolation=cv2.INTER_AREA)
        return extract(to_gray(small), self._detector, self.cfg.features, self.cfg.query_features)

    def verify(self, rgb: np.ndarray, candidates) -> Verification:
        """`candidates`: retrieval candidates (types.Candidate, or anything with rank, tile.name/lat/lon, distance)."""
        if not candidates:
            raise VprVerificationError("the retrieval result has no candidates to verify", reason="no_candidates")
        t0 = time.perf_counter()
        frame = self._frame(rgb)
        t_feat = time.perf_counter()
        out, fits = [], {}
        for c in list(candidates)[:self.cfg.verify_k]:
            row = self.tiles.row(c.tile.name)
            vc = VerifiedCandidate(int(c.rank), c.tile.name, float(c.tile.lat), float(c.tile.lon), float(c.distance))
            tile = self.tiles.features(row, self.cfg.features, self.cfg.tile_features)
            qi, ti = self._matcher.match(frame, tile)
            vc.matches = int(len(qi))
            fit, vc.reason = geometry.estimate(frame.xy[qi], tile.xy[ti], self.cfg.ransac_px, self.cfg.min_inliers)
            if fit is not None:
                vc.inliers, vc.inlier_ratio, vc.reprojection_px = fit.inliers, fit.inlier_ratio, fit.rms_px
                vc.reason = geometry.implausible(fit, frame.size, tile.size)
                centre = geometry.project(fit.H, [[frame.size[0] / 2, frame.size[1] / 2]])[0]
                vc.fix_lat, vc.fix_lon = self.tiles.tile_to_latlon(row, centre[0], centre[1], tile.size)
                fits[c.tile.name] = (fit, frame.size, tile.size, row)
            out.append(vc)
        valid = sorted((v for v in out if v.valid), key=lambda v: (-v.inliers, v.retrieval_rank))
        ranked = valid + sorted((v for v in out if not v.valid), key=lambda v: v.retrieval_rank)
        result = Verification(ranked, None, "", features_ms=(t_feat - t0) * 1e3, fits=fits)
        if not valid:
            result.reason = next((v.reason for v in out if v.reason not in ("too_few_matches", "no_homography",
                                                                             "too_few_inliers")), None) \
                or max(out, key=lambda v: v.matches).reason
        else:
            best = valid[0]
            result.agree = sum(1 for v in valid[1:]
                               if haversine_m(best.fix_lat, best.fix_lon, v.fix_lat, v.fix_lon) <= self.cfg.agree_m)
            result.fix = self._fix(best, fits[best.tile_id])
            x = feature_vector(result)
            if self.calibration is None:
                result.reason = "uncalibrated"
            else:
                result.fix.confidence = self.calibration.confidence(x)
                result.fix.cov_en = self.calibration.scaled(result.fix.cov_en)
                result.fix.accepted = result.fix.confidence >= self.calibration.threshold
                result.reason = "" if result.fix.accepted else "low_confidence"
        result.latency_ms = (time.perf_counter() - t0) * 1e3
        return result

    def _fix(self, best: VerifiedCandidate, fit_info) -> Fix:
        fit, frame_size, tile_size, row = fit_info
        (x, y, heading), cov = geometry.fix_covariance(fit, frame_size)
        mx, my = self.tiles.metres_per_pixel(row, tile_size)
        d = np.diag([mx, -my])  # tile px (x right, y down) -> metres (east, north)
        cov_en = d @ cov[:2, :2] @ d.T
        lat, lon = self.tiles.tile_to_latlon(row, x, y, tile_size)
        return Fix(lat, lon, float(heading), cov_en, float(math.sqrt(max(cov[2, 2], 0.0))), best.tile_id,
                   best.inliers)
