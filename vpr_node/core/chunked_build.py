"""Memory-bounded, resumable and distributable embedding of a tile corpus (the heavy half of build-index).

The corpus's tile rows are cut into chunks of `chunk_tiles`. A chunk is the unit of work, of
checkpointing and of distribution:

- `embed_chunk` embeds its tiles (every rotation) in batches that never cross a chunk boundary, with a
  fixed torch thread count, so a chunk's descriptors do not depend on where it ran;
- `ShardStore` keeps each finished chunk as `work/shards/NNNNN.npy` (+ `NNNNN.entries.npy`), written
  by an atomic rename. `work/build.json` keys the shards to what made them (tile table SHA-256,
  backbone label, weights SHA-256, preprocessing, rotations, chunk size, batch size, threads): a rerun
  with the same key embeds only the chunks that are missing; a different key starts afresh;
- an executor runs the missing chunks: `LocalExecutor` in this process, `DaskExecutor` on a Dask
  cluster (a LocalCluster of worker processes, or the scheduler address of a real one). Workers load
  the backbone once each from a `StrategySpec` and return a chunk's arrays; the client writes the
  shard as it arrives. The corpus folder must be readable at the same path on every worker (shared
  storage on a real cluster);
- `assemble` streams the shards, in chunk order, into one memory-mapped `descriptors.npy`, optionally
  through a PCA-whitening fitted on all of them in one streaming pass (`fit_pca_on_shards`).

Peak memory is one chunk of descriptors (+ the backbone and the FAISS index being built), whatever the
map's size. The same chunks in the same order give the same files: a Dask build and a local build of a
corpus produce byte-identical descriptors and index on workers of the same CPU type.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import time

import numpy as np
from tqdm import tqdm

from vpr_node.core.backbones.base import sha256_file
from vpr_node.core.corpus import TileCorpus
from vpr_node.core.errors import ConfigurationError


@dataclasses.dataclass(frozen=True)
class Chunk:
    number: int
    start: int  # first tile row
    stop: int  # one past the last tile row


def plan_chunks(n_tiles: int, chunk_tiles: int) -> list[Chunk]:
    if chunk_tiles < 1:
        raise ConfigurationError(f"chunk size must be at least 1 tile, got {chunk_tiles}")
    return [Chunk(i, s, min(n_tiles, s + chunk_tiles)) for i, s in enumerate(range(0, n_tiles, chunk_tiles))]


@dataclasses.dataclass(frozen=True)
class StrategySpec:
    """What a worker needs to load the same backbone as the client (load_strategy's arguments)."""

    backbone: str
    weights: str | None = None
    runtime: str = "pytorch"
    precision: str = "fp32"
    device: str = "cpu"
    backbone_options: str = "{}"  # JSON, so the spec is hashable

    def load(self):
        from vpr_node.core.strategy import load_strategy
        return load_strategy(self.backbone, weights=self.weights, runtime=self.runtime, precision=self.precision,
                             device=self.device, backbone_options=json.loads(self.backbone_options))


def embed_chunk(strategy, corpus: TileCorpus, chunk: Chunk, rotations: int, batch_size: int,
                threads: int | None = None, on_batch=None) -> tuple[np.ndarray, np.ndarray]:
    """(descriptors float32 (rows, D), tile row of each) for the chunk's tiles at every rotation. `on_batch(n)`
    is told of every n views embedded (progress)."""
    import torch

    from vpr_node.core.indexing import rotated_views
    if threads:
        torch.set_num_threads(threads)
    descs, entries, batch, batch_ids = [], [], [], []
    for i in range(chunk.start, chunk.stop):
        for view in rotated_views(corpus.image(i), rotations):
            batch.append(view)
            batch_ids.append(i)
            if len(batch) >= batch_size:
                descs.append(strategy.embed_batch(batch))
                entries.extend(batch_ids)
                if on_batch:
                    on_batch(len(batch))
                batch, batch_ids = [], []
    if batch:
        descs.append(strategy.embed_batch(batch))
        entries.extend(batch_ids)
        if on_batch:
            on_batch(len(batch))
    return np.concatenate(descs).astype(np.float32), np.asarray(entries, np.int32)


class ShardStore:
    """Finished chunks on disk under work_dir, keyed by build.json."""

    def __init__(self, work_dir, key: dict, log=print):
        self.root = pathlib.Path(work_dir)
        self.shards = self.root / "shards"
        kpath = self.root / "build.json"
        old = json.loads(kpath.read_text()) if kpath.is_file() else None
        if old is not None and old != key and self.shards.exists():
            log(f"[build] {self.root}: shards were made with other settings "
                f"({', '.join(k for k in key if old.get(k) != key[k])} differ); starting afresh")
            shutil.rmtree(self.shards)
        self.shards.mkdir(parents=True, exist_ok=True)
        kpath.write_text(json.dumps(key, indent=2, sort_keys=True) + "\n")

    def _paths(self, chunk: Chunk) -> tuple[pathlib.Path, pathlib.Path]:
        return self.shards / f"{chunk.number:05d}.npy", self.shards / f"{chunk.number:05d}.entries.npy"

    def done(self, chunk: Chunk) -> bool:
        return all(p.is_file() for p in self._paths(chunk))

    def write(self, chunk: Chunk, desc: np.ndarray, entries: np.ndarray) -> None:
        if len(entries) and (entries.min() < chunk.start or entries.max() >= chunk.stop):
            raise RuntimeError(f"chunk {chunk.number}: entries outside its tile rows")  # a mixed-up result
        dpath, epath = self._paths(chunk)
        for path, arr in ((epath, entries), (dpath, desc)):  # descriptors last: done() needs both
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, arr)
            os.replace(tmp, path)

    def read(self, chunk: Chunk) -> tuple[np.ndarray, np.ndarray]:
        dpath, epath = self._paths(chunk)
        return np.load(dpath, mmap_mode="r"), np.load(epath)


