"""The README's main job: the embedded sample map, the pre-flight step (`prepare-mission`: tiles matched
to the camera footprint, a short adaptation of the default backbone to the map, the index), a
synthesised flight; then the node as a real OS process, the flight's frames streamed into it over ROS
topics, each frame's top-K printed and a summary (recall@1/5/10 against the true positions, latency)."""
from __future__ import annotations

import json
import pathlib
import random
import time

import numpy as np

DEFAULT_BACKBONE = "efficientnet_lite0_netvlad"


# The demo's short adaptation budget (the full recipe and its numbers: README "Mission preparation").
DEMO_ADAPT = dict(steps=4, views=400, validation_views=100)  # a step budget: the same model on any machine


def prepare_sample(workdir: pathlib.Path, n_frames: int, seed: int, log=print, adapt: bool = True) -> dict:
    """Sample map -> prepare-mission (footprint tiles, short adaptation, index, before/after report) ->
    synthesised flight (the benchmark protocol: 55-110 m, unknown yaw, tilt <= 15 deg, strong photometric
    change); cached in workdir."""
    from vpr_node.core.benchmarks.workspace import cached_queries, sample_maps
    from vpr_node.core.mission.adaptation import AdaptConfig
    from vpr_node.core.mission.config import MissionConfig
    from vpr_node.core.mission.prepare import prepare_mission
    from vpr_node.core.views.queries import QuerySpec

    if not (workdir / "map" / "tiles.csv").exists():
        log("[demo] generating the procedural sample map")
    maps_csv = sample_maps(workdir)
    spec = QuerySpec.benchmark()
    index_dir = workdir / f"index_{DEFAULT_BACKBONE}"
    budget = DEMO_ADAPT if adapt else dict(minutes=0.0, views=400, validation_views=100, whiten_dim=0)
    if not (index_dir / "manifest.json").exists():
        log(f"[demo] prepare-mission with the default backbone ({DEFAULT_BACKBONE}): a SHORT adaptation budget for "
            f"the demo ({budget.get('steps', 0)} fine-tune steps, {budget['views']} views for the learned whitening); "
            "first run about 5 minutes on 2 CPU cores, cached afterwards")
    summary = prepare_mission(MissionConfig(maps=str(maps_csv), out=str(index_dir), altitude=spec.altitude_m,
                                            camera=spec.camera_model(), report_queries=60,
                                            adapt=AdaptConfig(**budget, altitude_m=spec.altitude_m)), log=log)
    queries = cached_queries(maps_csv, n_frames, seed, spec, workdir / f"flight_seed{seed}_n{n_frames}")
    return {"maps": maps_csv, "index": index_dir, "queries": queries, "mission": summary}


def print_mission(summary: dict, log=print) -> None:
    chosen = (summary.get("adaptation") or {}).get("validation", {}).get("chosen", {})
    log(f"[demo] index: {summary['tiles']} tiles at "
        + ", ".join(f"{t:g} m" for t, _ in summary["tile_plan"]["scales"])
        + f"; adaptation chose the {chosen.get('model', '?')} weights "
        + (f"with a {chosen['dim']}-D learned whitening" if chosen.get("shrinkage") else "without whitening"))
    rep = summary.get("report")
    if rep:
        for when in ("before", "after"):
            r = rep[when]["recall"]["25"]
            log(f"[demo] mission report ({rep['queries']} queries, seed {rep['seed']}), {when:6s} adaptation: "
                f"recall@1/5/10 (25 m) {r['1']:.3f}/{r['5']:.3f}/{r['10']:.3f}")


