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
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from vpr_node.core.errors import ConfigurationError, VprPriorError
from vpr_node.core.io import image_codec
from vpr_node.core.resources import data_dir
from vpr_node.core.types import candidate_fields, result_fields, stamp_to_ns

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
FIX_TYPE = "sensor_msgs/msg/NavSatFix"


def typestore():
    """Kilted typestore with vpr_node's messages registered from msg/*.msg."""
    ts = get_typestore(Stores.ROS2_KILTED)
    msg_dir = data_dir("msg")
    if msg_dir is None:
        raise ConfigurationError("vpr_node's msg/ folder was not found (source tree or share/vpr_node/msg)")
    types = {}
    for name in ("VprCandidate", "VprResult"):
        types.update(get_types_from_msg((msg_dir / f"{name}.msg").read_text(), f"vpr_node/msg/{name}"))
    ts.register(types)
    return ts


def _time(ts, ns: int):
    return ts.types["builtin_interfaces/msg/Time"](sec=int(ns // 10**9), nanosec=int(ns % 10**9))


def _header(ts, ns: int, frame_id: str):
    return ts.types["std_msgs/msg/Header"](stamp=_time(ts, ns), frame_id=frame_id)


# Topics of the priors in synthesised bags (what `vpr replay --priors` / `replay-ros --priors` read).
PRIOR_TOPICS = {"heading": ("/imu", "sensor_msgs/msg/Imu"), "altitude": ("/rangefinder", "sensor_msgs/msg/Range"),
                "position": ("/prior/fix", FIX_TYPE)}
TRUTH_TOPIC = "/gps/fix"


def _prior_messages(ts, ns: int, samples: dict) -> list[tuple[str, str, object]]:
    """(topic, type, message) for one frame's simulated prior samples (heading in ENU per REP 103)."""
    T, out = ts.types, []
    if "heading" in samples:
        yaw = np.radians(90.0 - samples["heading"][0])  # ENU yaw, counter-clockwise from east
        q = T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=float(np.sin(yaw / 2)), w=float(np.cos(yaw / 2)))
        zero = T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0)
        out.append((*PRIOR_TOPICS["heading"], T["sensor_msgs/msg/Imu"](
            header=_header(ts, ns, "base_link"), orientation=q, orientation_covariance=np.zeros(9),
            angular_velocity=zero, angular_velocity_covariance=np.zeros(9), linear_acceleration=zero,
            linear_acceleration_covariance=np.zeros(9))))
    if "altitude" in samples:
        out.append((*PRIOR_TOPICS["altitude"], T["sensor_msgs/msg/Range"](
            header=_header(ts, ns, "rangefinder"), radiation_type=1, field_of_view=0.05, min_range=0.5,
            max_range=500.0, range=float(samples["altitude"][0]), variance=0.0)))
    if "position" in samples:
        lat, lon, sigma = samples["position"]
        cov = np.zeros(9)
        cov[0] = cov[4] = sigma ** 2
        cov[8] = (2 * sigma) ** 2
        out.append((*PRIOR_TOPICS["position"], T[FIX_TYPE](
            header=_header(ts, ns, "map"), status=T["sensor_msgs/msg/NavSatStatus"](status=0, service=1),
            latitude=float(lat), longitude=float(lon), altitude=0.0, position_covariance=cov,
            position_covariance_type=2)))
    return out


