"""Conversions between ROS messages and the core's domain objects (no logic beyond field mapping)."""
from __future__ import annotations

from builtin_interfaces.msg import Time

from vpr_node.core.io import image_codec
from vpr_node.core.types import VprResult, candidate_fields, result_fields, stamp_to_ns
from vpr_node.msg import VprCandidate
from vpr_node.msg import VprResult as VprResultMsg

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
