"""`vpr build-index` and `vpr evaluate`: embed a tile corpus into a FAISS index; recall of an index."""
from __future__ import annotations

import pathlib

from vpr_node.tools.common import (
    add_backbone_args,
    add_index_type_args,
    index_type_from_args,
    print_json,
    strategy_from_args,
)


def _build_index(a):
    from vpr_node.core.chunked_build import DaskExecutor, LocalExecutor
    from vpr_node.core.corpus import TileCorpus
    from vpr_node.core.indexing import build_index_for
    kind, params = index_type_from_args(a)
    executor = DaskExecutor(a.workers, a.scheduler) if (a.workers or a.scheduler) else LocalExecutor()
    m = build_index_for(a.backbone, TileCorpus(a.corpus), a.out, weights=a.weights, backbone_options=a.backbone_options,
                        runtime=a.runtime, precision=a.precision, device=a.device, kind=kind,
                        params=params, rotations=a.rotations, batch_size=a.batch_size, executor=executor,
                        chunk_tiles=a.chunk_tiles, work_dir=a.work_dir, pca_dim=a.pca_dim, keep_work=a.keep_work,
                        threads=a.threads)
    print_json({k: m.get(k) for k in ("backbone_label", "descriptor_dim", "index_type", "index_params", "tile_count",
                                      "entry_count", "index_bytes", "recall_at_10_vs_exact",
                                      "recall_at_10_vs_exact_without_rerank", "build_seconds", "build", "pca",
                                      "hubness")})


def _reindex(a):
    from vpr_node.core.index import rebuild_index
    kind, params = index_type_from_args(a)
    m = rebuild_index(a.index, a.out or a.index, kind, params)
    print_json({k: m.get(k) for k in ("index_type", "index_params", "entry_count", "index_bytes",
                                      "recall_at_10_vs_exact", "recall_at_10_vs_exact_without_rerank",
                                      "nprobe_sweep", "build_seconds")})


def _evaluate(a):
    from vpr_node.core.evaluation import evaluate, format_table, write_report
    from vpr_node.core.queries import read_queries
    qs = read_queries(a.queries)
    if a.limit:
        qs = qs[:a.limit]
    results, first = [], None
    for idx in a.index:
        s = strategy_from_args(a, index_dir=idx)
        first = first or s
        r = evaluate(s, qs, k=20, heading_known=a.heading_known)
        if len(a.index) > 1 or a.heading_known:
            r.backbone = f"{r.backbone}{'+heading' if a.heading_known else ''}[{pathlib.Path(idx).name}]"
        results.append(r)
    print(format_table(results))
    if a.out:
        print_json(write_report(results, a.out, qs, first.index))


def register(sub) -> None:

    p = sub.add_parser("build-index", help="embed a tile corpus and build the FAISS index + manifest")
    add_backbone_args(p)
    p.add_argument("--corpus", required=True)
    p.add_argument("--out", required=True)
    add_index_type_args(p)
    p.add_argument("--rotations", type=int, default=4, choices=(1, 2, 4, 8),
                   help="embed each tile at this many headings (robustness to unknown yaw)")
    p.add_argument("--batch-size", type=int, default=None, help="embedding batch (default: 1 on CPU, 32 on CUDA)")
    p.add_argument("--pca-dim", type=int, default=0,
                   help="reduce descriptors to this dimension by a PCA-whitening fitted on the corpus (e.g. 256, 512; "
                        "saved in the index folder as the backbone's whiten layer, so the node applies it too)")
    g = p.add_argument_group("large maps: checkpointed, resumable, distributed embedding")
    g.add_argument("--chunk-tiles", type=int, default=1024,
                   help="tiles per checkpointed chunk (the unit of resume and of distribution; memory ~ one chunk)")
    g.add_argument("--work-dir", default=None, help="where finished chunks are kept (default OUT/build_work); "
                   "rerunning the same command resumes from them")
    g.add_argument("--keep-work", action="store_true", help="keep the chunk shards after a successful build")
    g.add_argument("--threads", type=int, default=None,
                   help="torch threads per chunk (default: torch's); part of the build key, so a resumed or "
                        "distributed build uses the same and gives identical descriptors")
    g.add_argument("--workers", type=int, default=0,
                   help="embed chunks on a local Dask cluster of this many worker processes")
    g.add_argument("--scheduler", default=None,
                   help="embed chunks on an existing Dask cluster (e.g. tcp://host:8786); the corpus and weights "
                        "must be readable at the same paths on every worker")
    p.set_defaults(fn=_build_index)

    p = sub.add_parser("reindex", help="rebuild an index folder's FAISS index from its descriptors with another type "
                                       "or --memory-budget (no re-embedding)")
    p.add_argument("--index", required=True, help="the index folder")
    p.add_argument("--out", default=None, help="a new folder (default: rebuild in place)")
    add_index_type_args(p)
    p.set_defaults(fn=_reindex)

    p = sub.add_parser("evaluate", help="recall@1/5/10/20 at 25/50 m, hubness, latency, plot and mosaic")
    add_backbone_args(p)
    p.add_argument("--queries", required=True, help="queries.csv from synth-queries")
    p.add_argument("--index", required=True, nargs="+", help="index folder(s)")
    p.add_argument("--out", default=None, help="report folder (JSON, PNG plot, PNG mosaic)")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--heading-known", action="store_true", help="rotate each query north-up by its true heading")
    p.set_defaults(fn=_evaluate)
