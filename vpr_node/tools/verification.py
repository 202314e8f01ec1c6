"""`vpr map-features` (the learned matcher's features of the map, into an index folder), `vpr export-matcher`,
`vpr calibrate-verifier` (fit the verifier's confidence and covariance on validation views of the map, into the
index folder; prepare-mission runs it) and `vpr verify` (one image against an index: its candidates re-ranked and
its fix, and a picture of the match)."""
from __future__ import annotations

import json

from vpr_node.core.indexing.map_features import MapFeaturesConfig
from vpr_node.core.mission.calibration import CalibrationConfig
from vpr_node.core.verification.verifier import VerifyConfig
from vpr_node.tools.common import (
    MAPS_HELP,
    add_backbone_args,
    add_camera_args,
    add_dataclass_options,
    camera_from_args,
    dataclass_from_args,
    print_json,
    strategy_from_args,
)


def _calibrate(a):
    from vpr_node.core.mission.calibration import calibrate_verifier
    cal = calibrate_verifier(strategy_from_args(a, index_dir=a.index), a.index, a.maps, tuple(a.altitude or (55, 110)),
                             camera_from_args(a), dataclass_from_args(CalibrationConfig, a, "calib-"),
                             dataclass_from_args(VerifyConfig, a, "verify-"))
    print_json({"threshold": cal.threshold, "cov_scale": cal.cov_scale,
                **{k: v for k, v in cal.validation.items() if k != "curve"}})


def _verify(a):
    import cv2

    from vpr_node.core.verification.drawing import verification_picture
    from vpr_node.core.verification.verifier import Verifier
    s = strategy_from_args(a, index_dir=a.index)
    bgr = cv2.imread(a.image, cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"cannot read image {a.image}")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    verifier = Verifier.for_index(a.index, dataclass_from_args(VerifyConfig, a, "verify-"))
    v = verifier.verify(rgb, s.retrieve_topk(s.embed_query(rgb), verifier.cfg.candidates_needed))
    out = {"reason": v.reason, "accepted": v.accepted, "verify_ms": round(v.latency_ms, 1), "agree": v.agree,
           "candidates": [{"tile": c.tile_id, "retrieval_rank": c.retrieval_rank, "inliers": c.inliers,
                           "reason": c.reason} for c in v.top(verifier.cfg.top_n)]}
    if v.fix is not None:
        f = v.fix
        out["fix"] = {"lat": f.lat, "lon": f.lon, "heading_deg": round(f.heading_deg, 2),
                      "sigma_m": round(f.sigma_m, 2),
                      "confidence": f.confidence, "tile": f.tile_id}
    print(json.dumps(out, indent=1))
    if a.picture:
        pic = verification_picture(verifier, rgb, v)
        if pic is not None:
            cv2.imwrite(a.picture, cv2.cvtColor(pic, cv2.COLOR_RGB2BGR))


def _map_features(a):
    from vpr_node.core.indexing.map_features import build_map_features
    meta = build_map_features(a.maps, a.index, dataclass_from_args(MapFeaturesConfig, a, "map-features-"))
    print_json(meta)


def _export_matcher(a):
    from vpr_node.core.index.folder import add_to_manifest
    from vpr_node.core.verification.map_features import features_dir
    from vpr_node.core.verification.matchers.xfeat import ONNX_META, export_onnx
    folder = features_dir(a.index, "xfeat")
    meta = export_onnx(folder, a.top_k)
    for name in [*meta["files"], ONNX_META]:
        add_to_manifest(a.index, f"{folder.relative_to(a.index).as_posix()}/{name}")
    print_json(meta)


def register(sub) -> None:
    p = sub.add_parser("map-features", help="extract the learned matcher's features of the map into an index folder "
                                            "(prepare-mission does it): the verifier's fallback matches against them")
    p.add_argument("--index", required=True, help="the index folder (map_features/ is written there)")
    p.add_argument("--maps", required=True, help=MAPS_HELP)
    add_dataclass_options(p, MapFeaturesConfig, prefix="map-features-")
    p.set_defaults(fn=_map_features)

    p = sub.add_parser("export-matcher", help="export XFeat + LighterGlue to ONNX into an index's map_features/ "
                                              "(checked against PyTorch): the verifier then runs without PyTorch")
    p.add_argument("--index", required=True)
    p.add_argument("--top-k", type=int, default=2048, help="keypoints the exported extractor keeps (as the map's)")
    p.set_defaults(fn=_export_matcher)

    p = sub.add_parser("calibrate-verifier", help="fit the verifier's confidence, acceptance threshold and covariance "
                                                  "scale on validation views of the map (into the index folder)")
    add_backbone_args(p)
    p.add_argument("--index", required=True, help="the index folder (its tiles/; verification.json is written there)")
    p.add_argument("--maps", required=True, help=MAPS_HELP)
    add_camera_args(p)
    add_dataclass_options(p, CalibrationConfig, prefix="calib-")
    add_dataclass_options(p, VerifyConfig, prefix="verify-")
    p.set_defaults(fn=_calibrate)

    p = sub.add_parser("verify", help="one image against an index: candidates re-ranked by inliers, the position fix "
                                      "and a picture of the match")
    add_backbone_args(p)
    p.add_argument("--index", required=True)
    p.add_argument("--image", required=True, help="a nav-camera frame (any format OpenCV reads)")
    p.add_argument("--picture", default=None, help="write the frame beside its verified tile here (PNG)")
    add_dataclass_options(p, VerifyConfig, prefix="verify-")
    p.set_defaults(fn=_verify)
