"""rosbag2 input/output with the pure-Python `rosbags` library (MCAP and sqlite3), no ROS install needed.

- write_query_bag: synthesised frames as sensor_msgs/Image (+ sensor_msgs/NavSatFix ground truth)
- read_camera_bag: iterate (stamp, frame_id, decode callable, ground-truth fix) from a bag with raw or
  compressed images and, when present, NavSatFix
- ResultBagWriter: write vpr_node/msg/VprResult (type registered from the package's .msg files)
"""
from __future__ import annotations

import bisect
import dataclasses
import pathlib
from typing import Iterator

import numpy as np
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore, get_types_from_msg

from . import image_codec
from .errors import ConfigurationError

MSG_DIR = pathlib.Path(__file__).resolve().parents[2] / "msg"
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
FIX_TYPE = "sensor_msgs/msg/NavSatFix"


def typestore():
    """Kilted typestore with vpr_node's messages registered from msg/*.msg."""
    ts = get_typestore(Stores.ROS2_KILTED)
    msg_dir = MSG_DIR
    if not msg_dir.is_dir():  # installed tree: share/vpr_node/msg
        import os
        for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
            cand = pathlib.Path(prefix) / "share" / "vpr_node" / "msg"
            if cand.is_dir():
                msg_dir = cand
                break
    types = {}
    for name in ("VprCandidate", "VprResult"):
        types.update(get_types_from_msg((msg_dir / f"{name}.msg").read_text(), f"vpr_node/msg/{name}"))
    ts.register(types)
    return ts


