"""Replay a rosbag2 into ROS at its recorded timing, with /clock, and record the node's VprResult output.

This is the ROS-side replay (the offline one is `vpr replay`). The camera and NavSatFix messages are
published as the bag's own CDR bytes (no re-encoding), each when wall time reaches its recorded log
time divided by `rate`; /clock (rosgraph_msgs/Clock) carries the bag time, so a node started with
`use_sim_time: true` stamps its output in bag time. Results on /vpr/result are written to a result
bag (VprResult registered from the package's .msg files) and scored against the bag's NavSatFix.

The same class backs `vpr replay-ros` and the `vpr_bag_player` executable that launch/replay.launch.py
starts (`ros2 bag play --clock` can drive the node as well where rosbag2 is installed; this player adds
the result bag and recall)."""
from __future__ import annotations

import collections
import importlib
import math
import pathlib
import queue
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.serialization import serialize_message
from rosbags.rosbag2 import Reader
from rosgraph_msgs.msg import Clock

from vpr_node.core.evaluation.recall import percentile_ms, recall_summary, truth_distances
from vpr_node.core.evaluation.verified import summarise
from vpr_node.core.io.bags import FIX_TYPE, IMAGE_TYPES, ResultBagWriter, read_camera_bag
from vpr_node.core.maps.geo import haversine_m, metres_per_degree
from vpr_node.core.priors.messages import MESSAGE_TYPES
from vpr_node.msg import VprResult, VprVerification
from vpr_node.ros.client_node import FRAME_READERS, BackgroundNode, wait_frames_matched, wait_wired
from vpr_node.ros.conversions import ns_to_time, time_to_ns
from vpr_node.ros.qos import OUTPUT_QOS

# besides the camera: ground truth and every message type a prior can come from
PASS_THROUGH_TYPES = {FIX_TYPE} | {t for kinds in MESSAGE_TYPES.values() for t in kinds.values()}


def _msg_class(msgtype: str):
    pkg, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


