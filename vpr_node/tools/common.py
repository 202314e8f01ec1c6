"""Argument helpers shared by the `vpr` subcommands."""
from __future__ import annotations

import argparse
import dataclasses
import json
import typing


def add_backbone_args(p, default: str = "efficientnet_lite0_netvlad") -> None:
    p.add_argument("--backbone", default=default, help="registry name (see `vpr backbones`)")
    p.add_argument("--weights", default=None, help="weights file (default: the backbone's packaged weights, or the "
                                                   "index folder's fitted/adapted weights)")
    p.add_argument("--backbone-options", default="{}", type=json.loads, help="JSON object of backbone options")
    p.add_argument("--runtime", default="pytorch", choices=("pytorch", "onnxruntime", "tensorrt"))
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16"))
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")


def strategy_from_args(args, index_dir=None):
    from vpr_node.core.strategy import load_strategy
    return load_strategy(args.backbone, weights=args.weights, index_dir=index_dir, runtime=args.runtime,
                         precision=args.precision, device=args.device, backbone_options=args.backbone_options)


MAPS_HELP = ("the map: corner-coordinates CSV, GeoTIFF/COG orthophoto (any CRS) or a folder of them, or an XYZ "
             "z/x/y folder")


def add_index_type_args(p) -> None:
    """--index-type / --index-params / --memory-budget (build-index, prepare-mission)."""
    import json

    from vpr_node.core.index import AUTO, INDEX_TYPES
    p.add_argument("--index-type", default="flat", choices=(*INDEX_TYPES, AUTO),
                   help="flat (exact), sq8 (8-bit scalar quantised), hnsw, ivfpq; auto = chosen by --memory-budget")
    p.add_argument("--index-params", default="{}", type=json.loads, help='JSON, e.g. {"M": 32, "efSearch": 64}')
    p.add_argument("--memory-budget", type=float, default=0.0,
                   help="MiB the index may take in RAM: picks flat, sq8 or IVF-PQ (the recall cost vs exact search "
                        "is measured into the manifest); implies --index-type auto")


def index_type_from_args(a) -> tuple[str, dict]:
    if a.memory_budget > 0:
        return "auto", {**a.index_params, "memory_budget_mib": a.memory_budget}
    return a.index_type, a.index_params


def rasters_from(source, xyz_zooms=None):
    """Georeferenced map rasters (core.corpus.load_maps: CSV, GeoTIFF, XYZ)."""
    from vpr_node.core.corpus import load_maps
    return load_maps(source, xyz_zooms)


def print_json(obj) -> None:
    print(json.dumps(obj, default=str))


def add_dataclass_options(p: argparse.ArgumentParser, cls, prefix: str = "", required: tuple[str, ...] = (),
                          exclude: tuple[str, ...] = ()) -> None:
    """One --<prefix><field> option per dataclass field (its default and core.options help): bool|None ->
    --x/--no-x, tuple -> nargs, dict -> JSON. Read them back with dataclass_from_args."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        tp = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kw = {"help": f.metadata.get("help", "").replace("%", "%%"),  # argparse formats help with %
              "default": default, "dest": prefix.replace("-", "_") + f.name}
        args = typing.get_args(tp)
        if tp in (bool, bool | None):
            kw["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(tp) is tuple:
            kw.update(nargs="*", type=float if args and args[0] is float else str)
        elif tp is dict:
            kw["type"] = json.loads
        elif tp in (int, float, str):
            kw["type"] = tp
        elif args:  # X | None
            kw["type"] = next(a for a in args if a is not type(None))
        if f.name in required:
            kw.pop("default")
            kw["required"] = True
        p.add_argument("--" + prefix + f.name.replace("_", "-"), **kw)


def dataclass_from_args(cls, args, prefix: str = "", **override):
    """The dataclass from options made by add_dataclass_options (tuples restored), plus overrides."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        dest = prefix.replace("-", "_") + f.name
        if f.name in override or not hasattr(args, dest):
            continue
        v = getattr(args, dest)
        values[f.name] = tuple(v) if typing.get_origin(hints[f.name]) is tuple and v is not None else v
    return cls(**values, **override)
