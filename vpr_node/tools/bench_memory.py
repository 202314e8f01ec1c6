"""`vpr bench-memory`: where the node's resident memory goes. One fresh process loads what the node loads on
configure, step by step, and reads its own /proc status after each: the interpreter, NumPy + FAISS + OpenCV, rclpy
and the messages, PyTorch, the backbone with its weights, the index (FAISS index, memory-mapped descriptors, tile
table), then one 1280x720 frame through preprocessing, embedding and search. `--runtime onnxruntime`: the same with the
model exported into the index folder, where PyTorch is never imported. RssAnon is the process's own memory,
RssFile the mapped files (shared libraries, pages of descriptors.npy read): clean page cache the kernel can drop."""
from __future__ import annotations

import json
import subprocess
import sys

from vpr_node.core.backbones import DEFAULT_BACKBONE

STEPS = ("interpreter", "numpy_faiss_opencv", "rclpy_and_messages", "torch", "backbone", "index", "first_frame",
         "ten_frames")


def _status() -> dict:
    out = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def _measure(backbone: str, index_dir: str, options: str, threads: int, runtime: str = "pytorch") -> list[dict]:
    rows = [{"step": "interpreter", **_status()}]
    import cv2  # noqa: F401
    import faiss  # noqa: F401
    import numpy as np
    rows.append({"step": "numpy_faiss_opencv", **_status()})
    import rclpy  # noqa: F401
    from sensor_msgs.msg import Image  # noqa: F401

    import vpr_node.msg  # noqa: F401
    rows.append({"step": "rclpy_and_messages", **_status()})
    from vpr_node.core.index.loaded import DescriptorIndex
    from vpr_node.core.retrieval.strategy import load_strategy, weights_from_index
    if runtime == "onnxruntime":  # the model exported into the index folder (vpr export-onnx --into-index)
        import onnxruntime  # noqa: F401
        rows.append({"step": "onnxruntime", **_status()})
        s = load_strategy(backbone, index_dir=index_dir, runtime="onnxruntime")
        rows.append({"step": "backbone_and_index", **_status(), "vectors": int(s.index.index.ntotal),
                     "tiles": len(s.index)})
    else:
        import torch
        torch.set_num_threads(threads)
        rows.append({"step": "torch", **_status()})
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
    assert runtime != "onnxruntime" or "torch" not in sys.modules, "the exported path imported PyTorch"
    return rows


def bench_memory(backbone: str, index_dir: str, options: str = "", threads: int = 2,
                 runtime: str = "pytorch") -> list[dict]:
    """The measurement in a fresh interpreter (nothing imported before it)."""
    proc = subprocess.run([sys.executable, "-m", "vpr_node.tools.bench_memory", backbone, index_dir, options or "",
                           str(threads), runtime], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"bench-memory failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def node_memory(backbone: str, index_dir: str, runtime: str, workdir, frames: int = 30, rate_hz: float = 3.0,
                options: str = "", domain_id: int = 87) -> dict:
    """The node process itself (vpr_lifecycle_node, as launched): RSS after activation, after `frames` 1280x720
    frames at `rate_hz`, and its peak (VmHWM)."""
    import pathlib
    import time

    import numpy as np

    from vpr_node.core.io.procstats import rss_mib
    from vpr_node.ros.harness import NodeProcess, VprClient, write_params_file
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    params = {"backbone": backbone, "index_dir": str(index_dir), "runtime": runtime,
              "recorder_path": str(workdir / f"fdr_{runtime}.jsonl")}
    if options:
        params["backbone_options"] = options
    node = NodeProcess(write_params_file(workdir / f"params_{runtime}.yaml", params), workdir / f"node_{runtime}.log",
                       domain_id)
    client = VprClient(domain_id)
    try:
        client.wait_for_node(60)
        if not (client.transition("configure") and client.transition("activate")):
            raise RuntimeError(f"the node did not activate:\n{node.log_text()[-3000:]}")
        client.wait_subscribed(30)
        pid = node.proc.pid
        out = {"runtime": runtime, "rss_after_activation": rss_mib(pid),
               "anon_after_activation": rss_mib(pid, "RssAnon")}
        frame = np.random.default_rng(0).integers(0, 255, (720, 1280, 3), np.uint8)
        got = 0
        for _ in range(frames):
            client.publish(client.make_image(frame, time.time_ns()))
            got += client.next_result(timeout=10) is not None
            time.sleep(1.0 / rate_hz)
        out.update({"frames": frames, "results": got, "rss_after_frames": rss_mib(pid),
                    "anon_after_frames": rss_mib(pid, "RssAnon"), "peak_rss": rss_mib(pid, "VmHWM")})
        return out
    finally:
        client.close()
        node.stop()


def _print(rows: list[dict]) -> None:
    prev = None
    print(f"{'step':22s} {'RSS':>8s} {'own (anon)':>11s} {'files':>8s} {'+own':>8s}")
    for r in rows:
        d = r["RssAnon"] - prev["RssAnon"] if prev else r["RssAnon"]
        print(f"{r['step']:22s} {r['VmRSS']:8.1f} {r['RssAnon']:11.1f} {r['RssFile']:8.1f} {d:+8.1f}")
        prev = r


def register(sub) -> None:
    p = sub.add_parser("bench-memory", help="where the node's resident memory goes, step by step (MiB)")
    p.add_argument("--backbone", default=DEFAULT_BACKBONE)
    p.add_argument("--index", required=True, help="index folder (e.g. a prepare-mission output)")
    p.add_argument("--backbone-options", default="")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runtime", default="pytorch", choices=("pytorch", "onnxruntime"),
                   help="onnxruntime: the model exported into the index folder, without PyTorch")
    p.add_argument("--out", default="", help="also write the JSON here")

    p.add_argument("--node", action="store_true", help="measure the node process itself (after activation, "
                                                         "after 30 frames, peak) instead of the steps")
    p.add_argument("--workdir", default="artifacts/bench_memory")

    def run(a):
        if a.node:
            out = node_memory(a.backbone, a.index, a.runtime, a.workdir, options=a.backbone_options)
            print(json.dumps(out, indent=2))
            if a.out:
                with open(a.out, "w") as f:
                    json.dump(out, f, indent=2)
            return
        rows = bench_memory(a.backbone, a.index, a.backbone_options, a.threads, a.runtime)
        _print(rows)
        if a.out:
            with open(a.out, "w") as f:
                json.dump(rows, f, indent=2)
    p.set_defaults(fn=run)


if __name__ == "__main__":
    print(json.dumps(_measure(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])))
