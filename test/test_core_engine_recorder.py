"""The inference engine's error contract, the flight-data recorder and structured logs."""
import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from vpr_node.core.errors import VprPreprocessError
from vpr_node.core.io.image_codec import decode_compressed
from vpr_node.core.io.logs import StructuredLogger
from vpr_node.core.io.recorder import FlightDataRecorder, read_records
from vpr_node.core.retrieval.engine import Frame, VprEngine
from vpr_node.core.retrieval.runtimes import Runtime
from vpr_node.core.retrieval.strategy import RetrievalStrategy, load_strategy


@pytest.fixture
def strategy(gem_index_dir):
    return load_strategy("efficientnet_lite0_gem", index_dir=str(gem_index_dir), backbone_options={"input_size": 160})


def _engine(strategy, tmp_path, **kw):
    out, stream = [], io.StringIO()
    rec = FlightDataRecorder(tmp_path / "fdr.jsonl")
    eng = VprEngine(strategy, out.append, top_k=5, logger=StructuredLogger(stream=stream), recorder=rec, **kw)
    return eng, out, stream, rec


def test_corrupt_frame_is_typed_logged_recorded_and_next_frame_served(strategy, sample_queries, tmp_path):
    eng, out, stream, rec = _engine(strategy, tmp_path)
    assert eng.process(Frame(decode=lambda: decode_compressed("jpeg", b"\xff\xd8 broken"), frame_id="cam")) is None
    good = eng.process(Frame(decode=lambda: sample_queries[0].image, frame_id="cam", stamp_ns=42))
    assert good is not None and good.stamp_ns == 42 and len(good.candidates) == 5
    snap = eng.snapshot()
    assert snap["errors"] == {"c2.vpr.preprocess_error": 1} and snap["results_out"] == 1
    logs = [json.loads(line) for line in stream.getvalue().splitlines()]
    err = [entry for entry in logs if entry["kind"] == "c2.vpr.preprocess_error"]
    assert err and err[0]["level"] == "ERROR" and err[0]["error"] == "VprPreprocessError"
    kinds = [r["kind"] for r in read_records(tmp_path / "fdr.jsonl")]
    assert kinds == ["c2.vpr.preprocess_error", "c2.vpr.embed_query"]


class _FailingRuntime(Runtime):
    """Test double at the true boundary: a runtime whose forward raises or returns NaN."""

    name = "failing"

    def __init__(self, mode):
        self.mode = mode

    def forward(self, batch):
        if self.mode == "raise":
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return np.full((batch.shape[0], 192), np.nan, np.float32)


@pytest.mark.parametrize("mode", ["raise", "nan"])
def test_backbone_failure_becomes_vpr_backbone_error(strategy, sample_queries, tmp_path, mode):
    broken = RetrievalStrategy(strategy.backbone, _FailingRuntime(mode), strategy.index)
    eng, out, stream, rec = _engine(broken, tmp_path)
    eng.start()
    try:
        for i in range(3):
            eng.submit(Frame(decode=lambda: sample_queries[0].image, frame_id="cam", stamp_ns=i))
            time.sleep(0.3)
        deadline = time.time() + 10
        while eng.snapshot()["errors_total"] + eng.snapshot()["drops"] < 3 and time.time() < deadline:
            time.sleep(0.05)
    finally:
        assert eng.stop()
    snap = eng.snapshot()
    assert snap["errors"].get("c2.vpr.backbone_error", 0) + snap["drops"] == 3 and not out
    assert any(r["kind"] == "c2.vpr.backbone_error" for r in read_records(tmp_path / "fdr.jsonl"))
    assert "VprBackboneError" in stream.getvalue()


def test_thread_keeps_latest_frame_and_counts_drops(strategy, sample_queries, tmp_path):
    eng, out, _, _ = _engine(strategy, tmp_path, queue_depth=1)
    eng.start()
    for i in range(20):  # far faster than inference: most are dropped, newest wins
        eng.submit(Frame(decode=lambda: sample_queries[0].image, stamp_ns=i))
    deadline = time.time() + 20
    while (not out or out[-1].stamp_ns != 19) and time.time() < deadline:
        time.sleep(0.05)
    assert eng.stop()
    snap = eng.snapshot()
    assert out[-1].stamp_ns == 19
    assert snap["results_out"] + snap["drops"] == 20 and snap["drops"] >= 1
    assert sum(r.frames_dropped for r in out) == snap["drops"]


