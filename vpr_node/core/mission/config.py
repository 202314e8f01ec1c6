"""The settings of `vpr prepare-mission`: the map, the camera and altitudes the tiles are matched to, the backbone,
its adaptation (AdaptConfig), the index build (BuildSettings), the verifier and its calibration (VerifyConfig,
CalibrationConfig) and the report. Every field is a command-line flag
(tools/prepare_mission.py); the camera comes from --hfov/--image-size or --camera-info."""
from __future__ import annotations

import dataclasses
import json

from vpr_node.core.backbones import DEFAULT_BACKBONE
from vpr_node.core.indexing.map_features import MapFeaturesConfig
from vpr_node.core.indexing.settings import BuildSettings
from vpr_node.core.maps.camera import DEFAULT_CAMERA, CameraModel
from vpr_node.core.maps.sources import MAPS_HELP
from vpr_node.core.mission.adaptation import AdaptConfig
from vpr_node.core.mission.calibration import CalibrationConfig
from vpr_node.core.options import option
from vpr_node.core.verification.verifier import VerifyConfig

STEPS = ("corpus", "base_weights", "adapt", "index", "map_features", "verifier", "report")


@dataclasses.dataclass
class MissionConfig:
    maps: str = option("", MAPS_HELP)
    out: str = option("", "index folder (set the node's index_dir to it)")
    backbone: str = option(DEFAULT_BACKBONE, "registry name (see `vpr backbones`)")
    backbone_options: dict = option(factory=dict, help="JSON object of backbone options")
    narrow_backbone: str = option("", "a second backbone whose adapted index over the same tiles (<out>/narrow) the "
                                      "node uses to narrow a deeper list (its narrow_k parameter; '' = none; "
                                      "measured in BENCHMARKS.md: efficientnet_lite0_gem helps on real crops, hurts "
                                      "on rendered changed ground)")
    runtime: str = option("pytorch", "runtime tiles and views are embedded on: pytorch, or onnxruntime (the model "
                                     "exported once per model, its descriptors checked against PyTorch's; faster on "
                                     "a CPU, BENCHMARKS.md); the fine-tune runs on PyTorch")
    weights: str | None = option(None, "start from these weights (converted or `vpr train`ed); default: fitted to "
                                       "the corpus (NetVLAD centroids) or the packaged ones")
    altitude: tuple[float, float] = option((55.0, 110.0), "planned altitude above ground MIN MAX (m): tiles are "
                                                          "matched to the camera's footprint over it")
    camera: CameraModel = option(factory=lambda: DEFAULT_CAMERA, help="the nav camera (--hfov/--image-size or "
                                                                       "--camera-info)")
    radius: float = option(25.0, "recall radius (m) the tile spacing must support")
    max_scale_step: float = option(1.5, "a new tile scale when footprints differ more than this ratio")
    tile_px: int = option(320, "stored tile size (px)")
    build: BuildSettings = option(factory=BuildSettings, help="the index build (rotations, index type, chunks, Dask)")
    adapt: AdaptConfig = option(factory=AdaptConfig, help="the adaptation (--adapt-* flags)")
    map_features: MapFeaturesConfig = option(factory=MapFeaturesConfig, help="the learned matcher's map features "
                                                                             "(--map-features-* flags)")
    verify: VerifyConfig = option(factory=VerifyConfig, help="the verifier (--verify-* flags)")
    calibration: CalibrationConfig = option(factory=CalibrationConfig, help="its calibration (--calib-* flags)")
    report_queries: int = option(100, "queries for the before/after report (0 = none)")
    report_seed: int = option(2000, "seed of the report's queries (adaptation never uses it)")
    progress: bool = option(True, "progress bars")

    def settings(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("progress")
        d["camera"] = dataclasses.asdict(self.camera)
        return json.loads(json.dumps(d, default=str))


def retrieval_only() -> dict:
    """MissionConfig fields that make prepare-mission stop after the index (no map features, no calibration)."""
    return {"map_features": MapFeaturesConfig(matcher=""), "calibration": CalibrationConfig(views=0)}
