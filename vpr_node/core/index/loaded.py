"""A loaded index folder (folder.py's format): files hashed against the manifest, the manifest checked against the
backbone the node loaded, the memory budget checked before anything is read; then search -> ranked Candidates.
Every failure is typed: ConfigurationError for a mismatch (naming the field), IndexUnavailableError for a missing,
truncated or corrupt file. No silent fallback."""
from __future__ import annotations

import json
import os
import pathlib

import faiss
import numpy as np

from vpr_node.core.backbones.identity import BackboneIdentity
from vpr_node.core.errors import ConfigurationError, IndexUnavailableError
from vpr_node.core.index.faiss_index import search_reranked
from vpr_node.core.index.folder import FORMAT_VERSION, INDEX_FILES
from vpr_node.core.io.hashing import sha256_file
from vpr_node.core.maps.tiles import TileRecord, read_tile_columns, read_tile_table
from vpr_node.core.types import Candidate, TileId

# A restricted search (a position prior) over at most this many floats (rows x dim, 32 MiB) reads those rows of the
# descriptors (DescriptorRows) and scores them exactly; a larger subset goes through FAISS with an ID selector.
EXACT_SUBSET_FLOATS = 1 << 23


def check_memory_budget(root: pathlib.Path, manifest: dict, budget_mib: float) -> None:
    """Refuse (ConfigurationError, before anything is read) an index whose in-memory part, index.faiss, exceeds the
    budget. descriptors.npy is read by row (DescriptorRows): only the rows an exact re-rank reads."""
    need = (root / "index.faiss").stat().st_size / 2**20
    if need > budget_mib:
        raise ConfigurationError(
            f"index {root} needs {need:.1f} MiB in memory ({manifest.get('index_type')}, {manifest.get('entry_count')} "
            f"vectors of {manifest.get('descriptor_dim')}-D) but index_memory_budget_mib is {budget_mib:g}: rebuild it "
            f"with `vpr build-index ... --memory-budget {budget_mib:g}` (and --pca-dim to reduce the dimension) or "
            f"raise the budget", field="index_memory_budget_mib", expected=budget_mib, actual=round(need, 1))


class DescriptorRows:
    """descriptors.npy read by row with pread (what the re-rank and a position prior's subset need), never mapped:
    a memory map would put the file pages it touches into the node's resident memory, and the page cache holds the
    file in large folios, so one row read mapped 2 MiB (measured: +290 MiB RSS after 30 frames on a 442,800-vector
    sq8 index). Consecutive rows are read in one call."""

    def __init__(self, path):
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            self._offset = f.tell()
        if fortran or dtype != np.float32 or len(shape) != 2:
            raise IndexUnavailableError(f"{path} is not a C-ordered float32 matrix")
        self.shape, self.dtype = tuple(shape), np.dtype(np.float32)
        self._row_bytes = shape[1] * 4
        self._fd = os.open(path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        if isinstance(rows, (int, np.integer)):
            return self._read(np.array([rows], np.int64))[0]
        return self._read(np.asarray(rows, np.int64).ravel())

    def _read(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), self.shape[1]), np.float32)
        if len(rows) and (rows.min() < 0 or rows.max() >= self.shape[0]):
            raise IndexError(f"descriptor rows out of range 0..{self.shape[0] - 1}")
        starts = np.flatnonzero(np.diff(rows, prepend=rows[:1] - 2) != 1)  # where a run of consecutive rows begins
        for a, b in zip(starts, np.append(starts[1:], len(rows)), strict=True):
            buf = os.pread(self._fd, int(b - a) * self._row_bytes, self._offset + int(rows[a]) * self._row_bytes)
            out[a:b] = np.frombuffer(buf, np.float32).reshape(b - a, self.shape[1])
        return out

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self):
        self.close()


class DescriptorIndex:
    """A loaded, verified index folder. search() returns ranked Candidates (one per tile)."""

    def __init__(self, root, expect: BackboneIdentity | None = None, check_weights: bool = True,
                 verify_hashes: bool = True, memory_budget_mib: float = 0.0):
        """`expect`: the backbone the caller loaded (None: not checked); `check_weights`: compare its weights
        SHA-256 too (the node's verify_index_weights)."""
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
        if expect is not None:
            self.verify(expect, check_weights)
        if memory_budget_mib:
            check_memory_budget(self.root, self.manifest, memory_budget_mib)
        try:
            self.index = faiss.read_index(str(self.root / "index.faiss"))
            self.descriptors = DescriptorRows(self.root / "descriptors.npy")
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
        self._tile_rows: tuple[np.ndarray, np.ndarray] | None = None
        self.index_id = self.manifest["files"]["index.faiss"][:16]
        self.rerank = int(self.manifest.get("index_params", {}).get("rerank", 0))  # 0 in indexes built before it

    def verify(self, expect: BackboneIdentity, check_weights: bool = True) -> None:
        """ConfigurationError naming the first manifest field that differs from the loaded backbone's identity."""
        for field, want, got in expect.mismatches(self.manifest, check_weights):
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

    def rows_of_tiles(self, tiles) -> np.ndarray:
        """Index rows (sorted) of these tiles' vectors (every rotation and scale of each), without a pass over
        all entries: a tile -> rows table built on first use."""
        if self._tile_rows is None:
            order = np.argsort(self.entries, kind="stable")
            self._tile_rows = (order, np.searchsorted(self.entries[order], np.arange(self._n_tiles + 1)))
        order, starts = self._tile_rows
        tiles = np.asarray(tiles, np.int64)
        first, counts = starts[tiles], starts[tiles + 1] - starts[tiles]
        pos = np.repeat(first - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(counts.sum())
        return np.sort(order[pos])

    def _search_rows(self, q: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k among these rows of the descriptors (in file order)."""
        sims = np.asarray(self.descriptors[rows], np.float32) @ q[0]
        k = min(k, len(rows))
        top = np.argpartition(-sims, k - 1)[:k] if k < len(rows) else np.arange(len(rows))
        top = top[np.argsort(-sims[top], kind="stable")]
        return sims[top][None], rows[top].astype(np.int64)[None]

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
            rows = None if allowed_tiles is None else self.rows_of_tiles(allowed_tiles)
            if rows is not None and len(rows) * q.shape[1] <= EXACT_SUBSET_FLOATS:
                sims, ids = self._search_rows(q, rows, fetch)  # a position prior's few rows: read and score exactly
            else:
                params, _sel = self._search_params(rows) if rows is not None else (None, None)
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
