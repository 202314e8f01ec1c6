#!/usr/bin/env python
"""Usage: python scripts/bench_build_runtimes.py INDEX_DIR (with the backbone exported into it: vpr export-onnx --into-index).
Tile-embedding throughput of the default backbone on this CPU: PyTorch (contiguous / channels-last) vs ONNX Runtime,
batch 1 (the CPU rule), the build's own path (strategy.embed_batch on 320 px tiles)."""
import sys, time, json
import numpy as np, torch
from vpr_node.core.retrieval.strategy import load_strategy
torch.set_num_threads(2)
rng = np.random.default_rng(0)
tiles = [rng.integers(0, 255, (320, 320, 3), np.uint8) for _ in range(32)]
out = {}
def bench(s, label, reps=6):
    for t in tiles[:4]:
        s.embed_batch([t])  # warm
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        for x in tiles:
            s.embed_batch([x])
        ts.append(time.perf_counter() - t)
    out[label] = round(32 / float(np.median(ts)), 1)
    print(label, out[label], "views/s", flush=True)
idx = sys.argv[1]
pt = load_strategy("efficientnet_lite0_netvlad", index_dir=idx)
bench(pt, "pytorch")
pt.runtime.model = pt.runtime.model.to(memory_format=torch.channels_last)
bench(pt, "pytorch_channels_last")
ort = load_strategy("efficientnet_lite0_netvlad", index_dir=idx, runtime="onnxruntime")
bench(ort, "onnxruntime")
a = pt.embed_batch(tiles[:4]); b = ort.embed_batch(tiles[:4]); out["max_abs_diff"] = float(np.abs(a - b).max())
print(json.dumps(out))
