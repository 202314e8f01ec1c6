"""A confidence the drone can act on: the probability that a fix lies within `radius_m` of the truth, from what the
verification saw (inliers, inlier ratio, reprojection error, margin over the runner-up, candidates that agree,
retrieval rank and descriptor distance, which matcher of the cascade, and evidence.py's: how the inliers spread
over the frame, a distant rival place, the homography's conditioning), by logistic regression fitted on validation
views of the mission map that include the views that make wrong fixes (views/hard.py: look-alike ground, another
map);
the acceptance threshold is the lowest confidence at which the accepted validation fixes are at least
`target_precision` within the radius. The same views scale the fit's covariance so that its Mahalanobis errors
have their expected size (mean squared Mahalanobis distance 2 for a 2-D position).

The calibration lives in the index folder (`verification.json`, hashed in the manifest): it belongs to the map and
the backbone it was measured on.
"""
from __future__ import annotations

import dataclasses
import json
import math
import pathlib

import numpy as np

from vpr_node.core.errors import ConfigurationError, IndexUnavailableError
from vpr_node.core.index.folder import VERIFICATION
from vpr_node.core.io.hashing import sha256_file

FEATURES = ("log_inliers", "inlier_ratio", "reprojection_px", "margin", "agree", "retrieval_rank", "distance", "stage",
            "hull", "cells", "centre_depth", "rival", "anisotropy")

# Bumped when what the calibration's features mean changes (detector, matcher, geometry checks): a calibration
# fitted by another version is refused with what to run. 2: exact FAISS nearest neighbours instead of FLANN.
# 3: matchers behind a registry, learned matchers against map-feature windows, the cascade's stage as a feature.
# 4: evidence features (inlier spread, rival place, conditioning); hard validation views (look-alike, another map).
# 5: a learned matcher's frame turned on a mirrored canvas (not black), 6 headings tried without a heading prior.
VERIFIER_VERSION = 5


def feature_vector(v, agree_m: float = 20.0) -> np.ndarray:
    """FEATURES of a Verification with a fix (its best valid candidate, the runner-up, the fit's inliers)."""
    from vpr_node.core.verification import evidence

    valid = [c for c in v.candidates if c.valid]
    best = valid[0]
    second = valid[1].inliers if len(valid) > 1 else 0
    rec = v.fits[best.tile_id]
    hull, cells, depth = evidence.inlier_spread(rec.fit.src, rec.frame_size)
    return np.array([math.log1p(best.inliers), best.inlier_ratio, best.reprojection_px,
                     (best.inliers - second) / max(1, best.inliers), float(v.agree), float(best.retrieval_rank),
                     best.distance, float(v.stage), hull, cells, depth, evidence.rival_ratio(valid, agree_m),
                     evidence.anisotropy(rec.fit.H, rec.frame_size)], np.float64)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 50) -> tuple[np.ndarray, float]:
    """Weights and bias of an L2-regularised logistic regression (Newton's method), on standardised x."""
    n, d = x.shape
    xb = np.c_[x, np.ones(n)]
    w = np.zeros(d + 1)
    reg = np.diag([l2] * d + [0.0])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -30, 30)))
        g = xb.T @ (p - y) + reg @ w
        hess = xb.T @ (xb * (p * (1 - p))[:, None]) + reg + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(hess, g)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return w[:d], float(w[d])


def wilson_lower(p: float, n: int, z: float = 1.96) -> float | None:
    """Lower end of the Wilson 95 % interval of a proportion p observed on n: what the validation can vouch for."""
    if not n or p != p:
        return None
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return round((centre - margin) / (1 + z * z / n), 4)


def precision_curve(conf: np.ndarray, correct: np.ndarray, n_total: int) -> list[dict]:
    """Precision and acceptance rate (of n_total frames) when accepting every fix with confidence >= each value."""
    order = np.argsort(-conf, kind="stable")
    c, k = conf[order], correct[order].astype(np.float64)
    tp = np.cumsum(k)
    out = []
    for i in range(len(c)):
        if i + 1 < len(c) and c[i + 1] == c[i]:
            continue
        out.append({"threshold": round(float(c[i]), 6), "accepted": i + 1, "acceptance": round((i + 1) / n_total, 4),
                    "precision": round(float(tp[i] / (i + 1)), 4)})
    return out


