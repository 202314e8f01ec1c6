"""`vpr build-index` and `vpr evaluate`: embed a tile corpus into a FAISS index; recall of an index."""
from __future__ import annotations

import pathlib

from vpr_node.core.indexing.settings import BuildSettings
from vpr_node.tools.common import (
    add_backbone_args,
    add_dataclass_options,
    dataclass_from_args,
    print_json,
    strategy_from_args,
)

INDEX_FLAGS = ("index_type", "index_params", "memory_budget", "latency_budget")


def _build_index(a):
    from vpr_node.core.indexing.index_build import build_index_for
    from vpr_node.core.maps.tiles import TileCorpus
    m = build_index_for(a.backbone, TileCorpus(a.corpus), a.out, dataclass_from_args(BuildSettings, a),
                        weights=a.weights, backbone_options=a.backbone_options, runtime=a.runtime,
                        precision=a.precision, device=a.device)
    print_json({k: m.get(k) for k in ("backbone_label", "descriptor_dim", "index_type", "index_params", "tile_count",
                                      "entry_count", "index_bytes", "recall_at_10_vs_exact",
                                      "recall_at_10_vs_exact_without_rerank", "build_seconds", "build", "pca",
                                      "hubness")})


def _reindex(a):
    from vpr_node.core.indexing.reindex import rebuild_index
    kind, params = dataclass_from_args(BuildSettings, a).index_kind()
    m = rebuild_index(a.index, a.out or a.index, kind, params)
    print_json({k: m.get(k) for k in ("index_type", "index_params", "entry_count", "index_bytes",
                                      "recall_at_10_vs_exact", "recall_at_10_vs_exact_without_rerank",
                                      "nprobe_sweep", "build_seconds")})


def _evaluate(a):
    from vpr_node.core.evaluation.recall import evaluate
    from vpr_node.core.evaluation.report import format_table, write_report
    from vpr_node.core.views.queries import read_queries
    qs = read_queries(a.queries)
    if a.limit:
        qs = qs[:a.limit]
    results, first, verifier = [], None, None
    for idx in a.index:
        s = strategy_from_args(a, index_dir=idx)
        first = first or s
        if a.verify:
            from vpr_node.core.verification.verifier import Verifier
            verifier = Verifier.for_index(idx)
        r = evaluate(s, qs, k=20, heading_known=a.heading_known, verifier=verifier)
        if verifier is not None:
            print_json({"index": idx, "verification": r.extra["verification"]})
        if len(a.index) > 1 or a.heading_known:
            r.backbone = f"{r.backbone}{'+heading' if a.heading_known else ''}[{pathlib.Path(idx).name}]"
        results.append(r)
    print(format_table(results))
    if a.out:
        files = write_report(results, a.out, qs, first.index)
        if verifier is not None:
            from vpr_node.core.evaluation.report import write_verification_report
            files.update(write_verification_report(results[-1], verifier, qs, a.out))
        print_json(files)


def register(sub) -> None:

    p = sub.add_parser("build-index", help="embed a tile corpus and build the FAISS index + manifest")
    add_backbone_args(p)
    p.add_argument("--corpus", required=True)
    p.add_argument("--out", required=True)
    add_dataclass_options(p, BuildSettings)
    p.set_defaults(fn=_build_index)

    p = sub.add_parser("reindex", help="rebuild an index folder's FAISS index from its descriptors with another type "
                                       "or --memory-budget (no re-embedding)")
    p.add_argument("--index", required=True, help="the index folder")
    p.add_argument("--out", default=None, help="a new folder (default: rebuild in place)")
    add_dataclass_options(p, BuildSettings, exclude=tuple(f for f in BuildSettings.__dataclass_fields__
                                                          if f not in INDEX_FLAGS))
    p.set_defaults(fn=_reindex)

    p = sub.add_parser("evaluate", help="recall@1/5/10/20 at 25/50 m, hubness, latency, plot and mosaic")
    add_backbone_args(p)
    p.add_argument("--queries", required=True, help="queries.csv from synth-queries")
    p.add_argument("--index", required=True, nargs="+", help="index folder(s)")
    p.add_argument("--out", default=None, help="report folder (JSON, PNG plot, PNG mosaic)")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--heading-known", action="store_true", help="rotate each query north-up by its true heading")
    p.add_argument("--verify", action="store_true", help="also verify each query against the index's tiles (the "
                                                         "index's calibration when it has one): verified recall, "
                                                         "fixes, precision, latency, and their plot and mosaic")
    p.set_defaults(fn=_evaluate)
