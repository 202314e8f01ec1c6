"""retrieval/: the strategy protocol, runtimes (ONNX Runtime, FP16, unavailable ones), the engine's error contract
(typed, logged, recorded; next frame served), its newest-wins queue, hang watchdog and warm-up; fuzzed frame sizes."""
import io
import json
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vpr_node.core.backbones import create_backbone
from vpr_node.core.errors import ConfigurationError, VprPreprocessError
from vpr_node.core.io.image_codec import decode_compressed
from vpr_node.core.io.logs import StructuredLogger
from vpr_node.core.io.recorder import OPEN_KIND, FlightDataRecorder, read_records
from vpr_node.core.retrieval.engine import Frame, VprEngine
from vpr_node.core.retrieval.frame_queue import FrameQueue
from vpr_node.core.retrieval.runtimes import Runtime, create_runtime
from vpr_node.core.retrieval.strategy import RetrievalStrategy, VprStrategy, load_strategy


def test_strategy_satisfies_protocol(gem_strategy, gem_index_dir, sample_queries):
    """The C2 protocol as behaviour: embed_query -> (descriptor_dim,) float32 unit vector; retrieve_topk -> k
    candidates, ascending distance, labelled with the backbone and dimension."""
    s = load_strategy("efficientnet_lite0_gem", backbone_options={"input_size": 160}, index_dir=str(gem_index_dir))
    assert isinstance(s, VprStrategy)
    d = s.embed_query(sample_queries[0].image)
    assert d.shape == (s.descriptor_dim,) and d.dtype == np.float32 and abs(np.linalg.norm(d) - 1) < 1e-3
    cands = s.retrieve_topk(d, 4)
    assert len(cands) == 4 and [c.rank for c in cands] == [0, 1, 2, 3]
    assert [c.distance for c in cands] == sorted(c.distance for c in cands)
    assert {(c.backbone_label, c.descriptor_dim) for c in cands} == {("efficientnet_lite0_gem", s.descriptor_dim)}


def test_onnxruntime_matches_pytorch(gem_strategy, sample_queries):
    model = gem_strategy.backbone
    ort = create_runtime("onnxruntime", model)
    assert ort.parity_max_abs_diff < 1e-4  # checked on random frames when the model was exported
    x = model.preprocessor([q.image for q in sample_queries[:2]])
    ref = create_runtime("pytorch", model).forward(x)
    assert np.allclose(ort.forward(x), ref, atol=1e-4)


def test_an_export_that_does_not_reproduce_pytorch_is_refused():
    """The export from a live model (what runtime onnxruntime and the ONNX Runtime build run) is checked against
    PyTorch: a model whose forward the trace cannot capture (a data-dependent branch) fails with a message."""
    model = create_backbone("efficientnet_lite0_gem", input_size=64)
    plain = model.forward
    model.forward = lambda x: plain(x) if float(x.abs().sum()) == 0 else plain(x[:, [2, 1, 0]])
    with pytest.raises(ConfigurationError, match="does not export faithfully"):
        create_runtime("onnxruntime", model)


