"""`vpr bench-flight`: a GNSS-denied flight over a mission-sized map with the developer imagery inside
(core/benchmarks/flight.py says what is simulated and measured).

1. the composite map (procedural landscape around the real imagery, one GeoTIFF);
2. `vpr prepare-mission` on it as the operator runs it (its own process: wall time and peak RSS measured);
3. the flight once per prior configuration: frames, priors, retrieval, verification, VIO resets by accepted fixes.

Steps whose output exists are not rerun (a flight's records are kept per configuration). Results:
WORKDIR/results.json, WORKDIR/flight.png, WORKDIR/flight_map.png and a table on stdout.
"""
from __future__ import annotations

import json
import pathlib
import shlex

from vpr_node.core.backbones import DEFAULT_BACKBONE
from vpr_node.core.benchmarks.flight import CONFIGS, FlightConfig
from vpr_node.tools.common import add_dataclass_options, dataclass_from_args


def bench_flight(a) -> dict:
    import numpy as np

    from vpr_node.core.benchmarks.developer_maps import resolve_maps
    from vpr_node.core.benchmarks.flight import FrameRenderer, fly, summarise_flight, trajectory, write_flight_bag
    from vpr_node.core.benchmarks.flight_report import format_markdown, plot_flight, plot_flight_map
    from vpr_node.core.maps.camera import CameraModel
    from vpr_node.core.maps.composite import real_mask, write_composite_map
    from vpr_node.core.maps.sources import load_maps
    from vpr_node.core.retrieval.strategy import load_strategy
    from vpr_node.core.verification.verifier import Verifier
    from vpr_node.tools.bench_scale import run_step

    cfg = dataclass_from_args(FlightConfig, a)
    maps = resolve_maps(a.maps)
    if maps is None:
        raise SystemExit(2)
    work = pathlib.Path(a.workdir)
    (work / "logs").mkdir(parents=True, exist_ok=True)
    previous = work / "results.json"
    steps: dict = json.loads(previous.read_text()).get("steps", {}) if previous.exists() else {}

    map_path = work / "map" / "composite.tif"
    parts = write_composite_map(map_path, load_maps(maps), cfg.map_km * 1000.0, cfg.gsd_m)
    index = work / "index"
    if not (index / "manifest.json").exists() or not (index / "verification.json").exists():
        cmd = ["prepare-mission", "--maps", str(map_path), "--out", str(index), "--backbone", a.backbone,
               "--altitude", *(str(v) for v in cfg.altitude_m), "--report-queries", "0", "--runtime", a.runtime,
               *a.prepare_args]
        steps["prepare_mission"] = run_step("prepare_mission", cmd, work / "logs")

    camera = CameraModel.from_hfov(86.0, 1280, 720)
    strategy = load_strategy(a.backbone, index_dir=str(index), runtime=a.runtime)
    verifier = Verifier.for_index(index, require_calibration=True)
    raster = load_maps(map_path)[0]
    meta = json.loads(map_path.with_suffix(".json").read_text())
    poses = trajectory(cfg, tuple(meta["centre"]))
    real_rows = np.flatnonzero(real_mask(parts, strategy.index.tile_array("lat"), strategy.index.tile_array("lon")))
    renderer = FrameRenderer(raster, camera, cfg)
    print(f"[bench-flight] {len(poses)} frames over {poses[-1].s_m / 1000:.1f} km, "
          f"{int(real_mask(parts, [p.lat for p in poses], [p.lon for p in poses]).sum())} over real imagery; "
          f"index {len(strategy.index)} tiles ({len(real_rows)} on real imagery)", flush=True)

    if a.bag and not pathlib.Path(a.bag).exists():
        print(f"[bench-flight] flight bag: {write_flight_bag(renderer, poses, cfg, a.bag)}", flush=True)
    if not a.configs:
        return {"frames": len(poses), "index": str(index), "bag": a.bag, "steps": steps}
    runs, summaries = {}, {}
    for name in a.configs:
        rec_path = work / f"flight_{name}.json"
        key = {"flight": json.loads(json.dumps(vars(cfg), default=str)), "index": str(index)}
        if rec_path.exists() and json.loads(rec_path.read_text()).get("key") == key:
            runs[name] = json.loads(rec_path.read_text())["records"]
        else:
            runs[name] = fly(name, strategy, verifier, renderer, poses, real_rows, parts, camera, cfg)
            rec_path.write_text(json.dumps({"key": key, "records": runs[name]}) + "\n")
        summaries[name] = summarise_flight(runs[name], cfg)
    plot = plot_flight(runs, work / "flight.png", cfg.radius_m)
    last = runs.get("all") or next(iter(runs.values()))
    fmap = plot_flight_map(map_path, poses, last, parts, work / "flight_map.png", cfg.radius_m)
    manifest = json.loads((index / "manifest.json").read_text())
    out = {"flight": json.loads(json.dumps(vars(cfg), default=str)),
           "map": {"path": str(map_path), "area_km2": cfg.map_km ** 2, "gsd_m": cfg.gsd_m,
                   "real_parts": len(parts), "bytes": map_path.stat().st_size},
           "index": {k: manifest.get(k) for k in ("tile_count", "entry_count", "descriptor_dim", "index_type",
                                                   "index_bytes", "verification")},
           "steps": steps, "frames": len(poses), "configs": summaries, "plot": str(plot), "map_plot": str(fmap)}
    previous.write_text(json.dumps(out, indent=2) + "\n")
    print(format_markdown(summaries))
    print(json.dumps({k: out[k] for k in ("map", "index", "steps", "frames")}, default=str))
    return out


def register(sub) -> None:
    p = sub.add_parser("bench-flight", help="a GNSS-denied flight over a mission-sized map with real imagery inside: "
                                            "drifting VIO priors, fixes, recall and position error along the flight")
    p.add_argument("--workdir", default="artifacts/bench_flight")
    p.add_argument("--maps", default=None, help="the real imagery placed in the map (default: wildnav_turku)")
    p.add_argument("--backbone", default=DEFAULT_BACKBONE)
    p.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS),
                   help="prior configurations flown (none named: only the map, the index and --bag)")
    p.add_argument("--bag", default=None,
                   help="also write the flight as a rosbag2 (JPEG frames, /gps/fix truth, heading and altitude "
                        "priors) for `vpr replay-ros BAG --verify --autopilot px4|ardupilot`")
    p.add_argument("--runtime", default="pytorch", choices=("pytorch", "onnxruntime"),
                   help="what prepare-mission builds on and the flight embeds frames with (onnxruntime: faster "
                        "on a CPU, descriptors checked against PyTorch's)")
    p.add_argument("--prepare-args", default="", type=shlex.split,
                   help='more prepare-mission flags as one string, e.g. "--workers 2 --memory-budget 64"')
    add_dataclass_options(p, FlightConfig)
    p.set_defaults(fn=lambda a: bench_flight(a) and 0)
