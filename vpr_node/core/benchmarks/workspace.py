"""Cached benchmark/demo inputs in a work folder: sample map, tile corpus, synthesised queries, index.

One place for what the demo, the soak run, `bench`, `bench-recall` and `compare-backbones` all prepare:
each step is skipped when its output is already there."""
from __future__ import annotations

import pathlib

from vpr_node.core.indexing.index_build import build_index_for
from vpr_node.core.maps.procedural import write_sample_map
from vpr_node.core.maps.sources import load_corner_table
from vpr_node.core.maps.tiles import TileCorpus, TilePlan
from vpr_node.core.maps.tiling import cut_corpus
from vpr_node.core.views.queries import read_queries, synthesise_queries, write_queries


def sample_maps(workdir, size_px: int = 1400, seed: int = 7) -> pathlib.Path:
    """The procedural sample map (corner table) in workdir/map."""
    csv = pathlib.Path(workdir) / "map" / "tiles.csv"
    return csv if csv.exists() else write_sample_map(csv.parent, seed=seed, size_px=size_px)


def cached_corpus(maps_csv, corpus_dir, plan=None, tile_px: int = 320, progress: bool = True):
    """Tiles of the maps (default plan: 60 m tiles at 50 % overlap) in corpus_dir."""
    corpus_dir = pathlib.Path(corpus_dir)
    if not (corpus_dir / "tiles.csv").exists():
        cut_corpus(load_corner_table(maps_csv), corpus_dir, plan or TilePlan.single(60.0, 0.5), tile_px, progress)
    return TileCorpus(corpus_dir)


def cached_queries(maps_csv, n: int, seed: int, spec=None, out_dir=None) -> list:
    """n synthesised queries (seeded); written to / read from out_dir when given."""
    if out_dir is None:
        return list(synthesise_queries(load_corner_table(maps_csv), n, seed=seed, spec=spec))
    out_dir = pathlib.Path(out_dir)
    if not (out_dir / "queries.csv").exists():
        write_queries(synthesise_queries(load_corner_table(maps_csv), n, seed=seed, spec=spec), out_dir)
    return read_queries(out_dir / "queries.csv")


def cached_index(backbone: str, corpus, index_dir, settings=None, **build_kw) -> pathlib.Path:
    """build-index for the backbone into index_dir unless a manifest is already there."""
    index_dir = pathlib.Path(index_dir)
    if not (index_dir / "manifest.json").exists():
        build_index_for(backbone, corpus, index_dir, settings, **build_kw)
    return index_dir