def write_query_bag(queries, path, rate_hz: float = 3.0, start_ns: int = 1_700_000_000_000_000_000,
                    storage: str = "mcap", compressed: bool = False, camera_topic: str = "/camera/image_raw",
                    fix_topic: str = TRUTH_TOPIC, priors=None) -> pathlib.Path:
    """Frames at `rate_hz` with NavSatFix ground truth at the same stamps; with `priors` (priors.PriorNoise)
    also the drone's heading (Imu), altitude (Range) and position prior (NavSatFix with covariance) on
    PRIOR_TOPICS, the truth plus the noise it describes."""
    ts = typestore()
    T = ts.types
    path = pathlib.Path(path)
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    rng = np.random.default_rng(priors.seed) if priors is not None else None
    with Writer(path, version=9, storage_plugin=plugin) as w:
        img_type = IMAGE_TYPES[1] if compressed else IMAGE_TYPES[0]
        cam = w.add_connection(camera_topic, img_type, typestore=ts)
        fix = w.add_connection(fix_topic, FIX_TYPE, typestore=ts)
        prior_conns = {}
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
            fmsg = T[FIX_TYPE](
                header=_header(ts, ns, "gps"),
                status=status,
                latitude=q.lat,
                longitude=q.lon,
                altitude=0.0,
                position_covariance=np.zeros(9),
                position_covariance_type=0,
            )
            w.write(fix, ns, ts.serialize_cdr(fmsg, FIX_TYPE))
            if priors is not None:
                samples = priors.sample(rng, q.yaw_deg, q.altitude_m, q.lat, q.lon)
                for topic, msgtype, msg in _prior_messages(ts, ns, samples):
                    if topic not in prior_conns:
                        prior_conns[topic] = w.add_connection(topic, msgtype, typestore=ts)
                    w.write(prior_conns[topic], ns, ts.serialize_cdr(msg, msgtype))
    return path


def read_prior_samples(path, inputs, topics: dict | None = None) -> list[tuple[str, int, tuple | None]]:
    """(kind, stamp_ns, values or None for a malformed sample) from a bag's prior topics (PRIOR_TOPICS
    unless given), converted with prior_messages.PriorInputs exactly as the node does."""

    topics = topics or {k: t for k, (t, _) in PRIOR_TOPICS.items()}
    ts, out = typestore(), []
    with Reader(path) as r:
        by_topic = {t: k for k, t in topics.items()}
        conns = [c for c in r.connections if c.topic in by_topic]
        for conn, _, raw in r.messages(connections=conns):
            kind = by_topic[conn.topic]
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            try:
                stamp, *values = getattr(inputs, kind)(msg)
                out.append((kind, stamp, tuple(values)))
            except VprPriorError:
                out.append((kind, stamp_to_ns(msg.header.stamp), None))
    return out


@dataclasses.dataclass
class BagFrame:
    stamp_ns: int
    log_ns: int
    frame_id: str
    decode: object
    lat: float | None
    lon: float | None


def read_camera_bag(path, camera_topic: str | None = None, max_fix_gap_s: float = 0.5,
                    truth_topic: str = TRUTH_TOPIC) -> Iterator[BagFrame]:
    """Camera frames of a bag (first image topic unless named), each with the nearest ground-truth NavSatFix
    (on `truth_topic`; a bag without it: its only NavSatFix topic other than the position prior's)."""
    ts = typestore()
    with Reader(path) as r:
        cams = [
            c for c in r.connections if c.msgtype in IMAGE_TYPES and (camera_topic is None or c.topic == camera_topic)
        ]
        if not cams:
            raise ConfigurationError(f"bag {path} has no sensor_msgs Image/CompressedImage topic"
                                     + (f" named {camera_topic}" if camera_topic else ""))
        cam = cams[0]
        fixes = [c for c in r.connections if c.msgtype == FIX_TYPE and c.topic == truth_topic] or \
            [c for c in r.connections if c.msgtype == FIX_TYPE and c.topic != PRIOR_TOPICS["position"][0]][:1]
        fix_t, fix_ll = [], []
        for conn, _, raw in r.messages(connections=fixes):
            m = ts.deserialize_cdr(raw, conn.msgtype)
            fix_t.append(stamp_to_ns(m.header.stamp))
            fix_ll.append((m.latitude, m.longitude))
        order = np.argsort(fix_t)
        fix_t = [fix_t[i] for i in order]
        fix_ll = [fix_ll[i] for i in order]
        for conn, t, raw in r.messages(connections=[cam]):
            m = ts.deserialize_cdr(raw, conn.msgtype)
            stamp = stamp_to_ns(m.header.stamp)
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
    """Writes VprResult messages (the node's output type) to a rosbag2: from the core's VprResult
    (offline replay) or as already-serialised CDR bytes (results collected from ROS)."""

    TYPE = "vpr_node/msg/VprResult"

    def __init__(self, path, topic: str = "/vpr/result", storage: str = "mcap"):
        self.ts = typestore()
        self.path = pathlib.Path(path)
        self.w = Writer(self.path, version=9,
                        storage_plugin=StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3)
        self.w.open()
        self.conn = self.w.add_connection(topic, self.TYPE, typestore=self.ts)

    def write(self, result, log_ns: int, index_id: str = "") -> None:
        T = self.ts.types
        cands = [T["vpr_node/msg/VprCandidate"](**candidate_fields(c)) for c in result.candidates]
        msg = T[self.TYPE](header=_header(self.ts, result.stamp_ns, result.frame_id), candidates=cands,
                           retrieved_at=_time(self.ts, result.retrieved_at_ns), **result_fields(result, index_id))
        self.write_cdr(self.ts.serialize_cdr(msg, self.TYPE), log_ns)

    def write_cdr(self, raw: bytes, log_ns: int) -> None:
        self.w.write(self.conn, log_ns, raw)

    def close(self) -> None:
        self.w.close()


