"""`vpr bench-memory`: where the node's resident memory goes. One fresh process loads what the node loads on
configure, step by step, and reads its own /proc status after each: the interpreter, NumPy + FAISS + OpenCV, rclpy
and the messages, PyTorch, the backbone with its weights, the index (FAISS index, memory-mapped descriptors, tile
table), then one 1280x720 frame through preprocessing, embedding and search. RssAnon is the process's own memory,
RssFile the mapped files (shared libraries, pages of descriptors.npy read): clean page cache the kernel can drop."""
from __future__ import annotations

import json
import subprocess
import sys

STEPS = ("interpreter", "numpy_faiss_opencv", "rclpy_and_messages", "torch", "backbone", "index", "first_frame",
         "ten_frames")


def _status() -> dict:
    out = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def _measure(backbone: str, index_dir: str, options: str, threads: int) -> list[dict]:
    rows = [{"step": "interpreter", **_status()}]
    import cv2  # noqa: F401
    import faiss  # noqa: F401
    import numpy as np
    rows.append({"step": "numpy_faiss_opencv", **_status()})
    import rclpy  # noqa: F401
    from sensor_msgs.msg import Image  # noqa: F401

    import vpr_node.msg  # noqa: F401
    rows.append({"step": "rclpy_and_messages", **_status()})
    import torch
    torch.set_num_threads(threads)
    rows.append({"step": "torch", **_status()})
    from vpr_node.core.index.loaded import DescriptorIndex
    from vpr_node.core.retrieval.strategy import load_strategy, weights_from_index
    s = load_strategy(backbone, weights=weights_from_index(index_dir), backbone_options=json.loads(options or "{}"))
    rows.append({"step": "backbone", **_status()})
    s.index = DescriptorIndex(index_dir, expect=s.backbone.identity())  # what load_strategy does with index_dir
    rows.append({"step": "index", **_status(), "vectors": int(s.index.index.ntotal), "tiles": len(s.index)})
    frame = np.random.default_rng(0).integers(0, 255, (720, 1280, 3), np.uint8)
    s.retrieve_topk(s.embed_query(frame), 10)
    rows.append({"step": "first_frame", **_status()})
    for _ in range(9):
        s.retrieve_topk(s.embed_query(frame), 10)
    rows.append({"step": "ten_frames", **_status()})
    return rows


def bench_memory(backbone: str, index_dir: str, options: str = "", threads: int = 2) -> list[dict]:
    """The measurement in a fresh interpreter (nothing imported before it)."""
    proc = subprocess.run([sys.executable, "-m", "vpr_node.tools.bench_memory", backbone, index_dir, options or "",
                           str(threads)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"bench-memory failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _print(rows: list[dict]) -> None:
    prev = None
    print(f"{'step':22s} {'RSS':>8s} {'own (anon)':>11s} {'files':>8s} {'+own':>8s}")
    for r in rows:
        d = r["RssAnon"] - prev["RssAnon"] if prev else r["RssAnon"]
        print(f"{r['step']:22s} {r['VmRSS']:8.1f} {r['RssAnon']:11.1f} {r['RssFile']:8.1f} {d:+8.1f}")
        prev = r


def register(sub) -> None:
    p = sub.add_parser("bench-memory", help="where the node's resident memory goes, step by step (MiB)")
    p.add_argument("--backbone", default="efficientnet_lite0_netvlad")
    p.add_argument("--index", required=True, help="index folder (e.g. a prepare-mission output)")
    p.add_argument("--backbone-options", default="")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="", help="also write the JSON here")

    def run(a):
        rows = bench_memory(a.backbone, a.index, a.backbone_options, a.threads)
        _print(rows)
        if a.out:
            with open(a.out, "w") as f:
                json.dump(rows, f, indent=2)
    p.set_defaults(fn=run)


if __name__ == "__main__":
    print(json.dumps(_measure(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))))