def run_demo(args) -> int:
    from vpr_node.core.evaluation.recall import recall_summary, truth_distances
    from vpr_node.core.types import stamp_to_ns
    from vpr_node.ros.harness import NodeProcess, VprClient, write_params_file
    from vpr_node.ros.node_spec import Ros2Cli, launch_command, ros2_cli_available

    workdir = pathlib.Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    sample = prepare_sample(workdir, args.frames, args.seed)
    print_mission(sample["mission"])
    queries = sample["queries"]
    domain = random.Random().randint(100, 200)
    params = write_params_file(workdir / "demo_params.yaml", {
        "backbone": DEFAULT_BACKBONE, "index_dir": str(sample["index"]), "top_k": args.top_k,
        "image_topic": "/camera/image_raw", "result_topic": "/vpr/result", "queue_depth": 1,
        "recorder_path": str(workdir / "fdr.jsonl")})
    tools = ros2_cli_available() and not args.no_ros2_tools
    if tools:  # the operator's way: ros2 launch + ros2 lifecycle set
        print(f"[demo] $ ROS_DOMAIN_ID={domain} {' '.join(launch_command(params))}   (log: {workdir / 'node.log'})")
    else:
        print(f"[demo] starting vpr_node (ROS_DOMAIN_ID={domain}; ros2 launch tools not installed, so the process "
              f"harness and the lifecycle services directly); node log: {workdir / 'node.log'}")
    node = NodeProcess(params, workdir / "node.log", domain, via_launch=tools)
    client = VprClient(domain)
    cli = Ros2Cli(domain)

    def transition(name: str) -> bool:
        if not tools:
            return client.transition(name)
        ok, out = cli.lifecycle_set(name)
        print(f"[demo] $ ros2 lifecycle set /vpr_node {name}  ->  {out.splitlines()[-1] if out else '?'}")
        return ok

    dists, lat_ms, embed_ms = [], [], []
    try:
        client.wait_for_node(60)
        t0 = time.monotonic()
        assert transition("configure"), "configure failed:\n" + node.log_text()[-3000:]
        assert transition("activate"), "activate failed:\n" + node.log_text()[-3000:]
        print(f"[demo] node configured+activated in {time.monotonic() - t0:.1f} s; streaming {len(queries)} frames "
              f"at {args.rate} Hz")
        client.wait_subscribed(10)
        period = 1.0 / args.rate
        for i, q in enumerate(queries):
            stamp = time.time_ns()
            sent = time.monotonic()
            client.publish(client.make_image(q.image, stamp))
            res = client.next_result(timeout=30)
            while res is not None and stamp_to_ns(res.header.stamp) != stamp:
                res = client.next_result(timeout=30)
            if res is None:
                print(f"  frame {i:3d}: no result (see node log)")
                dists.append(np.full(args.top_k, np.inf))
                continue
            lat_ms.append((time.monotonic() - sent) * 1e3)
            embed_ms.append(res.embed_latency_ms)
            c = res.candidates
            d = truth_distances(q.lat, q.lon, [x.latitude for x in c], [x.longitude for x in c], args.top_k)
            dists.append(d)
            ok = "HIT " if d[0] <= 25 else ("top5" if (d[:5] <= 25).any() else "miss")
            print(f"  frame {i:3d} yaw {q.yaw_deg:5.1f}  top-1 {c[0].tile_id} dist {c[0].distance:.3f} "
                  f"({d[0]:6.1f} m from truth) [{ok}]  top-{len(c)}: " + " ".join(f"{m:.0f}" for m in d) + " m")
            time.sleep(max(0.0, period - (time.monotonic() - sent)))
        diag = client.latest_diagnostics(5) or {}
        transition("deactivate")
        transition("shutdown")
    finally:
        client.close()
        node.stop()
    rec = {int(n): v for n, v in recall_summary(dists, args.top_k).items()}
    summary = {"frames": len(queries), "results": len(lat_ms), "recall_at_25m": rec,
               "end_to_end_ms_p50": float(np.percentile(lat_ms, 50)) if lat_ms else None,
               "end_to_end_ms_p95": float(np.percentile(lat_ms, 95)) if lat_ms else None,
               "embed_ms_p50": float(np.percentile(embed_ms, 50)) if embed_ms else None,
               "node_diagnostics": diag}
    print("\n[demo] summary: " + ", ".join(f"recall@{n} (25 m) = {rec[n]:.3f}" for n in (1, 5, 10)))
    if lat_ms:
        print(f"[demo] end-to-end latency (publish -> VprResult received) p50 {summary['end_to_end_ms_p50']:.0f} ms, "
              f"p95 {summary['end_to_end_ms_p95']:.0f} ms; embed p50 {summary['embed_ms_p50']:.0f} ms")
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"[demo] wrote {workdir / 'summary.json'}")
    return 0 if len(lat_ms) == len(queries) else 1


def register(sub) -> None:
    p = sub.add_parser("demo", help="end-to-end: sample map -> index -> node process -> streamed frames -> recall")
    p.add_argument("--workdir", default="artifacts/demo")
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--rate", type=float, default=2.0, help="publish rate (Hz)")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--no-ros2-tools", action="store_true",
                   help="drive the node through its lifecycle services from Python even where `ros2` is installed")
    p.set_defaults(fn=run_demo)
