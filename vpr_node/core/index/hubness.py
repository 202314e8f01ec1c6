"""Hubness: how much a few tiles dominate retrieval (a hub tile is near everything and wins top-1 for unrelated
queries). Over the index's own tiles as probes at build time (`hubness_report`) and over query answers
(`top1_hubness`)."""
from __future__ import annotations

import faiss
import numpy as np

from vpr_node.core.index.faiss_index import search_reranked


def skewness(counts: np.ndarray) -> float:
    """Third standardised moment of per-tile counts: about 0 for an even spread, > 1 when a few tiles win."""
    counts = np.asarray(counts, np.float64)
    sd = counts.std()
    return float(((counts - counts.mean()) ** 3).mean() / sd ** 3) if sd > 0 else 0.0


def top1_hubness(top1: np.ndarray, n_tiles: int) -> dict:
    """How concentrated the top-1 answers are. `max_share`: fraction of all queries whose top-1 is the
    single most frequent tile (a hub); `distinct_share`: distinct top-1 tiles / min(queries, tiles);
    `skewness` of the per-tile top-1 counts."""
    top1 = np.asarray(top1, np.int64)
    if top1.size == 0:
        return {"queries": 0, "max_share": 0.0, "hub_tile_row": None, "distinct_share": 0.0, "skewness": 0.0}
    counts = np.bincount(top1, minlength=n_tiles).astype(np.float64)
    return {"queries": int(top1.size), "max_share": round(float(counts.max() / top1.size), 4),
            "hub_tile_row": int(counts.argmax()),
            "distinct_share": round(float((counts > 0).sum() / min(top1.size, n_tiles)), 4),
            "skewness": round(skewness(counts), 3)}


def hubness_report(descriptors: np.ndarray, entries: np.ndarray, index: faiss.Index, rerank: int = 0, k: int = 10,
                   probes: int = 2000, seed: int = 0) -> dict:
    """Hubness of a built index, from the tiles themselves as probes (each probe's own tile excluded): top1_hubness
    of their answers, and the skewness of N_k, the number of probes that have a tile in their top-k (Radovanovic
    et al. 2010). The neighbours come from `index` (the one just built, re-ranked by `rerank`), so nothing else is
    held in memory."""
    entries = np.asarray(entries)
    n_tiles = int(entries.max()) + 1 if len(entries) else 0
    if n_tiles < 2:
        return {"probes": 0}
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(entries), size=min(probes, len(entries)), replace=False))
    per_tile = max(1, len(entries) // n_tiles)
    _, ids = search_reranked(index, descriptors, np.ascontiguousarray(descriptors[rows], np.float32),
                             min(len(entries), (k + 1) * per_tile + 1), rerank)
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
    return {**top1_hubness(np.asarray(top1), n_tiles), "k": k, "n_k_skewness": round(skewness(nk), 3)}
