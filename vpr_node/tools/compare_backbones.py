"""`vpr compare-backbones`: recall, latency, dimension and size of every backbone with weights here
(core/benchmarks/compare.py)."""
from __future__ import annotations

import json
import pathlib

from vpr_node.core.benchmarks.compare import compare_backbones, format_markdown
from vpr_node.core.benchmarks.developer_maps import resolve_maps


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
