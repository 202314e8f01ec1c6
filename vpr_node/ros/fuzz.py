"""Input messages for the soak run, good and fuzzed: camera frames (short data, unknown encoding, zero size,
impossible step, garbage JPEG) and the three prior topics (heading as sensor_msgs/Imu, altitude as
sensor_msgs/Range, position as sensor_msgs/NavSatFix), each with the implausible values the node must refuse
(non-finite or non-unit quaternions, ranges outside REP 117 limits or the flight envelope, NavSatFix without a
fix or with a covariance that is not PSD, stamps from the future). One random stream decides what is fuzzed."""
from __future__ import annotations

import math
import random

from sensor_msgs.msg import CompressedImage, Image, Imu, NavSatFix, NavSatStatus, Range

from vpr_node.core.maps.geo import metres_per_degree
from vpr_node.ros.conversions import ns_to_time

FRAME_FUZZ = ("short_data", "unknown_encoding", "zero_size", "bad_step")
HEADING_FUZZ = ("nan_quaternion", "zero_quaternion", "non_unit_quaternion", "future_stamp")
ALTITUDE_FUZZ = ("nan_range", "inf_range", "huge_range_no_max", "below_min_range", "negative_range", "future_stamp")
POSITION_FUZZ = ("no_fix", "nan_latitude", "latitude_out_of_range", "non_psd_covariance", "future_stamp")
FUTURE_S = 10.0  # seconds ahead of the clock: beyond any sensible future tolerance


def _header(msg, stamp_ns: int, frame_id: str):
    msg.header.stamp = ns_to_time(stamp_ns)
    msg.header.frame_id = frame_id
    return msg


def corrupt_frame(rng: random.Random, stamp_ns: int, compressed: bool):
    """A malformed camera frame and what is wrong with it."""
    if compressed:
        m = CompressedImage()
        m.format = "jpeg"
        m.data = bytes([0xFF, 0xD8, 0xFF]) + rng.randbytes(rng.randint(0, 4000))  # truncated / garbage JPEG
        return _header(m, stamp_ns, "nav_camera"), "garbage_jpeg"
    m = Image()
    kind = rng.choice(FRAME_FUZZ)
    m.height, m.width, m.encoding, m.step = 480, 640, "rgb8", 1920
    if kind == "short_data":
        m.data = rng.randbytes(1000)
    elif kind == "unknown_encoding":
        m.encoding, m.data = "bogus16", rng.randbytes(480 * 1920)
    elif kind == "zero_size":
        m.height = m.width = m.step = 0
        m.data = b""
    else:
        m.step, m.data = 100, rng.randbytes(480 * 100)
    return _header(m, stamp_ns, "nav_camera"), kind


def heading_msg(heading_deg: float, stamp_ns: int, fuzz: str | None = None) -> Imu:
    """Imu whose orientation (ENU, REP 103) has this heading (degrees clockwise from north)."""
    m = _header(Imu(), stamp_ns + (int(FUTURE_S * 1e9) if fuzz == "future_stamp" else 0), "base_link")
    yaw = math.radians(90.0 - heading_deg)
    q = m.orientation
    q.x, q.y, q.z, q.w = 0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)
    if fuzz == "nan_quaternion":
        q.z = math.nan
    elif fuzz == "zero_quaternion":
        q.z = q.w = 0.0
    elif fuzz == "non_unit_quaternion":
        q.z, q.w = 2.0 * q.z, 2.0 * q.w
    return m


def altitude_msg(agl_m: float, stamp_ns: int, fuzz: str | None = None) -> Range:
    """Downward rangefinder reading (REP 117 limits 0.2-500 m), or one of the implausible ones."""
    m = _header(Range(), stamp_ns + (int(FUTURE_S * 1e9) if fuzz == "future_stamp" else 0), "rangefinder")
    m.radiation_type, m.field_of_view = Range.INFRARED, 0.05
    m.min_range, m.max_range, m.range = 0.2, 500.0, float(agl_m)
    if fuzz == "nan_range":
        m.range = math.nan
    elif fuzz == "inf_range":
        m.range = math.inf
    elif fuzz == "huge_range_no_max":
        m.max_range, m.range = 0.0, 1e9  # no limit set: the node's own flight envelope applies
    elif fuzz == "below_min_range":
        m.range = 0.1
    elif fuzz == "negative_range":
        m.range = -5.0
    return m


def position_msg(lat: float, lon: float, sigma_m: float, stamp_ns: int, fuzz: str | None = None,
                 rng: random.Random | None = None) -> NavSatFix:
    """A GNSS-like position prior `sigma_m` off the truth (drawn from rng), or one of the implausible ones."""
    m = _header(NavSatFix(), stamp_ns + (int(FUTURE_S * 1e9) if fuzz == "future_stamp" else 0), "gps")
    if rng is not None:
        m_lat, m_lon = metres_per_degree(lat)
        lat, lon = lat + rng.gauss(0.0, sigma_m) / m_lat, lon + rng.gauss(0.0, sigma_m) / m_lon
    m.status.status, m.status.service = NavSatStatus.STATUS_FIX, NavSatStatus.SERVICE_GPS
    m.latitude, m.longitude, m.altitude = lat, lon, math.nan
    m.position_covariance = [sigma_m ** 2, 0.0, 0.0, 0.0, sigma_m ** 2, 0.0, 0.0, 0.0, 100.0]
    m.position_covariance_type = NavSatFix.COVARIANCE_TYPE_DIAGONAL_KNOWN
    if fuzz == "no_fix":
        m.status.status = NavSatStatus.STATUS_NO_FIX
    elif fuzz == "nan_latitude":
        m.latitude = math.nan
    elif fuzz == "latitude_out_of_range":
        m.latitude = 123.0
    elif fuzz == "non_psd_covariance":
        m.position_covariance = [-sigma_m ** 2, 0.0, 0.0, 0.0, sigma_m ** 2, 0.0, 0.0, 0.0, 100.0]
    return m
