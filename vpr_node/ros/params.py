"""Node parameters: declared defaults, descriptions and validation (plain Python, no rclpy)."""
from __future__ import annotations

import dataclasses
import json

from vpr_node.core.backbones import available_backbones
from vpr_node.core.errors import ConfigurationError
from vpr_node.core.runtimes import RUNTIME_NAMES

PARAMETERS = {
    "backbone": ("efficientnet_lite0_netvlad", "registry name of the backbone; a change takes effect at the next activation"),
    "weights": ("", "path of converted backbone weights ('' = the index's corpus-fitted weights, else the packaged default)"),
    "backbone_options": ("{}", "JSON object of backbone options (e.g. {\"descriptor_dim\": 512})"),
    "index_dir": ("", "folder of the FAISS index built by `vpr build-index` for this backbone (required)"),
    "verify_index_weights": (True, "refuse an index whose manifest weights SHA-256 differs from the loaded weights"),
    "top_k": (10, "number of candidates per frame (1..1000)"),
    "image_topic": ("/camera/image_raw", "nav-camera image topic"),
    "compressed": (False, "subscribe to sensor_msgs/CompressedImage instead of sensor_msgs/Image"),
    "result_topic": ("vpr/result", "VprResult output topic"),
    "runtime": ("pytorch", "inference runtime: pytorch | onnxruntime | tensorrt"),
    "precision": ("fp32", "fp32 | fp16"),
    "device": ("cpu", "cpu | cuda | cuda:N"),
    "queue_depth": (1, "frames buffered ahead of the inference thread (newest wins; drops are counted)"),
    "warn_distance": (1.5, "WARN when the top-1 descriptor distance is above this (squared L2 on unit vectors, 0..4)"),
    "recorder_path": ("", "flight-data recorder file ('' = off)"),
    "recorder_max_bytes": (16 << 20, "recorder rotation size in bytes"),
    "diagnostics_period": (1.0, "seconds between /diagnostics messages"),
    "hang_timeout": (10.0, "seconds a frame may stay in flight before it is reported as vpr.backbone_hang"),
}


@dataclasses.dataclass(frozen=True)
class NodeConfig:
    backbone: str
    weights: str
    backbone_options: dict
    index_dir: str
    verify_index_weights: bool
    top_k: int
    image_topic: str
    compressed: bool
    result_topic: str
    runtime: str
    precision: str
    device: str
    queue_depth: int
    warn_distance: float
    recorder_path: str
    recorder_max_bytes: int
    diagnostics_period: float
    hang_timeout: float

    @classmethod
    def from_params(cls, p: dict) -> "NodeConfig":
        def bad(name, why):
            raise ConfigurationError(f"parameter '{name}' = {p.get(name)!r}: {why}", parameter=name)

        if p["backbone"] not in available_backbones():
            bad("backbone", f"unknown backbone; choose one of {', '.join(available_backbones())}")
        try:
            opts = json.loads(p["backbone_options"] or "{}")
            if not isinstance(opts, dict):
                raise ValueError
        except ValueError:
            bad("backbone_options", "must be a JSON object, e.g. '{\"descriptor_dim\": 512}'")
        if not p["index_dir"]:
            bad("index_dir", "is required: build an index with `vpr build-index` and set index_dir to its folder")
        if not 1 <= int(p["top_k"]) <= 1000:
            bad("top_k", "must be between 1 and 1000")
        if p["runtime"] not in RUNTIME_NAMES:
            bad("runtime", f"choose one of {', '.join(RUNTIME_NAMES)}")
        if p["precision"] not in ("fp32", "fp16"):
            bad("precision", "choose fp32 or fp16")
        if not (p["device"] == "cpu" or str(p["device"]).startswith("cuda")):
            bad("device", "choose cpu, cuda or cuda:N")
        if not 1 <= int(p["queue_depth"]) <= 100:
            bad("queue_depth", "must be between 1 and 100")
        if not 0.0 <= float(p["warn_distance"]) <= 4.0:
            bad("warn_distance", "must be in [0, 4] (squared L2 between unit vectors)")
        if not p["image_topic"]:
            bad("image_topic", "must not be empty")
        if float(p["diagnostics_period"]) <= 0:
            bad("diagnostics_period", "must be > 0")
        if float(p["hang_timeout"]) <= 0:
            bad("hang_timeout", "must be > 0")
        return cls(backbone=p["backbone"], weights=p["weights"], backbone_options=opts, index_dir=p["index_dir"],
                   verify_index_weights=bool(p["verify_index_weights"]), top_k=int(p["top_k"]),
                   image_topic=p["image_topic"], compressed=bool(p["compressed"]), result_topic=p["result_topic"],
                   runtime=p["runtime"], precision=p["precision"], device=p["device"], queue_depth=int(p["queue_depth"]),
                   warn_distance=float(p["warn_distance"]), recorder_path=p["recorder_path"],
                   recorder_max_bytes=int(p["recorder_max_bytes"]), diagnostics_period=float(p["diagnostics_period"]),
                   hang_timeout=float(p["hang_timeout"]))

    def model_key(self) -> tuple:
        """What requires a reload when it changes between configure and activate."""
        return (self.backbone, self.weights, json.dumps(self.backbone_options, sort_keys=True), self.index_dir,
                self.runtime, self.precision, self.device, self.verify_index_weights)
