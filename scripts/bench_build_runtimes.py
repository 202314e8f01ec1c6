#!/usr/bin/env python
"""Usage: python scripts/bench_build_runtimes.py INDEX_DIR (the backbone exported into it: vpr export-onnx).


Tile-embedding throughput of the index's backbone on this machine: PyTorch (contiguous and channels-last weights)
vs ONNX Runtime, batch 1 (the CPU batching rule) and ONNX Runtime at batch 4 and 16 (does batching pay here?),
the build's own path (strategy.embed_batch on 320 px tiles), median of 6 passes over 32 tiles; prints views/s and
the largest descriptor difference."""
import json
import sys
import time

import numpy as np
import torch

from vpr_node.core.retrieval.strategy import load_strategy

BACKBONE = "efficientnet_lite0_netvlad"


def views_per_s(strategy, tiles, reps: int = 6, batch: int = 1) -> float:
    strategy.embed_batch(tiles[:batch])  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for i in range(0, len(tiles), batch):
            strategy.embed_batch(tiles[i:i + batch])
        times.append(time.perf_counter() - t0)
    return round(len(tiles) / float(np.median(times)), 1)


def main(index_dir: str) -> dict:
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    tiles = [rng.integers(0, 255, (320, 320, 3), np.uint8) for _ in range(32)]
    out = {}
    pt = load_strategy(BACKBONE, index_dir=index_dir)
    out["pytorch"] = views_per_s(pt, tiles)
    pt.runtime.model = pt.runtime.model.to(memory_format=torch.channels_last)
    out["pytorch_channels_last"] = views_per_s(pt, tiles)
    ort = load_strategy(BACKBONE, index_dir=index_dir, runtime="onnxruntime")
    out["onnxruntime"] = views_per_s(ort, tiles)
    for batch in (4, 16):
        out[f"onnxruntime_batch_{batch}"] = views_per_s(ort, tiles, batch=batch)
    out["max_abs_diff"] = float(np.abs(pt.embed_batch(tiles[:4]) - ort.embed_batch(tiles[:4])).max())
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
