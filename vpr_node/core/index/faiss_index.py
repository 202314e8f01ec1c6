"""FAISS index types over unit descriptors (inner product): flat, 8-bit scalar quantised, HNSW, IVF-PQ; the
choice by a memory budget and a latency budget, IVF nprobe tuning, the exact re-rank of compressed shortlists,
recall and search latency vs exact."""
from __future__ import annotations

import time

import faiss
import numpy as np

from vpr_node.core.errors import ConfigurationError

INDEX_TYPES = ("flat", "sq8", "hnsw", "ivfpq")
AUTO = "auto"  # chosen by a memory and/or latency budget (choose_index_type)
IVF_ID_BYTES = 8  # an inverted list stores a 64-bit id per vector
ADD_CHUNK = 65536  # vectors added to / scanned in an index at a time (bounded memory for memory-mapped inputs)
TRAIN_SAMPLE = 200_000  # most rows a scalar quantiser trains on
RERANK_DEFAULT = {"sq8": 4, "ivfpq": 10}  # shortlist = this x fetch, re-scored exactly from descriptors.npy
NPROBE_RECALL_TARGET = 0.95  # an IVF index without a given nprobe probes the fewest lists that reach this
HNSW_AUTO = {"M": 32, "efConstruction": 80, "efSearch": 64}  # the graph a latency budget picks
SCAN_PROBE_VECTORS = 131_072  # vectors the scan-rate probe searches (measure_scan_ns_per_float)


def hnsw_bytes(n: int, d: int, m: int = HNSW_AUTO["M"]) -> int:
    """HNSWFlat memory: the float32 vectors, 2M level-0 links of 4 bytes, upper levels and offsets (~16 B)."""
    return n * (4 * d + 8 * m + 16)


def measure_scan_ns_per_float(d: int, n: int = SCAN_PROBE_VECTORS, repeats: int = 7, seed: int = 0) -> float:
    """This machine's exhaustive inner-product scan rate: median time of one query against `n` random d-D
    vectors (IndexFlatIP, FAISS's threads), in nanoseconds per stored float. A scan of N vectors then takes
    about N * d * rate."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d), dtype=np.float32)
    index = faiss.IndexFlatIP(d)
    index.add(x)
    q = x[:1].copy()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        index.search(q, 10)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e9 / (n * d)


def choose_index_type(n: int, d: int, budget_mib: float = 0.0, latency_budget_ms: float = 0.0,
                      scan_ns_per_float: float | None = None) -> tuple[str, dict, int]:
    """The most exact index that fits both budgets (0 = no budget). Memory: flat float32 (4d bytes a vector),
    8-bit scalar quantised (d bytes), HNSW (vectors + graph), IVF-PQ with the most sub-quantisers that fit (m
    bytes + an id). Latency: flat and sq8 scan every vector, predicted at n * d * `scan_ns_per_float` (measured
    on this machine when not given); over the budget they give way to HNSW (a graph search, sublinear), or to
    IVF-PQ where HNSW does not fit the memory. Returns (kind, params, expected bytes). A budget nothing meets is
    a ConfigurationError saying what would fit."""
    budget = float(budget_mib) * 2**20 if budget_mib and budget_mib > 0 else float("inf")
    scan_ok = True
    if latency_budget_ms and latency_budget_ms > 0:
        rate = measure_scan_ns_per_float(d) if scan_ns_per_float is None else float(scan_ns_per_float)
        scan_ok = n * d * rate / 1e6 <= latency_budget_ms
    if scan_ok and n * d * 4 <= budget:
        return "flat", {}, n * d * 4
    if scan_ok and n * d <= budget and budget < float("inf"):
        return "sq8", {}, n * d
    if not scan_ok and hnsw_bytes(n, d) <= budget:
        return "hnsw", dict(HNSW_AUTO), hnsw_bytes(n, d)
    nlist = max(1, min(65536, int(4 * np.sqrt(n))))
    for m in (128, 64, 48, 32, 24, 16, 8, 4):
        need = n * (m + IVF_ID_BYTES) + nlist * d * 4 + 256 * d * 4  # codes + ids, coarse centroids, PQ codebooks
        if d % m == 0 and m <= d and need <= budget:
            return "ivfpq", {"nlist": nlist, "m": m, "nbits": 8}, need  # nprobe: tuned at build (tune_nprobe)
    least = n * (4 + IVF_ID_BYTES) + nlist * d * 4 + 256 * d * 4
    raise ConfigurationError(f"{n} vectors of {d}-D do not fit a {budget_mib:g} MiB index: the smallest index "
                             f"(IVF-PQ, 4 bytes a vector) needs {least / 2**20:.0f} MiB. Raise --memory-budget, reduce "
                             f"the dimension (prepare-mission --adapt-whiten-dim) or use fewer rotations/scales")


def search_latency_ms(index: faiss.Index, x: np.ndarray, n_queries: int = 50, k: int = 10, seed: int = 0) -> dict:
    """Measured single-query search latency of `index` (queries: stored vectors), p50 / p95 in ms."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(x), size=min(n_queries, len(x)), replace=False))
    q = np.ascontiguousarray(x[rows], np.float32)
    times = []
    for i in range(len(q)):
        t0 = time.perf_counter()
        index.search(q[i:i + 1], k)
        times.append((time.perf_counter() - t0) * 1e3)
    return {"p50": round(float(np.percentile(times, 50)), 3), "p95": round(float(np.percentile(times, 95)), 3)}


