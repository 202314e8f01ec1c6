"""Conversions between ROS messages and the core's domain objects (no logic beyond field mapping)."""
from __future__ import annotations

from builtin_interfaces.msg import Time

from vpr_node.core import image_codec
from vpr_node.core.types import VprResult
from vpr_node.msg import VprCandidate, VprResult as VprResultMsg


def time_to_ns(t) -> int:
    return int(t.sec) * 1_000_000_000 + int(t.nanosec)


def ns_to_time(ns: int) -> Time:
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def image_decoder(msg):
    """A zero-argument callable decoding sensor_msgs/Image (run on the inference thread)."""
    return lambda: image_codec.decode_raw(msg.encoding, msg.width, msg.height, msg.step, msg.data, bool(msg.is_bigendian))


def compressed_decoder(msg):
    return lambda: image_codec.decode_compressed(msg.format, msg.data)


def result_to_msg(result: VprResult, index_id: str = "") -> VprResultMsg:
    out = VprResultMsg()
    out.header.stamp = ns_to_time(result.stamp_ns)
    out.header.frame_id = result.frame_id
    out.frame_uuid = result.frame_uuid
    out.backbone_label = result.backbone_label
    out.descriptor_dim = int(result.descriptor_dim)
    out.retrieved_at = ns_to_time(result.retrieved_at_ns)
    out.embed_latency_ms = float(result.embed_latency_ms)
    out.search_latency_ms = float(result.search_latency_ms)
    out.frames_dropped = int(result.frames_dropped)
    out.index_id = index_id
    for c in result.candidates:
        m = VprCandidate()
        m.rank = int(c.rank)
        m.tile_id = c.tile.name
        m.zoom = int(c.tile.zoom)
        m.latitude = float(c.tile.lat)
        m.longitude = float(c.tile.lon)
        m.distance = float(c.distance)
        m.descriptor_dim = int(c.descriptor_dim)
        out.candidates.append(m)
    return out
