"""The README's main job: build the embedded sample (map, tile corpus, index, flight), start the node
as a real OS process, stream the flight's frames into it over ROS topics, print each frame's top-K
and a summary (recall@1/5/10 against the frames' true positions, latency)."""
from __future__ import annotations

import json
import pathlib
import random
import time

import numpy as np


DEFAULT_BACKBONE = "efficientnet_lite0_netvlad"


def prepare_sample(workdir: pathlib.Path, n_frames: int, seed: int, log=print) -> dict:
    """Sample map -> corpus -> default-backbone index -> synthesised flight; cached in workdir."""
    from vpr_node.core.corpus import TileCorpus, cut_tiles, load_corner_table
    from vpr_node.core.indexing import build_index_for
    from vpr_node.core.queries import QuerySpec, read_queries, synthesise_queries, write_queries
    from vpr_node.core.sample_map import write_sample_map

    maps_csv = workdir / "map" / "tiles.csv"
    if not maps_csv.exists():
        log("[demo] generating the procedural sample map")
        write_sample_map(workdir / "map")
    rasters = load_corner_table(maps_csv)
    corpus_dir = workdir / "corpus"
    if not (corpus_dir / "tiles.csv").exists():
        cut_tiles(rasters, corpus_dir, tile_m=60.0, overlap=0.5, tile_px=320)
    index_dir = workdir / f"index_{DEFAULT_BACKBONE}"
    if not (index_dir / "manifest.json").exists():
        log(f"[demo] building the FAISS index with the default backbone ({DEFAULT_BACKBONE}: k-means centroids "
            "over the corpus, 4 rotations per tile)")
        build_index_for(DEFAULT_BACKBONE, TileCorpus(corpus_dir), index_dir, kind="flat", rotations=4)
    flight_dir = workdir / f"flight_seed{seed}_n{n_frames}"
    if not (flight_dir / "queries.csv").exists():
        write_queries(synthesise_queries(rasters, n_frames, seed=seed, spec=QuerySpec()), flight_dir)
    return {"maps": maps_csv, "corpus": corpus_dir, "index": index_dir, "queries": read_queries(flight_dir / "queries.csv")}


def run_demo(args) -> int:
    from vpr_node.core.evaluation import RECALL_NS, recall_from_distances
    from vpr_node.core.geo import haversine_m
    from vpr_node.ros.harness import NodeProcess, VprClient, write_params_file

    workdir = pathlib.Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    sample = prepare_sample(workdir, args.frames, args.seed)
    queries = sample["queries"]
    domain = random.Random().randint(100, 200)
    params = write_params_file(workdir / "demo_params.yaml", {
        "backbone": DEFAULT_BACKBONE, "index_dir": str(sample["index"]), "top_k": args.top_k,
        "image_topic": "/camera/image_raw", "result_topic": "/vpr/result", "queue_depth": 1,
        "recorder_path": str(workdir / "fdr.jsonl")})
    print(f"[demo] starting vpr_node (ROS_DOMAIN_ID={domain}); node log: {workdir / 'node.log'}")
    node = NodeProcess(params, workdir / "node.log", domain)
    client = VprClient(domain)
    dists, lat_ms, embed_ms = [], [], []
    try:
        client.wait_for_node(60)
        t0 = time.monotonic()
        assert client.transition("configure"), "configure failed:\n" + node.log_text()[-3000:]
        assert client.transition("activate"), "activate failed:\n" + node.log_text()[-3000:]
        print(f"[demo] node configured+activated in {time.monotonic() - t0:.1f} s; streaming {len(queries)} frames "
              f"at {args.rate} Hz")
        client.wait_subscribed(10)
        period = 1.0 / args.rate
        for i, q in enumerate(queries):
            stamp = time.time_ns()
            sent = time.monotonic()
            client.publish(client.make_image(q.image, stamp))
            res = client.next_result(timeout=30)
            while res is not None and (res.header.stamp.sec * 10**9 + res.header.stamp.nanosec) != stamp:
                res = client.next_result(timeout=30)
            if res is None:
                print(f"  frame {i:3d}: no result (see node log)")
                dists.append(np.full(args.top_k, np.inf))
                continue
            lat_ms.append((time.monotonic() - sent) * 1e3)
            embed_ms.append(res.embed_latency_ms)
            c = res.candidates
            d = haversine_m(q.lat, q.lon, np.array([x.latitude for x in c]), np.array([x.longitude for x in c]))
            dists.append(d)
            ok = "HIT " if d[0] <= 25 else ("top5" if (d[:5] <= 25).any() else "miss")
            print(f"  frame {i:3d} yaw {q.yaw_deg:5.1f}  top-1 {c[0].tile_id} dist {c[0].distance:.3f} "
                  f"({d[0]:6.1f} m from truth) [{ok}]  top-{len(c)}: " + " ".join(f"{m:.0f}" for m in d) + " m")
            time.sleep(max(0.0, period - (time.monotonic() - sent)))
        diag = client.latest_diagnostics(5) or {}
        client.transition("deactivate")
        client.transition("shutdown")
    finally:
        client.close()
        node.stop()
    rec = recall_from_distances(np.stack(dists), ns=(1, 5, 10), radius_m=25.0)
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
