"""The one way tiles are embedded: memory-bounded, checkpointed, resumable and distributable.

`embed_tiles` embeds the chunks of a corpus's tile rows (all of them for build-index and prepare-mission's final
index; a sample for prepare-mission's adaptation) that are not already in the work folder's shard store, on an
executor (this process or a Dask cluster), and returns a `TileEmbedding` over the finished shards:

- `assemble` streams the shards, in chunk order, into one memory-mapped `descriptors.npy`, optionally through a
  whitening layer (a PCA fitted on all shards in one streaming pass, `fit_pca`, or prepare-mission's learned
  whitening);
- `load` returns them in memory (a sample's, to fit and score adaptation candidates on).

Peak memory is one chunk of descriptors (+ the backbone), whatever the map's size. The same chunks in the same
order give the same files: a Dask build and a local build produce byte-identical descriptors and index on workers
of the same CPU type.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import time

import numpy as np
from tqdm import tqdm

from vpr_node.core.backbones.whitening import pca_whitening_from_moments
from vpr_node.core.errors import ConfigurationError
from vpr_node.core.indexing.chunks import Chunk, ShardStore, plan_chunks, rows_key
from vpr_node.core.indexing.executors import LocalExecutor, StrategySpec
from vpr_node.core.indexing.settings import BuildSettings
from vpr_node.core.io.hashing import sha256_file
from vpr_node.core.maps.tiles import TileCorpus


@dataclasses.dataclass
class TileEmbedding:
    """Finished shards of one embedding run, in chunk order."""

    store: ShardStore
    chunks: list[Chunk]
    summary: dict

    @classmethod
    def open(cls, work_dir) -> "TileEmbedding | None":
        """The finished shards in work_dir (None when there are none): what a later build can reuse."""
        root = pathlib.Path(work_dir)
        kpath = root / "build.json"
        if not kpath.is_file():
            return None
        store = ShardStore.existing(root, json.loads(kpath.read_text()))
        chunks = []
        for epath in sorted(store.shards.glob("[0-9]*.entries.npy")):
            number = int(epath.name.split(".")[0])
            ent = np.load(epath)
            chunk = Chunk(number, tuple(int(r) for r in dict.fromkeys(ent.tolist())))
            if store.done(chunk):
                chunks.append(chunk)
        return cls(store, chunks, {}) if chunks else None

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """(descriptors (views, D) float32, tile row of each) in memory: for a sample, not a mission map."""
        parts = [self.store.read(c) for c in self.chunks]
        return (np.concatenate([np.asarray(d, np.float32) for d, _ in parts]),
                np.concatenate([e for _, e in parts]).astype(np.int32))

    def fit_pca(self, dim: int, block_rows: int = 1024):
        """PCA-whitening (whitening.pca_whitening_from_moments) of every descriptor of every shard, from the sum
        and the sum of outer products accumulated in float64 a block at a time: memory is one D x D matrix (72 MiB
        at 3072-D) and a block, whatever the number of rows."""

        total, s1, s2 = 0, None, None
        for c in self.chunks:
            desc, _ = self.store.read(c)
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

    def assemble(self, out_path, project=None) -> tuple[np.ndarray, np.ndarray]:
        """All shards into one memory-mapped .npy (through `project`, a Linear whitening layer, then L2, when
        given: the same operation the backbone applies at query time). Returns (descriptors memmap, entries)."""
        import torch

        entries = [self.store.read(c)[1] for c in self.chunks]
        dim = project.out_features if project is not None else self.store.read(self.chunks[0])[0].shape[1]
        out = np.lib.format.open_memmap(out_path, mode="w+", dtype=np.float32, shape=(sum(map(len, entries)), dim))
        row = 0
        for c, ent in zip(self.chunks, entries, strict=True):
            block = np.array(self.store.read(c)[0], np.float32)  # a writable copy (torch refuses read-only)
            if project is not None:
                with torch.no_grad():
                    block = torch.nn.functional.normalize(project(torch.from_numpy(block)), p=2, dim=-1).numpy()
            out[row:row + len(ent)] = block
            row += len(ent)
        out.flush()
        return out, np.concatenate(entries)


class _KnownRows:
    """Descriptors of tiles another run already embedded with the same backbone and settings (prepare-mission's
    adaptation sample), row by row."""

    def __init__(self, emb: TileEmbedding, rotations: int):
        self.emb, self.rot = emb, rotations
        self.where: dict[int, tuple[Chunk, int]] = {}
        for c in emb.chunks:
            ent = emb.store.read(c)[1]
            for i in range(0, len(ent), rotations):
                self.where[int(ent[i])] = (c, i)

    def __contains__(self, row: int) -> bool:
        return row in self.where

    def get(self, row: int) -> np.ndarray:
        c, i = self.where[row]
        return np.asarray(self.emb.store.read(c)[0][i:i + self.rot], np.float32)


class _MergingStore:
    """Writes a chunk from the rows embedded now (a remainder chunk of the same number) and the known rows."""

    def __init__(self, store: ShardStore, full: dict[int, Chunk], known: _KnownRows):
        self.store, self.full, self.known = store, full, known

    def write(self, rem: Chunk, desc: np.ndarray, entries: np.ndarray) -> None:
        chunk, rot = self.full[rem.number], self.known.rot
        fresh = {int(entries[i]): desc[i:i + rot] for i in range(0, len(entries), rot)}
        block = np.concatenate([fresh[r] if r in fresh else self.known.get(r) for r in chunk.rows])
        self.store.write(chunk, block, np.repeat(np.asarray(chunk.rows, np.int32), rot))

    def write_known(self, chunk: Chunk) -> None:
        """A chunk whose every tile is known."""
        self.full[chunk.number] = chunk
        self.write(Chunk(chunk.number, ()), np.zeros((0, 1), np.float32), np.zeros(0, np.int32))


def embed_tiles(corpus: TileCorpus, work_dir, settings: BuildSettings, strategy=None, spec: StrategySpec | None = None,
                rows=None, progress: bool = True, log=print, reuse: TileEmbedding | None = None) -> TileEmbedding:
    """Embed the tiles `rows` (default: all) of the corpus at settings.rotations, chunk by chunk, skipping chunks
    already in `work_dir` for the same key. `strategy` embeds in this process; `spec` loads the same backbone in
    Dask workers (settings.workers / settings.scheduler). `reuse`: another run's shards of the same backbone and
    settings (any rows): the tiles they hold are copied, not embedded again (the same values: one view at a time
    on a CPU)."""
    import torch

    if strategy is None and spec is None:
        raise ValueError("embed_tiles needs a strategy or a StrategySpec")
    executor = settings.executor()
    if strategy is None and isinstance(executor, LocalExecutor):
        strategy = spec.load()
    threads = int(settings.threads or torch.get_num_threads())
    model = strategy.backbone if strategy is not None else spec.load().backbone
    backbone = model.identity()
    batch = settings.batch_size or (strategy.default_batch_size if strategy is not None else 1)
    rows = np.arange(len(corpus)) if rows is None else np.unique(np.asarray(rows, np.int64))
    key = {"tiles_sha256": sha256_file(corpus.root / "tiles.csv"), "rows": rows_key(rows, len(corpus)),
           **backbone.key(), **settings.key(), "batch_size": batch, "torch_threads": threads}
    store = ShardStore(work_dir, key, log)
    chunks = plan_chunks(rows, settings.chunk_tiles)
    todo = [c for c in chunks if not store.done(c)]
    if len(todo) < len(chunks):
        log(f"[build] resuming: {len(chunks) - len(todo)} of {len(chunks)} chunks already embedded in {store.shards}")
    rot = settings.rotations
    bar = tqdm(total=len(rows) * rot, initial=sum(len(c.rows) for c in chunks if c not in todo) * rot,
               desc=f"embedding tiles ({model.label}, {executor.name})", unit="view", disable=not progress)
    t0 = time.perf_counter()
    sink, reused = store, 0
    if reuse is not None and todo and _same_settings(reuse.store.key, key):
        known = _KnownRows(reuse, rot)
        full, rest = {}, []
        for c in todo:
            missing = tuple(r for r in c.rows if r not in known)
            reused += len(c.rows) - len(missing)
            if missing:
                full[c.number] = c
                rest.append(Chunk(c.number, missing))
            else:
                _MergingStore(store, {}, known).write_known(c)
                bar.update(len(c.rows) * rot)
        todo, sink = rest, _MergingStore(store, full, known)
        bar.update(sum(len(full[c.number].rows) - len(c.rows) for c in rest) * rot)
    if todo:  # progress per batch in this process; a cluster's per finished chunk
        def on_done(c: Chunk) -> None:
            if not executor.reports_batches:
                bar.update(len(c.rows) * rot)

        executor.run(strategy, spec, corpus, todo, rot, batch, threads, sink, on_done, bar.update)
    bar.close()
    return TileEmbedding(store, chunks, {"chunks": len(chunks), "chunks_embedded_now": len(todo),
                                         "tiles_reused": reused,
                                         "chunk_tiles": settings.chunk_tiles, "tiles": int(len(rows)),
                                         "executor": executor.name, "torch_threads": threads, "batch_size": batch,
                                         "embed_seconds": round(time.perf_counter() - t0, 1)})


def _same_settings(a: dict, b: dict) -> bool:
    """Shard keys that differ at most in the rows they cover."""
    return {k: v for k, v in a.items() if k != "rows"} == {k: v for k, v in b.items() if k != "rows"}
