"""`vpr bench`: speed, memory and scale numbers (printed and written as JSON).

  embed     embed latency p50/p95 per backbone and precision at its input size (CPU here; CUDA if present)
  index     retrieve latency p50/p95 and recall-vs-exact for flat IP, HNSW (M, efSearch swept) and
            IVF-PQ at several sizes and dims, plus index memory and build time (clustered synthetic
            unit descriptors: uniform random vectors would flatter nothing and hide ANN errors)
  node      the node process: end-to-end latency (image published -> VprResult received) minus the
            node's own embed+search time, p50/p95; sustained rate at 3 Hz and at max rate (backlog =
            frames dropped by the newest-wins queue); peak RSS of the node per backbone
`--smoke` runs a seconds-long version of each (what CI runs).
"""
from __future__ import annotations

import json
import os
import pathlib
import platform
import tempfile
import time

import numpy as np

from vpr_node.core.backbones import DEFAULT_BACKBONE
from vpr_node.core.index.synthetic import clustered_descriptors


def _pct(v, q):
    return round(float(np.percentile(np.asarray(v, np.float64), q)), 3) if len(v) else None


def machine() -> dict:
    import torch
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "python": platform.python_version(),
    }


# --- embed -------------------------------------------------------------------------------------
EMBED_CASES = [("xfeat_netvlad", "fp32"), ("efficientnet_lite0_netvlad", "fp32"), ("efficientnet_lite0_gem", "fp32"),
               ("efficientnet_lite0_gem", "fp16"), ("net_vlad", "fp32")]


def bench_embed(cases=EMBED_CASES, reps: int = 20, device: str = "cpu", input_override: int | None = None,
                warmup: bool = True) -> list[dict]:
    """input_override: forward an NxN tensor instead of the preprocessed frame (for very slow cases)."""
    import torch

    from vpr_node.core.backbones import create_backbone
    from vpr_node.core.retrieval.runtimes import create_runtime

    out = []
    for name, precision in cases:
        model = create_backbone(name, require_weights=False)  # weight values do not change the cost
        h, w = model.preprocessor.input_shape()
        rt = create_runtime("pytorch", model, precision, device)
        frame = np.random.default_rng(0).integers(0, 255, (720, 1280, 3), dtype=np.uint8)
        if input_override:
            h = w = int(input_override)
        times = []
        for i in range(reps + int(warmup)):  # preprocessing is part of the embed time, as in the node
            t0 = time.perf_counter()
            rt.forward(torch.zeros(1, 3, h, w) if input_override else model.preprocessor(frame))
            if i >= int(warmup):
                times.append((time.perf_counter() - t0) * 1e3)
        out.append({"backbone": name, "precision": precision, "device": device, "input": [h, w],
                    "input_override": bool(input_override),
                    "descriptor_dim": model.descriptor_dim, "reps": reps,
                    "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
                    "embed_ms_p50": _pct(times, 50), "embed_ms_p95": _pct(times, 95)})
        print(f"embed  {name:28s} {precision}  {h}x{w}  p50 {out[-1]['embed_ms_p50']:8.1f} ms  "
              f"p95 {out[-1]['embed_ms_p95']:8.1f} ms", flush=True)
        del rt, model
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return out


def _index_bytes(index) -> int:
    import faiss
    with tempfile.NamedTemporaryFile() as f:
        faiss.write_index(index, f.name)
        return os.path.getsize(f.name)