def test_a_model_exported_into_the_index_runs_without_pytorch(gem_index_dir, sample_queries, tmp_path):
    """`vpr export-onnx --into-index`: model.onnx + model_onnx.json in the index folder, hashed in the manifest;
    runtime onnxruntime then loads them in a process that never imports PyTorch and gives the PyTorch path's
    descriptors and top-5; a changed model.onnx is refused at load; a backbone other than the export's is a
    ConfigurationError that names both."""
    import shutil
    import subprocess
    import sys

    from vpr_node.core.errors import IndexUnavailableError
    from vpr_node.core.retrieval.exported import ONNX_FILE, ONNX_META, export_to_index
    index = tmp_path / "index"
    shutil.copytree(gem_index_dir, index)
    torch_path = load_strategy("efficientnet_lite0_gem", index_dir=str(index), backbone_options={"input_size": 160})
    meta = export_to_index(torch_path, index)
    assert meta["max_abs_diff_vs_pytorch"] <= 1e-4
    manifest = json.loads((index / "manifest.json").read_text())
    assert {ONNX_FILE, ONNX_META} <= set(manifest["files"])
    np.save(tmp_path / "frame.npy", sample_queries[0].image)
    ref = torch_path.embed_query(sample_queries[0].image)
    code = (f"import sys, json, numpy as np\n"
            f"from vpr_node.core.retrieval.strategy import load_strategy\n"
            f"s = load_strategy('efficientnet_lite0_gem', index_dir={str(index)!r}, runtime='onnxruntime')\n"
            f"d = s.embed_query(np.load({str(tmp_path / 'frame.npy')!r}))\n"
            f"print(json.dumps({{'torch': 'torch' in sys.modules, 'd': d.tolist(), "
            f"'top': [c.tile.name for c in s.retrieve_topk(d, 5)]}}))\n")
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                    check=True).stdout.strip().splitlines()[-1])
    assert out["torch"] is False
    assert np.max(np.abs(np.asarray(out["d"]) - ref)) <= 1e-4
    assert out["top"] == [c.tile.name for c in torch_path.retrieve_topk(ref, 5)]
    with pytest.raises(ConfigurationError, match="efficientnet_lite0_gem"):
        load_strategy("efficientnet_lite0_netvlad", index_dir=str(index), runtime="onnxruntime")
    data = bytearray((index / ONNX_FILE).read_bytes())
    data[-1] ^= 0xFF
    (index / ONNX_FILE).write_bytes(bytes(data))
    with pytest.raises(IndexUnavailableError):
        load_strategy("efficientnet_lite0_gem", index_dir=str(index), runtime="onnxruntime")


def test_fp16_runtime_close_to_fp32(sample_queries):
    m = create_backbone("efficientnet_lite0_gem", input_size=160)
    x = m.preprocessor([sample_queries[0].image])
    fp32 = create_runtime("pytorch", m, "fp32").forward(x)
    fp16 = create_runtime("pytorch", m, "fp16").forward(x)
    assert fp16.dtype == np.float16 and float(fp32[0] @ fp16[0].astype(np.float32)) > 0.99


def test_unavailable_runtimes_fail_fast_with_a_message():
    m = create_backbone("efficientnet_lite0_gem", input_size=64)
    with pytest.raises(ConfigurationError, match="tensorrt"):
        create_runtime("tensorrt", m)
    with pytest.raises(ConfigurationError, match="BUILD_ONNX_RUNTIME=OFF"):
        create_runtime("onnxruntime", m, installed=frozenset({"pytorch"}))


def test_frame_queue_newest_wins_and_counts_drops():
    q = FrameQueue(depth=2)
    assert q.put(1) and q.put(2)
    assert not q.put(3)  # 1 dropped
    assert q.put(4) is False  # 2 dropped
    item, dropped = q.get(timeout=0.1)
    assert (item, dropped) == (3, 2)
    assert q.get(timeout=0.1) == (4, 0)
    assert q.get(timeout=0.01) == (None, 0)
    q.put(5)
    assert q.close() == 1 and q.dropped_total == 3


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
    assert kinds == [OPEN_KIND, "c2.vpr.preprocess_error", "c2.vpr.embed_query"]


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


@pytest.fixture(scope="module")
def engine(gem_index_dir):
    from vpr_node.core.retrieval.strategy import load_strategy
    s = load_strategy("efficientnet_lite0_gem", index_dir=str(gem_index_dir), backbone_options={"input_size": 160})
    return VprEngine(s, lambda r: None, top_k=3, logger=StructuredLogger(stream=io.StringIO()))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(h=st.integers(0, 40), w=st.integers(0, 40), fill=st.integers(0, 255))
def test_engine_survives_odd_sizes(engine, sample_queries, h, w, fill):
    before = engine.snapshot()
    res = engine.process(Frame(decode=lambda: np.full((h, w, 3), fill, np.uint8)))
    after = engine.snapshot()
    if res is None:
        assert after["errors_total"] == before["errors_total"] + 1
    else:
        assert len(res.candidates) == 3
    assert engine.process(Frame(decode=lambda: sample_queries[0].image)) is not None  # still serving
