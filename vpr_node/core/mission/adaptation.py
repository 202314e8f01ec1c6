"""Adapting a backbone to the mission map before take-off (self-supervised: the map is the only data).

Synthesised drone views of random map positions (`adaptation` photometrics: another season, time of day and
sensor; altitudes and tilts of the mission, widened), never evaluation queries:

1. fine-tune (optional; a step budget, or a time budget): the project's triplet + InfoNCE recipe from the
   corpus-fitted weights, BatchNorm statistics frozen, resumable from its last checkpoint (training/trainer.py);
2. learned whitening (closed form, seconds): each view is paired with the tile at its position and Radenovic et
   al.'s Lw (backbones/whitening.py) is fitted on the pairs, at several dimensions and shrinkages;
3. validation: every candidate (the fine-tuned and the corpus-fitted model; no whitening and each whitening) is
   scored on held-out views of other seeds in three conditions: `clean` (geometry only), `hard` (adaptation
   photometrics) and `changed` (the ground changed since the map: views/changed.py). A candidate is eligible
   only if it loses at most `tolerance` recall@5 against the unadapted
   model in *each* condition; the eligible one with the best total recall@1 + recall@5 is kept. So adaptation is
   used where it helps without costing the easy case (measured: on the procedural sample map, whose fields differ
   mainly by colour, Lw raised hard views' R@1 0.35 -> 0.80 but cost clean ones 0.99 -> 0.90 R@5, and is rejected
   there; on the real developer maps it is accepted).

Tiles are embedded by the one tile-embedding path (indexing/embedding.py: chunked, checkpointed, resumable, on Dask
when the build settings say so), and only a bounded sample of them: every tile near a fitting or validation view
plus random others up to `sample_tiles` (all tiles of a smaller map). So memory does not grow with the map; the
final index reuses the sample's embedding (prepare.py), so the sample costs no second pass. Validation recall on
a sample ranks candidates against fewer distractors than the whole map has: it compares candidates, it does not
predict the map's recall (the report does). Views are rendered as they are embedded and otherwise kept as their
positions (views/queries.py ViewSet): 1,300 views at 1280x720 would hold 3.6 GB.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import time

import numpy as np
import torch

from vpr_node.core.backbones import create_backbone
from vpr_node.core.backbones.whitening import Whitening, fit_learned_whitening
from vpr_node.core.indexing.embedding import embed_tiles
from vpr_node.core.indexing.executors import StrategySpec
from vpr_node.core.indexing.settings import BuildSettings
from vpr_node.core.maps.geo import haversine_m
from vpr_node.core.maps.sources import GeoRaster
from vpr_node.core.maps.tiles import TileCorpus
from vpr_node.core.options import option
from vpr_node.core.retrieval.runtimes import create_runtime
from vpr_node.core.retrieval.strategy import RetrievalStrategy
from vpr_node.core.training.trainer import TrainConfig, train
from vpr_node.core.views.queries import QuerySpec, ViewSet

AUTO_MINUTES_CUDA = 2.0  # on one H200 a 400 x 32-triplet fine-tune took 60 s (issue 13's measurement)
# condition -> (photometric profile of its views, seed offset from AdaptConfig.seed)
VALIDATION_CONDITIONS = {"clean": ("none", 2), "hard": ("adaptation", 3), "changed": ("changed", 5)}


@dataclasses.dataclass
class AdaptConfig:
    minutes: float = option(-1.0, "fine-tuning budget in minutes; 0 = learned whitening only; -1 = auto: "
                                  f"{AUTO_MINUTES_CUDA:g} on CUDA, 0 on a CPU (README: a CPU budget of minutes adds "
                                  "nothing over the whitening)")
    steps: int = option(0, "fine-tune for exactly this many steps instead of a time budget (0 = by --adapt-minutes);"
                           " the same steps give the same model on any machine")
    batch_size: int = option(8, "fine-tuning triplets per step")
    lr: float = option(1e-5, "fine-tuning learning rate")
    views: int = option(1000, "synthesised map views the learned whitening is fitted on")
    whiten_dim: int = option(512, "largest whitened dimension tried; /2 and /4 are tried too (0 = no whitening)")
    shrinkage: float = option(0.3, "covariance shrinkage of the learned whitening; 2x it is tried too")
    validation_views: int = option(300, "held-out views (other seeds; a third each clean, hard and changed "
                                        "ground) that choose the candidate")
    tolerance: float = option(0.02, "largest recall@5 loss against the unadapted model allowed in either condition")
    sample_tiles: int = option(4096, "most tiles the adaptation embeds and holds for fitting and validation (those "
                                     "near its views and random others; a smaller map uses all of its tiles): memory "
                                     "does not grow with the map, and the index reuses their embedding")
    pos_m: float = option(25.0, "a view's matching tile lies within this distance (m)")
    seed: int = option(1000, "seed of the views and fine-tuning anchors (never a report's or benchmark's seed)")
    altitude_m: tuple[float, float] = option((55.0, 110.0), "mission altitudes (views span 0.9x..1.1x of them)")
    hfov_deg: float = option(86.0, "camera horizontal field of view (deg)")
    max_tilt_deg: float = option(15.0, "largest camera tilt of the synthesised views (deg)")
    device: str = option("auto", "auto (CUDA when present) | cpu | cuda")

    def fine_tune_minutes(self) -> float:
        """The fine-tuning time budget in effect (minutes < 0: auto, by device; 0 with a step budget)."""
        if self.steps > 0:
            return 0.0
        if self.minutes >= 0:
            return float(self.minutes)
        return AUTO_MINUTES_CUDA if device_for(self.device).startswith("cuda") else 0.0

    def fine_tunes(self) -> bool:
        return self.steps > 0 or self.fine_tune_minutes() > 0

    def budget_label(self) -> str:
        return f"{self.steps} steps" if self.steps > 0 else f"{self.fine_tune_minutes():g} min"

    def view_spec(self) -> QuerySpec:
        lo, hi = self.altitude_m
        return QuerySpec(camera=(480, 270), altitude_m=(0.9 * lo, 1.1 * hi), hfov_deg=self.hfov_deg,
                         max_tilt_deg=self.max_tilt_deg, photometric="adaptation")


def device_for(name: str) -> str:
    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


@dataclasses.dataclass
class TileSample:
    """The tile rows the adaptation embeds (ascending), with their centres and ground sizes."""

    rows: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    ground: np.ndarray
    n_corpus: int

    @property
    def is_all(self) -> bool:
        return len(self.rows) == self.n_corpus

    def local(self, entries: np.ndarray) -> np.ndarray:
        """Corpus tile rows -> positions in this sample."""
        return np.searchsorted(self.rows, entries).astype(np.int32)


def tile_sample(corpus: TileCorpus, views, cfg: AdaptConfig) -> TileSample:
    """Every tile of a map of at most cfg.sample_tiles tiles; else the tiles within pos_m of any view plus random
    others up to sample_tiles (seed cfg.seed + 4). Either way the index reuses their embedding."""
    lat = np.array([r.lat for r in corpus.records])
    lon = np.array([r.lon for r in corpus.records])
    ground = np.array([r.ground_m or 1.0 for r in corpus.records])
    n = len(corpus)
    if n <= cfg.sample_tiles:
        rows = np.arange(n)
    else:
        near = np.unique(np.concatenate([np.flatnonzero(haversine_m(v.lat, v.lon, lat, lon) <= cfg.pos_m)
                                         for v in views] or [np.zeros(0, np.int64)]))
        rest = np.setdiff1d(np.arange(n), near)
        fill = np.random.default_rng(cfg.seed + 4).choice(rest, size=min(len(rest), max(0, cfg.sample_tiles
                                                                                          - len(near))), replace=False)
        rows = np.sort(np.concatenate([near, fill]).astype(np.int64))
    return TileSample(rows, lat[rows], lon[rows], ground[rows], n)


def view_tile_pairs(views, view_desc: np.ndarray, sample: TileSample, tile_desc: np.ndarray, entries: np.ndarray,
                    pos_m: float = 25.0) -> np.ndarray:
    """(P, 2) index pairs (view row, tile-descriptor row): each view with the tile at its position (the scale
    closest to the view's footprint, then the nearest centre; of that tile's rotations the one most similar to the
    view). `entries` are sample positions; rows of views are offset by len(tile_desc) (they are stacked after)."""
    pairs = []
    for i, v in enumerate(views):
        d = haversine_m(v.lat, v.lon, sample.lat, sample.lon)
        near = np.flatnonzero(d <= pos_m)
        if not len(near):
            continue
        scale_gap = np.abs(np.log(sample.ground[near] / (v.footprint_m or sample.ground[near].mean())))
        tile = near[np.lexsort((d[near], np.round(scale_gap, 2)))[0]]
        rows = np.flatnonzero(entries == tile)
        pairs.append((len(tile_desc) + i, rows[np.argmax(tile_desc[rows] @ view_desc[i])]))
    return np.asarray(pairs, np.int64)


def fine_tune(backbone: str, weights: str, maps_csv: str, corpus: TileCorpus, out_dir, cfg: AdaptConfig,
              options: dict | None = None, progress: bool = True) -> dict:
    """The fine-tune (a step budget, or a time budget), resumed from out_dir/checkpoints/last.ckpt when there."""
    out_dir = pathlib.Path(out_dir)
    resume = "last" if (out_dir / "checkpoints" / "last.ckpt").exists() else None
    steps = cfg.steps if cfg.steps > 0 else 100_000  # else the time budget ends it
    tc = TrainConfig(backbone=backbone, backbone_options=dict(options or {}), weights=weights, maps=str(maps_csv),
                     corpus=str(corpus.root), out=str(out_dir), max_steps=steps, max_minutes=cfg.fine_tune_minutes(),
                     batch_size=cfg.batch_size, lr=cfg.lr, val_samples=0, val_every=steps, patience=1_000_000,
                     anchor_profile="adaptation", tile_profile="adaptation",
                     altitude=(0.9 * cfg.altitude_m[0], 1.1 * cfg.altitude_m[1]), hfov=cfg.hfov_deg,
                     max_tilt_deg=cfg.max_tilt_deg, seed=cfg.seed, resume=resume, freeze_bn=True, device=cfg.device)
    t0 = time.perf_counter()
    result = train(tc, progress=progress)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


def _validation_recall(val_desc, val_views, tile_desc, entries, sample: TileSample, pos_m: float) -> dict:
    """Recall@1/5 of held-out views against the sample's tile descriptors (best rotation per tile)."""
    sims = val_desc @ tile_desc.T
    best = np.full((len(val_desc), len(sample.rows)), -np.inf, np.float32)
    np.maximum.at(best.T, entries, sims.T)
    order = np.argsort(-best, axis=1)[:, :5]
    hit = np.stack([haversine_m(v.lat, v.lon, sample.lat[o], sample.lon[o]) <= pos_m
                    for v, o in zip(val_views, order, strict=True)])
    return {"r1": round(float(hit[:, 0].mean()), 4), "r5": round(float(hit.any(1).mean()), 4)}