def test_recorder_rotates_by_size(tmp_path):
    rec = FlightDataRecorder(tmp_path / "f.jsonl", max_bytes=2000, backups=2)
    for i in range(200):
        rec.record("c2.vpr.embed_query", i=i, pad="x" * 40)
    rec.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["f.jsonl", "f.jsonl.1", "f.jsonl.2"]
    assert all(p.stat().st_size <= 2000 for p in tmp_path.iterdir())
    got = [r["i"] for r in read_records(tmp_path / "f.jsonl")]
    assert got == sorted(got) and got[-1] == 199  # oldest rotated out, order kept


def test_recorder_survives_kill_9(tmp_path):
    path = tmp_path / "crash.jsonl"
    code = (
        "import sys, time; from vpr_node.core.io.recorder import FlightDataRecorder as R; r = R(sys.argv[1]);\n"
        "i = 0\nwhile True:\n    r.record('c2.vpr.embed_query', i=i); i += 1\n"
        "    if i == 500: print('ready', flush=True)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE)
    assert p.stdout.readline().strip() == b"ready"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    recs = read_records(path)
    assert len(recs) >= 500 and [r["i"] for r in recs] == list(range(len(recs)))


def test_structured_log_levels_and_sink():
    seen, stream = [], io.StringIO()
    log = StructuredLogger(level="INFO", stream=stream, sink=lambda lvl, line: seen.append(lvl))
    log.debug("c2.vpr.result", distances=[0.1])
    log.info("c2.vpr.ready", strategy="x", descriptor_dim=3)
    log.error("c2.vpr.backbone_error", "boom")
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert [x["kind"] for x in lines] == ["c2.vpr.ready", "c2.vpr.backbone_error"] and seen == ["INFO", "ERROR"]
    assert lines[0]["descriptor_dim"] == 3


def test_preprocess_error_carries_context():
    with pytest.raises(VprPreprocessError) as e:
        decode_compressed("jpeg", b"")
    assert e.value.to_record()["kind"] == "c2.vpr.preprocess_error"


class _HangingRuntime(Runtime):
    """Test double at the true boundary: a runtime that blocks until released."""

    name = "hanging"

    def __init__(self, release):
        self.release = release

    def forward(self, batch):
        self.release.wait(30)
        return np.full((batch.shape[0], 192), 1 / np.sqrt(192), np.float32)


def test_hung_backbone_is_reported_once_and_queue_stays_bounded(strategy, sample_queries, tmp_path):
    import threading
    release = threading.Event()
    eng, out, stream, rec = _engine(RetrievalStrategy(strategy.backbone, _HangingRuntime(release), strategy.index),
                                    tmp_path)
    eng.start(warm_up=False)  # the frames below are what hangs
    try:
        for i in range(50):  # frames keep arriving while the backbone hangs
            eng.submit(Frame(decode=lambda: sample_queries[0].image, stamp_ns=i))
            time.sleep(0.01)
        time.sleep(0.3)
        assert eng.check_hang(0.2) and eng.check_hang(0.2)  # still hung; reported once
        snap = eng.snapshot()
        assert snap["errors"] == {"c2.vpr.backbone_hang": 1} and snap["inflight_ms"] >= 200
        assert len(eng.queue) <= 1 and snap["drops"] >= 45  # bounded: newest wins
    finally:
        release.set()
        assert eng.stop()
    assert [r["kind"] for r in read_records(tmp_path / "fdr.jsonl")].count("c2.vpr.backbone_hang") == 1
    assert '"level":"ERROR"' in stream.getvalue() and "hung" in stream.getvalue()


def test_warm_up_runs_on_the_inference_thread_before_frames(strategy, tmp_path):
    eng, out, stream, _ = _engine(strategy, tmp_path)
    eng.start()  # returns once the inference thread has embedded and searched a blank frame
    try:
        assert '"kind":"c2.vpr.warmed_up"' in stream.getvalue()
    finally:
        assert eng.stop()
    assert not out and eng.snapshot()["results_out"] == 0  # the warm-up frame is not a result


def test_hanging_warm_up_is_bounded_and_reported_by_the_watchdog(strategy, tmp_path):
    import threading
    release = threading.Event()
    eng, _, stream, _ = _engine(
        RetrievalStrategy(strategy.backbone, _HangingRuntime(release), strategy.index), tmp_path
    )
    t0 = time.monotonic()
    eng.start(warm_up_timeout=0.5)
    try:
        assert time.monotonic() - t0 < 5  # activation is not held hostage by a hung backbone
        time.sleep(0.3)
        assert eng.check_hang(0.5)
        assert eng.snapshot()["errors"] == {"c2.vpr.backbone_hang": 1}
    finally:
        release.set()
        assert eng.stop()
