"""`vpr bench-real --retrieval`: each backbone's retrieval recall on the real crops (real_imagery.py), fitted to
the map only (vocabulary / packaged weights) and after mission adaptation, against the real orthophoto alone and
among distractors.

The real orthophoto is small (186 m square: about 50 tiles at the crops' footprints), so recall@10 there is close
to saturated. With `distractors`, the tiles of the other developer maps (../shared/data: a Finnish suburb and a
forest, real orthophotos too) join the same index: about 25x more tiles, none of them within 25 m of a crop, which is
what separates the backbones. The crops come from ONE photograph: correlated, a real-camera check, not a statistic.
"""
from __future__ import annotations

import csv
import json
import pathlib

import numpy as np

from vpr_node.core.backbones import DEFAULT_BACKBONE
from vpr_node.core.benchmarks.developer_maps import developer_maps
from vpr_node.core.benchmarks.real_imagery import DATASET, mission_config, real_crops, write_map
from vpr_node.core.evaluation.recall import RADII_M, evaluate, recall_from_distances, truth_distances
from vpr_node.core.indexing.index_build import build_index_for
from vpr_node.core.indexing.settings import BuildSettings
from vpr_node.core.maps.tiles import TileCorpus
from vpr_node.core.mission.config import retrieval_only
from vpr_node.core.mission.prepare import prepare_mission
from vpr_node.core.retrieval.narrowing import NarrowingStrategy
from vpr_node.core.retrieval.strategy import load_strategy

BACKBONES = (DEFAULT_BACKBONE, "efficientnet_lite0_netvlad", "efficientnet_lite0_gem")
NS = (1, 5, 10, 50)
K_DEEP = 50  # the deep list a second descriptor narrows


def maps_with_distractors(out_dir, data_dir=None) -> pathlib.Path:
    """One corner-coordinates table: the real orthophoto and every other developer map's rasters (absolute paths)."""
    out = pathlib.Path(out_dir)
    real = write_map(out, data_dir)
    rows = list(csv.DictReader(real.open()))
    for table in developer_maps():
        if pathlib.Path(table).parent.name == DATASET:
            continue
        for row in csv.DictReader(pathlib.Path(table).open()):
            rows.append({**row, "filename": str((pathlib.Path(table).parent / row["filename"]).resolve())})
    path = out / "tiles_with_distractors.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def indexes_for(backbone: str, maps_csv, workdir, progress: bool = False) -> dict[str, pathlib.Path]:
    """{"fitted": index with the map-fitted vocabulary / packaged weights, "adapted": prepare-mission's index} for
    one backbone (cached in workdir; adaptation = learned whitening on views rendered from the map, no fine-tune)."""
    workdir = pathlib.Path(workdir)
    mission = workdir / f"mission_{backbone}"
    prepare_mission(mission_config(maps_csv, mission, progress, backbone=backbone, **retrieval_only()),
                    log=print if progress else (lambda *_: None))
    fitted = workdir / f"index_{backbone}"
    if not (fitted / "manifest.json").is_file():
        build_index_for(backbone, TileCorpus(mission / "work" / "corpus"), fitted, BuildSettings(rotations=4),
                        progress=progress, log=print if progress else (lambda *_: None))
    return {"fitted": fitted, "adapted": mission}


def run_retrieval(workdir, backbones=BACKBONES, n: int = 40, seed: int = 0, distractors: bool = True,
                  data_dir=None, progress: bool = True) -> dict:
    """Recall@1/5/10/50 at 25 and 50 m, embed p50, descriptor size and index size per backbone and adaptation."""
    workdir = pathlib.Path(workdir)
    maps = maps_with_distractors(workdir / "map", data_dir) if distractors else write_map(workdir / "map", data_dir)
    queries = real_crops(n, seed, data_dir)
    rows, adapted = [], {}
    for name in backbones:
        for stage, idx in indexes_for(name, maps, workdir, progress).items():
            strategy = load_strategy(name, index_dir=str(idx))
            if stage == "adapted":
                adapted[name] = strategy
            k = min(max(NS), len(strategy.index))
            r = evaluate(strategy, queries, k=k, progress=progress, ns=tuple(m for m in NS if m <= k))
            rows.append({"backbone": name, "stage": stage, "descriptor_dim": r.descriptor_dim,
                         "tiles": len(strategy.index), "recall": r.recall,
                         "embed_ms_p50": round(r.embed_ms_p50, 1),
                         "index_MiB": round(json.loads((idx / "manifest.json").read_text())["index_bytes"] / 2**20, 2)})
    for first in adapted:
        for second in adapted:
            if first != second:
                rows.append(narrowed_row(adapted[first], adapted[second], queries))
    return {"crops": n, "seed": seed, "distractors": distractors, "rows": rows}


def narrowed_row(first, second, queries, k_deep: int = K_DEEP) -> dict:
    """Recall@1/5/10 after narrowing `first`'s top-k_deep with `second`'s descriptor (retrieval/narrowing.py)."""
    both = NarrowingStrategy(first, second, k_deep)
    dists = []
    for q in queries:
        top = both.retrieve_topk(both.embed_query(q.image), 10)
        dists.append(truth_distances(q.lat, q.lon, [c.tile.lat for c in top], [c.tile.lon for c in top], 10))
    dist = np.stack(dists)
    return {"backbone": f"{first.label} top-{k_deep} narrowed by {second.label}", "stage": "adapted",
            "descriptor_dim": first.descriptor_dim + second.descriptor_dim, "tiles": len(first.index),
            "recall": {str(int(r)): {str(m): v for m, v in recall_from_distances(dist, (1, 5, 10), r).items()}
                       for r in RADII_M}, "embed_ms_p50": None, "index_MiB": None}


def format_markdown(res: dict) -> str:
    ns = [str(m) for m in NS]
    lines = [f"Real crops: {res['crops']} crops of one photograph (seed {res['seed']}); "
             + ("the real orthophoto among the other developer maps' tiles" if res["distractors"]
                else "the real orthophoto alone") + ".", "",
             "| backbone | stage | dim | tiles | " + " | ".join(f"R@{m} 25 m" for m in ns) + " | "
             + " | ".join(f"R@{m} 50 m" for m in ns) + " | embed p50 ms | index MiB |",
             "|---|---|---:|---:|" + "---:|" * (2 * len(ns) + 2)]
    for r in res["rows"]:
        cells = [f"{r['recall'][rad][m]:.3f}" if m in r["recall"][rad] else "–" for rad in ("25", "50") for m in ns]
        lines.append(f"| {r['backbone']} | {r['stage']} | {r['descriptor_dim']} | {r['tiles']} | " + " | ".join(cells)
                     + f" | {r['embed_ms_p50'] or '–'} | {r['index_MiB'] or '–'} |")
    return "\n".join(lines)