_WORKER_STRATEGIES: dict = {}  # per process: a worker loads each backbone once


def _embed_chunk_task(spec: StrategySpec, corpus_root: str, chunk: Chunk, rotations: int, batch_size: int,
                      threads: int) -> tuple[int, np.ndarray, np.ndarray]:
    if spec not in _WORKER_STRATEGIES:
        _WORKER_STRATEGIES[spec] = spec.load()
    desc, entries = embed_chunk(_WORKER_STRATEGIES[spec], TileCorpus(corpus_root), chunk, rotations, batch_size,
                                threads)
    return chunk.number, desc, entries


class LocalExecutor:
    """Chunks one after another in this process."""

    name = "local"
    reports_batches = True

    def run(self, strategy, spec, corpus: TileCorpus, todo: list[Chunk], rotations: int, batch_size: int,
            threads: int, store: ShardStore, on_done, on_batch=None) -> None:
        strategy = strategy if strategy is not None else spec.load()
        for chunk in todo:
            desc, entries = embed_chunk(strategy, corpus, chunk, rotations, batch_size, threads, on_batch)
            store.write(chunk, desc, entries)
            on_done(chunk)


class DaskExecutor:
    """Chunks on a Dask cluster: `scheduler` (an address such as tcp://host:8786) or, without one, a
    LocalCluster of `workers` single-threaded processes on this machine."""

    reports_batches = False

    def __init__(self, workers: int = 2, scheduler: str | None = None):
        self.workers, self.scheduler = int(workers), scheduler
        self.name = f"dask ({scheduler or f'local cluster, {self.workers} processes'})"

    def run(self, strategy, spec, corpus: TileCorpus, todo: list[Chunk], rotations: int, batch_size: int,
            threads: int, store: ShardStore, on_done, on_batch=None) -> None:
        if spec is None:
            raise ConfigurationError("a distributed build needs the backbone by name (build-index --backbone ...); "
                                     "an in-memory model cannot be sent to workers")
        try:
            from dask.distributed import Client, LocalCluster, as_completed
        except ImportError as exc:
            raise ConfigurationError("the distributed build needs Dask: pip install 'dask[distributed]'") from exc
        cluster = None
        if self.scheduler:
            client = Client(self.scheduler)
        else:
            cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            client = Client(cluster)
        try:
            by_number = {c.number: c for c in todo}
            futures = [client.submit(_embed_chunk_task, spec, str(corpus.root.resolve()), c, rotations, batch_size,
                                     threads, key=f"vpr-chunk-{c.number}", pure=False) for c in todo]
            for future in as_completed(futures):
                number, desc, entries = future.result()
                store.write(by_number[number], desc, entries)
                on_done(by_number[number])
                future.release()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def embed_to_shards(corpus: TileCorpus, work_dir, rotations: int, batch_size: int, chunk_tiles: int,
                    strategy=None, spec: StrategySpec | None = None, executor=None, threads: int | None = None,
                    progress: bool = True, log=print) -> tuple[ShardStore, list[Chunk], dict]:
    """Embed every chunk not already on disk. Returns the store, all chunks in order, and a summary."""
    import torch

    if strategy is None and spec is None:
        raise ValueError("embed_to_shards needs a strategy or a StrategySpec")
    executor = executor or LocalExecutor()
    threads = int(threads or torch.get_num_threads())
    model = strategy.backbone if strategy is not None else spec.load().backbone
    key = {"tiles_sha256": sha256_file(corpus.root / "tiles.csv"), "label": model.label,
           "weights_sha256": model.weights_sha256, "preprocessing": model.preprocessor.describe(),
           "rotations": rotations, "chunk_tiles": chunk_tiles, "batch_size": batch_size, "torch_threads": threads}
    store = ShardStore(work_dir, key, log)
    chunks = plan_chunks(len(corpus), chunk_tiles)
    todo = [c for c in chunks if not store.done(c)]
    if len(todo) < len(chunks):
        log(f"[build] resuming: {len(chunks) - len(todo)} of {len(chunks)} chunks already embedded in {store.shards}")
    bar = tqdm(total=sum(c.stop - c.start for c in chunks) * rotations,
               initial=sum(c.stop - c.start for c in chunks if c not in todo) * rotations,
               desc=f"embedding tiles ({model.label}, {executor.name})", unit="view", disable=not progress)
    t0 = time.perf_counter()
    if todo:  # progress per batch in this process; a cluster's per finished chunk
        def on_done(c: Chunk) -> None:
            if not executor.reports_batches:
                bar.update((c.stop - c.start) * rotations)

        executor.run(strategy, spec, corpus, todo, rotations, batch_size, threads, store, on_done, bar.update)
    bar.close()
    return store, chunks, {"chunks": len(chunks), "chunks_embedded_now": len(todo), "chunk_tiles": chunk_tiles,
                           "executor": executor.name, "torch_threads": threads,
                           "embed_seconds": round(time.perf_counter() - t0, 1)}