def bench_index(sizes=(10_000, 100_000), dims=(512, 4096), k: int = 10, n_queries: int = 200,
                hnsw_m=(16, 32), ef_search=(16, 64, 128), max_flat_bytes=2 << 30,
                kinds=("flat", "hnsw", "ivfpq")) -> list[dict]:
    import faiss

    from vpr_node.core.index.faiss_index import default_rerank, make_faiss_index, search_reranked, topk_overlap

    out = []
    for d in dims:
        for n in sizes:
            if n * d * 4 > max_flat_bytes:
                print(f"index  skip n={n} d={d}: {n * d * 4 / 2**30:.1f} GiB of vectors exceeds the bench limit")
                continue
            x, q = clustered_descriptors(n, d, n_queries)
            mapped = tempfile.NamedTemporaryFile(suffix=".npy")  # the node re-ranks from a memory-mapped file
            np.save(mapped.name, x)
            x_mapped = np.load(mapped.name, mmap_mode="r")
            configs = [("flat", {})] + [("sq8", {})] * ("sq8" in kinds) + \
                      [("hnsw", {"M": m, "efConstruction": 80}) for m in hnsw_m] * ("hnsw" in kinds) + \
                      [("ivfpq", {"nlist": int(4 * np.sqrt(n)), "m": 64 if d >= 256 else 16, "nbits": 8,
                                  "nprobe": 32})] * ("ivfpq" in kinds)  # flat always: the exact reference
            exact = None
            for kind, params in configs:
                t0 = time.perf_counter()
                index = make_faiss_index(x, kind, params)
                build_s = time.perf_counter() - t0
                mem = _index_bytes(index)
                sweeps = ef_search if kind == "hnsw" else (None,)
                sweeps = [(ef, 0) for ef in sweeps] + [(None, default_rerank(kind))] * (default_rerank(kind) > 0)
                for ef, rerank in sweeps:
                    if ef is not None:
                        index.hnsw.efSearch = ef
                    times, ids_all = [], []
                    for i in range(n_queries):
                        t = time.perf_counter()
                        _, ids = search_reranked(index, x_mapped, q[i:i + 1], k, rerank)
                        times.append((time.perf_counter() - t) * 1e3)
                        ids_all.append(ids[0])
                    ids_all = np.stack(ids_all)
                    if kind == "flat":
                        exact = ids_all
                    rec = topk_overlap(ids_all, exact)
                    name = f"{kind}+rerank" if rerank else kind
                    extra = {**({"efSearch": ef} if ef else {}), **({"rerank": rerank} if rerank else {})}
                    row = {"n": n, "dim": d, "index": name, "params": {**params, **extra},
                           "build_s": round(build_s, 2), "memory_MiB": round(mem / 2**20, 1),
                           "search_ms_p50": _pct(times, 50), "search_ms_p95": _pct(times, 95),
                           f"recall_at_{k}_vs_exact": round(rec, 4)}
                    out.append(row)
                    print(f"index  n={n:>6} d={d:>4} {name:12s} {json.dumps(row['params']):45s} build {build_s:6.1f} s "
                          f"mem {row['memory_MiB']:8.1f} MiB  p50 {row['search_ms_p50']:7.3f} ms  "
                          f"p95 {row['search_ms_p95']:7.3f} ms  recall {rec:.3f}", flush=True)
                del index
            faiss.omp_set_num_threads(os.cpu_count() or 1)
    return out


