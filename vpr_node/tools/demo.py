"""The README's main job: the embedded sample map, the pre-flight step (`prepare-mission`: tiles matched
to the camera footprint, a short adaptation of the default backbone to the map, the index, the learned matcher's
map features, the verifier's calibration), a synthesised flight along a track; then vpr_node, vpr_verifier and
vpr_mavlink as real OS processes, the flight's frames streamed into them over ROS topics, each frame's retrieval
top-1 and verified fix printed with its error from the truth, the accepted fixes sent to a simulated PX4, and the
flight drawn on the map (PNG) and written for Foxglove (MCAP)."""
from __future__ import annotations

import json
import pathlib
import random
import time

import numpy as np

from vpr_node.core.backbones import DEFAULT_BACKBONE

# The demo's short adaptation budget (the full recipe and its numbers: README "Mission preparation").
DEMO_ADAPT = dict(steps=4, views=400, validation_views=100)  # a step budget: the same model on any machine


# The demo's calibration budget: a third of prepare-mission's default views (BENCHMARKS.md "Demo")
DEMO_CALIBRATION_VIEWS = 100


def demo_flight(maps_csv, n_frames: int, seed: int, out_dir: pathlib.Path) -> list:
    """The sample flight: a closed star-shaped track over the sample map (bench-flight's trajectory, heading along
    the track, 55-110 m, small tilt), frames rendered under the benchmark's strong photometric change; cached in
    out_dir (images + queries.csv)."""
    import math

    from vpr_node.core.benchmarks.flight import STAR, FlightConfig, FrameRenderer, trajectory
    from vpr_node.core.maps.sources import load_corner_table
    from vpr_node.core.views.queries import Query, QuerySpec, read_queries, write_queries

    if (out_dir / "queries.csv").exists():
        return read_queries(out_dir / "queries.csv")
    raster = load_corner_table(maps_csv)[0]
    g = raster.geo
    side_km = g.width * g.gsd_m / 1000.0
    n, k = STAR
    radius = max(10.0, side_km * 500.0 - 150.0)
    path_m = radius * n * 2 * math.sin(math.pi * k / n) * 0.999
    spec = QuerySpec.benchmark()
    cfg = FlightConfig(map_km=side_km, path_km=path_m / 1000.0, speed_mps=15.0, rate_hz=15.0 * n_frames / path_m,
                       altitude_m=spec.altitude_m, condition="strong", seed=seed)
    camera = spec.camera_model()
    renderer = FrameRenderer(raster, camera, cfg)
    poses = trajectory(cfg, ((g.lat0 + g.lat1) / 2, (g.lon0 + g.lon1) / 2))[:n_frames]
    queries = [Query(f"f{p.i:03d}", p.lat, p.lon, p.yaw_deg, 1.0, p.tilt_deg, raster.path.name, renderer.render(p),
                     p.altitude_m, camera.square_footprint_m(p.altitude_m)) for p in poses]
    write_queries(queries, out_dir)
    return queries


def prepare_sample(workdir: pathlib.Path, n_frames: int, seed: int, log=print, adapt: bool = True) -> dict:
    """Sample map -> prepare-mission (footprint tiles, short adaptation, index, map features, verifier calibration,
    before/after report) -> the sample flight (demo_flight); cached in workdir."""
    from vpr_node.core.benchmarks.workspace import sample_maps
    from vpr_node.core.mission.adaptation import AdaptConfig
    from vpr_node.core.mission.calibration import CalibrationConfig
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
            f"the demo ({budget.get('steps', 0)} fine-tune steps, {budget['views']} views for the learned whitening, "
            f"{DEMO_CALIBRATION_VIEWS} views for the verifier's calibration); first run several minutes on 2 CPU "
            "cores, cached afterwards")
    summary = prepare_mission(MissionConfig(maps=str(maps_csv), out=str(index_dir), altitude=spec.altitude_m,
                                            camera=spec.camera_model(), report_queries=60,
                                            calibration=CalibrationConfig(views=DEMO_CALIBRATION_VIEWS),
                                            adapt=AdaptConfig(**budget, altitude_m=spec.altitude_m)), log=log)
    queries = demo_flight(maps_csv, n_frames, seed, workdir / f"flight_track_seed{seed}_n{n_frames}")
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


