"""Pre-flight mission preparation: map -> footprint-matched tiles -> fitted and adapted backbone -> index.

`prepare_mission` is what `vpr prepare-mission` runs. Every step writes into the output folder and is skipped on a
rerun when its result is there for the same settings (an interrupted run resumes: the fine-tune from its last
checkpoint, tile embedding per finished chunk):

  work/corpus/            tiles cut to the camera's footprint over the planned altitudes (maps/tiling.py)
  work/base_weights.pt    weights fitted to the corpus (NetVLAD centroids), when the backbone needs them
  work/adapt/finetune/    the fine-tune (checkpoints, logs)
  work/adapt/embed/       the adaptation sample's tile shards per candidate model (indexing/embedding.py)
  work/build/             the index's tile shards (the sample's tiles copied, the rest embedded), reused by the report
  work/adapt/result/      the chosen model and whitening (adaptation.json, whitening.npz)
  backbone_weights.pt     the adapted weights (+ learned whitening), named and hashed in the manifest
  index.faiss, ...        the index (index/folder.py) over the adapted, whitened tile descriptors, and its tiles/
  map_features/xfeat/     the learned matcher's features of the map at one ground resolution, and the matcher
                          exported to ONNX (indexing/map_features.py)
  verification.json       the verifier's calibration on validation views (mission/calibration.py)
  report/                 before/after recall on synthesised queries of a seed never used for adaptation,
                          hubness, plot and mosaic (report.json, recall_at_n.png, examples_*.png)

Tiles are embedded only through indexing/embedding.py, so memory is bounded by a chunk and the adaptation's sample
whatever the map's size, and the work runs on Dask with the build settings' --workers/--scheduler.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
import time

from vpr_node.core.backbones import get_spec
from vpr_node.core.backbones.weights import Provenance
from vpr_node.core.index.folder import VERIFICATION, add_to_manifest
from vpr_node.core.indexing.embedding import TileEmbedding
from vpr_node.core.indexing.index_build import build_index
from vpr_node.core.indexing.map_features import build_map_features
from vpr_node.core.maps.sources import load_maps
from vpr_node.core.maps.tiles import TileCorpus
from vpr_node.core.maps.tiling import cut_corpus, plan_for_camera
from vpr_node.core.mission.adaptation import (
    Adaptation,
    adapt_backbone,
    device_for,
    embed_dir,
    raw_strategy,
    worker_spec,
)
from vpr_node.core.mission.calibration import CONDITIONS, calibrate_verifier
from vpr_node.core.mission.config import STEPS, MissionConfig, retrieval_only
from vpr_node.core.mission.report import mission_report
from vpr_node.core.retrieval.narrowing import NARROW_DIR
from vpr_node.core.retrieval.strategy import load_strategy
from vpr_node.core.verification.confidence import VERIFIER_VERSION
from vpr_node.core.verification.map_features import features_dir


class _State:
    """work/state.json: which steps are done, for which settings (a change redoes that step and later ones)."""

    def __init__(self, path: pathlib.Path):
        self.path = path
        self.data = json.loads(path.read_text()) if path.exists() else {}

    def done(self, step: str, key) -> bool:
        return self.data.get(step) == json.loads(json.dumps(key, default=str))

    def mark(self, step: str, key) -> None:
        self.data[step] = json.loads(json.dumps(key, default=str))
        for later in STEPS[STEPS.index(step) + 1:]:
            self.data.pop(later, None)
        self.path.write_text(json.dumps(self.data, indent=2) + "\n")


def prepare_mission(cfg: MissionConfig, log=print) -> dict:
    out = pathlib.Path(cfg.out)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    state = _State(work / "state.json")
    timings: dict = {}
    rasters = load_maps(cfg.maps)
    device = device_for(cfg.adapt.device)

    # 1. tiles matched to the camera footprint over the planned altitudes
    plan = plan_for_camera(cfg.camera, *cfg.altitude, cfg.radius, cfg.max_scale_step)
    corpus_key = {"maps": str(cfg.maps), "plan": plan.to_json(), "tile_px": cfg.tile_px}
    if not state.done("corpus", corpus_key):
        log(f"[mission] cutting tiles: {plan.reason}")
        t0 = time.perf_counter()
        cut_corpus(rasters, work / "corpus", plan, cfg.tile_px, cfg.progress)
        timings["corpus_s"] = round(time.perf_counter() - t0, 1)
        state.mark("corpus", corpus_key)
    corpus = TileCorpus(work / "corpus")
    log(f"[mission] {len(corpus)} tiles at {', '.join(f'{t:g} m' for t, _ in plan.scales)} "
        f"(stride {plan.scales[0][1]:g} m)")

    # 2. weights fitted to the corpus (NetVLAD centroids) when the backbone needs them
    spec = get_spec(cfg.backbone)
    base = cfg.weights
    base_key = {**corpus_key, "backbone": cfg.backbone, "options": cfg.backbone_options}
    if base is None and spec.weights_required and spec.fit_to_corpus:
        base = str(work / "base_weights.pt")
        if not state.done("base_weights", base_key) or not pathlib.Path(base).exists():
            log("[mission] fitting the backbone's corpus weights (k-means centroids)")
            t0 = time.perf_counter()
            spec.fit_to_corpus(corpus, base, **cfg.backbone_options)
            timings["base_weights_s"] = round(time.perf_counter() - t0, 1)
            state.mark("base_weights", base_key)

    # 3. adaptation (fine-tune within the budget, learned whitening chosen on held-out views)
    adapt_dir, result_dir = work / "adapt", work / "adapt" / "result"
    adapt_key = {**corpus_key, "backbone": cfg.backbone, "options": cfg.backbone_options,
                 "adapt": dataclasses.asdict(cfg.adapt), "rotations": cfg.build.rotations}
    if not state.done("adapt", adapt_key) or not (result_dir / "adaptation.json").exists():
        log(f"[mission] adapting {cfg.backbone} to the map: fine-tune budget {cfg.adapt.budget_label()} on {device}, "
            f"learned whitening from {cfg.adapt.views} synthesised views")
        t0 = time.perf_counter()
        adaptation = adapt_backbone(cfg.backbone, base, cfg.maps, rasters, corpus, adapt_dir, cfg.adapt, cfg.build,
                                    cfg.backbone_options, cfg.progress, log, cfg.runtime)
        adaptation.save(result_dir)
        timings["adapt_s"] = round(time.perf_counter() - t0, 1)
        state.mark("adapt", adapt_key)
    adaptation = Adaptation.load(result_dir)

    # 4. the index: every tile through the same embedding path, the chosen whitening applied as it is assembled
    index_key = {**adapt_key, "index": cfg.build.index_kind()}
    if not state.done("index", index_key) or not (out / "manifest.json").exists():
        t0 = time.perf_counter()
        settings = dataclasses.replace(cfg.build, pca_dim=0, work_dir=str(work / "build"), keep_work=True)
        provenance = Provenance(source=f"vpr prepare-mission on {cfg.maps}",
                                licence="as the trunk weights and the mission map",
                                notes=json.dumps({"base_weights": adaptation.weights, **adaptation.log,
                                                  "settings": cfg.settings()}, default=str))
        build_index(raw_strategy(cfg.backbone, adaptation.weights, cfg.backbone_options, device, cfg.runtime),
                    corpus, out, settings,
                    spec=worker_spec(cfg.backbone, adaptation.weights, cfg.backbone_options, device, cfg.runtime),
                    whitening=adaptation.whitening, weights_provenance=provenance,
                    extra={"adaptation": adaptation.log}, progress=cfg.progress, log=log,
                    reuse=TileEmbedding.open(adaptation.embed_dir))
        timings["index_s"] = round(time.perf_counter() - t0, 1)
        state.mark("index", index_key)
    # 4b. a second backbone's index over the same tiles (the node narrows a deeper list with it): the same preparation
    # for that backbone, retrieval only, in its own resumable folder, hashed into this manifest
    if cfg.narrow_backbone:
        t0 = time.perf_counter()
        second = dataclasses.replace(cfg, out=str(out / NARROW_DIR), backbone=cfg.narrow_backbone, backbone_options={},
                                     weights=None, narrow_backbone="", report_queries=0, **retrieval_only())
        log(f"[mission] the narrowing index: {cfg.narrow_backbone}")
        prepare_mission(second, log)
        add_to_manifest(out, f"{NARROW_DIR}/manifest.json", narrow_backbone=cfg.narrow_backbone)
        timings["narrow_s"] = round(time.perf_counter() - t0, 1)
    # 5. the learned matcher's map features (the verifier's fallback matches frames against them)
    features_key = {**index_key, "map_features": dataclasses.asdict(cfg.map_features)}
    if cfg.map_features.matcher and (not state.done("map_features", features_key)
                                     or not (features_dir(out, cfg.map_features.matcher) / "meta.json").exists()):
        t0 = time.perf_counter()
        build_map_features(cfg.maps, out, cfg.map_features, progress=cfg.progress, log=log)
        timings["map_features_s"] = round(time.perf_counter() - t0, 1)
        state.mark("map_features", features_key)
    # 6. the verifier's calibration on validation views (photometric change and changed ground)
    verifier_key = {**features_key, "verify": dataclasses.asdict(cfg.verify), "verifier_version": VERIFIER_VERSION,
                    "calibration": dataclasses.asdict(cfg.calibration), "conditions": CONDITIONS}
    if cfg.calibration.views > 0 and (not state.done("verifier", verifier_key) or not (out / VERIFICATION).exists()):
        log(f"[mission] calibrating the verifier on {cfg.calibration.views} validation views")
        t0 = time.perf_counter()
        calibrate_verifier(load_strategy(cfg.backbone, index_dir=str(out), runtime=cfg.runtime, device=device,
                                         backbone_options=cfg.backbone_options), out, cfg.maps, cfg.altitude,
                           cfg.camera, cfg.calibration, cfg.verify, cfg.progress)
        timings["verifier_s"] = round(time.perf_counter() - t0, 1)
        state.mark("verifier", verifier_key)
    manifest = json.loads((out / "manifest.json").read_text())
    summary = {"out": str(out), "tiles": len(corpus), "tile_plan": plan.to_json(), "timings": timings,
               "adaptation": manifest.get("adaptation"), "hubness": manifest.get("hubness"),
               "weights_file": manifest.get("weights_file"), "weights_sha256": manifest.get("weights_sha256"),
               **{k: manifest.get(k) for k in ("index_type", "index_params", "index_bytes", "recall_at_10_vs_exact",
                                               "verification")}}

    # 7. before/after report on synthesised queries of a seed the adaptation never used
    if cfg.report_queries > 0:
        report_key = {**verifier_key, "n": cfg.report_queries, "seed": cfg.report_seed}
        rpath = out / "report" / "report.json"
        if not state.done("report", report_key) or not rpath.exists():
            log(f"[mission] before/after report on {cfg.report_queries} synthesised queries (seed {cfg.report_seed})")
            fitted = work / "build" if adaptation.model == "corpus-fitted" else embed_dir(adapt_dir, "corpus-fitted")
            report = mission_report(cfg, corpus, base, out, TileEmbedding.open(fitted))
            state.mark("report", report_key)
        else:
            report = json.loads(rpath.read_text())
        summary["report"] = report
    if not cfg.build.keep_work:
        for folder in (adapt_dir / "embed", work / "build", work / "build_before"):
            shutil.rmtree(folder, ignore_errors=True)
    return summary
