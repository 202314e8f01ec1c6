"""`vpr prepare-mission`: the pre-flight step. Map -> tiles matched to the camera footprint -> backbone
fitted and adapted to this map -> index folder (adapted weights named and hashed in its manifest, loaded
by the node automatically) -> before/after recall report. Resumable: rerun the same command.

Its flags are the fields of MissionConfig, BuildSettings and (as --adapt-*, --map-features-*, --verify-*, --calib-*)
AdaptConfig, MapFeaturesConfig, VerifyConfig and CalibrationConfig, declared once in core."""
from __future__ import annotations

import json

from vpr_node.core.indexing.map_features import MapFeaturesConfig
from vpr_node.core.indexing.settings import BuildSettings
from vpr_node.core.mission.adaptation import AdaptConfig
from vpr_node.core.mission.calibration import CalibrationConfig
from vpr_node.core.mission.config import MissionConfig
from vpr_node.core.verification.verifier import VerifyConfig
from vpr_node.tools.common import add_camera_args, add_dataclass_options, camera_from_args, dataclass_from_args


def _run(a):
    from vpr_node.core.mission.prepare import prepare_mission

    camera = camera_from_args(a)
    adapt = dataclass_from_args(AdaptConfig, a, "adapt-", altitude_m=tuple(a.altitude), hfov_deg=camera.hfov_deg)
    cfg = dataclass_from_args(MissionConfig, a, camera=camera, adapt=adapt, build=dataclass_from_args(BuildSettings, a),
                              verify=dataclass_from_args(VerifyConfig, a, "verify-"),
                              map_features=dataclass_from_args(MapFeaturesConfig, a, "map-features-"),
                              calibration=dataclass_from_args(CalibrationConfig, a, "calib-"))
    summary = prepare_mission(cfg)
    rep = summary.get("report")
    if rep:
        for when in ("before", "after"):
            r = rep[when]
            print(f"[mission] {when:6s} adaptation: recall@1/5/10 (25 m) "
                  + "/".join(f"{r['recall']['25'][n]:.3f}" for n in ("1", "5", "10"))
                  + f"; wrong-hub share {r.get('hubness', {}).get('wrong_hub_share')}")
        ver = rep.get("verification")
        if ver:
            print(f"[mission] verified: recall@1 {ver['verified_recall_at_1']:.3f}, fixes accepted "
                  f"{ver['acceptance_rate']:.3f} with precision {ver['precision']}, error p50 {ver['error_m_p50']} m")
    print(json.dumps({k: summary.get(k) for k in ("out", "tiles", "timings", "weights_file", "hubness", "index_type",
                                                  "index_bytes", "recall_at_10_vs_exact", "verification")},
                     default=str))
    return 0


def register(sub) -> None:
    p = sub.add_parser("prepare-mission", help="pre-flight: footprint-matched tiles, backbone adapted to the mission "
                                               "map, index + manifest, before/after recall report")
    add_dataclass_options(p, MissionConfig, required=("maps", "out"), exclude=("progress",))
    add_camera_args(p, altitude=False)
    add_dataclass_options(p, BuildSettings, exclude=("pca_dim", "work_dir"))
    add_dataclass_options(p, AdaptConfig, prefix="adapt-", exclude=("altitude_m", "hfov_deg"))
    add_dataclass_options(p, MapFeaturesConfig, prefix="map-features-")
    add_dataclass_options(p, VerifyConfig, prefix="verify-")
    add_dataclass_options(p, CalibrationConfig, prefix="calib-")
    p.set_defaults(fn=_run)
