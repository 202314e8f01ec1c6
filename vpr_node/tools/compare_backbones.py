"""`vpr compare-backbones`: one table over every registered backbone that has real weights here.

Same protocols as `vpr bench-recall` (default `benchmark`: tiles matched to the camera footprint at
55-110 m, embedded at 4 rotations, synthesised drone queries with unknown yaw; `legacy`: 60 m tiles and
the earlier queries), one index per backbone, no adaptation. Columns: recall@1/5/10 at 25 m,
embed latency p50 (this machine, PyTorch FP32 CPU unless --device), descriptor dim, parameters.
A backbone has real weights when its package ships them (efficientnet_lite0_*) or `--weights NAME=FILE`
names a converted/trained file; the others are listed as skipped with the reason, never run on
random weights."""
from __future__ import annotations

import json
import pathlib


def _params_m(model) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def compare_backbones(maps_csv, workdir, backbones=None, weights: dict | None = None, n_queries: int = 100,
                      seed: int = 0, device: str = "cpu", protocol: str = "benchmark") -> list[dict]:
    from vpr_node.core.backbones import available_backbones, create_backbone, get_spec, sha256_file
    from vpr_node.core.errors import VprError
    from vpr_node.core.evaluation import evaluate
    from vpr_node.core.indexing import build_index_for
    from vpr_node.core.strategy import load_strategy
    from vpr_node.tools.bench_recall import prepare_benchmark

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
                build_index_for(name, corpus, idx, weights=w, rotations=4, device=device)
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


def _parse_weights(items) -> dict:
    out = {}
    for it in items or []:
        name, sep, path = it.partition("=")
        if not sep:
            raise SystemExit(f"--weights expects NAME=FILE, got {it!r}")
        out[name] = path
    return out


def register(sub) -> None:
    p = sub.add_parser("compare-backbones", help="recall@1/5/10, latency, dim, params for every backbone with weights")
    p.add_argument(
        "--maps", default=None, help="corner-coordinates CSV (default ../shared/data/wildnav_turku/tiles.csv)"
    )
    p.add_argument("--workdir", default="artifacts/compare_backbones")
    p.add_argument("--backbones", nargs="+", default=None, help="default: every registered backbone")
    p.add_argument("--weights", nargs="*", default=[], metavar="NAME=FILE")
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--protocol", default="benchmark", choices=("benchmark", "legacy"))
    p.set_defaults(fn=_cmd)


def _cmd(args):
    from vpr_node.tools.bench_recall import resolve_maps
    maps = resolve_maps(args.maps)
    if maps is None:
        return 2
    rows = compare_backbones(maps, args.workdir, args.backbones, _parse_weights(args.weights), args.n, args.seed,
                             args.device, args.protocol)
    table = format_markdown(rows)
    print(table)
    out = pathlib.Path(args.workdir)
    (out / "comparison.md").write_text(table + "\n")
    (out / "comparison.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0
