"""How a tile corpus is embedded and its index built: one settings object for `vpr build-index`,
`vpr prepare-mission` (its final index and its adaptation sample) and the Dask workers, whose fields are the
command-line flags."""
from __future__ import annotations

import dataclasses

from vpr_node.core.errors import ConfigurationError
from vpr_node.core.index.faiss_index import AUTO, INDEX_TYPES
from vpr_node.core.indexing.executors import DaskExecutor, LocalExecutor
from vpr_node.core.options import option

DEFAULT_CHUNK_TILES = 1024  # tiles per checkpointed chunk: 4 rotations x 3072-D float32 = 50 MB in memory


@dataclasses.dataclass
class BuildSettings:
    index_type: str = option("flat", "flat (exact), sq8 (8-bit scalar quantised), hnsw, ivfpq; auto = chosen by "
                                     "--memory-budget / --latency-budget")
    index_params: dict = option(factory=dict, help='JSON, e.g. {"M": 32, "efSearch": 64} or {"nprobe": 64}')
    memory_budget: float = option(0.0, "MiB the index may take in RAM: picks flat, sq8 or IVF-PQ (the recall cost "
                                        "vs exact search is measured into the manifest); implies --index-type auto")
    latency_budget: float = option(0.0, "ms one search may take (on the building machine: its scan rate is "
                                        "measured): an exhaustive index (flat, sq8) predicted slower gives way to "
                                        "HNSW, or IVF-PQ where HNSW does not fit --memory-budget; implies "
                                        "--index-type auto")
    rotations: int = option(4, "embed each tile at this many headings (1, 2, 4 or 8: robustness to unknown yaw)")
    batch_size: int = option(0, "embedding batch (0 = 1 on CPU, where it is fastest per image, 32 on CUDA)")
    pca_dim: int = option(0, "build-index: reduce descriptors to this dimension by a PCA-whitening fitted on the "
                             "corpus (saved in the index folder as the backbone's whiten layer, so the node applies "
                             "it too)")
    chunk_tiles: int = option(DEFAULT_CHUNK_TILES, "tiles per checkpointed chunk (the unit of resume and of "
                                                   "distribution; memory ~ one chunk)")
    work_dir: str = option("", "where finished chunks are kept (default OUT/build_work); rerunning the same "
                               "command resumes from them")
    keep_work: bool = option(False, "keep the chunk shards after a successful build")
    threads: int = option(0, "torch threads per chunk (0 = torch's); part of the build key, so a resumed or "
                             "distributed build uses the same and gives identical descriptors")
    workers: int = option(0, "embed chunks on a local Dask cluster of this many worker processes")
    scheduler: str = option("", "embed chunks on an existing Dask cluster (e.g. tcp://host:8786); the corpus and "
                                "weights must be readable at the same paths on every worker")

    def __post_init__(self):
        if self.rotations not in (1, 2, 4, 8):
            raise ConfigurationError(f"rotations must be 1, 2, 4 or 8, got {self.rotations}", parameter="rotations")
        if self.index_type not in (*INDEX_TYPES, AUTO):
            raise ConfigurationError(f"unknown index type {self.index_type!r}; choose one of "
                                     f"{', '.join(INDEX_TYPES)} or {AUTO}", parameter="index_type")

    def index_kind(self) -> tuple[str, dict]:
        """(index type, its parameters): a memory or latency budget means `auto` (folder.write_index picks the
        type)."""
        if self.memory_budget > 0 or self.latency_budget > 0:
            return AUTO, {**self.index_params, "memory_budget_mib": self.memory_budget,
                          "latency_budget_ms": self.latency_budget}
        return self.index_type, dict(self.index_params)

    def executor(self):
        """LocalExecutor, or a DaskExecutor when --workers or --scheduler is given."""
        if self.workers or self.scheduler:
            return DaskExecutor(self.workers or 2, self.scheduler or None)
        return LocalExecutor()

    def key(self) -> dict:
        """What a finished chunk depends on (with the backbone's identity and the tiles): build checkpoints."""
        return {"rotations": self.rotations, "chunk_tiles": self.chunk_tiles, "batch_size": self.batch_size}
