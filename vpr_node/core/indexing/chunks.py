"""Chunks of tile rows, the unit of embedding work, of checkpointing and of distribution, and their store.

- `Chunk`: a numbered set of tile rows (contiguous for a whole corpus, any rows for a sample of it);
- `embed_rows` embeds a chunk's tiles (every rotation) in batches that never cross the chunk, with a fixed torch
  thread count, so a chunk's descriptors do not depend on where it ran;
- `ShardStore` keeps each finished chunk as `shards/NNNNN.npy` (+ `NNNNN.entries.npy`), written by an atomic
  rename, keyed by `build.json` to what made it (tiles, backbone identity, rows, settings): a rerun with the same
  key embeds only the chunks that are missing; a different key starts afresh.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import shutil

import numpy as np

from vpr_node.core.errors import ConfigurationError
from vpr_node.core.maps.tiles import TileCorpus
from vpr_node.core.views.geometry import rotated_views


@dataclasses.dataclass(frozen=True)
class Chunk:
    number: int
    rows: tuple[int, ...]  # tile rows of the corpus, ascending


def plan_chunks(rows, chunk_tiles: int) -> list[Chunk]:
    """`rows` (ascending tile rows, or a tile count for all of them) cut into chunks of `chunk_tiles`."""
    if chunk_tiles < 1:
        raise ConfigurationError(f"chunk size must be at least 1 tile, got {chunk_tiles}")
    rows = [int(r) for r in (range(rows) if isinstance(rows, int) else rows)]
    return [Chunk(i, tuple(rows[s:s + chunk_tiles])) for i, s in enumerate(range(0, len(rows), chunk_tiles))]


def rows_key(rows, n_tiles: int) -> str:
    """'all', or the SHA-256 of a subset of rows (a sample's shards are not a whole corpus's)."""
    rows = np.asarray(list(range(n_tiles)) if rows is None else rows, np.int64)
    if len(rows) == n_tiles and np.array_equal(rows, np.arange(n_tiles)):
        return "all"
    return hashlib.sha256(rows.tobytes()).hexdigest()


def embed_rows(strategy, corpus: TileCorpus, rows, rotations: int, batch_size: int, threads: int | None = None,
               on_batch=None) -> tuple[np.ndarray, np.ndarray]:
    """(descriptors float32 (views, D), tile row of each) of the tiles `rows` at every rotation, through the
    strategy's one batched embedding (RetrievalStrategy.embed_many). `on_batch(n)` hears of every n views."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    rows = list(rows)
    views = (v for i in rows for v in rotated_views(corpus.image(i), rotations))
    desc = strategy.embed_many(views, batch_size, on_batch)
    return desc, np.repeat(np.asarray(rows, np.int32), rotations)


class ShardStore:
    """Finished chunks on disk under work_dir, keyed by build.json."""

    def __init__(self, work_dir, key: dict, log=print):
        self.key = key
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

    @classmethod
    def existing(cls, work_dir, key: dict) -> "ShardStore":
        """The store in work_dir as it is (nothing removed or rewritten): to read another run's shards."""
        store = cls.__new__(cls)
        store.key, store.root = key, pathlib.Path(work_dir)
        store.shards = store.root / "shards"
        return store

    def _paths(self, chunk: Chunk) -> tuple[pathlib.Path, pathlib.Path]:
        return self.shards / f"{chunk.number:05d}.npy", self.shards / f"{chunk.number:05d}.entries.npy"

    def done(self, chunk: Chunk) -> bool:
        return all(p.is_file() for p in self._paths(chunk))

    def write(self, chunk: Chunk, desc: np.ndarray, entries: np.ndarray) -> None:
        if not set(np.unique(entries).tolist()) <= set(chunk.rows):
            raise RuntimeError(f"chunk {chunk.number}: entries outside its tile rows")  # a mixed-up result
        dpath, epath = self._paths(chunk)
        for path, arr in ((epath, entries), (dpath, desc)):  # descriptors last: done() needs both
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, arr)
            os.replace(tmp, path)

    def read(self, chunk: Chunk) -> tuple[np.ndarray, np.ndarray]:
        dpath, epath = self._paths(chunk)
        return np.load(dpath, mmap_mode="r"), np.load(epath)
