"""`vpr replay`: run the pipeline offline (as fast as possible) over a rosbag2 with camera frames and
optional NavSatFix ground truth; write a result bag of VprResult and report recall per backbone.
Several backbones on one bag = one command (`--backbone A B --index IA IB`)."""
from __future__ import annotations

import json
import pathlib
import time

import numpy as np

from vpr_node.core.backbones import DEFAULT_BACKBONE


def prior_params(bag, hfov_deg: float = 86.0) -> dict:
    """Node parameters that subscribe to the prior topics a synthesised bag carries (bagio.PRIOR_TOPICS)."""
    from rosbags.rosbag2 import Reader

    from vpr_node.core.io.bags import PRIOR_TOPICS
    with Reader(bag) as r:
        present = {c.topic for c in r.connections}
    keys = {"heading": "heading_topic", "altitude": "altitude_topic", "position": "prior_topic"}
    params = {keys[k]: topic for k, (topic, _) in PRIOR_TOPICS.items() if topic in present}
    if "altitude_topic" in params:
        params["camera_hfov_deg"] = hfov_deg
    return params


def replay_offline(bag, backbone: str, index_dir: str, out_bag=None, top_k: int = 10, weights=None,
                   camera_topic=None, backbone_options: dict | None = None, priors: dict | None = None) -> dict:
    """`priors`: node parameters of the priors (e.g. prior_params(bag)); applied exactly as the node does."""
    from vpr_node.core.evaluation.recall import recall_summary, truth_distances
    from vpr_node.core.io.bags import ResultBagWriter, read_camera_bag
    from vpr_node.core.io.logs import StructuredLogger
    from vpr_node.core.retrieval.engine import Frame, VprEngine
    from vpr_node.core.retrieval.strategy import load_strategy

    s = load_strategy(backbone, weights=weights, index_dir=index_dir, backbone_options=backbone_options)
    writer = ResultBagWriter(out_bag) if out_bag else None
    applier = None
    if priors:
        from vpr_node.core.io.bags import read_prior_samples
        from vpr_node.core.priors.apply import PriorApplier
        from vpr_node.core.priors.samples import PriorBuffer
        from vpr_node.ros.params import NodeConfig

        made = NodeConfig.from_params({"index_dir": str(index_dir), **priors}).priors()
        if made is not None:
            topic_params = {"heading": "heading_topic", "altitude": "altitude_topic", "position": "prior_topic"}
            topics = {k: priors[t] for k, t in topic_params.items() if priors.get(t)}
            samples = read_prior_samples(bag, made[1], topics)
            applier = PriorApplier(made[0], s.index, PriorBuffer(keep=len(samples) + 1))
            for kind, stamp, values in samples:
                applier.buffer.add(kind, stamp, *values) if values else applier.buffer.add_error(kind, stamp)
    eng = VprEngine(s, lambda r: None, top_k=top_k, logger=StructuredLogger(level="ERROR"), priors=applier)
    dists, n_frames, embed = [], 0, []
    try:
        for f in read_camera_bag(bag, camera_topic):
            n_frames += 1
            res = eng.process(Frame(decode=f.decode, frame_id=f.frame_id, stamp_ns=f.stamp_ns))
            if res is None:
                continue
            embed.append(res.embed_latency_ms)
            if writer:
                writer.write(res, f.log_ns, s.index.index_id)
            if f.lat is not None:
                dists.append(truth_distances(f.lat, f.lon, [c.tile.lat for c in res.candidates],
                                             [c.tile.lon for c in res.candidates], top_k))
    finally:
        if writer:
            writer.close()
    snap = eng.snapshot()
    out = {"backbone": s.label, "frames": n_frames, "results": snap["results_out"], "errors": snap["errors"],
           "prior_states": snap["prior_states"],
           "embed_ms_p50": float(np.percentile(embed, 50)) if embed else None, "with_ground_truth": len(dists)}
    if dists:
        out["recall_at_25m"] = recall_summary(dists, top_k)
    return out


def register(sub) -> None:
    _register_offline(sub)
    _register_ros(sub)


def _add_replay_args(p) -> None:
    """What both replays take: the bag, backbone(s) and index(es), result bag, camera topic, priors."""
    p.add_argument("bag")
    p.add_argument("--backbone", nargs="+", default=[DEFAULT_BACKBONE])
    p.add_argument("--index", nargs="+", required=True, help="one index folder per backbone")
    p.add_argument("--out", default=None, help="result bag folder (one per backbone: <out>_<backbone>)")
    p.add_argument("--camera-topic", default=None)
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--priors", action="store_true", help="use the priors the bag carries (/imu, /rangefinder, "
                                                         "/prior/fix) the way the node does")
    p.add_argument("--hfov", type=float, default=86.0, help="with --priors: camera horizontal field of view (deg)")


