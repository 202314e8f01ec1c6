"""Pre-flight mission preparation: map -> footprint-matched tiles -> fitted and adapted backbone -> index.

`prepare_mission` is what `vpr prepare-mission` runs. Every step writes into the output folder and is
skipped on a rerun when its result is there for the same settings (an interrupted run resumes; the
fine-tune resumes from its last checkpoint):

  work/corpus/            tiles cut to the camera's footprint over the planned altitudes (corpus.py)
  work/base_weights.pt    weights fitted to the corpus (NetVLAD centroids), when the backbone needs them
  work/adapt/finetune/    the time-budgeted fine-tune (checkpoints, logs)
  backbone_weights.pt     the adapted weights (+ learned whitening), named and hashed in the manifest
  index.faiss, ...        the index (index.py) over the adapted, whitened tile descriptors
  report/                 before/after recall on synthesised queries of a seed never used for adaptation,
                          hubness, plot and mosaic (report.json, recall_at_n.png, examples_*.png)
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import time

from vpr_node.core.adaptation import AdaptConfig, adapt_backbone, device_for, save_adapted_weights
from vpr_node.core.backbones import create_backbone, get_spec
from vpr_node.core.camera import CameraModel
from vpr_node.core.corpus import TileCorpus, cut_corpus, load_maps, plan_for_camera
from vpr_node.core.index import write_index
from vpr_node.core.indexing import CORPUS_FITTED_WEIGHTS

STEPS = ("corpus", "base_weights", "adapt", "index", "report")


@dataclasses.dataclass
class MissionConfig:
    maps: str  # the mission map: corner-coordinates CSV, GeoTIFF (or a folder of them), XYZ folder
    out: str  # the index folder the node's `index_dir` points at
    backbone: str = "efficientnet_lite0_netvlad"
    backbone_options: dict = dataclasses.field(default_factory=dict)
    weights: str | None = None  # start from these (converted or trained) weights instead of fitted/packaged ones
    altitude_m: tuple[float, float] = (55.0, 110.0)
    camera: CameraModel = dataclasses.field(default_factory=lambda: CameraModel.from_hfov(86.0, 1280, 720))
    radius_m: float = 25.0
    max_scale_step: float = 1.5
    tile_px: int = 320
    rotations: int = 4
    index_type: str = "flat"
    index_params: dict = dataclasses.field(default_factory=dict)
    adapt: AdaptConfig = dataclasses.field(default_factory=AdaptConfig)
    report_queries: int = 100
    report_seed: int = 2000
    progress: bool = True

    def settings(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("progress")
        d["camera"] = dataclasses.asdict(self.camera)
        return json.loads(json.dumps(d, default=str))


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
    settings = cfg.settings()
    timings: dict = {}
    rasters = load_maps(cfg.maps)

    # 1. tiles matched to the camera footprint over the planned altitudes
    plan = plan_for_camera(cfg.camera, *cfg.altitude_m, cfg.radius_m, cfg.max_scale_step)
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
    if base is None and spec.weights_required and spec.fit_to_corpus:
        base = str(work / "base_weights.pt")
        if not state.done("base_weights", corpus_key) or not pathlib.Path(base).exists():
            log("[mission] fitting the backbone's corpus weights (k-means centroids)")
            t0 = time.perf_counter()
            spec.fit_to_corpus(corpus, base, **cfg.backbone_options)
            timings["base_weights_s"] = round(time.perf_counter() - t0, 1)
            state.mark("base_weights", corpus_key)

    # 3. adaptation (fine-tune within the budget, learned whitening) and 4. the index
    weights_path = out / CORPUS_FITTED_WEIGHTS
    adapt_key = {**corpus_key, "backbone": cfg.backbone, "options": cfg.backbone_options,
                 "adapt": dataclasses.asdict(cfg.adapt), "rotations": cfg.rotations}
    index_key = {**adapt_key, "index_type": cfg.index_type, "index_params": cfg.index_params}
    manifest = None
    if not (state.done("adapt", adapt_key) and state.done("index", index_key) and (out / "manifest.json").exists()):
        log(f"[mission] adapting {cfg.backbone} to the map: fine-tune budget {cfg.adapt.fine_tune_minutes():g} min on "
            f"{device_for(cfg.adapt.device)}, learned whitening from {cfg.adapt.views} synthesised views")
        t0 = time.perf_counter()
        res = adapt_backbone(cfg.backbone, base, cfg.maps, rasters, corpus, work / "adapt", cfg.adapt, cfg.rotations,
                             cfg.backbone_options, cfg.progress)
        timings["adapt_s"] = round(time.perf_counter() - t0, 1)
        model = res["model"]
        save_adapted_weights(model, weights_path, f"vpr prepare-mission on {cfg.maps}",
                             {"base_weights": res["base_weights"], **res["log"], "settings": settings})
        state.mark("adapt", adapt_key)
        t0 = time.perf_counter()
        info = {"label": model.label, "weights_sha256": model.weights_sha256,
                "preprocessing": model.preprocessor.describe(), "provenance": model.describe()["provenance"]}
        manifest = write_index(out, res["descriptors"], res["entries"], corpus.records, info, cfg.index_type,
                               cfg.index_params, extra={"rotations": cfg.rotations, "corpus": str(corpus.root),
                                                        "weights_file": CORPUS_FITTED_WEIGHTS,
                                                        "tile_plan": plan.to_json(), "adaptation": res["log"]})
        timings["index_s"] = round(time.perf_counter() - t0, 1)
        state.mark("index", index_key)
    manifest = manifest or json.loads((out / "manifest.json").read_text())
    summary = {"out": str(out), "tiles": len(corpus), "tile_plan": plan.to_json(), "timings": timings,
               "adaptation": manifest.get("adaptation"), "hubness": manifest.get("hubness"),
               "weights_file": manifest.get("weights_file"), "weights_sha256": manifest.get("weights_sha256"),
               **{k: manifest.get(k) for k in ("index_type", "index_params", "index_bytes", "recall_at_10_vs_exact")}}

    # 5. before/after report on synthesised queries of a seed the adaptation never used
    if cfg.report_queries > 0:
        report_key = {**index_key, "n": cfg.report_queries, "seed": cfg.report_seed}
        rpath = out / "report" / "report.json"
        if not state.done("report", report_key) or not rpath.exists():
            log(f"[mission] before/after report on {cfg.report_queries} synthesised queries (seed {cfg.report_seed})")
            report = mission_report(cfg, corpus, base, out)
            state.mark("report", report_key)
        else:
            report = json.loads(rpath.read_text())
        summary["report"] = report
    return summary


def mission_report(cfg: MissionConfig, corpus: TileCorpus, base_weights: str | None, out: pathlib.Path) -> dict:
    """Recall@N (25/50 m) and top-1 hubness before (corpus-fitted weights only) and after adaptation, on
    queries synthesised with the benchmark protocol at the mission's altitudes and report_seed."""
    from vpr_node.core.evaluation import evaluate, write_report
    from vpr_node.core.indexing import build_index
    from vpr_node.core.queries import QuerySpec, synthesise_queries
    from vpr_node.core.strategy import RetrievalStrategy, load_strategy

    rasters = load_maps(cfg.maps)
    spec = QuerySpec.benchmark(altitude_m=tuple(cfg.altitude_m), hfov_deg=cfg.camera.hfov_deg,
                               camera=(cfg.camera.width_px, cfg.camera.height_px))
    queries = list(synthesise_queries(rasters, cfg.report_queries, seed=cfg.report_seed, spec=spec))
    before_dir = out / "work" / "index_before"
    if not (before_dir / "manifest.json").exists():
        model = create_backbone(cfg.backbone, weights=base_weights, **cfg.backbone_options)
        from vpr_node.core.runtimes import TorchRuntime
        build_index(RetrievalStrategy(model, TorchRuntime(model, device=device_for(cfg.adapt.device))), corpus,
                    before_dir, rotations=cfg.rotations, progress=cfg.progress, weights_file=None)
    device = device_for(cfg.adapt.device)
    before = evaluate(load_strategy(cfg.backbone, weights=base_weights, index_dir=str(before_dir), device=device,
                                    backbone_options=cfg.backbone_options), queries, k=20, progress=cfg.progress)
    before.backbone = f"{cfg.backbone} (before adaptation)"
    after_strategy = load_strategy(cfg.backbone, index_dir=str(out), device=device,
                                   backbone_options=cfg.backbone_options)
    after = evaluate(after_strategy, queries, k=20, progress=cfg.progress)
    after.backbone = f"{cfg.backbone} (adapted)"
    files = write_report([before, after], out / "report", queries, after_strategy.index)
    report = {"queries": len(queries), "seed": cfg.report_seed, "protocol": dataclasses.asdict(spec),
              "before": before.to_json(), "after": after.to_json(), "files": files}
    (out / "report" / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report
