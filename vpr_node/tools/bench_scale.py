"""`vpr bench-scale`: a mission-sized map end to end, each step as the operator runs it.

1. `vpr large-map`: a procedural orthophoto (tiled UTM GeoTIFF with overviews; 10 km = 100 km2 at 1 m/px);
2. `vpr make-corpus`: tiles cut by windowed reads through the warped VRT;
3. `vpr build-index`: checkpointed chunks, PCA to --pca-dim, the index type chosen by --memory-budget;
4. `vpr synth-queries --bag`: frames over the map with ground truth, as a rosbag2;
5. `vpr replay-ros`: the node configured and activated against the index with index_memory_budget_mib set
   to the same budget, the bag published through it; recall, per-frame search/embed latency, node memory.

Every step is its own process: its wall time and peak resident memory (getrusage of the child) are measured.
A step whose output exists is not rerun (delete the folder to measure it again). Results: WORKDIR/results.json
and a table on stdout.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time

from vpr_node.core.backbones import DEFAULT_BACKBONE
from vpr_node.core.index.synthetic import synthetic_index

REPO = pathlib.Path(__file__).resolve().parents[2]


def run_step(name: str, args: list[str], log_dir: pathlib.Path) -> dict:
    """Run `vpr ARGS` as a child process; wall seconds and its peak RSS (MiB). A failure stops the benchmark."""
    log = log_dir / f"{name}.log"
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "vpr_node.tools.cli", *args], cwd=REPO, stdout=f,
                                stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"step {name} failed (exit {proc.returncode}); see {log}:\n{log.read_text()[-3000:]}")
    print(f"[bench-scale] {name}: {wall:.0f} s, peak RSS {usage.ru_maxrss / 1024:.0f} MiB", flush=True)
    return {"wall_s": round(wall, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "log": str(log)}


def _last_json(log: str) -> dict:
    for line in reversed(pathlib.Path(log).read_text().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {}


def _synthetic_index_cmd(a) -> int:
    m = synthetic_index(a.like, a.n, a.out, a.memory_budget, a.seed)
    print(json.dumps({k: m.get(k) for k in ("entry_count", "tile_count", "index_type", "index_params", "index_bytes",
                                            "recall_at_10_vs_exact", "recall_at_10_vs_exact_without_rerank",
                                            "build_seconds")}))
    return 0


def bench_scale(a) -> dict:
    work = pathlib.Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    map_path = work / f"map_{a.size_km:g}km.tif"
    corpus, index, queries, bag = work / "corpus", work / "index", work / "queries", work / "queries_bag"
    previous = work / "results.json"  # steps skipped now keep the times measured when they ran
    steps: dict = json.loads(previous.read_text()).get("steps", {}) if previous.exists() else {}
    if not map_path.exists():
        steps["map"] = run_step("map", ["large-map", "--out", str(map_path), "--size-km", str(a.size_km),
                                        "--gsd", str(a.gsd)], logs)
    if not (corpus / "tiles.csv").exists():
        steps["corpus"] = run_step("corpus", ["make-corpus", "--maps", str(map_path), "--out", str(corpus),
                                              "--tile-m", str(a.tile_m), "--overlap", str(a.overlap),
                                              "--tile-px", str(a.tile_px)], logs)
    if not (index / "manifest.json").exists():
        cmd = ["build-index", "--backbone", a.backbone, "--corpus", str(corpus), "--out", str(index),
               "--rotations", str(a.rotations), "--memory-budget", str(a.memory_budget), "--chunk-tiles",
               str(a.chunk_tiles)]
        cmd += ["--pca-dim", str(a.pca_dim)] if a.pca_dim else []
        cmd += ["--workers", str(a.workers)] if a.workers else []
        steps["index"] = run_step("index", cmd, logs)
    if not (bag / "metadata.yaml").exists():
        steps["queries"] = run_step("queries", ["synth-queries", "--maps", str(map_path), "--out", str(queries),
                                                "--n", str(a.queries), "--seed", str(a.seed), "--footprint-m",
                                                str(a.tile_m), "--bag", str(bag), "--rate", str(a.rate)], logs)
    steps["node"] = run_step("node", ["replay-ros", str(bag), "--backbone", a.backbone, "--index", str(index),
                                      "--workdir", str(work / "node"), "--rate", str(a.rate),
                                      "--index-memory-budget", str(a.memory_budget)], logs)
    scale = []
    for n in a.synthetic_sizes:
        sdir = work / f"synthetic_{n}"
        row = {"vectors": n}
        if not (sdir / "manifest.json").exists():
            row["build"] = run_step(f"synthetic_index_{n}", ["synthetic-index", "--like", str(index), "--n", str(n),
                                                             "--out", str(sdir), "--memory-budget",
                                                             str(a.synthetic_budget)], logs)
        sm = json.loads((sdir / "manifest.json").read_text())
        row.update({k: sm.get(k) for k in ("index_type", "index_params", "recall_at_10_vs_exact",
                                           "recall_at_10_vs_exact_without_rerank", "build_seconds")})
        row["index_faiss_mib"] = round(sm["index_bytes"] / 2**20, 1)
        row["descriptors_npy_mib"] = round((sdir / "descriptors.npy").stat().st_size / 2**20, 1)
        step = run_step(f"node_{n}", ["replay-ros", str(bag), "--backbone", a.backbone, "--index", str(sdir),
                                      "--workdir", str(work / f"node_{n}"), "--rate", str(a.rate),
                                      "--index-memory-budget", str(a.synthetic_budget)], logs)
        res = _last_json(step["log"])
        row["node"] = {k: res.get(k) for k in ("node_rss_mib_active", "node_anon_mib_active", "node_peak_rss_mib",
                                                "node_rss_mib_end", "node_anon_mib_end", "node_file_mib_end",
                                                "search_latency_ms_p50", "search_latency_ms_p95", "results",
                                                "frames_published")}
        scale.append(row)
    m = json.loads((index / "manifest.json").read_text())
    node = _last_json(steps["node"]["log"])
    tiles = m["tile_count"]
    out = {
        "map": {"path": str(map_path), "side_km": a.size_km, "area_km2": a.size_km ** 2, "gsd_m": a.gsd,
                "bytes": map_path.stat().st_size},
        "tiles": tiles, "tile_m": a.tile_m, "stride_m": a.tile_m * (1 - a.overlap), "rotations": m["rotations"],
        "vectors": m["entry_count"], "descriptor_dim": m["descriptor_dim"], "pca": m.get("pca"),
        "memory_budget_mib": a.memory_budget, "index_type": m["index_type"], "index_params": m["index_params"],
        "index_faiss_mib": round(m["index_bytes"] / 2**20, 2),
        "descriptors_npy_mib": round((index / "descriptors.npy").stat().st_size / 2**20, 1),
        "recall_at_10_vs_exact": m.get("recall_at_10_vs_exact"),
        "recall_at_10_vs_exact_without_rerank": m.get("recall_at_10_vs_exact_without_rerank"),
        "build": m.get("build"), "hubness": m.get("hubness"), "steps": steps, "synthetic_scale": scale,
        "node": {k: node.get(k) for k in ("node_rss_mib_active", "node_anon_mib_active", "node_peak_rss_mib",
                                          "node_rss_mib_end", "node_anon_mib_end", "node_file_mib_end",
                                          "search_latency_ms_p50",
                                          "search_latency_ms_p95", "embed_latency_ms_p50", "embed_latency_ms_p95",
                                          "frames_published", "results", "frames_without_result",
                                          "frames_dropped_by_node", "recall_at_25m",
                                          "recall_at_50m")},
    }
    (work / "results.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return out


def register(sub) -> None:
    p = sub.add_parser("bench-scale", help="a mission-sized map end to end: map, corpus, checkpointed build, node "
                                           "activated within a memory budget (times, peak memory, recall, latency)")
    p.add_argument("--workdir", default="artifacts/bench_scale")
    p.add_argument("--size-km", type=float, default=10.0, help="side of the square map (10 km = 100 km2)")
    p.add_argument("--gsd", type=float, default=1.0, help="map resolution (m/px)")
    p.add_argument("--tile-m", type=float, default=150.0, help="tile ground size (m); queries have this footprint")
    p.add_argument("--overlap", type=float, default=0.5)
    p.add_argument("--tile-px", type=int, default=320)
    p.add_argument("--backbone", default=DEFAULT_BACKBONE)
    p.add_argument("--rotations", type=int, default=4, choices=(1, 2, 4, 8))
    p.add_argument("--pca-dim", type=int, default=256)
    p.add_argument("--memory-budget", type=float, default=8.0, help="MiB for the index, at build and in the node")
    p.add_argument("--chunk-tiles", type=int, default=1024)
    p.add_argument("--workers", type=int, default=0, help="embed on a local Dask cluster of this many processes")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--seed", type=int, default=100)
    p.add_argument("--rate", type=float, default=2.0, help="replay rate (frames/s of the query bag)")
    p.add_argument("--synthetic-sizes", type=int, nargs="*", default=[],
                   help="also activate the node against synthetic indexes of these many vectors (synthetic-index)")
    p.add_argument("--synthetic-budget", type=float, default=128.0, help="MiB index budget of the synthetic sizes")
    p.set_defaults(fn=lambda a: bench_scale(a) and 0)

    p = sub.add_parser("synthetic-index", help="an index of N synthetic vectors with a real index's backbone identity "
                                               "(node memory/latency at sizes beyond the maps at hand)")
    p.add_argument("--like", required=True, help="a real index folder (backbone label, weights, dimension)")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--memory-budget", type=float, default=128.0, help="MiB: picks flat / sq8 / IVF-PQ")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=_synthetic_index_cmd)
