"""`vpr soak`: a flight-length run (default 100,000 frames) through the node processes with every input fuzzed.

Not part of the test run (it takes about frames / rate seconds; test_soak.py runs a short version). Uses the
demo's embedded sample (map, prepare-mission index with its verifier calibration, synthesised flight) unless
--index is given, starts vpr_node (and, with --verifier, vpr_verifier) as their own processes, and for every frame
publishes the three prior samples of its instant (heading Imu, altitude Range, position NavSatFix; each fuzzed
with probability --prior-fuzz) and then the frame (corrupt with probability --corrupt-fraction) at --rate Hz.

It prints and writes soak_summary.json: what was sent (by fuzz kind), what each node counted (frames in,
results, typed errors by kind, newest-wins drops), the accounting (results + typed frame errors + drops = frames
the node saw; fuzzed prior samples = typed prior errors; for the verifier, frames in = verified + typed errors +
frames without a result + drops), both nodes' RSS through the run, and whether they still serve afterwards."""
from __future__ import annotations

import json
import pathlib
import random
import time

import numpy as np

from vpr_node.core.io.recorder import read_records

RSS_EVERY_S = 10.0
HEADING_TOPIC, ALTITUDE_TOPIC, POSITION_TOPIC = "/soak/heading", "/soak/altitude", "/soak/position"
PRIOR_SIGMA_M = 30.0


def _accounting(d: dict, prefix_errors: str = "errors.") -> dict:
    return {k.removeprefix(prefix_errors): int(v) for k, v in d.items() if k.startswith(prefix_errors)}


def _delta(after: dict, before: dict) -> dict:
    keys = set(after) | set(before)
    return {k: int(float(after.get(k, 0))) - int(float(before.get(k, 0))) for k in keys
            if str(after.get(k, "0")).lstrip("-").replace(".", "", 1).isdigit()}


