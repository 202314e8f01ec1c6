"""How good verification is, per frame and over a set of frames: verified recall@1 (the re-ranked top-1 within R m of
the truth: its fix where its homography is valid, else its tile centre), how often a fix is produced and accepted,
how often accepted fixes are within R m (precision), their position error, the Mahalanobis error of their
covariance, and verification latency."""
from __future__ import annotations

import math

import numpy as np

from vpr_node.core.maps.geo import haversine_m, metres_per_degree


def _fix_fields(v, lat: float, lon: float) -> dict:
    """A fix against the truth (a view of another map has none: NaN truth, infinite error)."""
    if not (math.isfinite(lat) and math.isfinite(lon)):
        err_en = [math.inf, math.inf]
    else:
        m_lat, m_lon = metres_per_degree(lat)
        err_en = [(v.fix.lon - lon) * m_lon, (v.fix.lat - lat) * m_lat]
    return {"fix_error_m": float(math.hypot(*err_en)), "fix_error_en": err_en, "tile_id": v.fix.tile_id,
            "cov_en": np.asarray(v.fix.cov_en).tolist(), "confidence": v.fix.confidence, "inliers": v.fix.inliers,
            "features": np.asarray(v.features).tolist(), "heading_deg": v.fix.heading_deg}


def frame_record(v, lat: float, lon: float) -> dict:
    """One frame's verification outcome against its true position; `stages`: the fix of each matcher the verifier
    ran on it (the first, and the fallback where the first had no accepted fix), what calibration fits on."""
    top = v.candidates[0] if v.candidates else None
    where = ((top.fix_lat, top.fix_lon) if top.valid else (top.lat, top.lon)) if top else None
    rec = {"verified_top1_m": float(haversine_m(lat, lon, *where)) if top else math.inf,
           "verify_ms": round(v.latency_ms, 3), "reason": v.reason, "agree": v.agree, "fix": v.fix is not None,
           "accepted": v.accepted, "matcher": v.matcher, "stage": v.stage,
           "stages": [{"matcher": s.matcher, "stage": s.stage, "verify_ms": round(s.latency_ms, 3),
                       **_fix_fields(s, lat, lon)} for s in (v.stages or [v]) if s.fix is not None]}
    if v.fix is not None:
        rec.update(_fix_fields(v, lat, lon))
    return rec


def summarise(records: list[dict], radius_m: float = 25.0, truth_yaw_deg=None) -> dict:
    """Totals over frame records (frame_record)."""
    n = len(records)
    fixes = [r for r in records if r["fix"]]
    acc = [r for r in fixes if r["accepted"]]
    err = np.array([r["fix_error_m"] for r in acc]) if acc else np.zeros(0)
    lat = np.array([r["verify_ms"] for r in records]) if records else np.zeros(0)
    nees = [np.asarray(r["fix_error_en"]) @ np.linalg.solve(np.asarray(r["cov_en"]), np.asarray(r["fix_error_en"]))
            for r in acc]
    out = {"frames": n,
           "verified_recall_at_1": round(float(np.mean([r["verified_top1_m"] <= radius_m for r in records])), 4)
           if n else None,
           "fix_rate": round(len(fixes) / n, 4) if n else None,
           "fixes_within_radius": round(float(np.mean([r["fix_error_m"] <= radius_m for r in fixes])), 4)
           if fixes else None,
           "acceptance_rate": round(len(acc) / n, 4) if n else None, "accepted": len(acc),
           "precision": round(float(np.mean(err <= radius_m)), 4) if acc else None,
           "error_m_p50": round(float(np.percentile(err, 50)), 2) if acc else None,
           "error_m_p95": round(float(np.percentile(err, 95)), 2) if acc else None,
           "mean_nees": round(float(np.mean(nees)), 3) if nees else None,
           "accepted_by_fallback": sum(1 for r in acc if r.get("stage", 0) == 1),
           "fallback_ran": sum(1 for r in records if len(r.get("stages", [])) > 1 or r.get("stage", 0) == 1),
           "verify_ms_p50": round(float(np.percentile(lat, 50)), 1) if n else None,
           "verify_ms_p95": round(float(np.percentile(lat, 95)), 1) if n else None,
           "reasons": {k: sum(r["reason"] == k for r in records) for k in sorted({r["reason"] for r in records})}}
    return out
