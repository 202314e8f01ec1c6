"""Prior messages -> samples (heading, altitude above ground, position) for the PriorBuffer.

Plain attribute access: the same code reads rclpy messages (the node) and rosbags-deserialised ones
(offline replay). The ROS layer maps the type names below to message classes (ros/prior_inputs.py).

Heading: sensor_msgs/Imu, nav_msgs/Odometry, geometry_msgs/PoseStamped or QuaternionStamped; the
orientation's yaw is read in the frame's convention (ENU per REP 103, or NED) and becomes the body heading
clockwise from north. Altitude: sensor_msgs/Range (range = height above ground for a down-looking
rangefinder), nav_msgs/Odometry z, or sensor_msgs/NavSatFix altitude, minus `ground_elevation_m` for the
latter two. Position: sensor_msgs/NavSatFix (lat/lon, ENU position covariance), or
geometry_msgs/PoseWithCovarianceStamped / nav_msgs/Odometry in a local ENU frame whose origin is
(origin_lat, origin_lon).

Plausibility gates (each a VprPriorError with a `reason`; the node records it and serves the frame without that
prior): a non-finite or zero-norm quaternion, or one whose norm is far from 1; a range reading below its
`min_range`, above a set `max_range`, or any altitude outside the flight envelope [altitude_min_m,
altitude_max_m]; a NavSatFix without a fix (STATUS_NO_FIX); a covariance that is not finite, symmetric and
positive semi-definite; a position off the globe; a sample stamped further ahead of the node's clock than
`future_tolerance_s`.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

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


NAVSAT_NO_FIX = -1  # sensor_msgs/NavSatStatus.STATUS_NO_FIX; STATUS_UNKNOWN (-2, the default since Kilted) is
# accepted: VIO and simulator bridges leave the status unset


def _psd(cov: np.ndarray, what: str, prior: str) -> None:
    """A covariance must be finite, symmetric and positive semi-definite (within float noise)."""
    if not np.all(np.isfinite(cov)):
        raise VprPriorError(f"{what} covariance has non-finite entries", prior=prior, reason="covariance_not_finite")
    if not np.allclose(cov, cov.T, atol=1e-6 * max(1.0, float(np.abs(cov).max()))):
        raise VprPriorError(f"{what} covariance is not symmetric", prior=prior, reason="covariance_not_symmetric")
    if np.linalg.eigvalsh(cov).min() < -1e-9 * max(1.0, float(np.abs(cov).max())):
        raise VprPriorError(f"{what} covariance is not positive semi-definite", prior=prior,
                            reason="covariance_not_psd")


@dataclasses.dataclass(frozen=True)
class PriorInputs:
    """How the node reads its prior topics, and what it refuses as implausible: each refusal is a VprPriorError with a
    `reason` (the frame is then served without that prior)."""

    heading_type: str = "imu"
    heading_frame: str = "enu"
    altitude_type: str = "range"
    ground_elevation_m: float = 0.0
    position_type: str = "navsatfix"
    origin_lat: float = 0.0
    origin_lon: float = 0.0
    default_sigma_m: float = 100.0  # for a NavSatFix without covariance
    altitude_min_m: float = 1.0  # the flight envelope above ground: any altitude outside it is refused
    altitude_max_m: float = 1000.0
    quaternion_norm_tolerance: float = 0.05  # |norm - 1| beyond this: not an orientation
    future_tolerance_s: float = 0.5  # a sample stamped this far ahead of the node's clock is refused

    def type_name(self, kind: str) -> str:
        return {HEADING: self.heading_type, ALTITUDE: self.altitude_type, POSITION: self.position_type}[kind]

    def _stamp(self, msg, now_ns: int | None, prior: str) -> int:
        stamp = stamp_to_ns(msg.header.stamp)
        if now_ns is not None and stamp - now_ns > self.future_tolerance_s * 1e9:
            raise VprPriorError(f"{prior} sample stamped {(stamp - now_ns) / 1e9:.2f} s in the future (tolerance "
                                f"{self.future_tolerance_s:g} s)", prior=prior, reason="future_stamp")
        return stamp

    def heading(self, msg, now_ns: int | None = None) -> tuple[int, float]:
        if self.heading_type == "imu":
            q = msg.orientation
        elif self.heading_type == "odometry":
            q = msg.pose.pose.orientation
        elif self.heading_type == "pose":
            q = msg.pose.orientation
        else:
            q = msg.quaternion
        stamp = self._stamp(msg, now_ns, HEADING)
        with np.errstate(over="ignore", invalid="ignore"):
            n = float(np.linalg.norm(np.array([q.x, q.y, q.z, q.w], np.float64)))
        if math.isfinite(n) and abs(n - 1.0) > self.quaternion_norm_tolerance:
            raise VprPriorError(f"orientation quaternion has norm {n:.4f}, not 1 (tolerance "
                                f"{self.quaternion_norm_tolerance:g}): not an orientation", prior=HEADING,
                                reason="quaternion_not_unit")
        return stamp, heading_from_yaw(yaw_from_quaternion(q.x, q.y, q.z, q.w), self.heading_frame)

    def altitude(self, msg, now_ns: int | None = None) -> tuple[int, float]:
        stamp = self._stamp(msg, now_ns, ALTITUDE)
        if self.altitude_type == "range":
            r, lo, hi = float(msg.range), float(msg.min_range), float(msg.max_range)
            if not math.isfinite(r) or r <= 0:
                raise VprPriorError(f"rangefinder reading {r} m is invalid", prior=ALTITUDE, reason="range_invalid")
            if lo > 0 and r < lo:  # REP 117: below min_range the reading is not a distance
                raise VprPriorError(f"rangefinder reading {r} m is below its min_range {lo} m", prior=ALTITUDE,
                                    reason="below_min_range")
            if hi > 0 and r > hi:
                raise VprPriorError(f"rangefinder reading {r} m is above its max_range {hi} m", prior=ALTITUDE,
                                    reason="above_max_range")
            agl = r
        elif self.altitude_type == "odometry":
            agl = float(msg.pose.pose.position.z) - self.ground_elevation_m
        else:
            if int(msg.status.status) == NAVSAT_NO_FIX:
                raise VprPriorError("NavSatFix has no fix (status NO_FIX)", prior=ALTITUDE, reason="no_fix")
            agl = float(msg.altitude) - self.ground_elevation_m
        if not math.isfinite(agl):
            raise VprPriorError(f"altitude above ground {agl} m is invalid", prior=ALTITUDE, reason="not_finite")
        if not self.altitude_min_m <= agl <= self.altitude_max_m:
            raise VprPriorError(f"altitude above ground {agl:g} m is outside the flight envelope "
                                f"[{self.altitude_min_m:g}, {self.altitude_max_m:g}] m", prior=ALTITUDE,
                                reason="outside_envelope")
        return stamp, agl

    def position(self, msg, now_ns: int | None = None) -> tuple[int, float, float, float]:
        stamp = self._stamp(msg, now_ns, POSITION)
        if self.position_type == "navsatfix":
            if int(msg.status.status) == NAVSAT_NO_FIX:
                raise VprPriorError("NavSatFix has no fix (status NO_FIX)", prior=POSITION, reason="no_fix")
            lat, lon = float(msg.latitude), float(msg.longitude)
            if msg.position_covariance_type > 0:
                cov = np.asarray(msg.position_covariance, np.float64).reshape(3, 3)
                _psd(cov, "NavSatFix position", POSITION)
                sigma = math.sqrt(max(cov[0, 0], cov[1, 1], 0.0))
            else:
                sigma = self.default_sigma_m
        else:
            pose = msg.pose  # PoseWithCovariance (both PoseWithCovarianceStamped and Odometry)
            x, y = float(pose.pose.position.x), float(pose.pose.position.y)
            m_lat, m_lon = metres_per_degree(self.origin_lat)
            lat, lon = self.origin_lat + y / m_lat, self.origin_lon + x / m_lon
            cov = np.asarray(pose.covariance, np.float64).reshape(6, 6)
            _psd(cov[:2, :2], "pose position", POSITION)
            sigma = math.sqrt(max(cov[0, 0], cov[1, 1], 0.0))
        if not all(math.isfinite(v) for v in (lat, lon, sigma)) or abs(lat) > 90 or abs(lon) > 180:
            raise VprPriorError(f"position prior ({lat}, {lon}, sigma {sigma}) is invalid", prior=POSITION,
                                reason="out_of_range")
        return stamp, lat, lon, sigma