@dataclasses.dataclass
class Calibration:
    weights: list[float]
    bias: float
    mean: list[float]
    std: list[float]
    threshold: float
    cov_scale: float = 1.0
    cov_floor_m: float = 1.0  # the map's own georeferencing: no fix is better than this (1 sigma per axis)
    radius_m: float = 25.0
    target_precision: float = 0.99
    features: list[str] = dataclasses.field(default_factory=lambda: list(FEATURES))
    validation: dict = dataclasses.field(default_factory=dict)
    verifier: str = ""  # the matchers it was fitted for ("sift", "sift>xfeat", ...): another verifier is refused

    def confidence(self, x: np.ndarray) -> float:
        z = (np.asarray(x, np.float64) - np.asarray(self.mean)) / np.asarray(self.std)
        return float(1.0 / (1.0 + math.exp(-float(np.clip(z @ np.asarray(self.weights) + self.bias, -30, 30)))))

    def scaled(self, cov_en: np.ndarray) -> np.ndarray:
        return np.asarray(cov_en) * self.cov_scale + np.eye(2) * self.cov_floor_m ** 2

    def save(self, path) -> None:
        pathlib.Path(path).write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path) -> "Calibration":
        return cls(**json.loads(pathlib.Path(path).read_text()))

    @classmethod
    def for_index(cls, index_dir, required: bool = False, verifier: str | None = None) -> "Calibration | None":
        """The index folder's calibration, checked against its manifest hash and, given `verifier` (its matchers,
        e.g. "sift>xfeat"), against the matchers it was fitted for; None (or, when required, a ConfigurationError
        saying how to make one) where there is none."""
        root = pathlib.Path(index_dir)
        path = root / VERIFICATION
        if not path.is_file():
            if required:
                raise ConfigurationError(f"index {root} has no verifier calibration ({VERIFICATION}): run `vpr "
                                         f"calibrate-verifier --index {root} --maps MAP` (prepare-mission does it)",
                                         field="verification")
            return None
        want = json.loads((root / "manifest.json").read_text()).get("files", {}).get(VERIFICATION)
        if want != sha256_file(path):
            raise IndexUnavailableError(f"{path} was changed after calibration (SHA-256 differs from the manifest's); "
                                        f"run `vpr calibrate-verifier` again", file=VERIFICATION)
        cal = cls.load(path)
        version = cal.validation.get("verifier_version")
        if version is not None and version != VERIFIER_VERSION:
            raise ConfigurationError(f"{path} was fitted by verifier version {version}, this is version "
                                     f"{VERIFIER_VERSION} (its matching changed): run `vpr calibrate-verifier --index "
                                     f"{root} --maps MAP` again", field="verification")
        if verifier is not None and cal.verifier != verifier:
            raise ConfigurationError(f"{path} was fitted for the matchers {cal.verifier or 'sift'!r}, this verifier "
                                     f"runs {verifier!r}: run `vpr calibrate-verifier --index {root} --maps MAP` with "
                                     f"the same --verify-matcher/--verify-fallback-matcher, or set the verifier's "
                                     f"matchers to the calibrated ones", field="verification")
        return cal


def covariance_scale(err_en: np.ndarray, cov_en: np.ndarray, floor_m: float) -> float:
    """The factor s >= 1 for which s C + floor^2 I makes the mean squared Mahalanobis error of these fixes 2 (its
    expectation for a calibrated 2-D covariance); s = 1 when the fit's covariance is already large enough."""
    floor = np.eye(2) * floor_m ** 2

    def nees(s: float) -> float:
        return float(np.mean([e @ np.linalg.solve(s * c + floor, e) for e, c in zip(err_en, cov_en, strict=True)]))

    if nees(1.0) <= 2.0:
        return 1.0
    lo, hi = 1.0, 2.0
    while nees(hi) > 2.0 and hi < 1e8:
        lo, hi = hi, hi * 2
    for _ in range(40):  # bisection: nees falls as s grows
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if nees(mid) > 2.0 else (lo, mid)
    return float(hi)


def calibrate(x: np.ndarray, error_m: np.ndarray, err_en: np.ndarray, cov_en: np.ndarray, n_frames: int,
              radius_m: float = 25.0, target_precision: float = 0.99, cov_floor_m: float = 1.0,
              min_accept: int = 10) -> Calibration:
    """Fit the confidence model and the covariance scale.

    x: (n, len(FEATURES)) features of the validation frames that got a fix; error_m: each fix's distance from the
    truth; err_en: (n, 2) east/north errors; cov_en: (n, 2, 2) the fit's covariances; n_frames: all validation
    frames (with or without a fix) for the acceptance rate."""
    y = (error_m <= radius_m).astype(np.float64)
    d = len(FEATURES)
    if len(y) < 2 * min_accept:  # verification hardly works on this map: accept nothing, and say so
        return Calibration([0.0] * d, -6.0, [0.0] * d, [1.0] * d, 1.01, 1.0, cov_floor_m, radius_m, target_precision,
                           validation={"frames": int(n_frames), "fixes": int(len(y)), "correct_fixes": int(y.sum()),
                                       "accepted": 0, "acceptance": 0.0, "precision": None, "curve": [],
                                       "warning": f"only {len(y)} of {n_frames} validation views gave a fix: no fix "
                                                  f"will be accepted"})
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / std
    warning = None
    if y.min() == y.max():  # every validation fix correct (or wrong): a constant model
        w, b = np.zeros(x.shape[1]), (6.0 if y[0] else -6.0)
        warning = (f"all {len(y)} validation fixes were {'correct' if y[0] else 'wrong'}: the confidence cannot rank "
                   f"fixes (more or harder validation views would)")
    else:
        w, b = fit_logistic(z, y)
    conf = 1.0 / (1.0 + np.exp(-np.clip(z @ w + b, -30, 30)))
    curve = precision_curve(conf, y.astype(bool), n_frames)
    ok = [p for p in curve if p["precision"] >= target_precision and p["accepted"] >= min_accept]
    threshold = min(p["threshold"] for p in ok) if ok else 1.01  # nothing reaches the target: accept nothing
    chosen = next((p for p in curve if p["threshold"] == threshold), {"accepted": 0, "acceptance": 0.0,
                                                                    "precision": float("nan")})
    acc = (conf >= threshold) & (y > 0)
    cov_scale = covariance_scale(err_en[acc], cov_en[acc], cov_floor_m) if acc.sum() >= 3 else 1.0
    return Calibration([float(v) for v in w], float(b), [float(v) for v in mean], [float(v) for v in std],
                       float(threshold), cov_scale, cov_floor_m, radius_m, target_precision,
                       validation={"frames": int(n_frames), "fixes": int(len(y)), "correct_fixes": int(y.sum()),
                                   "accepted": int(chosen["accepted"]), "acceptance": chosen["acceptance"],
                                   "precision": chosen["precision"], "precision_lower_95": wilson_lower(
                                       chosen["precision"], chosen["accepted"]), "curve": curve, "warning": warning})
