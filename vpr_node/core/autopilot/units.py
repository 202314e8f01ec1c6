"""Units and frames, converted in one place (the commonest autopilot-integration bugs are here: ROS covariances are
variances in m^2, MAVLink accuracies are 1-sigma metres; ROS is ENU, MAVLink local frames NED; MAVLink positions
are integers of 1e-7 degrees and altitudes of millimetres)."""
from __future__ import annotations

import math

import numpy as np

from vpr_node.core.maps.geo import metres_per_degree

UNOBSERVED_VAR = 1e6  # m^2 or rad^2: what a map fix does not observe (altitude, roll, pitch)


def deg_e7(deg: float) -> int:
    """Degrees -> MAVLink int32 1e-7 degrees (rounded, not truncated: truncation biases every fix south-west)."""
    return int(round(float(deg) * 1e7))


def mm(metres: float) -> int:
    return int(round(float(metres) * 1000.0))


def horizontal_sigma_m(cov_en) -> float:
    """MAVLink `eph`: the 1-sigma horizontal error (m) from an east/north covariance (m^2): the square root of its
    largest eigenvalue (the error along the worst direction, so the autopilot never over-trusts a fix). ValueError
    for a covariance that is not finite, symmetric and positive definite."""
    c = np.asarray(cov_en, np.float64)
    if c.shape != (2, 2) or not np.all(np.isfinite(c)):
        raise ValueError("covariance is not a finite 2x2 matrix")
    if abs(c[0, 1] - c[1, 0]) > 1e-6 * max(1.0, abs(c).max()):
        raise ValueError("covariance is not symmetric")
    w = np.linalg.eigvalsh(c)
    if w.min() <= 0:
        raise ValueError("covariance is not positive definite")
    return float(math.sqrt(w.max()))


def enu_to_ned(east: float, north: float, up: float = 0.0) -> tuple[float, float, float]:
    return float(north), float(east), -float(up)


def cov_en_to_ne(cov_en) -> np.ndarray:
    """East/north covariance -> north/east (NED's first two axes)."""
    c = np.asarray(cov_en, np.float64)
    return np.array([[c[1, 1], c[1, 0]], [c[0, 1], c[0, 0]]])


def local_offset_m(lat: float, lon: float, origin_lat: float, origin_lon: float) -> tuple[float, float]:
    """(north, east) metres of a position from an origin (equirectangular about the origin: centimetre-exact over a
    mission's tens of kilometres, what an autopilot's own local frame does)."""
    m_lat, m_lon = metres_per_degree(origin_lat)
    return (float(lat) - origin_lat) * m_lat, (float(lon) - origin_lon) * m_lon


def yaw_quaternion_ned(heading_deg: float) -> list[float]:
    """[w, x, y, z] of a yaw `heading_deg` clockwise from north (NED, roll = pitch = 0): MAVLink ODOMETRY's q."""
    a = math.radians(heading_deg) / 2
    return [math.cos(a), 0.0, 0.0, math.sin(a)]


def yaw_quaternion_enu(heading_deg: float) -> tuple[float, float]:
    """(z, w) of the ENU yaw (counter-clockwise from east) of a heading clockwise from north (REP 103)."""
    a = math.radians(90.0 - heading_deg) / 2
    return math.sin(a), math.cos(a)


def quality_percent(confidence: float) -> int:
    """ODOMETRY `quality` (%: 0 = unknown, 1-100) from the fix's calibrated confidence (probability within 25 m)."""
    if not math.isfinite(confidence):
        return 0
    return int(min(100, max(1, round(100.0 * confidence))))


def upper_triangle(cov: np.ndarray) -> list[float]:
    """The 21 values of a 6x6 covariance's upper triangle, row-major (MAVLink ODOMETRY's pose_covariance)."""
    c = np.asarray(cov, np.float64)
    return [float(c[i, j]) for i in range(6) for j in range(i, 6)]


def enu_pose(lat: float, lon: float, heading_deg: float, heading_sigma_deg: float, cov_en, origin_lat: float,
             origin_lon: float, yaw_offset_deg: float = 0.0) -> tuple[float, float, float, float, np.ndarray]:
    """A fix as a ROS pose in local ENU about an origin (REP 103/105): (x east, y north, quaternion z, w of the body's
    yaw, 6x6 covariance in m^2 / rad^2 with the unobserved axes UNOBSERVED_VAR)."""
    north, east = local_offset_m(lat, lon, origin_lat, origin_lon)
    qz, qw = yaw_quaternion_enu(heading_deg - yaw_offset_deg)
    cov = np.diag([0.0, 0.0, UNOBSERVED_VAR, UNOBSERVED_VAR, UNOBSERVED_VAR,
                   math.radians(heading_sigma_deg) ** 2 if math.isfinite(heading_sigma_deg) else UNOBSERVED_VAR])
    cov[:2, :2] = np.asarray(cov_en, np.float64)
    return east, north, qz, qw, cov
