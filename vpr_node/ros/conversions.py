"""Conversions between ROS messages and the core's domain objects (no logic beyond field mapping)."""
from __future__ import annotations

import math

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseWithCovarianceStamped
from sensor_msgs.msg import NavSatFix, NavSatStatus

from vpr_node.core.io import image_codec
from vpr_node.core.maps.geo import metres_per_degree
from vpr_node.core.types import Candidate, TileId, VprResult, candidate_fields, result_fields, stamp_to_ns
from vpr_node.core.verification.result import Verification
from vpr_node.msg import VerifiedCandidate as VerifiedCandidateMsg
from vpr_node.msg import VprCandidate
from vpr_node.msg import VprResult as VprResultMsg
from vpr_node.msg import VprVerification as VprVerificationMsg

time_to_ns = stamp_to_ns


def ns_to_time(ns: int) -> Time:
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def image_decoder(msg):
    """A zero-argument callable decoding sensor_msgs/Image (run on the inference thread)."""
    return lambda: image_codec.decode_raw(
        msg.encoding, msg.width, msg.height, msg.step, msg.data, bool(msg.is_bigendian)
    )


def compressed_decoder(msg):
    return lambda: image_codec.decode_compressed(msg.format, msg.data)


def result_to_msg(result: VprResult, index_id: str = "") -> VprResultMsg:
    out = VprResultMsg()
    out.header.stamp = ns_to_time(result.stamp_ns)
    out.header.frame_id = result.frame_id
    out.retrieved_at = ns_to_time(result.retrieved_at_ns)
    for name, value in result_fields(result, index_id).items():
        setattr(out, name, value)
    out.candidates = [VprCandidate(**candidate_fields(c)) for c in result.candidates]
    return out


def candidates_from_msg(msg) -> list[Candidate]:
    """A VprResult message's candidates as core Candidates (what the verifier checks)."""
    return [Candidate(int(c.rank), TileId(int(c.zoom), float(c.latitude), float(c.longitude), c.tile_id),
                      float(c.distance), int(c.descriptor_dim), msg.backbone_label) for c in msg.candidates]


def verification_to_msg(v: Verification, result_msg, top_n: int) -> VprVerificationMsg:
    out = VprVerificationMsg()
    out.header = result_msg.header
    out.result = result_msg
    out.candidates = [VerifiedCandidateMsg(
        retrieval_rank=c.retrieval_rank, tile_id=c.tile_id, latitude=c.lat, longitude=c.lon, distance=c.distance,
        matches=c.matches, inliers=c.inliers, inlier_ratio=float(c.inlier_ratio),
        reprojection_error_px=float(c.reprojection_px), fix_latitude=float(c.fix_lat), fix_longitude=float(c.fix_lon),
        reason=c.reason) for c in v.top(top_n)]
    out.agree = int(v.agree)
    out.reason = v.reason
    f = v.fix
    out.fix_valid, out.accepted = f is not None, v.accepted
    nan = float("nan")
    out.latitude, out.longitude = (f.lat, f.lon) if f else (nan, nan)
    out.heading_deg, out.heading_sigma_deg = (f.heading_deg, f.heading_sigma_deg) if f else (nan, nan)
    out.position_covariance = [float(x) for x in (np.asarray(f.cov_en).ravel() if f else [nan] * 4)]
    out.confidence = float(f.confidence) if f else nan
    out.verify_latency_ms = float(v.latency_ms)
    return out


UNKNOWN_VARIANCE = 1e6  # m^2 or rad^2: what a vision fix does not observe (altitude, roll, pitch)


def fix_to_navsatfix(v: Verification, header) -> NavSatFix:
    """An accepted fix as sensor_msgs/NavSatFix: latitude/longitude, altitude unknown (NaN), the east/north
    covariance (ENU, m^2; the altitude's variance UNKNOWN_VARIANCE), COVARIANCE_TYPE_KNOWN."""
    f = v.fix
    out = NavSatFix()
    out.header = header
    out.status.status = NavSatStatus.STATUS_FIX
    out.status.service = 0
    out.latitude, out.longitude, out.altitude = f.lat, f.lon, float("nan")
    c = np.asarray(f.cov_en)
    out.position_covariance = [float(c[0, 0]), float(c[0, 1]), 0.0, float(c[1, 0]), float(c[1, 1]), 0.0, 0.0, 0.0,
                               UNKNOWN_VARIANCE]
    out.position_covariance_type = NavSatFix.COVARIANCE_TYPE_KNOWN
    return out


def fix_to_pose(v: Verification, header, frame_id: str, origin_lat: float, origin_lon: float,
                camera_yaw_offset_deg: float = 0.0) -> PoseWithCovarianceStamped:
    """An accepted fix as geometry_msgs/PoseWithCovarianceStamped in a local ENU frame (REP 103/105: x east, y north,
    z up) whose origin is (origin_lat, origin_lon): position from the fix, yaw from the heading (ENU yaw is
    counter-clockwise from east); z, roll and pitch unobserved (UNKNOWN_VARIANCE)."""
    f = v.fix
    m_lat, m_lon = metres_per_degree(origin_lat)
    out = PoseWithCovarianceStamped()
    out.header.stamp, out.header.frame_id = header.stamp, frame_id
    out.pose.pose.position.x = (f.lon - origin_lon) * m_lon
    out.pose.pose.position.y = (f.lat - origin_lat) * m_lat
    yaw = math.radians(90.0 - (f.heading_deg - camera_yaw_offset_deg))
    out.pose.pose.orientation.z, out.pose.pose.orientation.w = math.sin(yaw / 2), math.cos(yaw / 2)
    c = np.asarray(f.cov_en)
    cov = np.diag([0.0, 0.0, UNKNOWN_VARIANCE, UNKNOWN_VARIANCE, UNKNOWN_VARIANCE,
                   math.radians(f.heading_sigma_deg) ** 2 if math.isfinite(f.heading_sigma_deg) else UNKNOWN_VARIANCE])
    cov[:2, :2] = c
    out.pose.covariance = [float(x) for x in cov.ravel()]
    return out