def _register_offline(sub) -> None:
    p = sub.add_parser("replay", help="offline replay of a rosbag2 (MCAP/sqlite3): result bag + recall vs NavSatFix")
    _add_replay_args(p)
    p.set_defaults(fn=_cmd)


def _cmd(a):
    if len(a.backbone) != len(a.index):
        print("give one --index per --backbone")
        return 2
    rows = []
    for b, idx in zip(a.backbone, a.index, strict=True):
        out_bag = f"{a.out}_{b}" if a.out else None
        rows.append(replay_offline(a.bag, b, idx, out_bag, a.top_k, camera_topic=a.camera_topic,
                                   priors=prior_params(a.bag, a.hfov) if a.priors else None))
        print(json.dumps(rows[-1]))
    return 0


def replay_ros(bag, backbone: str, index_dir: str, workdir, out_bag=None, rate: float = 1.0, top_k: int = 10,
               weights=None, backbone_options: dict | None = None, camera_topic=None, domain_id: int = 77,
               priors: dict | None = None, node_params: dict | None = None, verify: bool = False,
               autopilot: str | None = None) -> dict:
    """Start the lifecycle node (use_sim_time: true) as its own process, configure + activate it over its
    lifecycle services, publish the bag into ROS at recorded timing with /clock, collect the results.
    `priors`: node parameters of the prior topics (prior_params(bag)); the player publishes those topics.
    `node_params`: any other node parameters (e.g. index_memory_budget_mib). The node's resident memory after
    activation and its peak are reported. `verify`: the vpr_verifier node runs beside it (the index's calibration)
    and its verified recall, acceptance, precision and fix error are scored against the bag's truth. `autopilot`
    (px4 | ardupilot, with verify): vpr_mavlink runs too, against a simulated autopilot on loopback UDP, and what it
    received is scored against the accepted fixes (autopilot_report)."""
    from vpr_node.core.io.procstats import rss_mib
    from vpr_node.ros.bag_player import replay_into_ros
    from vpr_node.ros.harness import NodeProcess, VprClient, write_params_file

    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    from vpr_node.core.verification.verifier import VerifyConfig
    # with the verifier, the node's results reach as deep as it goes (deeper_k); recall is scored at top_k
    depth = max(top_k, VerifyConfig().candidates_needed) if verify else top_k
    params = {"backbone": backbone, "index_dir": str(index_dir), "top_k": depth, "use_sim_time": True,
              "backbone_options": json.dumps(backbone_options or {}), "weights": weights or "",
              "recorder_path": str(workdir / f"fdr_{backbone}.jsonl"), **(priors or {}), **(node_params or {})}
    from rosbags.rosbag2 import Reader

    from vpr_node.core.io.bags import IMAGE_TYPES
    with Reader(bag) as r:
        cams = [c for c in r.connections if c.msgtype in IMAGE_TYPES and camera_topic in (None, c.topic)]
    if not cams:
        raise SystemExit(f"bag {bag} has no camera topic")
    params["image_topic"], params["compressed"] = cams[0].topic, cams[0].msgtype == IMAGE_TYPES[1]
    node = NodeProcess(write_params_file(workdir / f"params_{backbone}.yaml", params), workdir / f"node_{backbone}.log",
                       domain_id)
    verifier = None
    if verify:
        from vpr_node.ros.node_spec import VERIFIER_EXECUTABLE, VERIFIER_NAME
        verifier = NodeProcess(write_params_file(workdir / "params_verifier.yaml", {
            "index_dir": str(index_dir), "use_sim_time": True, "image_topic": params["image_topic"],
            "compressed": params["compressed"], "recorder_path": str(workdir / "fdr_verifier.jsonl"),
            "queue_depth": 100, "max_pending": 1000, "match_timeout": 30.0}, node_name=VERIFIER_NAME),
            workdir / "verifier.log", domain_id, executable=VERIFIER_EXECUTABLE, name=VERIFIER_NAME)
    mavlink = peer = None
    if autopilot:
        from vpr_node.core.autopilot.sim_peer import SimulatedAutopilot
        from vpr_node.ros.node_spec import MAVLINK_EXECUTABLE, MAVLINK_NAME
        port = free_udp_port()
        peer = SimulatedAutopilot(autopilot, port=port, origin=_bag_origin(bag, camera_topic)).__enter__()
        mavlink = NodeProcess(write_params_file(workdir / "params_mavlink.yaml", {
            "autopilot": autopilot, "connection": f"udpout:127.0.0.1:{port}", "use_sim_time": True,
            "max_fix_age_s": 120.0, "recorder_path": str(workdir / "fdr_mavlink.jsonl")}, node_name=MAVLINK_NAME),
            workdir / "mavlink.log", domain_id, executable=MAVLINK_EXECUTABLE, name=MAVLINK_NAME)
    client = VprClient(domain_id, image_topic=params["image_topic"], compressed=params["compressed"], verifier=verify,
                       autopilot=bool(autopilot))
    try:
        client.wait_for_node(60)
        for name in [None] + (["vpr_verifier"] if verify else []) + (["vpr_mavlink"] if autopilot else []):
            if not (client.transition("configure", node=name) and client.transition("activate", node=name)):
                raise RuntimeError(f"{name or 'vpr_node'} did not activate; see the logs in {workdir}")
        if not client.wait_subscribed(30, count=2 if verify else 1):
            raise RuntimeError(f"the nodes are active but not connected after 30 s; see the logs in {workdir}")
        if autopilot and client.latest_diagnostics(30, "autopilot output", _mavlink_ready) is None:
            raise RuntimeError(f"vpr_mavlink has not heard the autopilot or is not matched to the verifier after "
                               f"30 s; see the logs in {workdir}")
        pid = node.proc.pid
        memory = {"node_rss_mib_active": rss_mib(pid), "node_anon_mib_active": rss_mib(pid, "RssAnon")}
        out = replay_into_ros(bag, out_bag, rate, camera_topic, domain_id, top_k,
                              verification_topic="/vpr/verification" if verify else None)
        accepted = out.pop("accepted_fixes", [])
        # RssFile: mapped file pages (the libraries, the memory-mapped descriptors the re-rank reads): shared page
        # cache the kernel can drop; RssAnon: the node's own memory
        memory.update({"node_peak_rss_mib": rss_mib(pid, "VmHWM"), "node_rss_mib_end": rss_mib(pid),
                       "node_anon_mib_end": rss_mib(pid, "RssAnon"), "node_file_mib_end": rss_mib(pid, "RssFile")})
        out.update(memory)
        if peer is not None:
            # every accepted fix sent or refused (with its reason), then the last sends' transit
            handled = client.latest_diagnostics(30, "autopilot output", lambda v: _fixes_handled(v) >= len(accepted))
            time.sleep(0.5)
            out["autopilot"] = autopilot_report(accepted, peer, autopilot, rate, out["frame_period_s"])
            out["autopilot"]["refused"] = {k.removeprefix("rejected."): int(v) for k, v in (handled or {}).items()
                                           if k.startswith("rejected.")}
    finally:
        client.close()
        node.stop()
        for proc in (verifier, mavlink):
            if proc is not None:
                proc.stop()
        if peer is not None:
            peer.close()
    return {"backbone": backbone, **out}


