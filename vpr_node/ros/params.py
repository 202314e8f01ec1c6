"""Node parameters, declared once: each NodeConfig field (core.options.option) carries its default, description
and check.

`PARAMETERS` (name -> (default, description)) is what the node declares to ROS; `NodeConfig.from_params`
converts and validates the values read back (a ConfigurationError names the parameter and says what to
fix). Plain Python, no rclpy.
"""
from __future__ import annotations

import dataclasses
import json
import typing

from vpr_node.core.backbones import DEFAULT_BACKBONE
from vpr_node.core.errors import ConfigurationError
from vpr_node.core.options import option


def config_from_params(cls, values: dict):
    """A settings dataclass (core.options fields) from ROS parameter values: each converted (its parser, else its
    type) and checked; a ConfigurationError names the parameter and says what to fix."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        raw = values.get(f.name, default)
        try:
            value = f.metadata["parse"](raw) if f.metadata.get("parse") else hints[f.name](raw)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"parameter '{f.name}' = {raw!r}: {exc}; {f.metadata['help']}",
                                     parameter=f.name) from exc
        why = f.metadata["check"](value) if f.metadata.get("check") else None
        if why:
            raise ConfigurationError(f"parameter '{f.name}' = {raw!r}: {why}", parameter=f.name)
        out[f.name] = value
    return cls(**out)


def core_part(node_config, core_cls):
    """The core settings (a dataclass the node's config extends with its topics and timing) of a node config."""
    return core_cls(**{f.name: getattr(node_config, f.name) for f in dataclasses.fields(core_cls)})


def parameters_of(cls) -> dict[str, tuple]:
    """name -> (default, description) of a settings dataclass: what a node declares to ROS."""
    return {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory(), f.metadata["help"])
            for f in dataclasses.fields(cls)}


def _one_of(choices):
    return lambda v: None if v in choices else f"choose one of {', '.join(choices)}"


def _between(lo, hi, what: str = ""):
    return lambda v: None if lo <= v <= hi else f"must be {what or f'between {lo} and {hi}'}"


def _positive(v):
    return None if v > 0 else "must be > 0"


def _json_object(text: str) -> dict:
    value = json.loads(text or "{}")
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _known_runtime(name: str) -> str | None:
    from vpr_node.core.retrieval.runtimes import RUNTIME_NAMES
    return _one_of(RUNTIME_NAMES)(name)


def _known_backbone(name: str) -> str | None:
    from vpr_node.core.backbones.model_cards import card_names  # the registry's names, without PyTorch
    names = card_names()
    return None if name in names else f"unknown backbone; choose one of {', '.join(names)}"


