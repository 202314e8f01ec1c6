"""`vpr bench-recall`: the developer recall benchmark over every map in ../shared/data (core/benchmarks/recall.py)."""
from __future__ import annotations

import json
import pathlib

from vpr_node.core.benchmarks.developer_maps import developer_maps, shared_data_dir
from vpr_node.core.benchmarks.protocols import PROTOCOLS
from vpr_node.core.benchmarks.recall import CONFIGS, DEFAULT_CONFIGS, format_markdown, run_all


def register(sub) -> None:
    p = sub.add_parser("bench-recall", help="recall benchmark over every developer map: default vs adapted, per area "
                                            "and mean")
    p.add_argument(
        "--maps", nargs="+", default=None, help="corner-coordinates CSVs (default: ../shared/data/*/tiles.csv)"
    )
    p.add_argument("--workdir", default="artifacts/bench_recall")
    p.add_argument("--n", type=int, default=200, help="queries per map")
    p.add_argument("--seed", type=int, default=100, help="query seed (adaptation uses other seeds)")
    p.add_argument("--protocol", default="benchmark", choices=PROTOCOLS)
    p.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS), choices=list(CONFIGS))
    p.add_argument("--adapt-minutes", type=float, default=0.0, help="`adapted`: fine-tuning budget per map")
    p.add_argument("--device", default="auto")
    p.set_defaults(fn=_cmd)


def _cmd(a):
    maps = a.maps or [str(m) for m in developer_maps()]
    if not maps:
        print(f"no developer maps under {shared_data_dir()}; pass --maps")
        return 2
    summary = run_all(maps, a.workdir, a.n, a.seed, a.configs, a.protocol, a.adapt_minutes, a.device)
    table = format_markdown(summary)
    print(table)
    out = pathlib.Path(a.workdir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (out / "results.md").write_text(table + "\n")
    return 0
