"""`vpr soak`: many frames (default 10,000) through the running node process, a fraction corrupt.

Not part of the test run (it takes about frames / rate seconds). Uses the demo's embedded sample
(map, corpus, default-backbone index, synthesised flight), starts the node as its own process,
publishes good frames cycling through the flight plus corrupt ones (short data, unknown encoding,
zero size, impossible step, truncated JPEG when --compressed) at --rate Hz, and prints: frames
published, frames the node saw, results out, typed errors by kind, newest-wins drops, frames lost in
transport, node RSS at start / end / peak, and whether the node still serves afterwards."""
from __future__ import annotations

import json
import pathlib
import random
import time


def _corrupt(client, rng: random.Random, stamp_ns: int, compressed: bool):
    from sensor_msgs.msg import CompressedImage, Image

    from vpr_node.ros.conversions import ns_to_time

    if compressed:
        m = CompressedImage()
        m.format = "jpeg"
        m.data = bytes([0xFF, 0xD8, 0xFF]) + rng.randbytes(rng.randint(0, 4000))  # truncated / garbage JPEG
        kind = "garbage_jpeg"
    else:
        m = Image()
        kind = rng.choice(["short_data", "unknown_encoding", "zero_size", "bad_step"])
        m.height, m.width, m.encoding, m.step = 480, 640, "rgb8", 1920
        if kind == "short_data":
            m.data = rng.randbytes(1000)
        elif kind == "unknown_encoding":
            m.encoding, m.data = "bogus16", rng.randbytes(480 * 1920)
        elif kind == "zero_size":
            m.height = m.width = m.step = 0
            m.data = b""
        else:
            m.step, m.data = 100, rng.randbytes(480 * 100)
    m.header.stamp = ns_to_time(stamp_ns)
    m.header.frame_id = "nav_camera"
    return m, kind


def run_soak(workdir, frames: int = 10_000, rate_hz: float = 20.0, corrupt_fraction: float = 0.05, seed: int = 0,
             compressed: bool = False, log=print) -> dict:
    from tqdm import tqdm

    from vpr_node.core.io.procstats import rss_mib
    from vpr_node.ros.harness import NodeProcess, VprClient, write_params_file
    from vpr_node.tools.demo import DEFAULT_BACKBONE, prepare_sample

    workdir = pathlib.Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    sample = prepare_sample(workdir, 30, seed, log=log)
    images = [q.image for q in sample["queries"]]
    domain = random.Random().randint(100, 200)
    params = write_params_file(workdir / "soak_params.yaml", {
        "backbone": DEFAULT_BACKBONE, "index_dir": str(sample["index"]), "top_k": 10, "compressed": compressed,
        "recorder_path": str(workdir / "fdr.jsonl"), "recorder_max_bytes": 64 * 1024 * 1024, "diagnostics_period": 1.0})
    node = NodeProcess(params, workdir / "node.log", domain)
    client = VprClient(domain, compressed=compressed)
    rng = random.Random(seed)
    sent_good, sent_bad, corrupt_kinds, results, rss_samples = 0, 0, {}, 0, []
    try:
        client.wait_for_node(60)
        if not (client.transition("configure") and client.transition("activate")):
            raise RuntimeError("node did not activate:\n" + node.log_text()[-3000:])
        client.wait_subscribed(10)
        for img in images[:5]:  # warm-up, not counted
            client.publish(client.make_image(img, time.time_ns()))
            client.next_result(timeout=30)
        client.drain(client.results)
        base = client.latest_diagnostics(5) or {}
        rss_start = rss_mib(node.proc.pid)
        period, t_next = 1.0 / rate_hz, time.monotonic()
        for i in tqdm(range(frames), desc="soak", unit="frame", mininterval=2.0):
            stamp = time.time_ns()
            if rng.random() < corrupt_fraction:
                msg, kind = _corrupt(client, rng, stamp, compressed)
                corrupt_kinds[kind] = corrupt_kinds.get(kind, 0) + 1
                sent_bad += 1
            else:
                msg = client.make_image(images[i % len(images)], stamp)
                sent_good += 1
            client.publish(msg)
            results += len(client.drain(client.results))
            if i % 500 == 0:
                rss_samples.append(rss_mib(node.proc.pid))
            t_next += period
            time.sleep(max(0.0, t_next - time.monotonic()))
        time.sleep(3.0)
        results += len(client.drain(client.results))
        diag = client.latest_diagnostics(5) or {}
        rss_end, rss_peak = rss_mib(node.proc.pid), rss_mib(node.proc.pid, "VmHWM")
        client.publish(client.make_image(images[0], time.time_ns()))  # still serving?
        still_serving = client.next_result(timeout=30) is not None
        alive = node.alive()
        client.transition("deactivate")
        client.transition("shutdown")
    finally:
        client.close()
        exit_code = node.stop()

    def delta(key):
        return int(diag.get(key, 0)) - int(base.get(key, 0))

    errors = {k.removeprefix("errors."): delta(k) for k in diag if k.startswith("errors.")}
    summary = {"frames_published": sent_good + sent_bad, "good": sent_good, "corrupt": sent_bad,
               "corrupt_kinds": corrupt_kinds, "rate_hz": rate_hz, "node_frames_in": delta("frames_in"),
               "results_out_node": delta("results_out"), "results_received": results, "typed_errors": errors,
               "errors_total": delta("errors_total"), "drops_newest_wins": delta("drops"),
               "lost_in_transport": sent_good + sent_bad - delta("frames_in"),
               "node_rss_MiB": {"start": rss_start, "end": rss_end, "peak": rss_peak, "every_500_frames": rss_samples},
               "node_alive": alive, "still_serving_after": still_serving, "exit_code": exit_code}
    (workdir / "soak_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def register(sub) -> None:
    p = sub.add_parser("soak", help="soak benchmark: many frames (some corrupt) through the node process")
    p.add_argument("--frames", type=int, default=10_000)
    p.add_argument("--rate", type=float, default=20.0, help="publish rate (Hz)")
    p.add_argument("--corrupt-fraction", type=float, default=0.05)
    p.add_argument("--compressed", action="store_true", help="CompressedImage (corrupt = garbage JPEG)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default="artifacts/soak")
    p.set_defaults(fn=lambda a: print(json.dumps(run_soak(a.workdir, a.frames, a.rate, a.corrupt_fraction, a.seed,
                                                          a.compressed), indent=2)))
