"""Parameters of the vpr_verifier node, declared once: the verifier's own settings (core VerifyConfig: features,
K, N, thresholds) plus the node's topics, frames and timing. Plain Python, no rclpy."""
from __future__ import annotations

import dataclasses
import math

from vpr_node.core.options import option
from vpr_node.core.verification.verifier import VerifyConfig
from vpr_node.ros.params import _between, _positive, config_from_params, core_part, parameters_of


def _required(v):
    return None if v else ("is required: the index folder the vpr_node uses (its tiles/ and verification.json; "
                           "`vpr prepare-mission` writes both)")


@dataclasses.dataclass
class VerifierNodeConfig(VerifyConfig):
    autostart: bool = option(False, "configure and activate at start (`ros2 launch ... auto_start:=true` sets it; a "
                                    "respawned node starts itself again)")
    index_dir: str = option("", "the index folder vpr_node retrieves from (its tile images and calibration)",
                            check=_required)
    require_calibration: bool = option(True, "refuse to configure without the index's verifier calibration (without "
                                             "one no fix is ever accepted)")
    image_topic: str = option("/camera/image_raw", "nav-camera image topic (the frames vpr_node embedded)")
    compressed: bool = option(False, "subscribe to sensor_msgs/CompressedImage instead of sensor_msgs/Image")
    result_topic: str = option("vpr/result", "VprResult input topic")
    verification_topic: str = option("vpr/verification", "VprVerification output topic (every verified frame)")
    fix_topic: str = option("vpr/fix", "sensor_msgs/NavSatFix of each accepted fix")
    pose_topic: str = option("vpr/pose", "geometry_msgs/PoseWithCovarianceStamped of each accepted fix, local ENU")
    debug_image_topic: str = option("vpr/verification_image", "the frame beside its verified tile with the inlier "
                                                              "matches (drawn only while someone subscribes)")
    map_frame: str = option("map", "frame_id of the pose (REP 105: ENU, origin at origin_lat/origin_lon)")
    origin_lat: float = option(math.nan, "latitude of the pose frame's origin (NaN = the centre of the index's map)")
    origin_lon: float = option(math.nan, "longitude of the pose frame's origin (NaN = the centre of the index's map)")
    camera_info_file: str = option("", "nav camera intrinsics (sensor_msgs/CameraInfo YAML): with VprResult's altitude "
                                       "prior it gives the frame's ground footprint, which a learned matcher resamples "
                                       "the frame by (else the candidate tile's ground size)")
    camera_yaw_offset_deg: float = option(0.0, "camera mounting: image 'up' points this many degrees clockwise of the "
                                               "body heading (the pose carries the body's yaw)")
    match_timeout: float = option(1.0, "seconds a frame (or a result) waits for its other half before it is reported "
                                       "unmatched", check=_positive)
    max_pending: int = option(64, "frames (and results) waiting for their other half at most; older ones are "
                                  "reported unmatched", check=_between(1, 10000))
    queue_depth: int = option(1, "verified-pairs queue ahead of the verification thread (newest wins; drops counted)",
                              check=_between(1, 100))
    recorder_path: str = option("", "flight-data recorder file ('' = off)")
    recorder_max_bytes: int = option(16 << 20, "recorder rotation size in bytes", check=_positive)
    diagnostics_period: float = option(1.0, "seconds between /diagnostics messages", check=_positive)

    @classmethod
    def from_params(cls, values: dict) -> "VerifierNodeConfig":
        return config_from_params(cls, values)

    def verify_config(self) -> VerifyConfig:
        return core_part(self, VerifyConfig)


PARAMETERS: dict[str, tuple] = parameters_of(VerifierNodeConfig)