def run_soak(workdir, frames: int = 100_000, rate_hz: float = 20.0, corrupt_fraction: float = 0.05,
             prior_fuzz: float = 0.05, priors: bool = True, verifier: bool = True, seed: int = 0,
             compressed: bool = False, index_dir=None, queries=None, backbone: str | None = None,
             backbone_options: str = "", hfov_deg: float | None = None, progress: bool = True, log=print) -> dict:
    from tqdm import tqdm

    from vpr_node.core.io.procstats import rss_mib
    from vpr_node.core.views.queries import QuerySpec
    from vpr_node.ros import fuzz
    from vpr_node.ros.harness import NodeProcess, VprClient, write_params_file
    from vpr_node.ros.node_spec import VERIFIER_EXECUTABLE, VERIFIER_NAME
    from vpr_node.tools.demo import DEFAULT_BACKBONE, prepare_sample

    workdir = pathlib.Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if index_dir is None:
        sample = prepare_sample(workdir, 30, seed, log=log)
        index_dir, queries, backbone = sample["index"], sample["queries"], DEFAULT_BACKBONE
    hfov = hfov_deg or QuerySpec.benchmark().hfov_deg
    for f in workdir.glob("*fdr.jsonl*"):
        f.unlink()  # this run's records only
    domain = random.Random().randint(100, 200)
    params = {"backbone": backbone, "backbone_options": backbone_options, "index_dir": str(index_dir), "top_k": 10,
              "compressed": compressed, "recorder_path": str(workdir / "fdr.jsonl"),
              "recorder_max_bytes": 256 << 20, "diagnostics_period": 1.0}
    if priors:
        params.update(heading_topic=HEADING_TOPIC, heading_type="imu", altitude_topic=ALTITUDE_TOPIC,
                      altitude_type="range", camera_hfov_deg=hfov, prior_topic=POSITION_TOPIC,
                      prior_type="navsatfix")
    node = NodeProcess(write_params_file(workdir / "soak_params.yaml", params), workdir / "node.log", domain)
    ver = None
    if verifier:
        ver = NodeProcess(write_params_file(workdir / "soak_verifier.yaml", {
            "index_dir": str(index_dir), "compressed": compressed, "recorder_path": str(workdir / "verifier_fdr.jsonl"),
            "recorder_max_bytes": 256 << 20, "diagnostics_period": 1.0}, node_name=VERIFIER_NAME),
            workdir / "verifier.log", domain, executable=VERIFIER_EXECUTABLE, name=VERIFIER_NAME)
    client = VprClient(domain, compressed=compressed, verifier=verifier)
    pubs = {}
    if priors:
        from sensor_msgs.msg import Imu, NavSatFix, Range
        pubs = {k: client.node.create_publisher(t, topic, 50) for k, t, topic in (
            ("heading", Imu, HEADING_TOPIC), ("altitude", Range, ALTITUDE_TOPIC), ("position", NavSatFix,
                                                                                  POSITION_TOPIC))}
    rng = random.Random(seed)
    sent = {"frames": 0, "good": 0, "corrupt": 0, "corrupt_kinds": {}, "prior_samples": 0, "prior_fuzzed": 0,
            "prior_fuzz_kinds": {}}
    rss = {"node": [], "verifier": []}
    received = {"results": 0, "verifications": 0, "fixes": 0}

    def count(d, k):
        d[k] = d.get(k, 0) + 1

    def drain():
        received["results"] += len(client.drain(client.results))
        if verifier:
            received["verifications"] += len(client.drain(client.verifications))
            received["fixes"] += len(client.drain(client.fixes))
            client.drain(client.poses)

    def sample_rss(i):
        rss["node"].append((i, rss_mib(node.proc.pid)))
        if ver is not None:
            rss["verifier"].append((i, rss_mib(ver.proc.pid)))

    def publish_frame(q, stamp, fuzzed: bool):
        if priors:
            for kind, choices in (("heading", fuzz.HEADING_FUZZ), ("altitude", fuzz.ALTITUDE_FUZZ),
                                  ("position", fuzz.POSITION_FUZZ)):
                bad = rng.choice(choices) if fuzzed and rng.random() < prior_fuzz else None
                if kind == "heading":
                    msg = fuzz.heading_msg(q.yaw_deg, stamp, bad)
                elif kind == "altitude":
                    msg = fuzz.altitude_msg(q.altitude_m or 100.0, stamp, bad)
                else:
                    msg = fuzz.position_msg(q.lat, q.lon, PRIOR_SIGMA_M, stamp, bad, rng)
                pubs[kind].publish(msg)
                sent["prior_samples"] += 1
                if bad:
                    sent["prior_fuzzed"] += 1
                    count(sent["prior_fuzz_kinds"], f"{kind}.{bad}")
        if fuzzed and rng.random() < corrupt_fraction:
            msg, kind = fuzz.corrupt_frame(rng, stamp, compressed)
            count(sent["corrupt_kinds"], kind)
            sent["corrupt"] += 1
        else:
            msg = client.make_image(q.image, stamp)
            sent["good"] += 1
        client.publish(msg)
        sent["frames"] += 1

    def diagnostics(name):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            d = client.latest_diagnostics(5, name=name)
            if d is not None:
                return d
        return {}

    t_start = time.monotonic()
    try:
        client.wait_for_node(60)
        for n in (None, VERIFIER_NAME) if verifier else (None,):
            if not (client.transition("configure", node=n) and client.transition("activate", node=n)):
                raise RuntimeError(f"{n or 'vpr_node'} did not activate:\n"
                                   + (ver if n else node).log_text()[-3000:])
        if not (client.wait_subscribed(30, count=2 if verifier else 1)
                and (not verifier or client.wait_result_subscribers(2))):
            raise RuntimeError("the nodes are active but not connected after 30 s")
        for q in queries[:5]:  # warm-up, not counted
            publish_frame(q, time.time_ns(), fuzzed=False)
            client.next_result(timeout=30)
        time.sleep(2.0)
        drain()
        received.update(results=0, verifications=0, fixes=0)
        sent.update(frames=0, good=0, prior_samples=0)
        base = diagnostics("visual place recognition")
        vbase = diagnostics("geometric verification") if verifier else {}
        sample_rss(0)
        period, t_next, t_rss = 1.0 / rate_hz, time.monotonic(), time.monotonic()
        t_run = time.monotonic()
        for i in tqdm(range(frames), desc="soak", unit="frame", mininterval=5.0, disable=not progress):
            publish_frame(queries[i % len(queries)], time.time_ns(), fuzzed=True)
            drain()
            if time.monotonic() - t_rss >= RSS_EVERY_S:
                sample_rss(i)
                t_rss = time.monotonic()
            t_next += period
            time.sleep(max(0.0, t_next - time.monotonic()))
        publish_s = time.monotonic() - t_run
        time.sleep(5.0)  # the frame in flight, the verifier's match timeout
        drain()
        sample_rss(frames)
        diag = _delta(diagnostics("visual place recognition"), base)
        vfinal = diagnostics("geometric verification") if verifier else {}
        vdiag = _delta(vfinal, vbase)
        peaks = {"node": rss_mib(node.proc.pid, "VmHWM"), "verifier": rss_mib(ver.proc.pid, "VmHWM") if ver else None}
        client.publish(client.make_image(queries[0].image, time.time_ns()))  # still serving? (not counted)
        still_serving = client.next_result(timeout=30) is not None
        alive = {"node": node.alive(), "verifier": ver.alive() if ver else None}
        for n in (None, VERIFIER_NAME) if verifier else (None,):
            client.transition("deactivate", node=n)
            client.transition("shutdown", node=n)
    finally:
        client.close()
        exit_codes = {"node": node.stop(), "verifier": ver.stop() if ver else None}

    node_errors = _accounting(diag)
    prior_errors = node_errors.pop("c2.vpr.prior_error", 0)
    frame_errors = sum(node_errors.values())
    prior_records = [r for r in read_records(workdir / "fdr.jsonl")
                     if r["kind"] == "c2.vpr.prior_error" and r.get("topic_kind")]
    summary = {
        "sent": sent, "rate_hz": rate_hz, "publish_s": round(publish_s, 1), "wall_s": round(time.monotonic() - t_start),
        "node": {"frames_in": diag.get("frames_in", 0), "results_out": diag.get("results_out", 0),
                 "results_received": received["results"], "typed_frame_errors": node_errors,
                 "drops_newest_wins": diag.get("drops", 0), "prior_errors": prior_errors,
                 "prior_samples_in": sum(v for k, v in diag.items() if k.startswith("priors_in.")),
                 "prior_error_reasons": _reasons(prior_records),
                 "prior_states": {k.removeprefix("priors."): v for k, v in diag.items() if k.startswith("priors.")}},
        "accounting": {
            "frames_lost_in_transport": sent["frames"] - diag.get("frames_in", 0),
            "node_frames_unaccounted": diag.get("frames_in", 0) - diag.get("results_out", 0) - frame_errors
            - diag.get("drops", 0),
            "prior_samples_lost_in_transport": sent["prior_samples"]
            - sum(v for k, v in diag.items() if k.startswith("priors_in.")),
            "prior_samples_fuzzed_minus_typed_errors": sent["prior_fuzzed"] - prior_errors},
        "rss_MiB": {"every_10_s": rss, "peak": peaks}, "alive": alive, "still_serving_after": still_serving,
        "exit_codes": exit_codes}
    if verifier:
        verrors = {k: v for k, v in vdiag.items() if k.startswith("c2.vpr.")}
        summary["verifier"] = {
            "frames_in": vdiag.get("frames_in", 0), "results_in": vdiag.get("results_in", 0),
            "verified": vdiag.get("verified", 0), "accepted": vdiag.get("accepted", 0),
            "verifications_received": received["verifications"], "fixes_received": received["fixes"],
            "typed_errors": verrors, "drops_newest_wins": vdiag.get("dropped_newest_wins", 0),
            "verify_ms_p50_p95_last_200": [float(vfinal.get(k, 0)) for k in ("verify_ms_p50", "verify_ms_p95")]}
        unmatched = vdiag.get("frame_without_result", 0)
        typed = sum(v for k, v in verrors.items() if k != "c2.vpr.verify_error") + (
            verrors.get("c2.vpr.verify_error", 0) - unmatched - vdiag.get("result_without_frame", 0))
        summary["accounting"]["verifier_frames_lost_in_transport"] = sent["frames"] - vdiag.get("frames_in", 0)
        summary["accounting"]["verifier_frames_unaccounted"] = (
            vdiag.get("frames_in", 0) - vdiag.get("verified", 0) - typed - unmatched
            - vdiag.get("dropped_newest_wins", 0))
    summary["rss_MiB"]["after_warmup"] = {name: rss_trend(series) for name, series in rss.items()}
    (workdir / "soak_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_rss(summary, workdir / "soak_rss.png")
    return summary


def rss_trend(series, warmup_frames: int = 5000) -> dict:
    """Is the RSS flat after warm-up? min / max / last over the samples from `warmup_frames` on, and the slope
    of a least-squares line in MiB per 10,000 frames."""
    a = np.asarray([p for p in series if p[0] >= warmup_frames], np.float64).reshape(-1, 2)
    if len(a) < 3:
        return {"samples": len(a)}
    slope = float(np.polyfit(a[:, 0], a[:, 1], 1)[0]) * 10_000
    return {"samples": len(a), "from_frame": int(a[0, 0]), "min": round(float(a[:, 1].min()), 1),
            "max": round(float(a[:, 1].max()), 1), "last": round(float(a[-1, 1]), 1),
            "slope_MiB_per_10k_frames": round(slope, 2)}


def plot_rss(summary: dict, path) -> None:
    """Resident memory of each node against frames sent (the soak's picture)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for name, series in summary["rss_MiB"]["every_10_s"].items():
        a = np.asarray(series, np.float64).reshape(-1, 2)
        ax.plot(a[:, 0], a[:, 1], label=name)
    ax.set(xlabel="frames sent", ylabel="RSS (MiB)", ylim=(0, None),
           title=f"soak: {summary['sent']['frames']:,} frames at {summary['rate_hz']:g} Hz, fuzzed")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _reasons(records) -> dict:
    out = {}
    for r in records:
        k = f"{r.get('topic_kind')}.{r.get('reason') or 'invalid'}"
        out[k] = out.get(k, 0) + 1
    return out


def register(sub) -> None:
    p = sub.add_parser("soak", help="flight-length soak: many frames and prior samples, fuzzed, through the nodes")
    p.add_argument("--frames", type=int, default=100_000)
    p.add_argument("--rate", type=float, default=20.0, help="frames per second (each with its 3 prior samples)")
    p.add_argument("--corrupt-fraction", type=float, default=0.05, help="share of malformed frames")
    p.add_argument("--prior-fuzz", type=float, default=0.05, help="share of implausible samples on each prior topic")
    p.add_argument("--no-priors", action="store_true", help="no prior topics")
    p.add_argument("--no-verifier", action="store_true", help="vpr_node alone")
    p.add_argument("--compressed", action="store_true", help="CompressedImage (corrupt = garbage JPEG)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default="artifacts/soak")
    p.set_defaults(fn=lambda a: print(json.dumps(run_soak(
        a.workdir, a.frames, a.rate, a.corrupt_fraction, a.prior_fuzz, not a.no_priors, not a.no_verifier, a.seed,
        a.compressed), indent=2)))