def fit_pca_on_shards(store: ShardStore, chunks: list[Chunk], dim: int, block_rows: int = 1024):
    """PCA-whitening (whitening.pca_whitening_from_moments) of every descriptor of every shard, from the sum and
    the sum of outer products accumulated in float64 a block at a time: memory is one D x D matrix (72 MiB at
    3072-D) and a block, whatever the number of rows."""
    from vpr_node.core.whitening import pca_whitening_from_moments

    total, s1, s2 = 0, None, None
    for c in chunks:
        desc, _ = store.read(c)
        if dim >= desc.shape[1]:
            raise ConfigurationError(f"--pca-dim {dim} must be below the descriptor dimension {desc.shape[1]}")
        if s1 is None:
            s1, s2 = np.zeros(desc.shape[1]), np.zeros((desc.shape[1], desc.shape[1]))
        for start in range(0, len(desc), block_rows):
            block = np.asarray(desc[start:start + block_rows], np.float64)
            s1 += block.sum(0)
            s2 += block.T @ block
            total += len(block)
    mean = s1 / total
    cov = (s2 - total * np.outer(mean, mean)) / max(1, total - 1)
    return pca_whitening_from_moments(mean, cov, dim)


def assemble(store: ShardStore, chunks: list[Chunk], out_path, project=None) -> tuple[np.ndarray, np.ndarray]:
    """All shards, in chunk order, into one memory-mapped .npy (through `project`, a Linear whitening layer,
    when given). Returns (descriptors memmap, entries)."""
    import torch

    entries = [store.read(c)[1] for c in chunks]
    dim = project.out_features if project is not None else store.read(chunks[0])[0].shape[1]
    out = np.lib.format.open_memmap(out_path, mode="w+", dtype=np.float32, shape=(sum(map(len, entries)), dim))
    row = 0
    for c, ent in zip(chunks, entries, strict=True):
        block = np.array(store.read(c)[0], np.float32)  # a writable copy of one shard (torch refuses read-only)
        if project is not None:
            with torch.no_grad():
                block = torch.nn.functional.normalize(project(torch.from_numpy(block)), p=2, dim=-1).numpy()
        out[row:row + len(ent)] = block
        row += len(ent)
    out.flush()
    return out, np.concatenate(entries)