# --- search restricted by a position prior ------------------------------------------------------
def bench_prior_search(sizes=(100_000, 1_000_000), dims=(256,), kinds=("flat", "sq8", "ivfpq"),
                       sigmas=(50.0, 200.0, 500.0), k_sigma: float = 3.0, rotations: int = 4, k: int = 10,
                       n_queries: int = 200) -> list[dict]:
    """DescriptorIndex.search, the node's path, over synthetic index folders of n vectors (tiles of 60 m at 30 m
    spacing, `rotations` vectors each): unrestricted, and restricted to the tiles within k_sigma x sigma of a
    position prior (the prior's own cost, the tile selection, timed apart)."""
    from vpr_node.core.backbones.identity import BackboneIdentity
    from vpr_node.core.index.folder import write_index
    from vpr_node.core.index.loaded import DescriptorIndex
    from vpr_node.core.index.synthetic import grid_tiles
    from vpr_node.core.priors.tile_grid import TileGrid

    out = []
    for d in dims:
        for n in sizes:
            x, q = clustered_descriptors(n, d, n_queries)
            n_tiles = -(-n // rotations)
            records = grid_tiles(n_tiles, 60.0, 22.0)
            entries = np.minimum(np.arange(n) // rotations, n_tiles - 1).astype(np.int32)
            rng = np.random.default_rng(0)
            for kind in kinds:
                params = {"nlist": int(4 * np.sqrt(n)), "m": 64 if d >= 256 else 16, "nprobe": 32} \
                    if kind == "ivfpq" else {}
                with tempfile.TemporaryDirectory(prefix="vpr_prior_") as tmp:
                    t0 = time.perf_counter()
                    write_index(tmp, x, entries, records, BackboneIdentity("synthetic", d, "0" * 64, {}), kind, params)
                    build_s = time.perf_counter() - t0
                    idx = DescriptorIndex(tmp)
                    lat, lon = idx.tile_array("lat"), idx.tile_array("lon")
                    grid = TileGrid(lat, lon)  # what PriorApplier selects the prior's tiles with
                    for sigma in (None, *sigmas):
                        times, prior_ms, searched = [], [], []
                        for i in range(n_queries):
                            allowed = None
                            if sigma is not None:
                                c = int(rng.integers(n_tiles))
                                t = time.perf_counter()
                                allowed = grid.within(lat[c], lon[c], k_sigma * sigma)
                                prior_ms.append((time.perf_counter() - t) * 1e3)
                                searched.append(len(allowed))
                            t = time.perf_counter()
                            idx.search(q[i], k, allowed)
                            times.append((time.perf_counter() - t) * 1e3)
                        row = {"n": n, "dim": d, "index": kind, "build_s": round(build_s, 1),
                               "prior_sigma_m": sigma, "tiles_searched_mean": round(float(np.mean(searched)))
                               if searched else n_tiles, "search_ms_p50": _pct(times, 50),
                               "search_ms_p95": _pct(times, 95), "prior_select_ms_p50": _pct(prior_ms, 50)
                               if prior_ms else 0.0}
                        out.append(row)
                        print(f"prior  n={n:>7} d={d:>4} {kind:6s} sigma {str(sigma):>6} m  tiles "
                              f"{row['tiles_searched_mean']:>7}  search p50 {row['search_ms_p50']:7.3f} ms  p95 "
                              f"{row['search_ms_p95']:7.3f} ms  prior select p50 {row['prior_select_ms_p50']:6.2f} ms",
                              flush=True)
                    del idx
    return out


# --- node --------------------------------------------------------------------------------------
def bench_node(workdir, backbones=(DEFAULT_BACKBONE, "efficientnet_lite0_gem"), frames: int = 30,
               rates=(3.0, 0.0)) -> list[dict]:
    """rate 0 = max rate (publish the next frame as soon as the previous result arrives... and also a burst)."""
    from vpr_node.core.benchmarks.workspace import cached_corpus, cached_index, cached_queries, sample_maps
    from vpr_node.core.indexing.settings import BuildSettings
    from vpr_node.core.io.procstats import rss_mib
    from vpr_node.core.views.queries import QuerySpec
    from vpr_node.ros.harness import NodeProcess, VprClient, write_params_file

    workdir = pathlib.Path(workdir)
    maps = sample_maps(workdir, size_px=700)
    corpus = cached_corpus(maps, workdir / "corpus", progress=False)
    queries = cached_queries(maps, frames, seed=1, spec=QuerySpec())
    out = []
    for b in backbones:
        idx = cached_index(b, corpus, workdir / f"index_{b}", BuildSettings(rotations=1), progress=False)
        domain = 150 + len(out)
        params = write_params_file(workdir / f"params_{b}.yaml", {"backbone": b, "index_dir": str(idx), "top_k": 10})
        node = NodeProcess(params, workdir / f"node_{b}.log", domain)
        client = VprClient(domain)
        try:
            client.wait_for_node(60)
            assert client.transition("configure") and client.transition("activate"), node.log_text()[-2000:]
            client.wait_subscribed(10)
            for rate in rates:
                client.drain(client.results)
                diag0 = client.latest_diagnostics(3) or {}
                sent, got, overhead, e2e = {}, 0, [], []
                t_start = time.monotonic()
                for i, q in enumerate(queries):
                    stamp = time.time_ns()
                    msg = client.make_image(q.image, stamp)
                    sent[stamp] = time.monotonic()
                    client.publish(msg)
                    if rate > 0:
                        deadline = t_start + (i + 1) / rate
                        while time.monotonic() < deadline:
                            r = client.next_result(timeout=max(0.001, deadline - time.monotonic()))
                            if r is not None:
                                got += 1
                                _record(r, sent, e2e, overhead)
                    else:
                        time.sleep(0.005)  # max rate: a burst far faster than inference
                end = time.monotonic() + 10
                while time.monotonic() < end:
                    r = client.next_result(timeout=0.5)
                    if r is None:
                        break
                    got += 1
                    _record(r, sent, e2e, overhead)
                elapsed = time.monotonic() - t_start
                diag1 = client.latest_diagnostics(3) or {}
                drops = int(diag1.get("drops", 0)) - int(diag0.get("drops", 0))
                row = {"backbone": b, "rate_hz": rate or "max", "frames": len(queries), "results": got,
                       "dropped_by_queue": drops, "results_per_s": round(got / elapsed, 2),
                       "e2e_ms_p50": _pct(e2e, 50), "e2e_ms_p95": _pct(e2e, 95),
                       "overhead_ms_p50": _pct(overhead, 50), "overhead_ms_p95": _pct(overhead, 95)}
                out.append(row)
                print(
                    f"node   {b:28s} rate {str(row['rate_hz']):>4} Hz  results {got}/{len(queries)}  drops {drops}  "
                    f"e2e p50 {row['e2e_ms_p50']} ms p95 {row['e2e_ms_p95']} ms  overhead p50 {row['overhead_ms_p50']} "
                    f"ms p95 {row['overhead_ms_p95']} ms",
                    flush=True,
                )
            rss = rss_mib(node.proc.pid, "VmHWM")
            out.append({"backbone": b, "node_peak_rss_MiB": rss})
            print(f"node   {b:28s} peak RSS {rss} MiB", flush=True)
            client.transition("deactivate")
        finally:
            client.close()
            node.stop()
    return out


def _record(r, sent, e2e, overhead):
    from vpr_node.core.types import stamp_to_ns
    stamp = stamp_to_ns(r.header.stamp)
    t = sent.pop(stamp, None)
    if t is None:
        return
    ms = (time.monotonic() - t) * 1e3
    e2e.append(ms)
    overhead.append(ms - r.embed_latency_ms - r.search_latency_ms)


def register(sub) -> None:
    p = sub.add_parser("bench", help="speed/memory/scale benchmarks (prints, writes JSON)")
    p.add_argument("--out", default="artifacts/bench.json")
    p.add_argument("--parts", nargs="+", default=["embed", "index", "node"],
                   choices=["embed", "index", "prior", "node"], help="prior: search restricted by a position prior")
    p.add_argument("--smoke", action="store_true", help="seconds-long version (CI)")
    p.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000])
    p.add_argument("--dims", nargs="+", type=int, default=[512, 4096])
    p.add_argument("--index-kinds", nargs="+", default=["flat", "hnsw", "ivfpq"],
                   choices=["flat", "sq8", "hnsw", "ivfpq"], help="index: which index types (flat is always run)")
    p.add_argument("--embed-reps", type=int, default=20)
    p.add_argument("--cases", nargs="+", default=None, help="embed cases as backbone:precision (default: all)")
    p.add_argument("--input-override", type=int, default=None, help="embed: forward an NxN tensor instead")
    p.add_argument("--no-warmup", action="store_true")
    p.add_argument("--node-frames", type=int, default=30)
    p.set_defaults(fn=_cmd)


