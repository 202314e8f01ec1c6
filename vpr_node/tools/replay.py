"""`vpr replay`: run the pipeline offline (as fast as possible) over a rosbag2 with camera frames and
optional NavSatFix ground truth; write a result bag of VprResult and report recall per backbone.
Several backbones on one bag = one command (`--backbone A B --index IA IB`)."""
from __future__ import annotations

import json
import pathlib

import numpy as np


def replay_offline(bag, backbone: str, index_dir: str, out_bag=None, top_k: int = 10, weights=None,
                   camera_topic=None, backbone_options: dict | None = None) -> dict:
    from vpr_node.core.bagio import ResultBagWriter, read_camera_bag
    from vpr_node.core.engine import Frame, VprEngine
    from vpr_node.core.evaluation import recall_from_distances
    from vpr_node.core.geo import haversine_m
    from vpr_node.core.logs import StructuredLogger
    from vpr_node.core.strategy import load_strategy

    s = load_strategy(backbone, weights=weights, index_dir=index_dir, backbone_options=backbone_options)
    writer = ResultBagWriter(out_bag) if out_bag else None
    eng = VprEngine(s, lambda r: None, top_k=top_k, logger=StructuredLogger(level="ERROR"))
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
                lat = np.array([c.tile.lat for c in res.candidates])
                lon = np.array([c.tile.lon for c in res.candidates])
                d = haversine_m(f.lat, f.lon, lat, lon)
                dists.append(np.pad(d, (0, max(0, top_k - len(d))), constant_values=np.inf)[:top_k])
    finally:
        if writer:
            writer.close()
    snap = eng.snapshot()
    out = {"backbone": s.label, "frames": n_frames, "results": snap["results_out"], "errors": snap["errors"],
           "embed_ms_p50": float(np.percentile(embed, 50)) if embed else None, "with_ground_truth": len(dists)}
    if dists:
        ns = tuple(n for n in (1, 5, 10) if n <= top_k)
        out["recall_at_25m"] = {str(n): v for n, v in recall_from_distances(np.stack(dists), ns, 25.0).items()}
    return out


def register(sub) -> None:
    p = sub.add_parser("replay", help="offline replay of a rosbag2 (MCAP/sqlite3): result bag + recall vs NavSatFix")
    p.add_argument("bag")
    p.add_argument("--backbone", nargs="+", default=["efficientnet_lite0_netvlad"])
    p.add_argument("--index", nargs="+", required=True, help="one index folder per backbone")
    p.add_argument("--out", default=None, help="result bag folder (one per backbone: <out>_<backbone>)")
    p.add_argument("--camera-topic", default=None)
    p.add_argument("--top-k", type=int, default=10)
    p.set_defaults(fn=_cmd)


def _cmd(a):
    if len(a.backbone) != len(a.index):
        print("give one --index per --backbone")
        return 2
    rows = []
    for b, idx in zip(a.backbone, a.index):
        out_bag = f"{a.out}_{b}" if a.out else None
        rows.append(replay_offline(a.bag, b, idx, out_bag, a.top_k, camera_topic=a.camera_topic))
        print(json.dumps(rows[-1]))
    return 0


def replay_ros(bag, backbone: str, index_dir: str, workdir, out_bag=None, rate: float = 1.0, top_k: int = 10,
               weights=None, backbone_options: dict | None = None, camera_topic=None, domain_id: int = 77) -> dict:
    """Start the lifecycle node (use_sim_time: true) as its own process, configure + activate it over its
    lifecycle services, publish the bag into ROS at recorded timing with /clock, collect the results."""
    from vpr_node.ros.bag_player import replay_into_ros
    from vpr_node.ros.harness import NodeProcess, VprClient, write_params_file

    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    params = {"backbone": backbone, "index_dir": str(index_dir), "top_k": top_k, "use_sim_time": True,
              "backbone_options": json.dumps(backbone_options or {}), "weights": weights or "",
              "recorder_path": str(workdir / f"fdr_{backbone}.jsonl")}
    from rosbags.rosbag2 import Reader

    from vpr_node.core.bagio import IMAGE_TYPES
    with Reader(bag) as r:
        cams = [c for c in r.connections if c.msgtype in IMAGE_TYPES and camera_topic in (None, c.topic)]
    if not cams:
        raise SystemExit(f"bag {bag} has no camera topic")
    params["image_topic"], params["compressed"] = cams[0].topic, cams[0].msgtype == IMAGE_TYPES[1]
    node = NodeProcess(write_params_file(workdir / f"params_{backbone}.yaml", params), workdir / f"node_{backbone}.log",
                       domain_id)
    client = VprClient(domain_id)
    try:
        client.wait_for_node(60)
        if not (client.transition("configure") and client.transition("activate")):
            raise RuntimeError(f"node did not activate; see {workdir / f'node_{backbone}.log'}")
        out = replay_into_ros(bag, out_bag, rate, camera_topic, domain_id, top_k)
    finally:
        client.close()
        node.stop()
    return {"backbone": backbone, **out}


def register_ros(sub) -> None:
    p = sub.add_parser("replay-ros", help="publish a rosbag2 into ROS at recorded timing (/clock, use_sim_time) "
                                          "through the running node; result bag + recall per backbone")
    p.add_argument("bag")
    p.add_argument("--backbone", nargs="+", default=["efficientnet_lite0_netvlad"])
    p.add_argument("--index", nargs="+", required=True, help="one index folder per backbone")
    p.add_argument("--out", default=None, help="result bag folder (one per backbone: <out>_<backbone>)")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed (1.0 = recorded timing)")
    p.add_argument("--camera-topic", default=None)
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--workdir", default="artifacts/replay_ros", help="params, node logs, flight-data records")
    p.add_argument("--domain-id", type=int, default=77)
    p.set_defaults(fn=_cmd_ros)


def _cmd_ros(a):
    if len(a.backbone) != len(a.index):
        print("give one --index per --backbone")
        return 2
    for b, idx in zip(a.backbone, a.index):
        row = replay_ros(a.bag, b, idx, a.workdir, f"{a.out}_{b}" if a.out else None, a.rate, a.top_k,
                         camera_topic=a.camera_topic, domain_id=a.domain_id)
        print(json.dumps(row))
    return 0