def _mavlink_ready(values: dict) -> bool:
    """vpr_mavlink's diagnostics: it hears the autopilot and its fix subscription is matched to the verifier."""
    return values.get("link_state") == "connected" and int(values.get("verification_publishers", 0)) > 0


def _fixes_handled(values: dict) -> int:
    """Fixes vpr_mavlink has sent or refused, from its diagnostics."""
    return sum(int(v) for k, v in values.items() if k.startswith(("sent.", "rejected.")))


def free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bag_origin(bag, camera_topic=None) -> tuple[float, float, float] | None:
    """The first true position of the bag: the simulated autopilot's EKF origin (where GNSS was lost)."""
    from vpr_node.core.io.bags import read_camera_bag
    for f in read_camera_bag(bag, camera_topic):
        if f.lat is not None:
            return f.lat, f.lon, 0.0
    return None


def autopilot_report(accepted: list[dict], peer, autopilot: str, rate: float = 1.0,
                     frame_period_s: float | None = None) -> dict:
    """What the simulated autopilot received against the accepted fixes: counts, eph against each fix's 1-sigma,
    processing time (exposure -> send) against the same latency measured here (frame published -> message arrived,
    in bag time: wall x `rate`), the delay from the verifier's fix to the autopilot (wall) against one frame period
    (`frame_period_s` of bag time, `frame_period_s / rate` of wall time at this replay rate), and the rate."""
    from vpr_node.core.autopilot.units import deg_e7, horizontal_sigma_m
    kind = "GLOBAL_POSITION_SENSOR" if autopilot == "px4" else "ODOMETRY"
    arrivals = peer.arrivals(kind)
    got = [m for _, m in arrivals]
    arrival = {id(m): t for t, m in arrivals}
    by_pos = {(m.lat, m.lon): m for m in got} if kind == "GLOBAL_POSITION_SENSOR" else {}
    matched, eph_err, processing, measured, gap, delay = 0, [], [], [], [], []
    for f in accepted:
        m = by_pos.get((deg_e7(f["lat"]), deg_e7(f["lon"])))
        if m is None:
            continue
        matched += 1
        eph_err.append(abs(m.eph - horizontal_sigma_m(f["cov_en"])))
        processing.append(m.processing_time / 1e3)
        t = arrival.get(id(m))
        if t is not None and f.get("frame_wall_ns") is not None:
            measured.append((t - f["frame_wall_ns"]) / 1e6 * rate)
            gap.append(processing[-1] - measured[-1])
        if t is not None and f.get("fix_wall_ns") is not None:
            delay.append((t - f["fix_wall_ns"]) / 1e6)
    stamps = [f["stamp_ns"] for f in accepted]
    span = (max(stamps) - min(stamps)) / 1e9 if len(stamps) > 1 else 0.0

    def pct(values, q):
        return round(float(np.percentile(values, q)), 1) if values else None

    out = {"accepted_fixes": len(accepted), "messages": len(got), "matched": matched,
           "eph_max_abs_error_m": round(max(eph_err), 6) if eph_err else None,
           "processing_ms_p50": pct(processing, 50), "processing_ms_p95": pct(processing, 95),
           "processing_ms_max": pct(processing, 100),
           # the same latency measured outside the nodes (bag time); the difference is the sim clock's tick and
           # the UDP transit
           "measured_latency_ms_p50": pct(measured, 50), "measured_latency_ms_p95": pct(measured, 95),
           "processing_minus_measured_ms_p50": pct(gap, 50),
           "processing_minus_measured_ms_max_abs": round(float(np.max(np.abs(gap))), 1) if gap else None,
           "fix_to_autopilot_ms_p50": pct(delay, 50), "fix_to_autopilot_ms_p95": pct(delay, 95),
           "fix_to_autopilot_ms_max": pct(delay, 100),
           "fix_rate_hz": round((len(accepted) - 1) / span, 3) if span else None,
           "heartbeats": len(peer.messages("HEARTBEAT")), "timesync": len(peer.messages("TIMESYNC"))}
    if frame_period_s and delay:
        out["frame_period_ms_wall"] = round(frame_period_s / rate * 1e3, 1)
        out["within_one_frame_period"] = int(sum(d <= frame_period_s / rate * 1e3 for d in delay))
    return out