def read_results(path) -> list:
    ts = typestore()
    with Reader(path) as r:
        conns = [c for c in r.connections if c.msgtype == ResultBagWriter.TYPE]
        return [ts.deserialize_cdr(raw, c.msgtype) for c, _, raw in r.messages(connections=conns)]


def write_flight_mcap(path, frames: list[dict], camera_topic: str = "/camera/image_raw/compressed",
                      fix_topic: str = "/vpr/fix", truth_topic: str = TRUTH_TOPIC, max_px: int = 640) -> pathlib.Path:
    """A flight for Foxglove (rosbag2 MCAP): each frame as a JPEG CompressedImage (long side `max_px`), its true
    position and, where verification accepted one, the fix with its covariance, both as NavSatFix (Foxglove's Map
    panel draws NavSatFix topics). `frames`: dicts with stamp_ns, image (RGB), lat, lon and `fix` (None or a dict
    with lat, lon, cov_en 2x2 m^2)."""
    import cv2

    ts = typestore()
    T = ts.types
    path = pathlib.Path(path)
    if path.exists():
        import shutil
        shutil.rmtree(path)
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        cam = w.add_connection(camera_topic, IMAGE_TYPES[1], typestore=ts)
        fix_c = w.add_connection(fix_topic, FIX_TYPE, typestore=ts)
        truth_c = w.add_connection(truth_topic, FIX_TYPE, typestore=ts)
        for f in frames:
            ns, img = int(f["stamp_ns"]), f["image"]
            s = min(1.0, max_px / max(img.shape[:2]))
            small = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
            w.write(cam, ns, ts.serialize_cdr(T[IMAGE_TYPES[1]](
                header=_header(ts, ns, "nav_camera"), format="jpeg",
                data=np.frombuffer(image_codec.encode_jpeg(small), np.uint8)), IMAGE_TYPES[1]))
            w.write(truth_c, ns, ts.serialize_cdr(T[FIX_TYPE](
                header=_header(ts, ns, "truth"), status=T["sensor_msgs/msg/NavSatStatus"](status=0, service=1),
                latitude=float(f["lat"]), longitude=float(f["lon"]), altitude=float("nan"),
                position_covariance=np.zeros(9), position_covariance_type=0), FIX_TYPE))
            if f.get("fix"):
                c = np.asarray(f["fix"]["cov_en"], np.float64)
                cov = np.array([c[0, 0], c[0, 1], 0.0, c[1, 0], c[1, 1], 0.0, 0.0, 0.0, 1e6])
                w.write(fix_c, ns, ts.serialize_cdr(T[FIX_TYPE](
                    header=_header(ts, ns, "nav_camera"),
                    status=T["sensor_msgs/msg/NavSatStatus"](status=0, service=1),
                    latitude=float(f["fix"]["lat"]), longitude=float(f["fix"]["lon"]), altitude=float("nan"),
                    position_covariance=cov, position_covariance_type=3), FIX_TYPE))
    return path
