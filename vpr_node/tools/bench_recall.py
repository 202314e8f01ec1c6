"""`vpr bench-recall`: the developer recall benchmark on a georeferenced map (wildnav_turku by default).

Cuts 60 m tiles (50 % overlap), synthesises drone queries (yaw 0-360, scale +-30 %, tilt <= 10 deg,
photometric change; fixed seed), builds an index per configuration and evaluates recall@1/5/10/20 at
25/50 m. Configurations: `default` (efficientnet_lite0_netvlad, 4 rotations, unknown yaw), `heading`
(same index, queries rotated north-up by the known heading), `gem` (efficientnet_lite0_gem, 4 rot.)."""
from __future__ import annotations

import json
import pathlib

CONFIGS = {
    "default": dict(backbone="efficientnet_lite0_netvlad", rotations=4, heading_known=False),
    "heading": dict(backbone="efficientnet_lite0_netvlad", rotations=4, heading_known=True),
    "gem": dict(backbone="efficientnet_lite0_gem", rotations=4, heading_known=False),
    "gem_heading": dict(backbone="efficientnet_lite0_gem", rotations=4, heading_known=True),
}


def default_maps_csv() -> pathlib.Path:
    """The developer benchmark's map table: ../shared/data/wildnav_turku/tiles.csv beside the checkout."""
    return pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "wildnav_turku" / "tiles.csv"


def resolve_maps(arg) -> str | None:
    maps = arg or str(default_maps_csv())
    if not pathlib.Path(maps).exists():
        print(f"map table {maps} not found; pass --maps")
        return None
    return maps


def prepare_benchmark(maps_csv, workdir, n_queries: int, seed: int):
    """60 m tiles at 50 % overlap (cached in workdir/corpus) and the seeded synthesised queries."""
    from vpr_node.core.corpus import TileCorpus, cut_tiles, load_corner_table
    from vpr_node.core.queries import QuerySpec, synthesise_queries

    workdir = pathlib.Path(workdir)
    rasters = load_corner_table(maps_csv)
    corpus_dir = workdir / "corpus"
    if not (corpus_dir / "tiles.csv").exists():
        cut_tiles(rasters, corpus_dir, tile_m=60.0, overlap=0.5, tile_px=320)
    return TileCorpus(corpus_dir), list(synthesise_queries(rasters, n_queries, seed=seed, spec=QuerySpec()))


def run_recall_benchmark(maps_csv, workdir, n_queries: int = 100, seed: int = 0, report_dir=None,
                         configs=("default", "heading", "gem", "gem_heading")):
    from vpr_node.core.evaluation import evaluate, write_report
    from vpr_node.core.indexing import build_index_for
    from vpr_node.core.strategy import load_strategy

    workdir = pathlib.Path(workdir)
    corpus, queries = prepare_benchmark(maps_csv, workdir, n_queries, seed)
    results, built = [], {}
    first_index = None
    for name in configs:
        cfg = CONFIGS[name]
        key = (cfg["backbone"], cfg["rotations"])
        idx = workdir / f"index_{cfg['backbone']}_rot{cfg['rotations']}"
        if key not in built:
            build_index_for(cfg["backbone"], corpus, idx, rotations=cfg["rotations"])
            built[key] = idx
        s = load_strategy(cfg["backbone"], index_dir=str(idx))
        first_index = first_index or s.index
        r = evaluate(s, queries, k=20, heading_known=cfg["heading_known"])
        r.backbone = f"{cfg['backbone']}{' +heading' if cfg['heading_known'] else ''} (rot{cfg['rotations']})"
        results.append(r)
    if report_dir:
        write_report(results, report_dir, queries, first_index)
    return results


def register(sub) -> None:
    p = sub.add_parser("bench-recall", help="recall benchmark on a georeferenced map (default: ../shared wildnav)")
    p.add_argument("--maps", default=None, help="corner-coordinates CSV (default ../shared/data/wildnav_turku/tiles.csv)")
    p.add_argument("--workdir", default="artifacts/bench_recall")
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.set_defaults(fn=_cmd)


def _cmd(args):
    from vpr_node.core.evaluation import format_table
    maps = resolve_maps(args.maps)
    if maps is None:
        return 2
    results = run_recall_benchmark(maps, args.workdir, args.n, args.seed, report_dir=pathlib.Path(args.workdir) / "report",
                                   configs=args.configs)
    print(format_table(results))
    (pathlib.Path(args.workdir) / "results.json").write_text(json.dumps([r.to_json() for r in results], indent=2) + "\n")
    return 0
