"""Where chunks are embedded: `LocalExecutor` in this process, `DaskExecutor` on a Dask cluster (a LocalCluster of
worker processes, or the scheduler address of a real one). Workers load the backbone once each from a
`StrategySpec` and return a chunk's arrays; the client writes the shard as it arrives. The corpus folder must be
readable at the same path on every worker (shared storage on a real cluster). A Ray executor would be a third
class with the same `run()` (README "Design notes": why Dask)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np

from vpr_node.core.errors import ConfigurationError
from vpr_node.core.indexing.chunks import Chunk, ShardStore, embed_rows
from vpr_node.core.maps.tiles import TileCorpus
from vpr_node.core.retrieval.strategy import load_strategy


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
        return load_strategy(self.backbone, weights=self.weights, runtime=self.runtime, precision=self.precision,
                             device=self.device, backbone_options=json.loads(self.backbone_options))


_WORKER_STRATEGIES: dict = {}  # per process: a worker loads each backbone once


def _embed_chunk_task(spec: StrategySpec, corpus_root: str, chunk: Chunk, rotations: int, batch_size: int,
                      threads: int) -> tuple[int, np.ndarray, np.ndarray]:
    if spec not in _WORKER_STRATEGIES:
        _WORKER_STRATEGIES[spec] = spec.load()
    desc, entries = embed_rows(_WORKER_STRATEGIES[spec], TileCorpus(corpus_root), chunk.rows, rotations, batch_size,
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
            desc, entries = embed_rows(strategy, corpus, chunk.rows, rotations, batch_size, threads, on_batch)
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
