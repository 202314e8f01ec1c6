"""What verification says about one frame: its candidates re-ranked by geometric inliers, and a position fix with
a covariance and a calibrated confidence, or the reason there is none."""
from __future__ import annotations

import dataclasses
import math

import numpy as np

# Why a candidate has no valid homography (VerifiedCandidate.reason) beyond the frame's reasons below.
CANDIDATE_REASONS = {
    "same_window": "verified through a nearer-ranked candidate's map window, which covers it",
    "not_verified": "beyond the map windows a learned matcher screens (learned_windows) or matches "
                    "(matched_windows) per frame",
    "outside_map_features": "its place has no prepared map features",
}

# Why a frame has no accepted fix (VprVerification.reason); '' = a fix was accepted.
NO_FIX_REASONS = {
    "too_few_matches": "fewer local-feature matches than a homography needs",
    "no_homography": "no homography consistent with the matches",
    "too_few_inliers": "a homography, but with fewer inliers than min_inliers",
    "degenerate_homography": "the homography flips, shears or folds the frame: not a camera over the ground",
    "implausible_scale": "the homography's scale is far from the frame/tile ground scales",
    "fix_outside_tile": "the frame's centre falls outside the verified tile (or map window)",
    "low_confidence": "a fix, but its calibrated confidence is below the acceptance threshold",
    "ambiguous": "another place of the map verified nearly as well: the frame could be either",
    "far_from_prior": "the fix disagrees with the drone's position prior (beyond prior_gate sigma)",
    "uncalibrated": "a fix, but the index has no verifier calibration (`vpr calibrate-verifier`)",
}


@dataclasses.dataclass
class VerifiedCandidate:
    retrieval_rank: int
    tile_id: str
    lat: float  # tile centre
    lon: float
    distance: float  # descriptor distance from retrieval
    matches: int = 0
    inliers: int = 0
    inlier_ratio: float = 0.0
    reprojection_px: float = math.nan  # RMS of the inliers' reprojection error (tile or window px)
    fix_lat: float = math.nan  # where this candidate's homography puts the frame's centre
    fix_lon: float = math.nan
    reason: str = ""  # why no valid homography ('' = valid)

    @property
    def valid(self) -> bool:
        return not self.reason


@dataclasses.dataclass
class FrameHints:
    """What the drone told retrieval about this frame (VprResult's priors), which a learned matcher uses to turn the
    frame north-up and to resample it to the map features' ground resolution. NaN = unknown."""

    heading_deg: float = math.nan  # camera 'up' direction, clockwise from north
    footprint_m: float = math.nan  # ground side of the frame's centred square (altitude prior x camera)
    prior_lat: float = math.nan  # the position prior and its 1-sigma (m), which a fix must agree with
    prior_lon: float = math.nan
    prior_sigma_m: float = math.nan


@dataclasses.dataclass
class FitRecord:
    """A valid homography and what it maps between: the frame as matched (size), and the map side (`where`: a tile
    of the index or a window of map features, both with to_latlon(x, y) and metres_per_pixel())."""

    fit: object  # geometry.HomographyFit
    frame_size: tuple[int, int]
    map_size: tuple[int, int]
    where: object
    row: int  # the candidate's tile row


@dataclasses.dataclass
class Fix:
    """The camera's boresight ground point (the frame centre's position on the map), its heading, covariance
    (east, north in m^2) and confidence."""

    lat: float
    lon: float
    heading_deg: float
    cov_en: np.ndarray  # 2 x 2, m^2
    heading_sigma_deg: float
    tile_id: str
    inliers: int
    confidence: float = math.nan  # calibrated P(within the calibration radius); NaN when uncalibrated
    accepted: bool = False

    @property
    def sigma_m(self) -> float:
        return float(math.sqrt(max(0.0, float(np.trace(self.cov_en)) / 2)))


@dataclasses.dataclass
class Verification:
    candidates: list[VerifiedCandidate]  # valid ones by inliers (desc), then the rest by retrieval rank
    fix: Fix | None  # the best valid candidate's fix (accepted or not), None without a valid candidate
    reason: str  # '' when the fix is accepted; else a NO_FIX_REASONS key
    latency_ms: float = 0.0
    features_ms: float = 0.0
    agree: int = 0  # other valid candidates whose fix lies within agree_m of the chosen one
    fits: dict = dataclasses.field(default_factory=dict, repr=False)  # tile_id -> FitRecord
    matcher: str = ""  # the matcher this result comes from
    stage: int = 0  # 0: the first matcher; 1: the fallback, run because the first gave no accepted fix
    stages: list = dataclasses.field(default_factory=list, repr=False)  # each stage's own result (calibration)
    features: np.ndarray | None = dataclasses.field(default=None, repr=False)  # the confidence's (with a fix)

    @property
    def accepted(self) -> bool:
        return self.fix is not None and self.fix.accepted

    def top(self, n: int) -> list[VerifiedCandidate]:
        return self.candidates[:n]
