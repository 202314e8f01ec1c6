"""prepare-mission's before/after report: recall@N (25/50 m) and top-1 hubness of the corpus-fitted backbone (no
adaptation) and of the adapted index, on queries synthesised with the benchmark protocol at the mission's
altitudes and a seed the adaptation never used, with the calibrated verifier's recall, acceptance and fix error;
JSON, recall plot and mosaic in OUT/report."""
from __future__ import annotations

import dataclasses
import json
import pathlib

from vpr_node.core.evaluation.recall import evaluate
from vpr_node.core.evaluation.report import write_report
from vpr_node.core.index.folder import VERIFICATION
from vpr_node.core.indexing.index_build import build_index
from vpr_node.core.maps.sources import load_maps
from vpr_node.core.maps.tiles import TileCorpus
from vpr_node.core.mission.adaptation import device_for, raw_strategy
from vpr_node.core.mission.config import MissionConfig
from vpr_node.core.retrieval.strategy import load_strategy
from vpr_node.core.verification.verifier import Verifier
from vpr_node.core.views.queries import QuerySpec, synthesise_queries


def mission_report(cfg: MissionConfig, corpus: TileCorpus, base_weights: str | None, out: pathlib.Path,
                   reuse=None) -> dict:
    """The "before" index (exact, the corpus-fitted backbone) reuses `reuse`, shards of that model (the index's when
    the adaptation kept it, else its adaptation sample's)."""
    rasters = load_maps(cfg.maps)
    spec = QuerySpec.benchmark(altitude_m=tuple(cfg.altitude), hfov_deg=cfg.camera.hfov_deg,
                               camera=(cfg.camera.width_px, cfg.camera.height_px))
    queries = list(synthesise_queries(rasters, cfg.report_queries, seed=cfg.report_seed, spec=spec))
    device = device_for(cfg.adapt.device)
    before_dir = out / "work" / "index_before"
    if not (before_dir / "manifest.json").exists():
        settings = dataclasses.replace(cfg.build, index_type="flat", index_params={}, memory_budget=0.0,
                                       latency_budget=0.0, pca_dim=0, work_dir=str(out / "work" / "build_before"),
                                       keep_work=True)
        build_index(raw_strategy(cfg.backbone, base_weights, cfg.backbone_options, device, cfg.runtime), corpus,
                    before_dir, settings, progress=cfg.progress, log=lambda *_: None, reuse=reuse)
    before = evaluate(load_strategy(cfg.backbone, weights=base_weights, index_dir=str(before_dir),
                                    runtime=cfg.runtime, device=device, backbone_options=cfg.backbone_options),
                      queries, k=20, progress=cfg.progress)
    before.backbone = f"{cfg.backbone} (before adaptation)"
    after_strategy = load_strategy(cfg.backbone, index_dir=str(out), runtime=cfg.runtime, device=device,
                                   backbone_options=cfg.backbone_options)
    verifier = Verifier.for_index(out, cfg.verify) if (out / VERIFICATION).is_file() else None
    after = evaluate(after_strategy, queries, k=20, progress=cfg.progress, verifier=verifier)
    after.backbone = f"{cfg.backbone} (adapted)"
    files = write_report([before, after], out / "report", queries, after_strategy.index)
    report = {"queries": len(queries), "seed": cfg.report_seed, "protocol": dataclasses.asdict(spec),
              "before": before.to_json(), "after": after.to_json(), "files": files,
              "verification": after.extra.get("verification")}
    (out / "report" / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report