class BagPlayer(BackgroundNode):
    def __init__(self, bag, rate: float = 1.0, clock_hz: float = 50.0, camera_topic: str | None = None,
                 result_topic: str = "/vpr/result", domain_id: int | None = None,
                 verification_topic: str | None = None):
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.bag, self.rate, self.clock_period = pathlib.Path(bag), float(rate), 1.0 / float(clock_hz)
        self.camera_topic = camera_topic
        super().__init__("vpr_bag_player", domain_id)
        self.clock_pub = self.node.create_publisher(
            Clock, "/clock", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        )
        self.results: queue.Queue = queue.Queue()
        self.subs = [self.node.create_subscription(VprResult, result_topic, self.results.put, OUTPUT_QOS)]
        self.verifications: queue.Queue | None = None
        if verification_topic:  # the verifier runs too: its VprVerification of each result
            self.verifications = queue.Queue()
            # each with its arrival (wall ns): when the fix left the verifier, to time what comes after it
            self.subs.append(self.node.create_subscription(
                VprVerification, verification_topic, lambda m: self.verifications.put((time.time_ns(), m)),
                OUTPUT_QOS))
        # the nodes that read the frames (their /diagnostics status names): each must have matched this player's
        # camera publisher before the first frame (best effort: a frame sent before that is lost to it)
        self.frame_readers = FRAME_READERS[:2 if verification_topic else 1]
        self.diagnostics: queue.Queue = queue.Queue()
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.put, 10)
        self.frame_wall_ns: dict[int, int] = {}  # camera frame's bag time -> wall ns when it was published
        self.start_spinning()

    def _publish_clock(self, ns: int) -> None:
        msg = Clock()
        msg.clock = ns_to_time(ns)
        self.clock_pub.publish(msg)

    def play(self, wait_subscriber_s: float = 30.0, settle_s: float = 10.0) -> dict:
        """Publish the bag once; returns counts, timing error and the collected results."""
        with Reader(self.bag) as r:
            cams = [c for c in r.connections if c.msgtype in IMAGE_TYPES
                    and (self.camera_topic is None or c.topic == self.camera_topic)][:1]
            if not cams:
                raise ValueError(
                    f"bag {self.bag} has no camera topic" + (f" {self.camera_topic}" if self.camera_topic else "")
                )
            conns = cams + [c for c in r.connections if c.msgtype in PASS_THROUGH_TYPES]
            pubs = {c.id: self.node.create_publisher(_msg_class(c.msgtype), c.topic,
                                                     qos_profile_sensor_data if c.msgtype in IMAGE_TYPES else 10)
                    for c in conns}
            cam_pub = pubs[cams[0].id]
            # wired both ways before the first frame: the camera topic's subscribers (vpr_node, and the verifier)
            # and this player's result (and verification) subscriptions matched to their publishers
            readers = 2 if self.verifications is not None else 1
            if not wait_wired(cam_pub, readers, self.subs, wait_subscriber_s):
                raise TimeoutError(f"{cams[0].topic} has {cam_pub.get_subscription_count()} of {readers} "
                                   f"subscribers, or no node publishes the results, after {wait_subscriber_s} s")
            if not wait_frames_matched(self.node, self.diagnostics, cams[0].topic, self.frame_readers,
                                       wait_subscriber_s):
                raise TimeoutError(f"{', '.join(self.frame_readers)}: not matched to every publisher of "
                                   f"{cams[0].topic} after {wait_subscriber_s} s (active, on this ROS domain?)")
            messages = r.messages(connections=conns)
            first = None
            frames, lateness = 0, []
            self._publish_clock(r.start_time)
            time.sleep(0.2)  # let sim-time subscribers see the first /clock
            t_wall0 = time.monotonic()
            for conn, log_ns, raw in messages:
                first = log_ns if first is None else first
                due = t_wall0 + (log_ns - first) / 1e9 / self.rate
                while True:  # /clock ticks while waiting for the message's time
                    now = time.monotonic()
                    if now >= due:
                        break
                    self._publish_clock(first + int((now - t_wall0) * self.rate * 1e9))
                    time.sleep(min(self.clock_period, due - now))
                self._publish_clock(log_ns)
                pubs[conn.id].publish(bytes(raw))
                if conn.id == cams[0].id:
                    self.frame_wall_ns[log_ns] = time.time_ns()
                    frames += 1
                    lateness.append((time.monotonic() - due) * 1e3)
            end_ns = log_ns if first is not None else r.start_time
        results, verifications, quiet_since = [], [], time.monotonic()
        t_end_wall = time.monotonic()

        def collect() -> bool:
            got = False
            for q, out in ((self.results, results), (self.verifications, verifications)):
                while q is not None and not q.empty():
                    out.append(q.get_nowait())
                    got = True
            return got

        while time.monotonic() - quiet_since < settle_s and (
                len(results) < frames or (self.verifications is not None and len(verifications) < len(results))):
            if collect():
                quiet_since = time.monotonic()
            else:
                time.sleep(0.1)
                self._publish_clock(end_ns + int((time.monotonic() - t_end_wall) * 1e9 * self.rate))
        collect()
        return {"frames_published": frames, "results": results, "verifications": verifications,
                "publish_lateness_ms_p95": float(np.percentile(lateness, 95)) if lateness else 0.0,
                "bag_start_ns": first, "bag_end_ns": end_ns, "frame_wall_ns": self.frame_wall_ns}


def write_result_bag(results, path, topic: str = "/vpr/result") -> pathlib.Path:
    """rclpy VprResult messages -> rosbag2 (MCAP), logged at their header stamps."""
    writer = ResultBagWriter(path, topic)
    try:
        for m in results:
            writer.write_cdr(serialize_message(m), time_to_ns(m.header.stamp))
    finally:
        writer.close()
    return writer.path


def score_against_bag(results, bag, top_k: int = 10, camera_topic: str | None = None) -> dict:
    """Recall@1/5/10 at 25 m (and 50 m, for maps tiled coarser than 25 m reaches) of ROS results against the
    bag's NavSatFix (matched by header stamp)."""
    truth = {f.stamp_ns: (f.lat, f.lon) for f in read_camera_bag(bag, camera_topic) if f.lat is not None}
    dists = []
    for m in results:
        ll = truth.get(time_to_ns(m.header.stamp))
        if ll is None or not m.candidates:
            continue
        dists.append(truth_distances(ll[0], ll[1], [c.latitude for c in m.candidates],
                                     [c.longitude for c in m.candidates], top_k))
    out = {"with_ground_truth": len(dists)}
    if dists:
        out["recall_at_25m"] = recall_summary(dists, top_k)
        out["recall_at_50m"] = recall_summary(dists, top_k, 50.0)
    return out


