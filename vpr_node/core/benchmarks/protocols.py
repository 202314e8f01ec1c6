"""Query protocols of the developer benchmarks: `benchmark` (QuerySpec.benchmark: 55-110 m, 86 deg hfov, unknown yaw,
tilt <= 15 deg, strong photometric change; tiles matched to that camera footprint), `changed` (the same queries
over ground that has changed since the map: views/changed.py), `resurveyed` (the same queries as a real frame
against an independent map sees them: changed ground, texture that moved, relief: changed.resurvey), `lookalike`
(part of the ground replaced by another place of the map) and `elsewhere` (views of another map: no truth, any
accepted fix is wrong) (views/hard.py), and `legacy` (the earlier README rows: 60 m footprint +-30 %, tilt <= 10
deg, standard photometrics, 60 m tiles at 50 % overlap)."""
from __future__ import annotations

import pathlib

from vpr_node.core.benchmarks.workspace import cached_corpus, cached_queries
from vpr_node.core.maps.tiles import TilePlan
from vpr_node.core.maps.tiling import plan_for_camera
from vpr_node.core.views.queries import QuerySpec

PROTOCOLS = ("benchmark", "changed", "resurveyed", "lookalike", "elsewhere", "legacy")


def protocol_setup(protocol: str):
    """(QuerySpec, TilePlan factory) of a protocol."""
    if protocol == "legacy":
        return QuerySpec(), TilePlan.single(60.0, 0.5)
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    spec = QuerySpec.benchmark(photometric=protocol if protocol in ("changed", "resurveyed") else "strong")
    return spec, plan_for_camera(spec.camera_model(), *spec.altitude_m)


def prepare_benchmark(maps_csv, workdir, n_queries: int, seed: int, protocol: str = "benchmark"):
    """The map's tiles for the protocol (cached in workdir/corpus) and the seeded synthesised queries."""
    spec, plan = protocol_setup(protocol)
    corpus = cached_corpus(maps_csv, pathlib.Path(workdir) / "corpus", plan)
    if protocol in ("lookalike", "elsewhere"):
        from vpr_node.core.maps.sources import load_corner_table
        from vpr_node.core.views.hard import ElsewhereViews, LookalikeViews
        views = (LookalikeViews if protocol == "lookalike" else ElsewhereViews)(load_corner_table(maps_csv), n_queries,
                                                                                 seed, spec)
        return corpus, list(views)
    return corpus, cached_queries(maps_csv, n_queries, seed, spec)
