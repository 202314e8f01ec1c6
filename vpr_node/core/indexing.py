"""Embed every tile of a corpus (optionally at several rotations) and write the index folder."""
from __future__ import annotations

import pathlib
import shutil
import time

import numpy as np

from vpr_node.core.chunked_build import StrategySpec, assemble, embed_to_shards, fit_pca_on_shards
from vpr_node.core.corpus import TileCorpus
from vpr_node.core.errors import ConfigurationError
from vpr_node.core.index import write_index
from vpr_node.core.strategy import RetrievalStrategy


def rotated_views(img: np.ndarray, rotations: int) -> list[np.ndarray]:
    """The tile at `rotations` headings evenly spaced over 360 deg (1, 2 or 4 use exact 90-deg turns)."""
    if rotations not in (1, 2, 4, 8):
        raise ValueError("rotations must be 1, 2, 4 or 8")
    views = [np.ascontiguousarray(np.rot90(img, k)) for k in range(0, 4, 4 // min(rotations, 4))]
    if rotations == 8:
        import cv2
        h, w = img.shape[:2]
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 45, 1.0)
        r45 = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        views += [np.ascontiguousarray(np.rot90(r45, k)) for k in range(4)]
    return views


def default_batch_size(strategy: RetrievalStrategy) -> int:
    """1 on CPU (per image 2.5x faster than batches of 16 with 2 threads: 43 vs 109 ms for the default at
    320 px, BENCHMARKS.md), 32 on CUDA."""
    device = getattr(strategy.runtime, "device", None)
    return 32 if device is not None and getattr(device, "type", "cpu") == "cuda" else 1


CORPUS_FITTED_WEIGHTS = "backbone_weights.pt"


DEFAULT_CHUNK_TILES = 1024  # tiles per checkpointed chunk: 4 rotations x 3072-D float32 = 50 MB in memory


def build_index(
    strategy: RetrievalStrategy | None,
    corpus: TileCorpus,
    out_dir,
    kind: str = "flat",
    params: dict | None = None,
    rotations: int = 1,
    batch_size: int | None = None,
    progress: bool = True,
    weights_file: str | None = None,
    spec: StrategySpec | None = None,
    executor=None,
    chunk_tiles: int = DEFAULT_CHUNK_TILES,
    work_dir=None,
    pca_dim: int = 0,
    keep_work: bool = False,
    threads: int | None = None,
    log=print,
) -> dict:
    """Embed the corpus chunk by chunk (chunked_build.py: checkpointed in `work_dir`, default out_dir/build_work,
    resumable; on a Dask cluster with a DaskExecutor and a `spec`), optionally reduce to `pca_dim` by a
    PCA-whitening fitted on the corpus (installed as the backbone's `whiten` layer and saved as the index's
    weights file), stream the descriptors into descriptors.npy and write the index folder. `weights_file` (a
    file inside out_dir) is recorded in the manifest when the backbone's weights were fitted to this corpus."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(work_dir) if work_dir else out_dir / "build_work"
    if strategy is None:
        strategy = spec.load()
    model = strategy.backbone
    t0 = time.perf_counter()
    store, chunks, summary = embed_to_shards(corpus, work, rotations, batch_size or default_batch_size(strategy),
                                             chunk_tiles, strategy=strategy, spec=spec, executor=executor,
                                             threads=threads, progress=progress, log=log)
    project, pca = None, None
    if pca_dim:
        if model.whiten is not None:
            raise ConfigurationError(f"{model.label} already carries a whitening layer (prepare-mission's); "
                                     f"--pca-dim would replace it: build without --pca-dim")
        from vpr_node.core.adaptation import save_adapted_weights  # adaptation imports this module

        w = fit_pca_on_shards(store, chunks, pca_dim)
        model.set_whitening(w.as_linear())
        project = model.whiten
        weights_file = CORPUS_FITTED_WEIGHTS
        pca = {"dim": pca_dim, "method": w.method, "shrinkage": w.shrinkage}
        save_adapted_weights(model, out_dir / weights_file, f"vpr build-index --pca-dim {pca_dim} on {corpus.root}",
                             {"pca": pca})
    descriptors, entries = assemble(store, chunks, out_dir / "descriptors.npy", project)
    summary["embed_and_assemble_seconds"] = round(time.perf_counter() - t0, 1)
    info = {"label": model.label, "weights_sha256": model.weights_sha256,
            "preprocessing": model.preprocessor.describe(), "provenance": model.describe()["provenance"]}
    manifest = write_index(out_dir, descriptors, entries, corpus.records, info, kind, params,
                           extra={"rotations": rotations, "corpus": str(corpus.root), "weights_file": weights_file,
                                  "tile_plan": corpus.plan.to_json() if corpus.plan else None, "build": summary,
                                  "pca": pca})
    del descriptors
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return manifest


def build_index_for(backbone: str, corpus: TileCorpus, out_dir, weights: str | None = None, backbone_options=None,
                    runtime: str = "pytorch", precision: str = "fp32", device: str = "cpu", **build_kw) -> dict:
    """build-index for a backbone by name. A backbone that needs weights fitted to the corpus (its
    spec's fit_to_corpus, e.g. NetVLAD centroids by k-means) gets them fitted here when `weights` is
    not given; they are saved in the index folder and named in the manifest."""
    import json

    from vpr_node.core.backbones import get_spec
    from vpr_node.core.strategy import load_strategy

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
    return build_index(strategy, corpus, out_dir, weights_file=weights_file, spec=worker_spec, **build_kw)