@dataclasses.dataclass(frozen=True)
class NodeConfig:
    autostart: bool = option(False, "configure and activate at start: `ros2 launch ... auto_start:=true` sets it, so a "
                                    "node respawned after a crash starts serving again by itself")
    backbone: str = option(DEFAULT_BACKBONE,
                          "registry name of the backbone; a change takes effect at the next activation",
                          check=lambda v: _known_backbone(v))
    weights: str = option("", "path of backbone weights ('' = the index folder's fitted/adapted weights, else the "
                             "packaged default)")
    backbone_options: dict = option("{}", "JSON object of backbone options (e.g. {\"descriptor_dim\": 512})",
                                   parse=_json_object)
    index_dir: str = option("", "folder of the FAISS index built by `vpr build-index` / `vpr prepare-mission` "
                               "(required)",
                           check=lambda v: None if v else "is required: build an index with `vpr build-index` (or "
                                                          "`vpr prepare-mission`) and set index_dir to its folder")
    index_memory_budget_mib: float = option(0.0, "largest index the node may hold in memory (MiB of index.faiss; 0 = "
                                                "not checked); a larger one fails configure before it is read",
                                           check=lambda v: None if v >= 0 else "must be >= 0 (0 = not checked)")
    verify_index_weights: bool = option(True, "refuse an index whose manifest weights SHA-256 differs from the loaded "
                                             "weights")
    top_k: int = option(10, "number of candidates per frame (1..1000)", check=_between(1, 1000))
    narrow_k: int = option(0, "0 = off; N: retrieve the top N tiles and narrow them to top_k with the index folder's "
                              "second descriptor (prepare-mission --narrow-backbone; BENCHMARKS.md)",
                           check=_between(0, 1000))
    image_topic: str = option("/camera/image_raw", "nav-camera image topic",
                             check=lambda v: None if v else "must not be empty")
    compressed: bool = option(False, "subscribe to sensor_msgs/CompressedImage instead of sensor_msgs/Image")
    result_topic: str = option("vpr/result", "VprResult output topic")
    runtime: str = option("pytorch", "inference runtime: pytorch | onnxruntime | tensorrt",
                          check=lambda v: _known_runtime(v))
    precision: str = option("fp32", "fp32 | fp16", check=_one_of(("fp32", "fp16")))
    device: str = option("cpu", "cpu | cuda | cuda:N",
                        check=lambda v: None if v == "cpu" or v.startswith("cuda") else "choose cpu, cuda or cuda:N")
    queue_depth: int = option(1, "frames buffered ahead of the inference thread (newest wins; drops are counted)",
                             check=_between(1, 100))
    warn_distance: float = option(1.5, "WARN when the top-1 descriptor distance is above this (squared L2 on unit "
                                      "vectors, 0..4)",
                                 check=_between(0.0, 4.0, "in [0, 4] (squared L2 between unit vectors)"))
    recorder_path: str = option("", "flight-data recorder file ('' = off)")
    recorder_max_bytes: int = option(16 << 20, "recorder rotation size in bytes", check=_positive)
    diagnostics_period: float = option(1.0, "seconds between /diagnostics messages", check=_positive)
    hang_timeout: float = option(10.0, "seconds a frame may stay in flight before it is reported as "
                                      "c2.vpr.backbone_hang", check=_positive)
    shutdown_timeout: float = option(1.0, "at cleanup/shutdown/SIGINT, seconds the frame in flight may take to finish "
                                         "before it is abandoned (and recorded as c2.vpr.frame_abandoned)",
                                    check=_between(0.0, 60.0))
    # --- priors (what the drone already knows); each is off while its topic is '' -----------------------
    heading_topic: str = option("", "heading prior topic ('' = off): the frame is rotated north-up before embedding")
    heading_type: str = option("imu", "heading message type: imu | odometry | pose | quaternion",
                              check=_one_of(("imu", "odometry", "pose", "quaternion")))
    heading_frame: str = option("enu", "world frame of the orientation: enu (REP 103) | ned",
                               check=_one_of(("enu", "ned")))
    heading_max_skew: float = option(0.2, "largest |sample stamp - frame stamp| (s) for a heading sample to be used",
                                    check=_positive)
    camera_yaw_offset_deg: float = option(0.0, "camera mounting yaw: image 'up' points this many degrees clockwise of "
                                              "the body heading")
    altitude_topic: str = option("", "altitude prior topic ('' = off): the frame is cropped to the tiles' ground size")
    altitude_type: str = option("range", "altitude message type: range (above ground) | odometry (z) | navsatfix",
                               check=_one_of(("range", "odometry", "navsatfix")))
    ground_elevation_m: float = option(0.0, "ground elevation subtracted from odometry z / NavSatFix altitude")
    altitude_min_m: float = option(1.0, "flight envelope: an altitude above ground below this is refused",
                                   check=lambda v: None if v >= 0 else "must be >= 0")
    altitude_max_m: float = option(1000.0, "flight envelope: an altitude above ground above this is refused (also when "
                                           "a Range message sets no max_range)", check=_positive)
    altitude_max_skew: float = option(0.5, "largest |sample stamp - frame stamp| (s) for an altitude sample",
                                     check=_positive)
    camera_info_file: str = option("", "nav camera intrinsics (sensor_msgs/CameraInfo YAML) for the altitude prior")
    camera_hfov_deg: float = option(0.0, "or the nav camera's horizontal field of view (deg; the frame gives its size)",
                                   check=_between(0.0, 179.0))
    prior_topic: str = option("", "position prior topic ('' = off): search only tiles within k sigma of it")
    prior_type: str = option("navsatfix", "position message type: navsatfix | pose_cov (PoseWithCovarianceStamped, "
                                         "local ENU) | odometry (local ENU)",
                            check=_one_of(("navsatfix", "pose_cov", "odometry")))
    prior_origin_lat: float = option(0.0, "latitude of the local ENU frame's origin (pose_cov / odometry priors)",
                                    check=_between(-90.0, 90.0))
    prior_origin_lon: float = option(0.0, "longitude of the local ENU frame's origin", check=_between(-180.0, 180.0))
    prior_k_sigma: float = option(3.0, "search radius in prior sigmas", check=_positive)
    prior_max_sigma_m: float = option(1000.0, "a prior with a larger 1-sigma error is 'uncertain': whole map searched",
                                     check=_positive)
    prior_max_age: float = option(2.0, "largest age (s) of a position prior sample at a frame's stamp", check=_positive)
    prior_future_tolerance: float = option(0.5, "a prior sample stamped further ahead of the node's clock than this "
                                                "(s) is refused", check=_positive)
    prior_sync_timeout: float = option(0.1, "longest wait (s) of a frame for prior samples stamped at or after it (a "
                                           "sample published just after the frame is then still used)",
                                      check=_between(0.0, 5.0))

    @classmethod
    def from_params(cls, values: dict) -> "NodeConfig":
        cfg = config_from_params(cls, values)
        cfg.check_priors()
        return cfg

    def check_priors(self) -> None:
        """Cross-parameter rules of the priors (configure/activate fail with what to fix)."""
        if self.altitude_min_m >= self.altitude_max_m:
            raise ConfigurationError(f"parameter 'altitude_min_m' ({self.altitude_min_m}) must be below "
                                     f"'altitude_max_m' ({self.altitude_max_m})", parameter="altitude_min_m")
        if self.altitude_topic and not (self.camera_info_file or self.camera_hfov_deg > 0):
            raise ConfigurationError("parameter 'altitude_topic' is set but the camera intrinsics are not: set "
                                     "'camera_info_file' (a CameraInfo YAML) or 'camera_hfov_deg'",
                                     parameter="camera_info_file")

    def priors(self):
        """(PriorConfig, PriorInputs) of the configured priors, or None when no prior topic is set (the node and
        offline replay build them here, so both apply the priors the same way)."""
        from vpr_node.core.maps.camera import CameraModel
        from vpr_node.core.priors.apply import PriorConfig
        from vpr_node.core.priors.messages import PriorInputs

        if not (self.heading_topic or self.altitude_topic or self.prior_topic):
            return None
        camera = CameraModel.from_camera_info_yaml(self.camera_info_file) if self.camera_info_file else None
        cfg = PriorConfig(heading=bool(self.heading_topic), altitude=bool(self.altitude_topic),
                          position=bool(self.prior_topic), heading_max_skew_s=self.heading_max_skew,
                          altitude_max_skew_s=self.altitude_max_skew, position_max_age_s=self.prior_max_age,
                          camera_yaw_offset_deg=self.camera_yaw_offset_deg, camera=camera,
                          hfov_deg=self.camera_hfov_deg, position_k_sigma=self.prior_k_sigma,
                          position_max_sigma_m=self.prior_max_sigma_m, sync_timeout_s=self.prior_sync_timeout)
        inputs = PriorInputs(self.heading_type, self.heading_frame, self.altitude_type, self.ground_elevation_m,
                             self.prior_type, self.prior_origin_lat, self.prior_origin_lon,
                             altitude_min_m=self.altitude_min_m, altitude_max_m=self.altitude_max_m,
                             future_tolerance_s=self.prior_future_tolerance)
        return cfg, inputs

    def model_key(self) -> tuple:
        """What requires a reload when it changes between configure and activate."""
        return (self.backbone, self.weights, json.dumps(self.backbone_options, sort_keys=True), self.index_dir,
                self.runtime, self.precision, self.device, self.verify_index_weights, self.index_memory_budget_mib,
                self.narrow_k)


PARAMETERS: dict[str, tuple] = parameters_of(NodeConfig)
