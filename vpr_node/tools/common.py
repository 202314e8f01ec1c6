"""Argument helpers shared by the `vpr` subcommands: settings dataclasses (core.options fields) as flags, the
backbone and camera flags, JSON output."""
from __future__ import annotations

import argparse
import dataclasses
import json
import typing

from vpr_node.core.backbones import DEFAULT_BACKBONE
from vpr_node.core.maps.sources import MAPS_HELP  # noqa: F401  (the commands' --maps help)


def add_backbone_args(p, default: str = DEFAULT_BACKBONE) -> None:
    p.add_argument("--backbone", default=default, help="registry name (see `vpr backbones`)")
    p.add_argument("--weights", default=None, help="weights file (default: the backbone's packaged weights, or the "
                                                   "index folder's fitted/adapted weights)")
    p.add_argument("--backbone-options", default="{}", type=json.loads, help="JSON object of backbone options")
    p.add_argument("--runtime", default="pytorch", choices=("pytorch", "onnxruntime", "tensorrt"))
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16"))
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--narrow-k", type=int, default=0, help="the node's narrow_k: retrieve this many tiles and narrow "
                                                           "them by the index folder's second descriptor (0 = off)")


def strategy_from_args(args, index_dir=None):
    from vpr_node.core.retrieval.strategy import load_strategy
    return load_strategy(args.backbone, weights=args.weights, index_dir=index_dir, runtime=args.runtime,
                         precision=args.precision, device=args.device, backbone_options=args.backbone_options,
                         narrow_k=getattr(args, "narrow_k", 0))


def add_camera_args(p, altitude: bool = True) -> None:
    """The nav camera (and, unless a settings dataclass declares it, the planned altitudes): what tiles are matched
    to and queries are made with."""
    if altitude:
        p.add_argument("--altitude", nargs=2, type=float, metavar=("MIN", "MAX"), default=None,
                       help="planned altitude above ground (m); tiles are then matched to the camera's footprint")
    p.add_argument("--hfov", type=float, default=86.0, help="camera horizontal field of view (deg)")
    p.add_argument("--image-size", nargs=2, type=int, metavar=("W", "H"), default=(1280, 720),
                   help="camera image size (px)")
    p.add_argument("--camera-info", default=None,
                   help="sensor_msgs/CameraInfo calibration YAML (replaces --hfov/--image-size)")


def camera_from_args(a):
    from vpr_node.core.maps.camera import CameraModel
    if a.camera_info:
        return CameraModel.from_camera_info_yaml(a.camera_info)
    return CameraModel.from_hfov(a.hfov, *a.image_size)


def print_json(obj) -> None:
    print(json.dumps(obj, default=str))


def add_dataclass_options(p: argparse.ArgumentParser, cls, prefix: str = "", required: tuple[str, ...] = (),
                          exclude: tuple[str, ...] = ()) -> None:
    """One --<prefix><field> flag per field of a settings dataclass (its default and core.options help): bool ->
    --x/--no-x, tuple -> that many values (or any number for tuple[X, ...]), dict -> JSON. Fields whose type is
    another dataclass are skipped (they get flags of their own). Read them back with dataclass_from_args."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if f.name in exclude or dataclasses.is_dataclass(tp):
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kw = {"help": f.metadata.get("help", "").replace("%", "%%"),  # argparse formats help with %
              "default": default, "dest": prefix.replace("-", "_") + f.name}
        args = typing.get_args(tp)
        if tp in (bool, bool | None):
            kw["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(tp) is tuple:
            kw.update(nargs="*" if Ellipsis in args or not args else len(args),
                      type=float if args and args[0] is float else str)
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
    """The dataclass from flags made by add_dataclass_options (tuples restored), plus overrides."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        dest = prefix.replace("-", "_") + f.name
        if f.name in override or not hasattr(args, dest):
            continue
        v = getattr(args, dest)
        values[f.name] = tuple(v) if typing.get_origin(hints[f.name]) is tuple and v is not None else v
    return cls(**values, **override)
