"""Prior messages -> samples (heading, altitude above ground, position) for the PriorBuffer.

Plain attribute access: the same code reads rclpy messages (the node) and rosbags-deserialised ones
(offline replay). The ROS layer maps the type names below to message classes (ros/prior_inputs.py).

Heading: sensor_msgs/Imu, nav_msgs/Odometry, geometry_msgs/PoseStamped or QuaternionStamped; the
orientation's yaw is read in the frame's convention (ENU per REP 103, or NED) and becomes the body heading
clockwise from north. Altitude: sensor_msgs/Range (range = height above ground for a down-looking
rangefinder), nav_msgs/Odometry z, or sensor_msgs/NavSatFix altitude, minus `ground_elevation_m` for the
latter two. Position: sensor_msgs/NavSatFix (lat/lon, ENU position covariance), or
geometry_msgs/PoseWithCovarianceStamped / nav_msgs/Odometry in a local ENU frame whose origin is
(origin_lat, origin_lon). A malformed message raises VprPriorError (the node records it and serves the
frame without that prior).
"""
from __future__ import annotations

import dataclasses
import math

from vpr_node.core.errors import VprPriorError
from vpr_node.core.maps.geo import metres_per_degree
from vpr_node.core.priors.samples import ALTITUDE, HEADING, POSITION, heading_from_yaw, yaw_from_quaternion
from vpr_node.core.types import stamp_to_ns

# prior kind -> {type name (node parameter value): ROS message type}
MESSAGE_TYPES = {
    HEADING: {
        "imu": "sensor_msgs/msg/Imu",
        "odometry": "nav_msgs/msg/Odometry",
        "pose": "geometry_msgs/msg/PoseStamped",
        "quaternion": "geometry_msgs/msg/QuaternionStamped",
    },
    ALTITUDE: {
        "range": "sensor_msgs/msg/Range",
        "odometry": "nav_msgs/msg/Odometry",
        "navsatfix": "sensor_msgs/msg/NavSatFix",
    },
    POSITION: {
        "navsatfix": "sensor_msgs/msg/NavSatFix",
        "pose_cov": "geometry_msgs/msg/PoseWithCovarianceStamped",
        "odometry": "nav_msgs/msg/Odometry",
    },
}


@dataclasses.dataclass(frozen=True)
class PriorInputs:
    heading_type: str = "imu"
    heading_frame: str = "enu"
    altitude_type: str = "range"
    ground_elevation_m: float = 0.0
    position_type: str = "navsatfix"
    origin_lat: float = 0.0
    origin_lon: float = 0.0
    default_sigma_m: float = 100.0  # for a NavSatFix without covariance

    def type_name(self, kind: str) -> str:
        return {HEADING: self.heading_type, ALTITUDE: self.altitude_type, POSITION: self.position_type}[kind]

    def heading(self, msg) -> tuple[int, float]:
        if self.heading_type == "imu":
            q = msg.orientation
        elif self.heading_type == "odometry":
            q = msg.pose.pose.orientation
        elif self.heading_type == "pose":
            q = msg.pose.orientation
        else:
            q = msg.quaternion
        return stamp_to_ns(msg.header.stamp), heading_from_yaw(yaw_from_quaternion(q.x, q.y, q.z, q.w),
                                                               self.heading_frame)

    def altitude(self, msg) -> tuple[int, float]:
        if self.altitude_type == "range":
            r = float(msg.range)
            if not math.isfinite(r) or r <= 0 or (msg.max_range > 0 and r > msg.max_range):
                raise VprPriorError(f"rangefinder reading {r} m is invalid (range [{msg.min_range}, {msg.max_range}])",
                                    prior=ALTITUDE)
            agl = r
        elif self.altitude_type == "odometry":
            agl = float(msg.pose.pose.position.z) - self.ground_elevation_m
        else:
            agl = float(msg.altitude) - self.ground_elevation_m
        if not math.isfinite(agl) or agl <= 0:
            raise VprPriorError(f"altitude above ground {agl} m is invalid", prior=ALTITUDE)
        return stamp_to_ns(msg.header.stamp), agl

    def position(self, msg) -> tuple[int, float, float, float]:
        if self.position_type == "navsatfix":
            lat, lon = float(msg.latitude), float(msg.longitude)
            cov = list(msg.position_covariance)
            sigma = math.sqrt(max(cov[0], cov[4])) if msg.position_covariance_type > 0 else self.default_sigma_m
        else:
            pose = msg.pose  # PoseWithCovariance (both PoseWithCovarianceStamped and Odometry)
            x, y = float(pose.pose.position.x), float(pose.pose.position.y)
            m_lat, m_lon = metres_per_degree(self.origin_lat)
            lat, lon = self.origin_lat + y / m_lat, self.origin_lon + x / m_lon
            sigma = math.sqrt(max(pose.covariance[0], pose.covariance[7]))
        if not all(math.isfinite(v) for v in (lat, lon, sigma)) or abs(lat) > 90 or abs(lon) > 180:
            raise VprPriorError(f"position prior ({lat}, {lon}, sigma {sigma}) is invalid", prior=POSITION)
        return stamp_to_ns(msg.header.stamp), lat, lon, sigma