def validation_sets(rasters, cfg: AdaptConfig) -> dict:
    """Held-out views per condition (seeds cfg.seed + 2, + 3, + 5: never the fitting views nor a report's)."""
    n = max(1, cfg.validation_views // len(VALIDATION_CONDITIONS))
    return {name: ViewSet(rasters, n, seed=cfg.seed + offset,
                          spec=dataclasses.replace(cfg.view_spec(), photometric=profile))
            for name, (profile, offset) in VALIDATION_CONDITIONS.items()}


def fitting_views(rasters, cfg: AdaptConfig) -> ViewSet:
    """The views the learned whitening is fitted on (seed cfg.seed + 1)."""
    return ViewSet(rasters, cfg.views if cfg.whiten_dim > 0 else 0, seed=cfg.seed + 1, spec=cfg.view_spec())


def whitening_candidates(strategy: RetrievalStrategy, sample: TileSample, tile_desc, entries, views, val_sets: dict,
                         cfg: AdaptConfig, progress: bool = True) -> list[dict]:
    """The model without whitening and with Lw at several dims/shrinkages, each scored per validation set."""
    from tqdm import tqdm

    def embed(vs, what):
        bar = tqdm(total=len(vs), desc=f"embedding {what}", unit="img", disable=not progress)
        out = strategy.embed_many((v.image for v in vs), on_batch=bar.update)
        bar.close()
        return out

    val_desc = {k: embed(vs, f"{k} validation views") for k, vs in val_sets.items()}

    def scored(w, **facts) -> dict:
        t = w.apply(tile_desc) if w is not None else tile_desc
        per = {k: _validation_recall(w.apply(val_desc[k]) if w is not None else val_desc[k], val_sets[k].meta, t,
                                     entries, sample, cfg.pos_m) for k in val_sets}
        return {"whitening": w, **facts, **per}

    out = [scored(None, dim=int(tile_desc.shape[1]))]
    if cfg.whiten_dim <= 0 or not views:
        return out
    vdesc = embed(views, "map views")
    pairs = view_tile_pairs(views.meta, vdesc, sample, tile_desc, entries, cfg.pos_m)
    if len(pairs) < 2:
        return out
    x = np.concatenate([tile_desc, vdesc])
    top = min(cfg.whiten_dim, tile_desc.shape[1])
    for shrink in sorted({cfg.shrinkage, min(0.9, 2 * cfg.shrinkage)}):
        full = fit_learned_whitening(x, pairs, top, shrink)  # one fit per shrinkage; dims are its leading rows
        for dim in sorted({d for d in (top // 4, top // 2, top) if d >= 16}):
            out.append(scored(full.truncated(dim), dim=dim, shrinkage=shrink, views=len(views),
                              pairs=int(len(pairs))))
    return out


def choose_candidate(candidates: list[dict], tolerance: float) -> dict:
    """The unadapted candidate (first) unless another loses at most `tolerance` R@5 in every validation
    condition and has a higher total R@1 + R@5."""
    ref = candidates[0]
    conds = [k for k in VALIDATION_CONDITIONS if k in ref]
    for c in candidates:
        c["eligible"] = all(c[k]["r5"] >= ref[k]["r5"] - tolerance for k in conds)
        c["score"] = round(sum(c[k]["r1"] + c[k]["r5"] for k in conds), 4)
    return max((c for c in candidates if c["eligible"]), key=lambda c: (c["score"], c is ref))


def raw_strategy(backbone: str, weights: str | None, options: dict | None, device: str,
                 runtime: str = "pytorch") -> RetrievalStrategy:
    """The backbone with these weights and no whitening layer: what tiles and views are embedded with before a
    whitening is chosen. On `runtime` (onnxruntime: exported once here, its descriptors checked against
    PyTorch's)."""
    model = create_backbone(backbone, weights=weights, **(options or {}))
    model.set_whitening(None)
    return RetrievalStrategy(model, create_runtime(runtime, model, device=device))


def worker_spec(backbone: str, weights: str | None, options: dict | None, device: str,
                runtime: str = "pytorch") -> StrategySpec:
    return StrategySpec(backbone, weights, runtime, "fp32", device, json.dumps(options or {}, sort_keys=True))


@dataclasses.dataclass
class Adaptation:
    """What prepare-mission builds the index from: the chosen model's weights file (corpus-fitted or fine-tuned),
    its whitening (None: none chosen), where that model's tile shards are, and the record for the manifest."""

    model: str
    weights: str | None
    whitening: Whitening | None
    embed_dir: str
    log: dict

    def save(self, folder) -> None:
        folder = pathlib.Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.whitening is not None:
            self.whitening.save(folder / "whitening.npz")
        (folder / "adaptation.json").write_text(json.dumps({
            "model": self.model, "weights": self.weights, "embed_dir": self.embed_dir, "log": self.log,
            "whitening": self.whitening is not None}, indent=2, default=str) + "\n")

    @classmethod
    def load(cls, folder) -> "Adaptation":
        folder = pathlib.Path(folder)
        d = json.loads((folder / "adaptation.json").read_text())
        w = Whitening.load(folder / "whitening.npz") if d["whitening"] else None
        return cls(d["model"], d["weights"], w, d["embed_dir"], d["log"])


def embed_dir(work_dir, model_name: str) -> pathlib.Path:
    return pathlib.Path(work_dir) / "embed" / model_name


def adapt_backbone(backbone: str, base_weights: str | None, maps_csv: str, rasters: list[GeoRaster],
                   corpus: TileCorpus, work_dir, cfg: AdaptConfig, build: BuildSettings | None = None,
                   options: dict | None = None, progress: bool = True, log=print,
                   runtime: str = "pytorch") -> Adaptation:
    """Fine-tune (a budget is set), fit learned whitenings on a tile sample and views, and keep the candidate that
    does best on held-out views. `build` (rotations, chunking, threads, Dask) is the final index's, so that the
    sample's shards serve it when the sample is the whole corpus; `runtime` embeds tiles and views (the fine-tune
    is PyTorch's)."""
    work = pathlib.Path(work_dir)
    build = build or BuildSettings()
    record: dict = {}
    device = device_for(cfg.device)
    models = {"corpus-fitted": base_weights}
    if cfg.fine_tunes():
        ft = fine_tune(backbone, base_weights, maps_csv, corpus, work / "finetune", cfg, options, progress)
        models["fine-tuned"] = ft["weights"]
        record["fine_tune"] = {"steps": ft["steps"], "seconds": ft["seconds"], "budget": cfg.budget_label(),
                               "device": device, "batch_size": cfg.batch_size, "lr": cfg.lr}
    t0 = time.perf_counter()
    val_sets = validation_sets(rasters, cfg)
    views = fitting_views(rasters, cfg)
    sample = tile_sample(corpus, [*views.meta, *(v for vs in val_sets.values() for v in vs.meta)], cfg)
    if not sample.is_all:
        log(f"[mission] adaptation on {len(sample.rows)} of {len(corpus)} tiles (those near its views and random "
            f"others, up to --adapt-sample-tiles {cfg.sample_tiles}); the index reuses their embedding")
    table = []
    for name, weights in models.items():
        strategy = raw_strategy(backbone, weights, options, device, runtime)
        emb = embed_tiles(corpus, embed_dir(work, name), dataclasses.replace(build, work_dir="", keep_work=True),
                          strategy, worker_spec(backbone, weights, options, device, runtime), rows=sample.rows,
                          progress=progress, log=log)
        tile_desc, entries = emb.load()
        for c in whitening_candidates(strategy, sample, tile_desc, sample.local(entries), views, val_sets, cfg,
                                      progress):
            c["model"] = name
            table.append(c)
        del tile_desc
    chosen = choose_candidate(table, cfg.tolerance)
    seeds = {k: cfg.seed + o for k, (_, o) in VALIDATION_CONDITIONS.items()}
    record["validation"] = {"views": {k: len(v) for k, v in val_sets.items()}, "seeds": seeds,
                            "tolerance": cfg.tolerance, "seconds": round(time.perf_counter() - t0, 1),
                            "tiles": int(len(sample.rows)), "corpus_tiles": len(corpus),
                            "candidates": [{k: v for k, v in c.items() if k != "whitening"} for c in table],
                            "chosen": {k: v for k, v in chosen.items() if k != "whitening"}}
    if chosen["whitening"] is not None:
        record["whitening"] = {k: chosen[k] for k in ("dim", "shrinkage", "views", "pairs")}
    return Adaptation(chosen["model"], models[chosen["model"]], chosen["whitening"],
                      str(embed_dir(work, chosen["model"])), record)