def _params_file(workdir: pathlib.Path, index_dir, top_k: int, autopilot_port: int) -> pathlib.Path:
    """The three nodes' parameters in one file (config/vpr.yaml has every parameter)."""
    import yaml

    from vpr_node.ros.node_spec import MAVLINK_NAME, NODE_NAME, VERIFIER_NAME
    doc = {NODE_NAME: {"ros__parameters": {
        "backbone": DEFAULT_BACKBONE, "index_dir": str(index_dir), "top_k": top_k, "image_topic": "/camera/image_raw",
        "result_topic": "/vpr/result", "queue_depth": 1, "recorder_path": str(workdir / "fdr.jsonl")}},
        VERIFIER_NAME: {"ros__parameters": {"index_dir": str(index_dir), "match_timeout": 10.0, "queue_depth": 4,
                                            "recorder_path": str(workdir / "verifier_fdr.jsonl")}},
        MAVLINK_NAME: {"ros__parameters": {"autopilot": "px4", "connection": f"udpout:127.0.0.1:{autopilot_port}",
                                           "max_fix_age_s": 30.0, "recorder_path": str(workdir / "mavlink_fdr.jsonl")}}}
    path = workdir / "demo_params.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=True))
    return path


def _free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_demo(args) -> int:
    """The sample flight through vpr_node, vpr_verifier and vpr_mavlink (real processes, real topics) with a
    simulated PX4 receiving the fixes; per frame the retrieval top-1, the verified fix and its error; a picture of
    the flight on the map and an MCAP file of it for Foxglove."""
    from vpr_node.core.autopilot.sim_peer import SimulatedAutopilot
    from vpr_node.core.evaluation.fix_map import plot_fixes_on_map
    from vpr_node.core.evaluation.recall import recall_summary, truth_distances
    from vpr_node.core.io.bags import write_flight_mcap
    from vpr_node.core.maps.geo import haversine_m
    from vpr_node.core.maps.sources import load_corner_table
    from vpr_node.core.types import stamp_to_ns
    from vpr_node.core.verification.verifier import VerifyConfig
    from vpr_node.ros.harness import NodeProcess, VprClient
    from vpr_node.ros.node_spec import (
        MAVLINK_EXECUTABLE,
        MAVLINK_NAME,
        NODE_NAME,
        VERIFIER_EXECUTABLE,
        VERIFIER_NAME,
        Ros2Cli,
        launch_command,
        ros2_cli_available,
    )

    workdir = pathlib.Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    sample = prepare_sample(workdir, args.frames, args.seed)
    print_mission(sample["mission"])
    queries = sample["queries"]
    domain = random.Random().randint(100, 200)
    port = _free_udp_port()
    # the node's results reach as deep as the verifier goes on frames the top 10 do not verify; recall is scored at
    # --top-k
    params = _params_file(workdir, sample["index"], max(args.top_k, VerifyConfig().candidates_needed), port)
    tools = ros2_cli_available() and not args.no_ros2_tools
    names = (NODE_NAME, VERIFIER_NAME, MAVLINK_NAME)
    if tools:  # the operator's way: ros2 launch + ros2 lifecycle set
        cmd = launch_command(params, verifier=True, autopilot="px4")
        print(f"[demo] $ ROS_DOMAIN_ID={domain} {' '.join(cmd)}   (log: {workdir / 'node.log'})")
        procs = [NodeProcess(params, workdir / "node.log", domain, via_launch=True,
                             launch_args={"verifier": True, "autopilot": "px4"})]
    else:
        print(f"[demo] starting vpr_node, vpr_verifier and vpr_mavlink (ROS_DOMAIN_ID={domain}; ros2 launch tools "
              f"not installed, so the process harness and the lifecycle services directly); logs in {workdir}")
        procs = [NodeProcess(params, workdir / f"{name}.log", domain, executable=exe, name=name)
                 for exe, name in (("vpr_lifecycle_node", NODE_NAME), (VERIFIER_EXECUTABLE, VERIFIER_NAME),
                                   (MAVLINK_EXECUTABLE, MAVLINK_NAME))]
    print(f"[demo] a simulated PX4 listens on udp 127.0.0.1:{port}: vpr_mavlink sends it each accepted fix")
    px4 = SimulatedAutopilot("px4", port=port).__enter__()
    client = VprClient(domain, verifier=True, autopilot=True)
    cli = Ros2Cli(domain)

    def transition(name: str, node: str) -> bool:
        if not tools:
            return client.transition(name, node=node)
        ok, out = cli.lifecycle_set(name, f"/{node}")
        print(f"[demo] $ ros2 lifecycle set /{node} {name}  ->  {out.splitlines()[-1] if out else '?'}")
        return ok

    def logs() -> str:
        return "".join(p.log_text()[-2000:] for p in procs)

    dists, lat_ms, embed_ms, frames = [], [], [], []
    try:
        client.wait_for_node(60)
        t0 = time.monotonic()
        for node in names:
            assert transition("configure", node), f"configure {node} failed:\n" + logs()
            assert transition("activate", node), f"activate {node} failed:\n" + logs()
        print(f"[demo] nodes configured+activated in {time.monotonic() - t0:.1f} s; streaming {len(queries)} frames "
              f"at up to {args.rate} Hz")
        client.wait_subscribed(10, count=2)
        client.wait_result_subscribers(2)
        # vpr_mavlink sends nothing before it has heard the autopilot's heartbeat (a fix then is refused as
        # no_heartbeat and recorded): start the flight once its link is up, as an aircraft would be before take-off
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            diag = client.latest_diagnostics(2.0, name="autopilot output") or {}
            if diag.get("link_state") == "connected":
                break
        print(f"[demo] autopilot link: {diag.get('link_state', 'unknown')}")
        period = 1.0 / args.rate
        for i, q in enumerate(queries):
            stamp = time.time_ns()
            sent = time.monotonic()
            client.publish(client.make_image(q.image, stamp))
            res = client.next_result(timeout=30)
            while res is not None and stamp_to_ns(res.header.stamp) != stamp:
                res = client.next_result(timeout=30)
            v = _verification_of(client, stamp)
            frame = {"stamp_ns": stamp, "image": q.image, "lat": q.lat, "lon": q.lon, "fix": None}
            frames.append(frame)
            if res is None:
                print(f"  frame {i:3d}: no result (see the node logs)")
                dists.append(np.full(args.top_k, np.inf))
                continue
            lat_ms.append((time.monotonic() - sent) * 1e3)
            embed_ms.append(res.embed_latency_ms)
            c = res.candidates
            d = truth_distances(q.lat, q.lon, [x.latitude for x in c], [x.longitude for x in c], args.top_k)
            dists.append(d)
            line = f"  frame {i:3d}  top-1 {c[0].tile_id} {d[0]:6.1f} m from truth [{'HIT ' if d[0] <= 25 else 'miss'}]"
            if v is None:
                line += " | no verification within 60 s"
            elif v.fix_valid:
                err = float(haversine_m(q.lat, q.lon, v.latitude, v.longitude))
                sigma = float(np.sqrt(max(np.linalg.eigvalsh(np.reshape(v.position_covariance, (2, 2))).max(), 0)))
                line += (f" | fix {err:5.2f} m from truth, 1-sigma {sigma:4.2f} m, conf {v.confidence:.2f} "
                         f"{'ACCEPTED -> PX4' if v.accepted else v.reason}")
                frame["fix"] = {"lat": v.latitude, "lon": v.longitude, "accepted": bool(v.accepted), "error_m": err,
                                "cov_en": np.reshape(v.position_covariance, (2, 2)).tolist()}
            else:
                line += f" | no fix: {v.reason}"
            print(line)
            time.sleep(max(0.0, period - (time.monotonic() - sent)))
        time.sleep(1.0)
        diag = client.latest_diagnostics(5) or {}
        for node in reversed(names):
            transition("deactivate", node)
            transition("shutdown", node)
    finally:
        client.close()
        for p in procs:
            p.stop()
        px4.close()
    accepted = [f["fix"] for f in frames if f["fix"] and f["fix"]["accepted"]]
    received = px4.messages("GLOBAL_POSITION_SENSOR")
    errors = np.array([f["error_m"] for f in accepted]) if accepted else np.zeros(0)
    rec = {int(n): v for n, v in recall_summary(dists, args.top_k).items()}
    raster = load_corner_table(sample["maps"])[0]
    picture = plot_fixes_on_map(raster.read_rgb(), raster.geo, [(q.lat, q.lon) for q in queries],
                                [f["fix"] for f in frames], workdir / "flight_map.png",
                                f"sample flight: {len(accepted)} of {len(queries)} frames fixed")
    mcap = write_flight_mcap(workdir / "flight_mcap", [f | {"fix": f["fix"] if f["fix"] and f["fix"]["accepted"]
                                                            else None} for f in frames])
    summary = {"frames": len(queries), "results": len(lat_ms), "recall_at_25m": rec,
               "accepted_fixes": len(accepted), "fix_error_m_p50": float(np.median(errors)) if accepted else None,
               "fix_error_m_max": float(errors.max()) if accepted else None,
               "autopilot_received": len(received),
               "autopilot_processing_ms_p50": float(np.median([m.processing_time for m in received]) / 1e3)
               if received else None,
               "end_to_end_ms_p50": float(np.percentile(lat_ms, 50)) if lat_ms else None,
               "end_to_end_ms_p95": float(np.percentile(lat_ms, 95)) if lat_ms else None,
               "embed_ms_p50": float(np.percentile(embed_ms, 50)) if embed_ms else None,
               "picture": str(picture), "mcap": str(mcap), "node_diagnostics": diag}
    print("\n[demo] retrieval: " + ", ".join(f"recall@{n} (25 m) = {rec[n]:.3f}" for n in (1, 5, 10)))
    if accepted:
        print(f"[demo] verification: {len(accepted)} of {len(queries)} frames got an accepted fix, error p50 "
              f"{summary['fix_error_m_p50']:.2f} m, max {summary['fix_error_m_max']:.2f} m")
    print(f"[demo] autopilot: the simulated PX4 received {len(received)} GLOBAL_POSITION_SENSOR (one per accepted "
          f"fix), processing time p50 {summary['autopilot_processing_ms_p50']} ms")
    if lat_ms:
        print(f"[demo] end-to-end latency (publish -> VprResult received) p50 {summary['end_to_end_ms_p50']:.0f} ms, "
              f"p95 {summary['end_to_end_ms_p95']:.0f} ms; embed p50 {summary['embed_ms_p50']:.0f} ms")
    print(f"[demo] the flight on the map: {picture}")
    print(f"[demo] the flight for Foxglove (open the folder's .mcap; Map panel: /vpr/fix and /gps/fix): {mcap}")
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"[demo] wrote {workdir / 'summary.json'}")
    return 0 if len(lat_ms) == len(queries) and len(received) == len(accepted) else 1


def _verification_of(client, stamp: int, timeout: float = 60.0):
    """The VprVerification of the frame with this stamp (older ones skipped), None after `timeout`."""
    from vpr_node.core.types import stamp_to_ns

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            v = client.verifications.get(timeout=max(0.1, deadline - time.monotonic()))
        except Exception:  # noqa: BLE001 - queue.Empty
            return None
        if stamp_to_ns(v.header.stamp) == stamp:
            return v
    return None


def register(sub) -> None:
    p = sub.add_parser("demo", help="end-to-end: sample map -> prepare-mission -> vpr_node + vpr_verifier + "
                                    "vpr_mavlink -> streamed flight -> fixes to a simulated PX4, picture, MCAP")
    p.add_argument("--workdir", default="artifacts/demo")
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--rate", type=float, default=2.0, help="publish rate (Hz)")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--no-ros2-tools", action="store_true",
                   help="drive the node through its lifecycle services from Python even where `ros2` is installed")
    p.set_defaults(fn=run_demo)
