"""`vpr compare-backbones`: one table over every registered backbone that has real weights here.

Same protocols as `vpr bench-recall` (default `benchmark`: tiles matched to the camera footprint at
55-110 m, embedded at 4 rotations, synthesised drone queries with unknown yaw; `legacy`: 60 m tiles and
the earlier queries), one index per backbone, no adaptation. Columns: recall@1/5/10 at 25 m,
embed latency p50 (this machine, PyTorch FP32 CPU unless --device), descriptor dim, parameters.
A backbone has real weights when its package ships them (efficientnet_lite0_*) or `--weights NAME=FILE`
names a converted/trained file; the others are listed as skipped with the reason, never run on
random weights."""
from __future__ import annotations

import pathlib

from vpr_node.core.backbones import available_backbones, create_backbone, get_spec
from vpr_node.core.benchmarks.protocols import prepare_benchmark
from vpr_node.core.errors import VprError
from vpr_node.core.evaluation.recall import evaluate
from vpr_node.core.indexing.index_build import build_index_for
from vpr_node.core.indexing.settings import BuildSettings
from vpr_node.core.io.hashing import sha256_file
from vpr_node.core.retrieval.strategy import load_strategy


def _params_m(model) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def compare_backbones(maps_csv, workdir, backbones=None, weights: dict | None = None, n_queries: int = 100,
                      seed: int = 0, device: str = "cpu", protocol: str = "benchmark") -> list[dict]:

    weights = dict(weights or {})
    workdir = pathlib.Path(workdir)
    corpus, queries = prepare_benchmark(maps_csv, workdir, n_queries, seed, protocol)
    rows = []
    for name in backbones or available_backbones():
        w, spec = weights.get(name), get_spec(name)
        row = {"backbone": name, "weights": w or ("package" if spec.packaged_weights else None)}
        if not spec.packaged_weights and not w:
            rows.append({**row, "skipped": f"no weights here: make them with {spec.weights_hint} and pass "
                                           f"--weights {name}=FILE"})
            continue
        try:
            if not (spec.weights_required and not w) and not create_backbone(name, weights=w).provenance.trained:
                rows.append({**row, "skipped": "weights file has untrained provenance"})
                continue
            # one cached index per (backbone, weights file): other weights never reuse a stale index
            idx = workdir / (f"index_{name}_{sha256_file(w)[:12]}_rot4" if w else f"index_{name}_rot4")
            if not (idx / "manifest.json").exists():
                build_index_for(name, corpus, idx, BuildSettings(rotations=4), weights=w, device=device)
            strategy = load_strategy(name, weights=w, index_dir=str(idx), device=device)
            r = evaluate(strategy, queries, k=20, heading_known=False)
        except VprError as exc:
            rows.append({**row, "skipped": f"{type(exc).__name__}: {exc}"})
            continue
        rows.append({**row, "descriptor_dim": r.descriptor_dim, "params_m": round(_params_m(strategy.backbone), 2),
                     "recall_25m": {n: r.recall["25"][str(n)] for n in (1, 5, 10)},
                     "embed_ms_p50": round(r.embed_ms_p50, 1), "search_ms_p50": round(r.search_ms_p50, 2),
                     "n_queries": r.n_queries, "provenance": strategy.backbone.provenance.source})
    return rows


def format_markdown(rows: list[dict]) -> str:
    lines = ["| backbone | dim | params (M) | R@1 | R@5 | R@10 | embed p50 (ms) | weights |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['backbone']} | | | | | | | skipped: {r['skipped']} |")
            continue
        rc = r["recall_25m"]
        lines.append(f"| {r['backbone']} | {r['descriptor_dim']} | {r['params_m']} | {rc[1]:.3f} | {rc[5]:.3f} | "
                     f"{rc[10]:.3f} | {r['embed_ms_p50']} | {r['weights']} |")
    return "\n".join(lines)
