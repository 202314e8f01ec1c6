"""Calibrating the verifier on the mission map before take-off: synthesised validation views of the map (photometric
change, changed ground, ground as a real frame against an independent map sees it, and the views that make wrong
fixes: look-alike ground pasted from elsewhere in the map and
views of another map, views/hard.py; seeds never used for adaptation, reports or benchmarks) are retrieved with the
index and verified, and the confidence model, acceptance threshold and covariance scale are fitted on them
(verification/confidence.py) into the index folder's `verification.json`, hashed in its manifest.

A held-out check (look-alike and other-map views of another seed) then counts the wrong fixes the calibration would
accept; a calibration that saw no wrong fix yet accepts some there is refused, saying what to run."""
from __future__ import annotations

import dataclasses

import numpy as np

from vpr_node.core.errors import ConfigurationError
from vpr_node.core.evaluation.recall import evaluate
from vpr_node.core.index.folder import VERIFICATION, add_to_manifest
from vpr_node.core.maps.camera import CameraModel
from vpr_node.core.maps.sources import load_maps
from vpr_node.core.options import option
from vpr_node.core.retrieval.strategy import RetrievalStrategy
from vpr_node.core.verification.confidence import VERIFIER_VERSION, Calibration, calibrate
from vpr_node.core.verification.verifier import Verifier, VerifyConfig
from vpr_node.core.views.queries import QuerySpec, ViewSet

# photometric change, changed ground, ground as a real frame against an independent map sees it (changed.resurvey:
# right fixes with a real frame's few, clustered inliers, and the chance fixes such frames also make), look-alike
# ground, another map: the share of the validation views of each
CONDITIONS = {"strong": 0.2, "changed": 0.2, "resurveyed": 0.2, "lookalike": 0.25, "elsewhere": 0.15}


@dataclasses.dataclass
class CalibrationConfig:
    views: int = option(300, "validation views the verifier is calibrated on (photometric change, changed ground, "
                             "resurveyed ground, look-alike ground, another map); 0 = no calibration")
    check_views: int = option(40, "held-out look-alike and other-map views the fitted calibration is checked on")
    seed: int = option(3000, "their seed (never an adaptation's, a report's or a benchmark's)")
    max_tilt_deg: float = option(15.0, "largest off-nadir angle of the nav camera in flight (mount, pitch and roll; "
                                       "deg): the validation views are tilted up to it (a real camera's "
                                       "foreshortening), never past where the camera would see the horizon; "
                                       "no wider than the camera's: a wider range weakens the evidence against "
                                       "look-alike ground")
    radius_m: float = option(25.0, "a fix is correct within this distance (m)")
    target_precision: float = option(0.99, "accepted validation fixes must be correct at least this often")
    cov_floor_m: float = option(1.0, "smallest 1-sigma position error a fix reports (m): the map's georeferencing")


class CalibrationViews:
    """n views at the mission's altitudes and camera, split over CONDITIONS (`conditions` to choose some), rendered
    as they are iterated (ViewSet, views/hard.py), so memory is one view's."""

    def __init__(self, maps, n: int, seed: int, altitude_m, camera: CameraModel, conditions=None,
                 max_tilt_deg: float = 15.0):
        from vpr_node.core.views.hard import ElsewhereViews, LookalikeViews

        rasters = load_maps(maps)
        shares = {c: CONDITIONS[c] for c in (conditions or CONDITIONS)}
        counts = [int(n * w / sum(shares.values())) for w in shares.values()]
        counts[0] += n - sum(counts)
        spec = QuerySpec.benchmark(altitude_m=tuple(altitude_m), hfov_deg=camera.hfov_deg,
                                   camera=(camera.width_px, camera.height_px), max_tilt_deg=max_tilt_deg)
        self.sets = []
        for i, (cond, count) in enumerate(zip(shares, counts, strict=True)):
            if cond == "lookalike":
                self.sets.append(LookalikeViews(rasters, count, seed + i, spec))
            elif cond == "elsewhere":
                self.sets.append(ElsewhereViews(rasters, count, seed + i, spec))
            else:
                self.sets.append(ViewSet(rasters, count, seed + i, dataclasses.replace(spec, photometric=cond)))
        self.conditions = dict(zip(shares, counts, strict=True))

    def __len__(self) -> int:
        return sum(len(s) for s in self.sets)

    def __iter__(self):
        for s in self.sets:
            yield from s


def check_calibration(cal: Calibration, check: dict) -> None:
    """Refuse (ConfigurationError, with what to run) a calibration that saw no wrong fix in its validation views yet
    accepts wrong fixes on the held-out look-alike and other-map views (`check`: their verification totals)."""
    v = cal.validation
    if v.get("fixes", 0) == v.get("correct_fixes", 0) and check.get("accepted_wrong", 0) > 0:
        raise ConfigurationError(
            f"the verifier's calibration saw no wrong fix in its {v.get('frames')} validation views, yet accepts "
            f"{check['accepted_wrong']} wrong fixes of {check['frames']} held-out look-alike and other-map views: "
            f"it cannot tell them apart; calibrate on more views (`vpr calibrate-verifier --calib-views "
            f"{2 * max(300, int(v.get('views', 300)))}`, or prepare-mission --calib-views ...)", field="verification")


