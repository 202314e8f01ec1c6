"""Tile corpus -> index folder: embed every tile (embedding.py), optionally install a whitening layer (a PCA fitted
on the corpus, or the learned whitening prepare-mission chose), write the index folder (index/folder.py) with the
weights the node must load named and hashed in its manifest."""
from __future__ import annotations

import json
import pathlib
import shutil
import time

from vpr_node.core.backbones import get_spec
from vpr_node.core.backbones.weights import Provenance, save_weights
from vpr_node.core.errors import ConfigurationError
from vpr_node.core.index.folder import write_index, write_tile_images
from vpr_node.core.indexing.embedding import embed_tiles
from vpr_node.core.indexing.executors import StrategySpec
from vpr_node.core.indexing.settings import BuildSettings
from vpr_node.core.maps.tiles import TileCorpus
from vpr_node.core.retrieval.strategy import RetrievalStrategy, load_strategy

CORPUS_FITTED_WEIGHTS = "backbone_weights.pt"  # weights fitted or adapted to the corpus, inside the index folder


def build_index(strategy: RetrievalStrategy | None, corpus: TileCorpus, out_dir, settings: BuildSettings | None = None,
                spec: StrategySpec | None = None, weights_file: str | None = None, whitening=None,
                weights_provenance: Provenance | None = None, extra: dict | None = None, progress: bool = True,
                log=print, reuse=None) -> dict:
    """Embed the corpus chunk by chunk (checkpointed in settings.work_dir, default OUT/build_work; on a Dask
    cluster with settings.workers/scheduler and a `spec`), stream the descriptors into descriptors.npy and write
    the index folder.

    `whitening` (a backbones.whitening.Whitening, e.g. prepare-mission's learned one) or settings.pca_dim (a
    PCA-whitening fitted here on every descriptor) is installed as the backbone's `whiten` layer after embedding
    and applied to the descriptors as they are assembled. The backbone's weights are then saved in the index folder
    (CORPUS_FITTED_WEIGHTS, with `weights_provenance`), as they are whenever `weights_provenance` is given;
    `weights_file` names a weights file already in the folder (corpus-fitted NetVLAD centroids); `reuse` (a
    TileEmbedding of the same backbone and settings, e.g. prepare-mission's adaptation sample) supplies the tiles it
    already embedded."""
    settings = settings or BuildSettings()
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(settings.work_dir) if settings.work_dir else out_dir / "build_work"
    strategy = strategy if strategy is not None else spec.load()
    model = strategy.backbone
    if (whitening is not None or settings.pca_dim) and model.whiten is not None:
        raise ConfigurationError(f"{model.label} already carries a whitening layer (prepare-mission's); --pca-dim "
                                 f"would replace it: build without --pca-dim")
    if whitening is not None and settings.pca_dim:
        raise ConfigurationError("a learned whitening and --pca-dim exclude each other")
    t0 = time.perf_counter()
    emb = embed_tiles(corpus, work, settings, strategy, spec, progress=progress, log=log, reuse=reuse)
    pca = None
    if settings.pca_dim:
        whitening = emb.fit_pca(settings.pca_dim)
        pca = {"dim": settings.pca_dim, "method": whitening.method, "shrinkage": whitening.shrinkage}
        weights_provenance = Provenance(source=f"vpr build-index --pca-dim {settings.pca_dim} on {corpus.root}",
                                        licence="as the trunk weights", notes=json.dumps({"pca": pca}))
    if whitening is not None:
        model.set_whitening(whitening.as_linear())
    if weights_provenance is not None:
        save_weights(model, out_dir / CORPUS_FITTED_WEIGHTS, weights_provenance)
        weights_file = CORPUS_FITTED_WEIGHTS
    descriptors, entries = emb.assemble(out_dir / "descriptors.npy", model.whiten if whitening is not None else None)
    write_tile_images(corpus.root, corpus.records, out_dir)
    kind, params = settings.index_kind()
    summary = {**emb.summary, "embed_and_assemble_seconds": round(time.perf_counter() - t0, 1)}
    manifest = write_index(out_dir, descriptors, entries, corpus.records, model.identity(), kind, params,
                           extra={"rotations": settings.rotations, "corpus": str(corpus.root),
                                  "weights_file": weights_file, "build": summary, "pca": pca, "tile_images": "tiles",
                                  "tile_plan": corpus.plan.to_json() if corpus.plan else None, **(extra or {})})
    del descriptors
    if not settings.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return manifest


def build_index_for(backbone: str, corpus: TileCorpus, out_dir, settings: BuildSettings | None = None,
                    weights: str | None = None, backbone_options=None, runtime: str = "pytorch",
                    precision: str = "fp32", device: str = "cpu", progress: bool = True, log=print) -> dict:
    """build-index for a backbone by name. A backbone that needs weights fitted to the corpus (its spec's
    fit_to_corpus, e.g. NetVLAD centroids by k-means) gets them fitted here when `weights` is not given; they are
    saved in the index folder and named in the manifest."""

    opts = dict(backbone_options or {})
    spec = get_spec(backbone)
    weights_file = None
    if spec.weights_required and spec.fit_to_corpus and not weights:
        out = pathlib.Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        weights = str(spec.fit_to_corpus(corpus, out / CORPUS_FITTED_WEIGHTS, **opts))
        weights_file = CORPUS_FITTED_WEIGHTS
    strategy = load_strategy(backbone, weights=weights, runtime=runtime, precision=precision, device=device,
                             backbone_options=opts)
    worker_spec = StrategySpec(backbone, weights, runtime, precision, device, json.dumps(opts, sort_keys=True))
    return build_index(strategy, corpus, out_dir, settings, spec=worker_spec, weights_file=weights_file,
                       progress=progress, log=log)
