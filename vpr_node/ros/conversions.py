"""Conversions between ROS messages and the core's domain objects (no logic beyond field mapping)."""
from __future__ import annotations

import math

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseWithCovarianceStamped
from sensor_msgs.msg import NavSatFix, NavSatStatus

from vpr_node.core.autopilot.fixes import AutopilotFix
from vpr_node.core.autopilot.units import UNOBSERVED_VAR, enu_pose
from vpr_node.core.io import image_codec
from vpr_node.core.types import Candidate, TileId, VprResult, candidate_fields, result_fields, stamp_to_ns
from vpr_node.core.verification.result import FrameHints, Verification
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


def hints_from_msg(msg, camera=None) -> FrameHints:
    """What a VprResult says of its frame that a learned matcher uses: the heading prior, and the footprint from the
    altitude prior where the verifier knows the camera."""
    heading = float(msg.heading_deg) if msg.heading_applied and math.isfinite(msg.heading_deg) else math.nan
    footprint = camera.square_footprint_m(float(msg.altitude_m)) if camera is not None and msg.altitude_applied \
        and math.isfinite(msg.altitude_m) else math.nan
    position = msg.position_applied and math.isfinite(msg.position_latitude)
    return FrameHints(heading_deg=heading, footprint_m=float(footprint),
                      prior_lat=float(msg.position_latitude) if position else math.nan,
                      prior_lon=float(msg.position_longitude) if position else math.nan,
                      prior_sigma_m=float(msg.position_sigma_m) if position else math.nan)


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


UNKNOWN_VARIANCE = UNOBSERVED_VAR


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


def pose_msg(stamp, frame_id: str, lat: float, lon: float, heading_deg: float, heading_sigma_deg: float, cov_en,
             origin_lat: float, origin_lon: float, yaw_offset_deg: float = 0.0) -> PoseWithCovarianceStamped:
    """A fix as geometry_msgs/PoseWithCovarianceStamped in local ENU about (origin_lat, origin_lon) (autopilot/units
    .enu_pose: position, the body's yaw, covariance in m^2 / rad^2, z, roll and pitch unobserved)."""
    x, y, qz, qw, cov = enu_pose(lat, lon, heading_deg, heading_sigma_deg, cov_en, origin_lat, origin_lon,
                                 yaw_offset_deg)
    out = PoseWithCovarianceStamped()
    out.header.stamp, out.header.frame_id = stamp, frame_id
    out.pose.pose.position.x, out.pose.pose.position.y = x, y
    out.pose.pose.orientation.z, out.pose.pose.orientation.w = qz, qw
    out.pose.covariance = [float(c) for c in cov.ravel()]
    return out


def fix_to_pose(v: Verification, header, frame_id: str, origin_lat: float, origin_lon: float,
                camera_yaw_offset_deg: float = 0.0) -> PoseWithCovarianceStamped:
    """An accepted fix as a pose in the local ENU frame whose origin is (origin_lat, origin_lon) (REP 103/105)."""
    f = v.fix
    return pose_msg(header.stamp, frame_id, f.lat, f.lon, f.heading_deg, f.heading_sigma_deg, f.cov_en, origin_lat,
                    origin_lon, camera_yaw_offset_deg)


def autopilot_fix_from_msg(msg) -> AutopilotFix:
    """An accepted VprVerification as what the autopilot output sends (its covariance back to 2x2, m^2)."""
    return AutopilotFix(stamp_to_ns(msg.header.stamp), float(msg.latitude), float(msg.longitude),
                        np.asarray(msg.position_covariance, np.float64).reshape(2, 2), float(msg.heading_deg),
                        float(msg.heading_sigma_deg), float(msg.confidence), frame_id=msg.header.frame_id)
