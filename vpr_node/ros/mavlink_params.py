"""Parameters of the vpr_mavlink node, declared once: the autopilot output's own settings (core AutopilotConfig:
autopilot, connection, ids, gates, origin) plus the node's topics and timing. Plain Python, no rclpy."""
from __future__ import annotations

import dataclasses

from vpr_node.core.autopilot.output import AutopilotConfig
from vpr_node.core.options import option
from vpr_node.ros.params import _positive, config_from_params, core_part, parameters_of


@dataclasses.dataclass
class MavlinkNodeConfig(AutopilotConfig):
    autostart: bool = option(False, "configure and activate at start (`ros2 launch ... auto_start:=true` sets it)")
    verification_topic: str = option("vpr/verification", "VprVerification input (vpr_verifier's): accepted fixes are "
                                                         "sent")
    mavros_topic: str = option("vpr/mavros/vision_pose", "geometry_msgs/PoseWithCovarianceStamped of each fix sent, "
                                                         "ENU about the EKF origin (remap to /mavros/vision_pose/"
                                                         "pose_cov for mavros; '' = off)")
    mavros_frame_id: str = option("map", "frame_id of the mavros pose (mavros' local ENU frame)")
    recorder_path: str = option("", "flight-data recorder file ('' = off)")
    recorder_max_bytes: int = option(16 << 20, "recorder rotation size in bytes", check=_positive)
    diagnostics_period: float = option(1.0, "seconds between /diagnostics messages", check=_positive)

    @classmethod
    def from_params(cls, values: dict) -> "MavlinkNodeConfig":
        return config_from_params(cls, values)

    def output_config(self) -> AutopilotConfig:
        return core_part(self, AutopilotConfig)


PARAMETERS: dict[str, tuple] = parameters_of(MavlinkNodeConfig)
