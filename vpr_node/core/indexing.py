"""Embed every tile of a corpus (optionally at several rotations) and write the index folder."""
from __future__ import annotations

import numpy as np
from tqdm import tqdm

from .corpus import TileCorpus
from .index import write_index
from .strategy import RetrievalStrategy


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


def embed_corpus(strategy: RetrievalStrategy, corpus: TileCorpus, rotations: int = 1, batch_size: int | None = None,
                 progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Descriptors (rows, D) and the tile row of each descriptor."""
    batch_size = batch_size or default_batch_size(strategy)
    descs, entries, batch, batch_ids = [], [], [], []
    bar = tqdm(total=len(corpus) * rotations, desc=f"embedding tiles ({strategy.label})", unit="view",
               disable=not progress)

    def flush():
        if batch:
            descs.append(strategy.embed_batch(batch))
            entries.extend(batch_ids)
            bar.update(len(batch))
            batch.clear()
            batch_ids.clear()

    for i in range(len(corpus)):
        for view in rotated_views(corpus.image(i), rotations):
            batch.append(view)
            batch_ids.append(i)
            if len(batch) >= batch_size:
                flush()
    flush()
    bar.close()
    return np.concatenate(descs).astype(np.float32), np.asarray(entries, np.int32)


CORPUS_FITTED_WEIGHTS = "backbone_weights.pt"


def hubness_report(descriptors: np.ndarray, entries: np.ndarray, k: int = 10, probes: int = 2000,
                   seed: int = 0) -> dict:
    """How much a few tiles dominate the index's neighbourhoods, from the tiles themselves as probes
    (each probe's own tile excluded): the share of probes whose top-1 is the single most frequent tile
    (`max_share`; a hub tile makes it large), and the skewness of N_k, the number of probes that have a
    tile in their top-k (Radovanovic et al. 2010; about 0 for an even spread, > 1 with hubs)."""
    import faiss

    from .whitening import top1_hubness

    entries = np.asarray(entries)
    n_tiles = int(entries.max()) + 1 if len(entries) else 0
    if n_tiles < 2:
        return {"probes": 0}
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(entries), size=min(probes, len(entries)), replace=False)
    per_tile = max(1, len(entries) // n_tiles)
    index = faiss.IndexFlatIP(descriptors.shape[1])
    index.add(np.ascontiguousarray(descriptors, np.float32))
    _, ids = index.search(
        np.ascontiguousarray(descriptors[rows], np.float32), min(len(entries), (k + 1) * per_tile + 1)
    )
    top1, nk = [], np.zeros(n_tiles)
    for probe, hits in zip(rows, ids, strict=True):
        seen: list[int] = []
        for i in hits:
            t = int(entries[i])
            if i >= 0 and t != entries[probe] and t not in seen:
                seen.append(t)
                if len(seen) == k:
                    break
        if seen:
            top1.append(seen[0])
            nk[seen] += 1
    sd = nk.std()
    return {**top1_hubness(np.asarray(top1), n_tiles), "k": k,
            "n_k_skewness": round(float(((nk - nk.mean()) ** 3).mean() / sd ** 3), 3) if sd > 0 else 0.0}


def build_index(
    strategy: RetrievalStrategy,
    corpus: TileCorpus,
    out_dir,
    kind: str = "flat",
    params: dict | None = None,
    rotations: int = 1,
    batch_size: int | None = None,
    progress: bool = True,
    weights_file: str | None = None,
) -> dict:
    """Embed the corpus and write the index folder. `weights_file` (a file inside out_dir) is recorded
    in the manifest when the backbone's weights were fitted to this corpus (see build_index_for)."""
    descriptors, entries = embed_corpus(strategy, corpus, rotations, batch_size, progress)
    info = {"label": strategy.label, "weights_sha256": strategy.backbone.weights_sha256,
            "preprocessing": strategy.preprocessor.describe(),
            "provenance": strategy.backbone.describe()["provenance"]}
    return write_index(out_dir, descriptors, entries, corpus.records, info, kind, params,
                       extra={"rotations": rotations, "corpus": str(corpus.root), "weights_file": weights_file,
                              "tile_plan": corpus.plan.to_json() if corpus.plan else None,
                              "hubness": hubness_report(descriptors, entries)})


def build_index_for(backbone: str, corpus: TileCorpus, out_dir, weights: str | None = None, backbone_options=None,
                    runtime: str = "pytorch", precision: str = "fp32", device: str = "cpu", **build_kw) -> dict:
    """build-index for a backbone by name. A backbone that needs weights fitted to the corpus (its
    spec's fit_to_corpus, e.g. NetVLAD centroids by k-means) gets them fitted here when `weights` is
    not given; they are saved in the index folder and named in the manifest."""
    import pathlib

    from .backbones import get_spec
    from .strategy import load_strategy

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
    return build_index(strategy, corpus, out_dir, weights_file=weights_file, **build_kw)
