"""MAVLink messages of an accepted fix, one function each, on a pymavlink `MAVLink` encoder (its dialect: common or
ardupilotmega). Units through units.py only. Golden-byte tests pin their encoding (test_autopilot.py)."""
from __future__ import annotations

import math

import numpy as np

from vpr_node.core.autopilot.fixes import AutopilotFix
from vpr_node.core.autopilot.units import (
    UNOBSERVED_VAR,
    cov_en_to_ne,
    deg_e7,
    horizontal_sigma_m,
    local_offset_m,
    mm,
    quality_percent,
    upper_triangle,
    yaw_quaternion_ned,
)

NAN = float("nan")


def global_position_sensor(mav, fix: AutopilotFix, time_usec: int, processing_us: int, target_system: int,
                           sensor_id: int = 0, primary: bool = False):
    """PX4's auxiliary global position (EKF2_AGP*): lat/lon, eph = the 1-sigma horizontal error (m), altitude and
    epv unknown (NaN: a map fix gives none), source VISION, UNHEALTHY when the verifier reports trouble."""
    m = mav
    flags = (m_flag(mav, "GLOBAL_POSITION_UNHEALTHY") if fix.trouble else 0) | \
        (m_flag(mav, "GLOBAL_POSITION_PRIMARY") if primary else 0)
    return m.global_position_sensor_encode(
        target_system, 0, int(sensor_id), int(time_usec), int(max(0, min(processing_us, 2**32 - 1))),
        m_flag(mav, "GLOBAL_POSITION_SRC_VISION"), flags, deg_e7(fix.lat), deg_e7(fix.lon), NAN, NAN,
        horizontal_sigma_m(fix.cov_en), NAN)


def m_flag(mav, name: str) -> int:
    """An enum value of the encoder's dialect module."""
    import sys
    return int(getattr(sys.modules[type(mav).__module__], name))


def odometry_ned(mav, fix: AutopilotFix, origin: tuple[float, float, float], time_usec: int, reset_counter: int,
                 yaw_offset_deg: float = 0.0, down_m: float = 0.0):
    """ArduPilot's external navigation: ODOMETRY in local NED (MAV_FRAME_LOCAL_FRD) about the EKF origin; yaw from
    the fix's heading less the camera's mounting offset; velocities unknown (NaN: a map fix measures none);
    pose_covariance from the fix (NED m^2, heading rad^2; unobserved axes 1e6); quality = the calibrated confidence
    in percent; reset_counter as given (it grows when a jump was confirmed). `down_m`: NED z, which ArduPilot must
    not fuse (EK3_SRC1_POSZ is the barometer: docs/autopilot.md)."""
    north, east = local_offset_m(fix.lat, fix.lon, origin[0], origin[1])
    heading = (fix.heading_deg - yaw_offset_deg) % 360.0 if math.isfinite(fix.heading_deg) else 0.0
    cov = np.diag([0.0, 0.0, UNOBSERVED_VAR, UNOBSERVED_VAR, UNOBSERVED_VAR,
                   math.radians(fix.heading_sigma_deg) ** 2 if math.isfinite(fix.heading_sigma_deg)
                   else UNOBSERVED_VAR])
    cov[:2, :2] = cov_en_to_ne(fix.cov_en)
    return mav.odometry_encode(
        int(time_usec), m_flag(mav, "MAV_FRAME_LOCAL_FRD"), m_flag(mav, "MAV_FRAME_BODY_FRD"), north, east, down_m,
        yaw_quaternion_ned(heading), NAN, NAN, NAN, NAN, NAN, NAN, upper_triangle(cov), [NAN] + [0.0] * 20,
        int(reset_counter) % 256, m_flag(mav, "MAV_ESTIMATOR_TYPE_VISION"), quality_percent(fix.confidence))


GPS_EPOCH_UNIX_S = 315964800  # 1980-01-06
GPS_LEAP_S = 18  # GPS - UTC since 2017


def gps_input(mav, fix: AutopilotFix, time_usec: int, unix_time_s: float, gps_id: int = 0,
              satellites_visible: int = 0):
    """ArduPilot's GPS_INPUT (GPS_TYPE 14), an explicit opt-in: it makes EKF3 treat the fix as a GNSS. Honest
    fields: horizontal accuracy = the fix's 1-sigma (m), HDOP = that accuracy / 1 m (no satellite geometry exists to
    give another), altitude, velocity and vertical accuracy ignored (flags), and satellites_visible as configured
    (0 by default: there are none; ArduPilot's GPS checks then refuse it until deliberately relaxed)."""
    eph = horizontal_sigma_m(fix.cov_en)
    gps_s = unix_time_s - GPS_EPOCH_UNIX_S + GPS_LEAP_S
    week = int(gps_s // (7 * 86400))
    ignore = 0
    for name in ("GPS_INPUT_IGNORE_FLAG_ALT", "GPS_INPUT_IGNORE_FLAG_VEL_HORIZ", "GPS_INPUT_IGNORE_FLAG_VEL_VERT",
                 "GPS_INPUT_IGNORE_FLAG_SPEED_ACCURACY", "GPS_INPUT_IGNORE_FLAG_VERTICAL_ACCURACY"):
        ignore |= m_flag(mav, name)
    return mav.gps_input_encode(int(time_usec), int(gps_id), ignore, int((gps_s - week * 7 * 86400) * 1000), week,
                                3, deg_e7(fix.lat), deg_e7(fix.lon), 0.0, float(eph), 0.0, 0.0, 0.0, 0.0, 0.0,
                                float(eph), 0.0, int(satellites_visible))


def set_gps_global_origin(mav, target_system: int, lat: float, lon: float, alt_m: float, time_usec: int = 0):
    return mav.set_gps_global_origin_encode(target_system, deg_e7(lat), deg_e7(lon), mm(alt_m), int(time_usec))


def heartbeat(mav):
    """The companion's own HEARTBEAT: an onboard controller, no autopilot of its own, active."""
    return mav.heartbeat_encode(m_flag(mav, "MAV_TYPE_ONBOARD_CONTROLLER"), m_flag(mav, "MAV_AUTOPILOT_INVALID"), 0,
                                0, m_flag(mav, "MAV_STATE_ACTIVE"))
