"""`vpr prepare-mission`: the pre-flight step. Map -> tiles matched to the camera footprint -> backbone
fitted and adapted to this map -> index folder (adapted weights named and hashed in its manifest, loaded
by the node automatically) -> before/after recall report. Resumable: rerun the same command.

The --adapt-* options are AdaptConfig's fields (core/adaptation.py), declared once."""
from __future__ import annotations

import json

from vpr_node.tools.common import (
    MAPS_HELP,
    add_dataclass_options,
    add_index_type_args,
    dataclass_from_args,
    index_type_from_args,
)
from vpr_node.tools.maps import add_camera_args, camera_from_args


def _run(a):
    from vpr_node.core.adaptation import AdaptConfig
    from vpr_node.core.mission import MissionConfig, prepare_mission

    altitude = tuple(a.altitude or (55.0, 110.0))
    camera = camera_from_args(a)
    adapt = dataclass_from_args(AdaptConfig, a, "adapt-", altitude_m=altitude, hfov_deg=camera.hfov_deg)
    index_type, index_params = index_type_from_args(a)
    same_name = ("maps", "out", "backbone", "backbone_options", "weights", "tile_px", "rotations", "report_queries",
                 "report_seed")
    cfg = MissionConfig(**{k: getattr(a, k) for k in same_name}, altitude_m=altitude, camera=camera, radius_m=a.radius,
                        max_scale_step=a.max_scale_step, index_type=index_type, index_params=index_params, adapt=adapt)
    summary = prepare_mission(cfg)
    rep = summary.get("report")
    if rep:
        for when in ("before", "after"):
            r = rep[when]
            print(f"[mission] {when:6s} adaptation: recall@1/5/10 (25 m) "
                  + "/".join(f"{r['recall']['25'][n]:.3f}" for n in ("1", "5", "10"))
                  + f"; wrong-hub share {r.get('hubness', {}).get('wrong_hub_share')}")
    print(json.dumps({k: summary.get(k) for k in ("out", "tiles", "timings", "weights_file", "hubness", "index_type",
                                                  "index_bytes", "recall_at_10_vs_exact")}, default=str))
    return 0


def register(sub) -> None:
    from vpr_node.core.adaptation import AdaptConfig

    p = sub.add_parser("prepare-mission", help="pre-flight: footprint-matched tiles, backbone adapted to the mission "
                                               "map, index + manifest, before/after recall report")
    p.add_argument("--maps", required=True, help=MAPS_HELP)
    p.add_argument("--out", required=True, help="index folder (set the node's index_dir to it)")
    p.add_argument("--backbone", default="efficientnet_lite0_netvlad")
    p.add_argument("--backbone-options", default="{}", type=json.loads)
    p.add_argument("--weights", default=None, help="start from these weights (converted or `vpr train`ed); default: "
                                                   "fitted to the corpus (NetVLAD centroids) or the packaged ones")
    add_camera_args(p)
    p.add_argument("--radius", type=float, default=25.0, help="recall radius (m) the tile spacing must support")
    p.add_argument("--max-scale-step", type=float, default=1.5, help="a new tile scale when footprints differ more")
    p.add_argument("--tile-px", type=int, default=320)
    p.add_argument("--rotations", type=int, default=4, choices=(1, 2, 4, 8))
    add_index_type_args(p)
    p.add_argument("--report-queries", type=int, default=100, help="queries for the before/after report (0 = none)")
    p.add_argument("--report-seed", type=int, default=2000)
    add_dataclass_options(p, AdaptConfig, prefix="adapt-", exclude=("altitude_m", "hfov_deg"))
    p.set_defaults(fn=_run)