def _time(ts, ns: int):
    return ts.types["builtin_interfaces/msg/Time"](sec=int(ns // 10**9), nanosec=int(ns % 10**9))


def _header(ts, ns: int, frame_id: str):
    return ts.types["std_msgs/msg/Header"](stamp=_time(ts, ns), frame_id=frame_id)


def write_query_bag(queries, path, rate_hz: float = 3.0, start_ns: int = 1_700_000_000_000_000_000,
                    storage: str = "mcap", compressed: bool = False, camera_topic: str = "/camera/image_raw",
                    fix_topic: str = "/gps/fix") -> pathlib.Path:
    """Frames at `rate_hz` with NavSatFix ground truth at the same stamps."""
    ts = typestore()
    T = ts.types
    path = pathlib.Path(path)
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as w:
        img_type = IMAGE_TYPES[1] if compressed else IMAGE_TYPES[0]
        cam = w.add_connection(camera_topic, img_type, typestore=ts)
        fix = w.add_connection(fix_topic, FIX_TYPE, typestore=ts)
        for i, q in enumerate(queries):
            ns = start_ns + int(i * 1e9 / rate_hz)
            if compressed:
                msg = T[img_type](header=_header(ts, ns, "nav_camera"), format="jpeg",
                                  data=np.frombuffer(image_codec.encode_jpeg(q.image), np.uint8))
            else:
                data, step = image_codec.encode_raw(q.image, "rgb8")
                msg = T[img_type](header=_header(ts, ns, "nav_camera"), height=q.image.shape[0], width=q.image.shape[1],
                                  encoding="rgb8", is_bigendian=0, step=step, data=np.frombuffer(data, np.uint8))
            w.write(cam, ns, ts.serialize_cdr(msg, img_type))
            status = T["sensor_msgs/msg/NavSatStatus"](status=0, service=1)
            fmsg = T[FIX_TYPE](header=_header(ts, ns, "gps"), status=status, latitude=q.lat, longitude=q.lon, altitude=0.0,
                               position_covariance=np.zeros(9), position_covariance_type=0)
            w.write(fix, ns, ts.serialize_cdr(fmsg, FIX_TYPE))
    return path


@dataclasses.dataclass
class BagFrame:
    stamp_ns: int
    log_ns: int
    frame_id: str
    decode: object
    lat: float | None
    lon: float | None


def read_camera_bag(path, camera_topic: str | None = None, max_fix_gap_s: float = 0.5) -> Iterator[BagFrame]:
    """Camera frames of a bag (first image topic unless named), each with the nearest NavSatFix."""
    ts = typestore()
    with Reader(path) as r:
        cams = [c for c in r.connections if c.msgtype in IMAGE_TYPES and (camera_topic is None or c.topic == camera_topic)]
        if not cams:
            raise ConfigurationError(f"bag {path} has no sensor_msgs Image/CompressedImage topic"
                                     + (f" named {camera_topic}" if camera_topic else ""))
        cam = cams[0]
        fixes = [c for c in r.connections if c.msgtype == FIX_TYPE]
        fix_t, fix_ll = [], []
        for conn, t, raw in r.messages(connections=fixes):
            m = ts.deserialize_cdr(raw, conn.msgtype)
            fix_t.append(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec)
            fix_ll.append((m.latitude, m.longitude))
        order = np.argsort(fix_t)
        fix_t = [fix_t[i] for i in order]
        fix_ll = [fix_ll[i] for i in order]
        for conn, t, raw in r.messages(connections=[cam]):
            m = ts.deserialize_cdr(raw, conn.msgtype)
            stamp = m.header.stamp.sec * 10**9 + m.header.stamp.nanosec
            lat = lon = None
            if fix_t:
                j = bisect.bisect_left(fix_t, stamp)
                best = min((k for k in (j - 1, j) if 0 <= k < len(fix_t)), key=lambda k: abs(fix_t[k] - stamp))
                if abs(fix_t[best] - stamp) <= max_fix_gap_s * 1e9:
                    lat, lon = fix_ll[best]
            if conn.msgtype == IMAGE_TYPES[1]:
                data, fmt = bytes(m.data), m.format
                dec = (lambda d=data, f=fmt: image_codec.decode_compressed(f, d))
            else:
                args = (m.encoding, m.width, m.height, m.step, bytes(m.data), bool(m.is_bigendian))
                dec = (lambda a=args: image_codec.decode_raw(*a))
            yield BagFrame(stamp, t, m.header.frame_id, dec, lat, lon)


class ResultBagWriter:
    """Writes VprResult messages (the node's output type) to a rosbag2."""

    TYPE = "vpr_node/msg/VprResult"

    def __init__(self, path, topic: str = "/vpr/result", storage: str = "mcap"):
        self.ts = typestore()
        self.w = Writer(pathlib.Path(path), version=9,
                        storage_plugin=StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3)
        self.w.open()
        self.conn = self.w.add_connection(topic, self.TYPE, typestore=self.ts)

    def write(self, result, log_ns: int, index_id: str = "") -> None:
        T = self.ts.types
        cands = [T["vpr_node/msg/VprCandidate"](rank=c.rank, tile_id=c.tile.name, zoom=c.tile.zoom, latitude=c.tile.lat,
                                                longitude=c.tile.lon, distance=c.distance, descriptor_dim=c.descriptor_dim)
                 for c in result.candidates]
        msg = T[self.TYPE](header=_header(self.ts, result.stamp_ns, result.frame_id), frame_uuid=result.frame_uuid,
                           backbone_label=result.backbone_label, descriptor_dim=result.descriptor_dim, candidates=cands,
                           retrieved_at=_time(self.ts, result.retrieved_at_ns), embed_latency_ms=result.embed_latency_ms,
                           search_latency_ms=result.search_latency_ms, frames_dropped=result.frames_dropped,
                           index_id=index_id)
        self.w.write(self.conn, log_ns, self.ts.serialize_cdr(msg, self.TYPE))

    def close(self) -> None:
        self.w.close()


def read_results(path) -> list:
    ts = typestore()
    with Reader(path) as r:
        conns = [c for c in r.connections if c.msgtype == ResultBagWriter.TYPE]
        return [ts.deserialize_cdr(raw, c.msgtype) for c, _, raw in r.messages(connections=conns)]