def _register_ros(sub) -> None:
    p = sub.add_parser("replay-ros", help="publish a rosbag2 into ROS at recorded timing (/clock, use_sim_time) "
                                          "through the running node; result bag + recall per backbone")
    _add_replay_args(p)
    p.add_argument("--rate", type=float, default=1.0, help="playback speed (1.0 = recorded timing)")
    p.add_argument("--workdir", default="artifacts/replay_ros", help="params, node logs, flight-data records")
    p.add_argument("--domain-id", type=int, default=77)
    p.add_argument("--index-memory-budget", type=float, default=0.0,
                   help="the node's index_memory_budget_mib (MiB of index.faiss; 0 = not checked)")
    p.add_argument("--verify", action="store_true", help="run vpr_verifier beside the node and score its fixes")
    p.add_argument("--autopilot", choices=["px4", "ardupilot"], default=None,
                   help="with --verify: run vpr_mavlink too, against a simulated autopilot, and score what it received")
    p.set_defaults(fn=_cmd_ros)


def _cmd_ros(a):
    if len(a.backbone) != len(a.index):
        print("give one --index per --backbone")
        return 2
    for b, idx in zip(a.backbone, a.index, strict=True):
        row = replay_ros(a.bag, b, idx, a.workdir, f"{a.out}_{b}" if a.out else None, a.rate, a.top_k,
                         camera_topic=a.camera_topic, domain_id=a.domain_id,
                         priors=prior_params(a.bag, a.hfov) if a.priors else None,
                         node_params={"index_memory_budget_mib": a.index_memory_budget}, verify=a.verify,
                         autopilot=a.autopilot)
        print(json.dumps(row))
    return 0