def score_verifications(verifications, bag, camera_topic: str | None = None, radius_m: float = 25.0) -> dict:
    """The verifier's VprVerification messages against the bag's NavSatFix (matched by stamp), summarised as
    `vpr evaluate --verify` summarises offline verification (evaluation/verified.py)."""
    truth = {f.stamp_ns: (f.lat, f.lon) for f in read_camera_bag(bag, camera_topic) if f.lat is not None}
    records = []
    for v in verifications:
        ll = truth.get(time_to_ns(v.header.stamp))
        if ll is None:
            continue
        lat, lon = ll
        top = v.candidates[0] if v.candidates else None
        where = ((top.fix_latitude, top.fix_longitude) if not top.reason else (top.latitude, top.longitude)) \
            if top else None
        rec = {"verified_top1_m": float(haversine_m(lat, lon, *where)) if top else math.inf,
               "verify_ms": float(v.verify_latency_ms), "reason": v.reason, "agree": int(v.agree),
               "fix": bool(v.fix_valid), "accepted": bool(v.accepted)}
        if v.fix_valid:
            m_lat, m_lon = metres_per_degree(lat)
            err_en = [(v.longitude - lon) * m_lon, (v.latitude - lat) * m_lat]
            rec.update({"fix_error_m": float(math.hypot(*err_en)), "fix_error_en": err_en,
                        "cov_en": np.asarray(v.position_covariance, np.float64).reshape(2, 2).tolist()})
        records.append(rec)
    return summarise(records, radius_m)


def replay_into_ros(bag, out_bag=None, rate: float = 1.0, camera_topic: str | None = None, domain_id: int | None = None,
                    top_k: int = 10, settle_s: float = 10.0, verification_topic: str | None = None) -> dict:
    player = BagPlayer(bag, rate=rate, camera_topic=camera_topic, domain_id=domain_id,
                       verification_topic=verification_topic)
    try:
        run = player.play(settle_s=settle_s)
    finally:
        player.close()
    results = run.pop("results")
    arrivals = run.pop("verifications")
    verifications = [m for _, m in arrivals]
    frame_wall_ns = run.pop("frame_wall_ns")
    published = sorted(frame_wall_ns)  # the camera frames' bag times
    summary = {
        **run,
        "frame_period_s": float(np.median(np.diff(published))) / 1e9 if len(published) > 1 else None,
        "results": len(results),
        "frames_without_result": run["frames_published"] - len(results),
        "frames_dropped_by_node": sum(int(m.frames_dropped) for m in results),
        "prior_states": dict(collections.Counter(t for m in results for t in m.prior_state.split())),
        "backbones": sorted({m.backbone_label for m in results}),
        "retrieved_at_in_bag_time": bool(results)
        and all(run["bag_start_ns"] <= time_to_ns(m.retrieved_at) <= run["bag_end_ns"] + 120 * 10**9 for m in results),
    }
    for field in ("embed_latency_ms", "search_latency_ms"):  # as the node measured them, per frame
        values = [getattr(m, field) for m in results]
        if values:
            summary[f"{field}_p50"], summary[f"{field}_p95"] = (round(percentile_ms(values, q), 2) for q in (50, 95))
    summary.update(score_against_bag(results, bag, top_k, camera_topic))
    if verification_topic:
        summary["verification"] = {"messages": len(verifications),
                                   **score_verifications(verifications, bag, camera_topic)}
        # wall times of each accepted fix's frame (published) and of the fix (received here): what the autopilot
        # report times the output against (a bag whose frame stamps are not its log times has no frame time)
        summary["accepted_fixes"] = [{"stamp_ns": time_to_ns(v.header.stamp), "lat": v.latitude, "lon": v.longitude,
                                      "cov_en": np.asarray(v.position_covariance, np.float64).reshape(2, 2).tolist(),
                                      "frame_wall_ns": frame_wall_ns.get(time_to_ns(v.header.stamp)),
                                      "fix_wall_ns": wall}
                                     for wall, v in arrivals if v.accepted]
    if out_bag:
        summary["result_bag"] = str(write_result_bag(results, out_bag))
    return summary


def main(argv=None) -> int:
    """`vpr_bag_player BAG [--rate R] [--out RESULT_BAG]` (the executable launch/replay.launch.py runs)."""
    import argparse
    import json

    p = argparse.ArgumentParser(prog="vpr_bag_player", description=__doc__.splitlines()[0])
    p.add_argument("bag")
    p.add_argument("--rate", type=float, default=1.0)
    p.add_argument("--out", default=None, help="result bag folder")
    p.add_argument("--camera-topic", default=None)
    p.add_argument("--top-k", type=int, default=10)
    a, _ros_args = p.parse_known_args(argv)
    print(json.dumps(replay_into_ros(a.bag, a.out, a.rate, a.camera_topic, top_k=a.top_k)), flush=True)
    return 0
