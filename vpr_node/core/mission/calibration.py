"""Calibrating the verifier on the mission map before take-off: synthesised validation views of the map (half with
photometric change, half with changed ground; seeds never used for adaptation, reports or benchmarks) are retrieved
with the index and verified, and the confidence model, acceptance threshold and covariance scale are fitted on them
(verification/confidence.py) into the index folder's `verification.json`, hashed in its manifest."""
from __future__ import annotations

import dataclasses

import numpy as np

from vpr_node.core.evaluation.recall import evaluate
from vpr_node.core.index.folder import VERIFICATION, add_to_manifest
from vpr_node.core.maps.camera import CameraModel
from vpr_node.core.maps.sources import load_maps
from vpr_node.core.options import option
from vpr_node.core.retrieval.strategy import RetrievalStrategy
from vpr_node.core.verification.confidence import VERIFIER_VERSION, Calibration, calibrate
from vpr_node.core.verification.verifier import Verifier, VerifyConfig
from vpr_node.core.views.queries import QuerySpec, ViewSet

CONDITIONS = ("strong", "changed")  # photometric change, and changed ground


@dataclasses.dataclass
class CalibrationConfig:
    views: int = option(300, "validation views the verifier is calibrated on (half photometric change, half changed "
                             "ground); 0 = no calibration")
    seed: int = option(3000, "their seed (never an adaptation's, a report's or a benchmark's)")
    radius_m: float = option(25.0, "a fix is correct within this distance (m)")
    target_precision: float = option(0.99, "accepted validation fixes must be correct at least this often")
    cov_floor_m: float = option(1.0, "smallest 1-sigma position error a fix reports (m): the map's georeferencing")


class CalibrationViews:
    """n views at the mission's altitudes and camera: the benchmark protocol, half of them with changed ground;
    rendered as they are iterated (ViewSet), so memory is one view's."""

    def __init__(self, maps, n: int, seed: int, altitude_m, camera: CameraModel):
        rasters = load_maps(maps)
        self.sets = [ViewSet(rasters, n // len(CONDITIONS) + (i < n % len(CONDITIONS)), seed=seed + i,
                             spec=QuerySpec.benchmark(altitude_m=tuple(altitude_m), hfov_deg=camera.hfov_deg,
                                                      camera=(camera.width_px, camera.height_px), photometric=profile))
                     for i, profile in enumerate(CONDITIONS)]

    def __len__(self) -> int:
        return sum(len(s) for s in self.sets)

    def __iter__(self):
        for s in self.sets:
            yield from s


def calibrate_verifier(strategy: RetrievalStrategy, index_dir, maps, altitude_m, camera: CameraModel,
                       cfg: CalibrationConfig | None = None, verify: VerifyConfig | None = None,
                       progress: bool = True) -> Calibration:
    """Verify the validation views against the index (uncalibrated), fit the calibration, write it into the index
    folder and its manifest. Returns it."""
    cfg = cfg or CalibrationConfig()
    verifier = Verifier.for_index(index_dir, verify, calibrated=False)  # an earlier calibration is being replaced
    verifier.run_all_stages = True
    views = CalibrationViews(maps, cfg.views, cfg.seed, altitude_m, camera)
    res = evaluate(strategy, views, k=verifier.cfg.verify_k, progress=progress, verifier=verifier)
    # every matcher's fix is a sample: a cascade's first stage is judged on its own fixes, the fallback on its own
    recs = [s for p in res.per_query for s in p["verification"]["stages"]]
    x = np.array([r["features"] for r in recs], np.float64).reshape(len(recs), -1)
    trials = len(views) * (1 + (verifier.fallback is not None))  # each stage's attempts: acceptance is of these
    cal = calibrate(x, np.array([r["fix_error_m"] for r in recs]), np.array([r["fix_error_en"] for r in recs]),
                    np.array([r["cov_en"] for r in recs]).reshape(-1, 2, 2), trials, cfg.radius_m,
                    cfg.target_precision, cfg.cov_floor_m)
    cal.verifier = verifier.label
    cal.validation.update({"views": len(views), "seed": cfg.seed, "conditions": list(CONDITIONS),
                           "fixes_by_stage": [sum(1 for r in recs if r["stage"] == k) for k in (0, 1)],
                           "verifier_version": VERIFIER_VERSION,
                           "retrieval_recall_at_1": res.recall["25"]["1"],
                           "verify_ms_p50": res.extra["verification"]["verify_ms_p50"],
                           "verify_ms_p95": res.extra["verification"]["verify_ms_p95"],
                           "verify": dataclasses.asdict(verifier.cfg)})
    cal.save(verifier.tiles.root / VERIFICATION)
    add_to_manifest(verifier.tiles.root, VERIFICATION, verification={
        k: cal.validation[k] for k in ("views", "accepted", "acceptance", "precision")} | {"threshold": cal.threshold})
    return cal