def _cmd(a):
    res = {"machine": machine(), "command": "vpr bench " + ("--smoke" if a.smoke else "")}
    with tempfile.TemporaryDirectory(prefix="vpr_bench_") as tmp:
        if "embed" in a.parts:
            cases = [("efficientnet_lite0_gem", "fp32")] if a.smoke else (
                [tuple(c.split(":")) for c in a.cases] if a.cases else EMBED_CASES)
            res["embed"] = bench_embed(cases, reps=3 if a.smoke else a.embed_reps, input_override=a.input_override,
                                       warmup=not a.no_warmup)
        if "index" in a.parts:
            res["index"] = bench_index(sizes=[2000] if a.smoke else a.sizes, dims=[64] if a.smoke else a.dims,
                                       n_queries=20 if a.smoke else 200, kinds=a.index_kinds)
        if "prior" in a.parts:
            res["prior_search"] = bench_prior_search(sizes=[4000] if a.smoke else a.sizes,
                                                     dims=[64] if a.smoke else a.dims, n_queries=20 if a.smoke else 200,
                                                     kinds=[k for k in a.index_kinds if k != "hnsw"] or ["flat"])
        if "node" in a.parts:
            res["node"] = bench_node(tmp, backbones=("efficientnet_lite0_gem",) if a.smoke else
                                     (DEFAULT_BACKBONE, "efficientnet_lite0_gem"),
                                     frames=4 if a.smoke else a.node_frames)
    out = pathlib.Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out}")
    return 0
