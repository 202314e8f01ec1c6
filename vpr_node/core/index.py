"""FAISS descriptor index over a tile corpus, with a verified manifest.

An index folder holds:
  index.faiss       the FAISS index (inner product on unit descriptors)
  descriptors.npy   float32 (rows, dim) descriptors, memory-mapped on load
  entries.npy       int32 (rows,) tile row of each descriptor (a tile may have several rotated views)
  tiles.csv         the tile table (tile id, zoom, centre lat/lon, bounds, ...)
  manifest.json     backbone label, weights SHA-256, descriptor dim, preprocessing, index type and
                    parameters, tile count, file SHA-256s, format version
Loading verifies the manifest: a field that differs from what the node expects -> ConfigurationError
naming the field; a missing, truncated or corrupt file -> IndexUnavailableError. No silent fallback.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import time

import faiss
import numpy as np

from vpr_node.core.backbones.base import sha256_file
from vpr_node.core.corpus import TileRecord, read_tile_columns, read_tile_table, write_tile_table
from vpr_node.core.errors import ConfigurationError, IndexUnavailableError
from vpr_node.core.types import Candidate, TileId

FORMAT_VERSION = 1
INDEX_FILES = ("index.faiss", "descriptors.npy", "entries.npy", "tiles.csv")
OPTIONAL_FILES = ("backbone_weights.pt",)
INDEX_TYPES = ("flat", "sq8", "hnsw", "ivfpq")
AUTO = "auto"  # chosen by a memory budget (choose_index_type)
IVF_ID_BYTES = 8  # an inverted list stores a 64-bit id per vector
ADD_CHUNK = 65536  # vectors added to / scanned in an index at a time (bounded memory for memory-mapped inputs)
TRAIN_SAMPLE = 200_000  # most rows a scalar quantiser trains on
RERANK_DEFAULT = {"sq8": 4, "ivfpq": 10}  # shortlist = this x fetch, re-scored exactly from descriptors.npy
NPROBE_RECALL_TARGET = 0.95  # an IVF index without a given nprobe probes the fewest lists that reach this


def choose_index_type(n: int, d: int, budget_mib: float) -> tuple[str, dict, int]:
    """The most exact index whose vectors fit `budget_mib`: flat float32 (4d bytes a vector), else 8-bit scalar
    quantised (d bytes), else IVF-PQ with the most sub-quantisers that fit (m bytes + an id). Returns
    (kind, params, expected bytes). Too small a budget is a ConfigurationError saying what would fit."""
    budget = float(budget_mib) * 2**20
    if n * d * 4 <= budget:
        return "flat", {}, n * d * 4
    if n * d <= budget:
        return "sq8", {}, n * d
    nlist = max(1, min(65536, int(4 * np.sqrt(n))))
    for m in (128, 64, 48, 32, 24, 16, 8, 4):
        need = n * (m + IVF_ID_BYTES) + nlist * d * 4 + 256 * d * 4  # codes + ids, coarse centroids, PQ codebooks
        if d % m == 0 and m <= d and need <= budget:
            return "ivfpq", {"nlist": nlist, "m": m, "nbits": 8}, need  # nprobe: tuned at build (tune_nprobe)
    least = n * (4 + IVF_ID_BYTES) + nlist * d * 4 + 256 * d * 4
    raise ConfigurationError(f"{n} vectors of {d}-D do not fit a {budget_mib:g} MiB index: the smallest index "
                             f"(IVF-PQ, 4 bytes a vector) needs {least / 2**20:.0f} MiB. Raise --memory-budget, reduce "
                             f"the dimension (prepare-mission --adapt-whiten-dim) or use fewer rotations/scales")


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


def hubness_report(descriptors: np.ndarray, entries: np.ndarray, index: faiss.Index, rerank: int = 0, k: int = 10,
                   probes: int = 2000, seed: int = 0) -> dict:
    """How much a few tiles dominate the index's neighbourhoods, from the tiles themselves as probes
    (each probe's own tile excluded): the share of probes whose top-1 is the single most frequent tile
    (`max_share`; a hub tile makes it large), and the skewness of N_k, the number of probes that have a
    tile in their top-k (Radovanovic et al. 2010; about 0 for an even spread, > 1 with hubs). The neighbours come
    from `index` (the one just built, re-ranked by `rerank`), so nothing else is held in memory."""
    from vpr_node.core.whitening import top1_hubness

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
    sd = nk.std()
    return {**top1_hubness(np.asarray(top1), n_tiles), "k": k,
            "n_k_skewness": round(float(((nk - nk.mean()) ** 3).mean() / sd ** 3), 3) if sd > 0 else 0.0}


@dataclasses.dataclass
class ManifestExpectation:
    """What the node expects of an index; None fields are not checked."""

    backbone_label: str | None = None
    descriptor_dim: int | None = None
    weights_sha256: str | None = None
    preprocessing: dict | None = None


def write_index(out_dir, descriptors: np.ndarray, entries: np.ndarray, records: list[TileRecord], backbone_info: dict,
                kind: str = "flat", params: dict | None = None, extra: dict | None = None) -> dict:
    """Build the FAISS index and write the index folder + manifest. Returns the manifest."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    budget = None
    if kind == AUTO:
        params = dict(params or {})
        budget = float(params.pop("memory_budget_mib", 0) or 0)
        if budget <= 0:
            raise ConfigurationError("index type auto needs a memory budget (--memory-budget MiB)")
        kind, chosen, _ = choose_index_type(len(descriptors), descriptors.shape[1], budget)
        params = {**chosen, **params}
    params = dict(params or {})
    if kind in RERANK_DEFAULT:
        params.setdefault("rerank", default_rerank(kind))
    t0 = time.perf_counter()
    index = make_faiss_index(descriptors, kind, params)
    build_s = time.perf_counter() - t0
    compression = {}
    recall = None
    if kind == "ivfpq" and "nprobe" not in params:
        params["nprobe"], compression["nprobe_sweep"] = tune_nprobe(index, descriptors, params.get("rerank", 0))
        recall = compression["nprobe_sweep"][-1]["recall_at_10_vs_exact"]  # measured at the chosen nprobe
    if budget is not None or kind != "flat":  # the recall cost of a compressed index, measured
        if recall is None:
            recall = recall_vs_exact(index, descriptors, rerank=params.get("rerank", 0))
        compression.update({"memory_budget_mib": budget, "recall_at_10_vs_exact": round(recall, 4)})
        if params.get("rerank"):
            compression["recall_at_10_vs_exact_without_rerank"] = round(recall_vs_exact(index, descriptors), 4)
    compression["hubness"] = hubness_report(descriptors, entries, index, params.get("rerank", 0))
    faiss.write_index(index, str(out_dir / "index.faiss"))
    compression["index_bytes"] = (out_dir / "index.faiss").stat().st_size
    target = out_dir / "descriptors.npy"
    if not (isinstance(descriptors, np.memmap) and pathlib.Path(descriptors.filename).resolve() == target.resolve()):
        np.save(target, np.ascontiguousarray(descriptors, np.float32))  # else: already written there, streamed
    np.save(out_dir / "entries.npy", np.asarray(entries, np.int32))
    write_tile_table(out_dir / "tiles.csv", records)
    manifest = {
        "format_version": FORMAT_VERSION,
        "backbone_label": backbone_info["label"],
        "descriptor_dim": int(descriptors.shape[1]),
        "weights_sha256": backbone_info["weights_sha256"],
        "preprocessing": backbone_info["preprocessing"],
        "provenance": backbone_info.get("provenance"),
        "index_type": kind,
        "index_params": params,
        "metric": "inner_product",
        "tile_count": len(records),
        "entry_count": int(len(entries)),
        "build_seconds": round(build_s, 3),
        **compression,
        "files": {
            name: sha256_file(out_dir / name) for name in INDEX_FILES + OPTIONAL_FILES if (out_dir / name).exists()
        },
        **(extra or {}),
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def rebuild_index(src, out, kind: str = "flat", params: dict | None = None) -> dict:
    """An index folder's FAISS index rebuilt from its descriptors with another type or memory budget (another
    aircraft's budget, a tuned IVF), without embedding anything: descriptors, tiles, entries and the weights file
    are copied (streamed) to `out`, the backbone identity and build records carry over. `out` may be `src`."""
    import shutil

    src, out = pathlib.Path(src), pathlib.Path(out)
    old = DescriptorIndex(src)  # verified: hashes match the manifest
    m = old.manifest
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() != src.resolve():
        for name in ("descriptors.npy", *([m["weights_file"]] if m.get("weights_file") else [])):
            shutil.copyfile(src / name, out / name)
    del old
    descriptors = np.load(out / "descriptors.npy", mmap_mode="r")
    info = {"label": m["backbone_label"], "weights_sha256": m["weights_sha256"], "preprocessing": m["preprocessing"],
            "provenance": m.get("provenance")}
    keep = ("rotations", "corpus", "weights_file", "tile_plan", "build", "pca", "adaptation")
    return write_index(out, descriptors, np.load(src / "entries.npy"), read_tile_table(src / "tiles.csv"), info, kind,
                       params, extra={**{k: m[k] for k in keep if k in m}, "rebuilt_from": str(src)})


def check_memory_budget(root: pathlib.Path, manifest: dict, budget_mib: float) -> None:
    """Refuse (ConfigurationError, before anything is read) an index whose in-memory part, index.faiss, exceeds the
    budget. descriptors.npy is memory-mapped: only the rows an exact re-rank reads are paged in."""
    need = (root / "index.faiss").stat().st_size / 2**20
    if need > budget_mib:
        raise ConfigurationError(
            f"index {root} needs {need:.1f} MiB in memory ({manifest.get('index_type')}, {manifest.get('entry_count')} "
            f"vectors of {manifest.get('descriptor_dim')}-D) but index_memory_budget_mib is {budget_mib:g}: rebuild it "
            f"with `vpr build-index ... --memory-budget {budget_mib:g}` (and --pca-dim to reduce the dimension) or "
            f"raise the budget", field="index_memory_budget_mib", expected=budget_mib, actual=round(need, 1))


class DescriptorIndex:
    """A loaded, verified index folder. search() returns ranked Candidates (one per tile)."""

    def __init__(self, root, expect: ManifestExpectation | None = None, verify_hashes: bool = True,
                 memory_budget_mib: float = 0.0):
        self.root = pathlib.Path(root)
        mpath = self.root / "manifest.json"
        if not self.root.is_dir():
            raise IndexUnavailableError(f"index folder {self.root} does not exist; build it with `vpr build-index`",
                                        index_dir=str(self.root))
        if not mpath.is_file():
            raise IndexUnavailableError(f"index folder {self.root} has no manifest.json", index_dir=str(self.root))
        try:
            self.manifest = json.loads(mpath.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise IndexUnavailableError(f"manifest {mpath} is corrupt: {exc}", index_dir=str(self.root)) from exc
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise ConfigurationError(
                f"index manifest field 'format_version' is {self.manifest.get('format_version')!r}, "
                f"this build reads {FORMAT_VERSION}; rebuild the index with `vpr build-index`",
                field="format_version",
            )
        for name in INDEX_FILES:
            p = self.root / name
            if not p.is_file():
                raise IndexUnavailableError(f"index file {p} is missing; rebuild the index", file=name)
            if verify_hashes:
                want = self.manifest.get("files", {}).get(name)
                got = sha256_file(p)
                if want != got:
                    raise IndexUnavailableError(
                        f"index file {p} is corrupt or was changed after the build "
                        f"(sha256 {got[:12]}... != manifest {str(want)[:12]}...); rebuild the index",
                        file=name,
                    )
        if expect:
            self.verify(expect)
        if memory_budget_mib:
            check_memory_budget(self.root, self.manifest, memory_budget_mib)
        try:
            self.index = faiss.read_index(str(self.root / "index.faiss"))
            self.descriptors = np.load(self.root / "descriptors.npy", mmap_mode="r")
            self.entries = np.load(self.root / "entries.npy")
            self._columns = read_tile_columns(self.root / "tiles.csv")
        except Exception as exc:  # noqa: BLE001 - any read failure means the index is unusable
            raise IndexUnavailableError(f"cannot read index in {self.root}: {exc}") from exc
        if self.index.d != self.manifest["descriptor_dim"] or self.index.ntotal != len(self.entries):
            raise IndexUnavailableError(f"index in {self.root} is inconsistent with its manifest "
                                        f"(d={self.index.d}, ntotal={self.index.ntotal}, entries={len(self.entries)})")
        self._n_tiles = len(self._columns["tile_id"])
        if self._n_tiles != self.manifest["tile_count"] or (len(self.entries) and self.entries.max() >= self._n_tiles):
            raise IndexUnavailableError(f"tile table in {self.root} does not match the index entries")
        self._records: list[TileRecord] | None = None
        self.index_id = self.manifest["files"]["index.faiss"][:16]
        self.rerank = int(self.manifest.get("index_params", {}).get("rerank", 0))  # 0 in indexes built before it

    def verify(self, expect: ManifestExpectation) -> None:
        for field in ("backbone_label", "descriptor_dim", "weights_sha256", "preprocessing"):
            want = getattr(expect, field)
            got = self.manifest.get(field)
            if want is not None and want != got:
                hint = (" or set `weights` to the file the index was built with (the index's manifest lists it)"
                        if field == "weights_sha256" else "")
                raise ConfigurationError(
                    f"index manifest field '{field}' is {got!r} but the configured backbone has {want!r}; "
                    f"rebuild the index for this backbone (`vpr build-index`) or point `index_dir` at a matching "
                    f"one{hint}", field=field, expected=want, actual=got)

    @property
    def descriptor_dim(self) -> int:
        return int(self.manifest["descriptor_dim"])

    @property
    def backbone_label(self) -> str:
        return self.manifest["backbone_label"]

    def __len__(self) -> int:
        return self._n_tiles

    @property
    def records(self) -> list[TileRecord]:
        """The full tile table (read on first use: the node itself needs only the columns of tile_array)."""
        if self._records is None:
            self._records = read_tile_table(self.root / "tiles.csv")
        return self._records

    def tile_array(self, field: str) -> np.ndarray:
        """One tile-table column as an array (lat, lon, ground_m, ...), cached."""
        if field not in self._columns:
            self._columns[field] = np.array([getattr(r, field) for r in self.records])
        return self._columns[field]

    def tile(self, row: int) -> TileId:
        c = self._columns
        return TileId(int(c["zoom"][row]), float(c["lat"][row]), float(c["lon"][row]), str(c["tile_id"][row]))

    def _search_params(self, rows: np.ndarray):
        """FAISS search parameters restricting the search to these index rows (their own selector type per index)."""
        sel = faiss.IDSelectorBatch(np.ascontiguousarray(rows, dtype=np.int64))
        base = self.index
        if isinstance(base, faiss.IndexHNSW):
            return faiss.SearchParametersHNSW(sel=sel, efSearch=max(base.hnsw.efSearch, 128)), sel
        if isinstance(base, faiss.IndexIVF):
            return faiss.SearchParametersIVF(sel=sel, nprobe=base.nprobe), sel
        return faiss.SearchParameters(sel=sel), sel

    def search(self, descriptor: np.ndarray, k: int, allowed_tiles: np.ndarray | None = None) -> list[Candidate]:
        """Top-k tiles, ascending distance (squared L2 between unit vectors = 2 - 2 cos). `allowed_tiles`
        (tile rows) restricts the search to them (a position prior, one scale of a multi-scale index)."""
        q = np.asarray(descriptor, np.float32).reshape(1, -1)
        if q.shape[1] != self.descriptor_dim:
            raise IndexUnavailableError(f"query descriptor has dim {q.shape[1]}, index has {self.descriptor_dim}")
        if not np.all(np.isfinite(q)):
            raise IndexUnavailableError("query descriptor contains NaN or inf")
        n_tiles = self._n_tiles if allowed_tiles is None else len(allowed_tiles)
        k = max(1, min(int(k), n_tiles))
        per_tile = max(1, len(self.entries) // max(1, self._n_tiles))
        fetch = min(len(self.entries), k * per_tile + per_tile)
        try:
            params = _sel = None
            if allowed_tiles is not None:
                params, _sel = self._search_params(np.flatnonzero(np.isin(self.entries, allowed_tiles)))
            sims, ids = search_reranked(self.index, self.descriptors, q, fetch, self.rerank, params)
        except Exception as exc:  # noqa: BLE001
            raise IndexUnavailableError(f"FAISS search failed: {exc}") from exc
        seen: dict[int, float] = {}
        for s, i in zip(sims[0], ids[0], strict=True):
            if i < 0:
                continue
            tile = int(self.entries[i])
            if tile not in seen:
                seen[tile] = float(s)
                if len(seen) == k:
                    break
        ranked = sorted(seen.items(), key=lambda kv: -kv[1])
        dim, label = self.descriptor_dim, self.backbone_label
        return [Candidate(rank=r, tile=self.tile(t), distance=max(0.0, 2.0 - 2.0 * s), descriptor_dim=dim,
                          backbone_label=label) for r, (t, s) in enumerate(ranked)]
