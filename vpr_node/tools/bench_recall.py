"""`vpr bench-recall`: the developer recall benchmark on a georeferenced map (wildnav_turku by default).

Cuts 60 m tiles (50 % overlap), synthesises drone queries (yaw 0-360, scale +-30 %, tilt <= 10 deg,
photometric change; fixed seed), builds an index per configuration and evaluates recall@1/5/10/20 at
25/50 m. Configurations: `default` (efficientnet_lite0_netvlad, 4 rotations, unknown yaw), `heading`
(same index, queries rotated north-up by the known heading), `gem` (efficientnet_lite0_gem, 4 rot.).
Opt-in `finetuned`: the default fine-tuned on the map itself (FINETUNE_RECIPE: synthesised views of
random map positions, never the benchmark's queries; BatchNorm statistics frozen), then indexed and
evaluated on the same queries as `default`."""
from __future__ import annotations

import json
import pathlib
import shutil

CONFIGS = {
    "default": dict(backbone="efficientnet_lite0_netvlad", rotations=4, heading_known=False),
    "heading": dict(backbone="efficientnet_lite0_netvlad", rotations=4, heading_known=True),
    "gem": dict(backbone="efficientnet_lite0_gem", rotations=4, heading_known=False),
    "gem_heading": dict(backbone="efficientnet_lite0_gem", rotations=4, heading_known=True),
    "finetuned": dict(backbone="efficientnet_lite0_netvlad", rotations=4, heading_known=False, finetune=True),
}
DEFAULT_CONFIGS = ("default", "heading", "gem", "gem_heading")
# Measured on this benchmark (README "Fine-tuning the default"): ~20 min on 2 CPU cores.
FINETUNE_RECIPE = dict(max_steps=640, batch_size=8, lr=1e-5, val_every=80, freeze_bn=True)


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
                         configs=DEFAULT_CONFIGS):
    from vpr_node.core.evaluation import evaluate, write_report
    from vpr_node.core.indexing import build_index_for
    from vpr_node.core.strategy import load_strategy

    workdir = pathlib.Path(workdir)
    corpus, queries = prepare_benchmark(maps_csv, workdir, n_queries, seed)
    results, built = [], {}
    first_index = None
    for name in configs:
        cfg = CONFIGS[name]
        weights = finetune_default(maps_csv, corpus, workdir, built) if cfg.get("finetune") else None
        key = (cfg["backbone"], cfg["rotations"], weights)
        idx = workdir / f"index_{cfg['backbone']}{'_finetuned' if weights else ''}_rot{cfg['rotations']}"
        if key not in built:
            build_index_for(cfg["backbone"], corpus, idx, weights=weights, rotations=cfg["rotations"])
            built[key] = idx
        s = load_strategy(cfg["backbone"], weights=weights, index_dir=str(idx))
        first_index = first_index or s.index
        r = evaluate(s, queries, k=20, heading_known=cfg["heading_known"])
        r.backbone = (f"{cfg['backbone']}{' finetuned' if weights else ''}{' +heading' if cfg['heading_known'] else ''}"
                      f" (rot{cfg['rotations']})")
        results.append(r)
    if report_dir:
        write_report(results, report_dir, queries, first_index)
    return results


def finetune_default(maps_csv, corpus, workdir, built: dict) -> str:
    """Fine-tune the default from its corpus-fitted weights (the `default` index's, built here if
    missing) with FINETUNE_RECIPE; returns the trained weights file."""
    from vpr_node.core.indexing import CORPUS_FITTED_WEIGHTS, build_index_for
    from vpr_node.core.training.train import TrainConfig, train

    out = pathlib.Path(workdir) / "finetune_efficientnet_lite0_netvlad"
    shutil.rmtree(out, ignore_errors=True)  # a fresh run, never an older recipe's checkpoint
    key = ("efficientnet_lite0_netvlad", 4, None)
    base = pathlib.Path(workdir) / "index_efficientnet_lite0_netvlad_rot4"
    if key not in built:
        build_index_for("efficientnet_lite0_netvlad", corpus, base, rotations=4)
        built[key] = base
    return train(TrainConfig(backbone="efficientnet_lite0_netvlad", weights=str(base / CORPUS_FITTED_WEIGHTS),
                             maps=str(maps_csv), corpus=str(corpus.root), out=str(out), **FINETUNE_RECIPE))["weights"]


def register(sub) -> None:
    p = sub.add_parser("bench-recall", help="recall benchmark on a georeferenced map (default: ../shared wildnav)")
    p.add_argument("--maps", default=None, help="corner-coordinates CSV (default ../shared/data/wildnav_turku/tiles.csv)")
    p.add_argument("--workdir", default="artifacts/bench_recall")
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS), choices=list(CONFIGS),
                   help="`finetuned` (opt-in, ~20 min on 2 cores) fine-tunes the default on the map first")
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