def calibrate_verifier(strategy: RetrievalStrategy, index_dir, maps, altitude_m, camera: CameraModel,
                       cfg: CalibrationConfig | None = None, verify: VerifyConfig | None = None,
                       progress: bool = True) -> Calibration:
    """Verify the validation views against the index (uncalibrated), fit the calibration, write it into the index
    folder and its manifest. Returns it."""
    cfg = cfg or CalibrationConfig()
    verifier = Verifier.for_index(index_dir, verify, calibrated=False)  # an earlier calibration is being replaced
    verifier.run_all_stages = True
    views = CalibrationViews(maps, cfg.views, cfg.seed, altitude_m, camera, max_tilt_deg=cfg.max_tilt_deg)
    res = evaluate(strategy, views, k=verifier.cfg.verify_k, progress=progress, verifier=verifier)
    # every matcher's fix is a sample: a cascade's first stage is judged on its own fixes, the fallback on its own
    recs = [s for p in res.per_query for s in p["verification"]["stages"]]
    x = np.array([r["features"] for r in recs], np.float64).reshape(len(recs), -1)
    trials = len(views) * (1 + (verifier.fallback is not None))  # each stage's attempts: acceptance is of these
    cal = calibrate(x, np.array([r["fix_error_m"] for r in recs]), np.array([r["fix_error_en"] for r in recs]),
                    np.array([r["cov_en"] for r in recs]).reshape(-1, 2, 2), trials, cfg.radius_m,
                    cfg.target_precision, cfg.cov_floor_m)
    cal.verifier = verifier.label
    wrong = [r for r in recs if not r["fix_error_m"] <= cfg.radius_m]
    cal.validation.update({"views": len(views), "seed": cfg.seed, "conditions": views.conditions,
                           "max_tilt_deg": cfg.max_tilt_deg,
                           # what the fit saw, for an audit or a refit: each stage fix's features, error, stage
                           "samples": [{"features": [round(float(v), 6) for v in r["features"]],
                                        "error_m": round(float(r["fix_error_m"]), 3)
                                        if np.isfinite(r["fix_error_m"]) else None,
                                        "stage": r["stage"]}
                                       for r in recs],
                           "wrong_fixes": len(wrong),
                           "wrong_fixes_by_condition": wrong_by_condition(res.per_query, views.conditions,
                                                                          cfg.radius_m),
                           "fixes_by_stage": [sum(1 for r in recs if r["stage"] == k) for k in (0, 1)],
                           "verifier_version": VERIFIER_VERSION,
                           "retrieval_recall_at_1": res.recall["25"]["1"],
                           "verify_ms_p50": res.extra["verification"]["verify_ms_p50"],
                           "verify_ms_p95": res.extra["verification"]["verify_ms_p95"],
                           "verify": dataclasses.asdict(verifier.cfg)})
    cal.validation["check"] = check = held_out_check(strategy, verifier, cal, maps, altitude_m, camera, cfg,
                                                     progress)
    check_calibration(cal, check)
    cal.save(verifier.tiles.root / VERIFICATION)
    add_to_manifest(verifier.tiles.root, VERIFICATION, verification={
        k: cal.validation[k] for k in ("views", "accepted", "acceptance", "precision")} | {"threshold": cal.threshold})
    return cal


def wrong_by_condition(per_query: list, conditions: dict, radius_m: float) -> dict:
    """Wrong fixes (of any stage) per condition: the views come condition after condition, in `conditions`' order."""
    out, start = {}, 0
    for cond, count in conditions.items():
        out[cond] = sum(1 for p in per_query[start:start + count] for s in p["verification"]["stages"]
                        if not s["fix_error_m"] <= radius_m)
        start += count
    return out


def held_out_check(strategy, verifier: Verifier, cal: Calibration, maps, altitude_m, camera, cfg: CalibrationConfig,
                   progress: bool) -> dict:
    """The fitted calibration on `check_views` look-alike and other-map views of another seed: how many wrong fixes
    it accepts (every fix there that is not within the radius of the truth)."""
    if cfg.check_views <= 0:
        return {"frames": 0, "accepted": 0, "accepted_wrong": 0}
    verifier.calibration, verifier.run_all_stages = cal, False
    views = CalibrationViews(maps, cfg.check_views, cfg.seed + 100, altitude_m, camera, ("lookalike", "elsewhere"),
                             cfg.max_tilt_deg)
    res = evaluate(strategy, views, k=verifier.cfg.verify_k, progress=progress, verifier=verifier)
    recs = [p["verification"] for p in res.per_query]
    accepted = [r for r in recs if r["accepted"]]
    return {"frames": len(recs), "accepted": len(accepted),
            "accepted_wrong": sum(1 for r in accepted if not r["fix_error_m"] <= cfg.radius_m),
            "reasons": res.extra["verification"]["reasons"]}