def recall_vs_exact(index: faiss.Index, x: np.ndarray, k: int = 10, n_queries: int = 200, seed: int = 0,
                    rerank: int = 0) -> float:
    """Mean overlap of the index's top-k (after its exact re-rank, if any) with exact search, for database
    vectors (plus a little noise) as queries. `x` may be a memory map: exact search streams over it."""
    if isinstance(index, faiss.IndexFlat):
        return 1.0
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(x), size=min(n_queries, len(x)), replace=False))
    q = np.asarray(x[rows], np.float32)
    q = q + 0.05 * rng.standard_normal(q.shape).astype(np.float32) / np.sqrt(x.shape[1])
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    k = min(k, len(x))
    return topk_overlap(search_reranked(index, x, q, k, rerank)[1], exact_topk(x, q, k)[1])


def exact_topk(x: np.ndarray, q: np.ndarray, k: int, chunk: int = ADD_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k of queries `q` over `x`, streamed in chunks (x may be a memory map larger than RAM)."""
    best_s = np.full((len(q), 0), -np.inf, np.float32)
    best_i = np.zeros((len(q), 0), np.int64)
    for start in range(0, len(x), chunk):
        sims = q @ np.asarray(x[start:start + chunk], np.float32).T
        s = np.concatenate([best_s, sims], axis=1)
        i = np.concatenate([best_i, np.broadcast_to(np.arange(start, start + sims.shape[1]), sims.shape)], axis=1)
        top = np.argsort(-s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1)
    return best_s, best_i


def search_reranked(index: faiss.Index, descriptors: np.ndarray, q: np.ndarray, k: int, rerank: int = 0,
                    params=None) -> tuple[np.ndarray, np.ndarray]:
    """FAISS search; with `rerank` > 0 a shortlist of rerank x k candidates from the (compressed) index is
    re-scored exactly against the float32 descriptors (memory-mapped: only the shortlist's rows are read)
    and the best k kept. That restores most of what PQ/SQ codes lose, for ~rerank x k row reads a query."""
    if rerank <= 0:
        return index.search(q, k, params=params)
    _, ids = index.search(q, min(index.ntotal, k * rerank), params=params)
    sims_out = np.full((len(q), k), -np.inf, np.float32)
    ids_out = np.full((len(q), k), -1, np.int64)
    for r, row in enumerate(ids):
        row = row[row >= 0]
        if not len(row):
            continue
        order = np.argsort(row)  # read the memory map in file order
        exact = np.asarray(descriptors[row[order]], np.float32) @ q[r]
        best = np.argsort(-exact, kind="stable")[:k]
        sims_out[r, :len(best)] = exact[best]
        ids_out[r, :len(best)] = row[order][best]
    return sims_out, ids_out


def topk_overlap(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each row's exact top-k ids that an approximate search also returned (recall@k vs exact)."""
    k = exact.shape[1]
    return float(np.mean([len(set(f) & set(e)) / k for f, e in zip(found, exact, strict=True)]))


def training_sample(x: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """At most n rows of x (all of them when it has fewer), drawn in file order so a memory map reads forward."""
    if len(x) <= n:
        return np.ascontiguousarray(x, np.float32)
    rows = np.sort(np.random.default_rng(seed).choice(len(x), size=n, replace=False))
    return np.ascontiguousarray(x[rows], np.float32)


def make_faiss_index(descriptors: np.ndarray, kind: str = "flat", params: dict | None = None) -> faiss.Index:
    """Build a FAISS inner-product index over unit descriptors. Quantisers train on a sample (all rows up to
    TRAIN_SAMPLE, 256 per IVF list) and vectors are added in chunks, so `descriptors` may be a memory map
    larger than RAM: only the index itself is held in memory."""
    params = dict(params or {})
    d = descriptors.shape[1]
    n = len(descriptors)
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "sq8":
        index = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        index.train(training_sample(descriptors, TRAIN_SAMPLE))
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, int(params.get("M", 32)), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = int(params.get("efConstruction", 80))
        index.hnsw.efSearch = int(params.get("efSearch", 64))
    elif kind == "ivfpq":
        nlist = int(params.get("nlist", max(1, min(1024, int(4 * np.sqrt(n))))))
        m = int(params.get("m", 16 if d % 16 == 0 else 8))
        nbits = int(params.get("nbits", 8))
        if d % m:
            raise ConfigurationError(f"ivfpq: descriptor dim {d} is not divisible by m={m}")
        quantiser = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFPQ(quantiser, d, nlist, m, nbits, faiss.METRIC_INNER_PRODUCT)
        if n < max(nlist, 2 ** nbits):
            raise ConfigurationError(
                f"ivfpq needs at least {max(nlist, 2**nbits)} descriptors to train, got {n}; "
                f"use index type flat or hnsw for small corpora"
            )
        index.train(training_sample(descriptors, max(256 * nlist, 256 * 2 ** nbits)))
        index.nprobe = int(params.get("nprobe", min(nlist, 16)))
    else:
        raise ConfigurationError(f"unknown index type {kind!r}; choose one of {', '.join(INDEX_TYPES)} "
                                 f"(or {AUTO} with a memory budget)")
    for start in range(0, n, ADD_CHUNK):
        index.add(np.ascontiguousarray(descriptors[start:start + ADD_CHUNK], np.float32))
    return index


def tune_nprobe(index: faiss.Index, x: np.ndarray, rerank: int, target: float = NPROBE_RECALL_TARGET
                ) -> tuple[int, list[dict]]:
    """The fewest inverted lists to probe (16, 32, 64, ... up to all) whose recall@10 vs exact, after the re-rank,
    reaches `target`; the sweep is returned for the manifest. Whitened descriptors are close to isotropic, so the
    coarse quantiser separates them poorly and the right nprobe depends on the map."""
    sweep = []
    for nprobe in sorted({p for p in (16, 32, 64, 128, 256, 512, 1024) if p < index.nlist} | {index.nlist}):
        index.nprobe = nprobe
        sweep.append({"nprobe": nprobe, "recall_at_10_vs_exact": round(recall_vs_exact(index, x, rerank=rerank), 4)})
        if sweep[-1]["recall_at_10_vs_exact"] >= target:
            break
    return index.nprobe, sweep


def default_rerank(kind: str) -> int:
    """Shortlist multiplier of the exact re-rank: compressed codes (sq8, IVF-PQ) are re-scored, exact indexes not."""
    return RERANK_DEFAULT.get(kind, 0)
