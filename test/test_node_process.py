"""The node as a real separate process, driven only through its lifecycle services and topics
(what launch/vpr.launch.py runs on the drone: same executable, --params-file, transitions)."""
import time

import numpy as np
import pytest
from conftest import GEM_OPTS, Running, node_params, send_frame

from vpr_node.core.backbones import DEFAULT_BACKBONE

pytestmark = pytest.mark.process


@pytest.fixture(scope="module")
def running(gem_index_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("node")
    r = Running(tmp, node_params(gem_index_dir, tmp))
    yield r
    assert r.close() == 0, r.node.log_text()[-2000:]


def test_lifecycle_and_no_output_while_inactive(running, sample_queries):
    c = running.client
    assert c.state() == "unconfigured"
    assert c.transition("configure"), running.node.log_text()[-2000:]
    assert c.state() == "inactive"
    c.publish(c.make_image(sample_queries[0].image, 1))
    assert c.next_result(timeout=3) is None  # inactive: no subscription, no output
    assert c.transition("activate")
    assert c.state() == "active"
    assert c.wait_subscribed(10)


def test_result_contract(running, sample_queries):
    c = running.client
    for i, q in enumerate(sample_queries[:3]):
        stamp = 1_700_000_000_123_456_789 + i
        res = send_frame(c, q.image, stamp)
        assert res is not None, running.node.log_text()[-2000:]
        assert res.header.stamp.sec * 10**9 + res.header.stamp.nanosec == stamp
        assert res.header.frame_id == "nav_camera"
        assert res.backbone_label == "efficientnet_lite0_gem" and res.descriptor_dim == 192
        d = [x.distance for x in res.candidates]
        assert len(d) == 5 and d == sorted(d)
        assert all(x.descriptor_dim == 192 and x.tile_id for x in res.candidates)
        assert all(abs(x.latitude - q.lat) < 0.01 and abs(x.longitude - q.lon) < 0.02 for x in res.candidates)
        assert len(res.frame_uuid) == 36 and res.embed_latency_ms > 0


def test_bgr_and_mono_frames_are_served(running, sample_queries):
    for enc in ("bgr8", "mono8"):
        assert send_frame(running.client, sample_queries[1].image, 77, encoding=enc) is not None


def test_corrupt_frame_counts_error_and_node_keeps_serving(running, sample_queries):
    from sensor_msgs.msg import Image
    c = running.client
    bad = Image()
    bad.header.stamp.sec = 5
    bad.height, bad.width, bad.encoding, bad.step = 720, 1280, "rgb8", 3840
    bad.data = b"\x01" * 1000  # far too short for the declared size
    c.publish(bad)
    assert c.next_result(timeout=3) is None
    deadline = time.time() + 10
    diag = None
    while time.time() < deadline:
        diag = c.latest_diagnostics(3)
        if diag and int(diag.get("errors.c2.vpr.preprocess_error", 0)) >= 1:
            break
    assert diag and int(diag["errors.c2.vpr.preprocess_error"]) >= 1 and diag["state"] == "active"
    assert send_frame(c, sample_queries[2].image, 99) is not None  # still serving
    assert '"kind":"c2.vpr.preprocess_error"' in running.node.log_text()


def test_deactivate_stops_output(running, sample_queries):
    c = running.client
    assert c.transition("deactivate") and c.state() == "inactive"
    c.drain(c.results)
    c.publish(c.make_image(sample_queries[0].image, 3))
    assert c.next_result(timeout=3) is None


def test_backbone_switch_takes_effect_at_reactivation(running, sample_queries, vlad_index_dir):
    c = running.client
    assert c.state() == "inactive"
    assert all(c.set_parameters({"backbone": DEFAULT_BACKBONE, "weights": "",
                                 "backbone_options": '{"input_size": 160, "num_clusters": 8}',
                                 "index_dir": str(vlad_index_dir)}))
    assert c.transition("activate"), running.node.log_text()[-2000:]
    c.wait_subscribed(10)
    res = send_frame(c, sample_queries[0].image, 123)
    assert res is not None and res.backbone_label == DEFAULT_BACKBONE
    assert res.descriptor_dim == 64 * 8 and all(x.descriptor_dim == 64 * 8 for x in res.candidates)
    assert '"kind":"c2.vpr.reload"' in running.node.log_text()
    assert c.transition("deactivate") and c.transition("cleanup") and c.state() == "unconfigured"


def test_misconfiguration_fails_fast_and_node_stays_up(tmp_path, gem_index_dir):
    r = Running(tmp_path, node_params(tmp_path / "no_such_index", tmp_path))
    try:
        assert not r.client.transition("configure")
        assert r.client.state() == "unconfigured" and r.node.alive()
        log = r.node.log_text()
        assert "does not exist; build it with `vpr build-index`" in log
        # wrong index for the backbone: the manifest check names the field
        assert all(
            r.client.set_parameters({"index_dir": str(gem_index_dir), "backbone_options": '{"input_size": 192}'})
        )
        assert not r.client.transition("configure")
        assert "index manifest field" in r.node.log_text()
        # an index larger than the node's memory budget: refused before it is read, with how to rebuild it
        assert all(r.client.set_parameters({"backbone_options": GEM_OPTS, "index_memory_budget_mib": 0.001}))
        assert not r.client.transition("configure")
        assert "index_memory_budget_mib is 0.001: rebuild it with `vpr build-index ... --memory-budget" in \
            r.node.log_text()
        assert all(r.client.set_parameters({"index_memory_budget_mib": 0.0}))
        assert r.client.transition("configure")
        assert r.client.transition("shutdown") and r.client.state() == "finalized"
    finally:
        r.close()


def test_compressed_subscription(tmp_path, gem_index_dir, sample_queries):
    r = Running(tmp_path, node_params(gem_index_dir, tmp_path, compressed=True), compressed=True)
    try:
        assert r.client.transition("configure") and r.client.transition("activate")
        r.client.wait_subscribed(10)
        res = send_frame(r.client, sample_queries[3].image, 555)
        assert res is not None and res.header.stamp.nanosec == 555 and len(res.candidates) == 5
        r.client.publish(_corrupt_jpeg(r.client))
        assert r.client.next_result(timeout=3) is None
        assert send_frame(r.client, sample_queries[4].image, 556) is not None
    finally:
        r.close()


def _corrupt_jpeg(client):
    from sensor_msgs.msg import CompressedImage
    m = CompressedImage()
    m.format = "jpeg"
    m.data = b"\xff\xd8\xff\xe0" + bytes(np.random.default_rng(0).integers(0, 255, 5000, dtype=np.uint8))
    return m


@pytest.mark.parametrize("damage,message", [
    ("truncate_index", "is corrupt or was changed after the build"),
    ("delete_entries", "is missing; rebuild the index"),
    ("corrupt_manifest", "manifest"),
    ("flip_descriptor_byte", "is corrupt or was changed after the build"),
])
def test_damaged_index_fails_configure_with_typed_error_and_node_recovers(tmp_path, gem_index_dir, sample_queries,
                                                                          damage, message):
    """Index files missing / truncated / corrupted / manifest mangled, through the node process: configure
    fails with IndexUnavailableError (log + flight-data record), the node stays up, and once the index is
    restored the same process configures, activates and serves."""
    import json
    import shutil

    from vpr_node.core.io.recorder import read_records
    idx = tmp_path / "index"
    shutil.copytree(gem_index_dir, idx)
    backup = tmp_path / "backup"
    shutil.copytree(idx, backup)
    if damage == "truncate_index":
        p = idx / "index.faiss"
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    elif damage == "delete_entries":
        (idx / "entries.npy").unlink()
    elif damage == "corrupt_manifest":
        (idx / "manifest.json").write_text((idx / "manifest.json").read_text()[:-40])
    else:
        p = idx / "descriptors.npy"
        b = bytearray(p.read_bytes())
        b[-7] ^= 0xFF
        p.write_bytes(bytes(b))
    r = Running(tmp_path, node_params(idx, tmp_path))
    try:
        assert not r.client.transition("configure")
        assert r.client.state() == "unconfigured" and r.node.alive()
        log = r.node.log_text()
        assert message in log
        errs = [json.loads(x) for x in log.splitlines() if x.startswith("{") and '"level":"ERROR"' in x]
        assert any(e["kind"] == "c2.vpr.index_error" for e in errs), log[-2000:]
        assert any(rec["kind"] == "c2.vpr.index_error" for rec in read_records(tmp_path / "fdr.jsonl"))
        shutil.rmtree(idx)
        shutil.copytree(backup, idx)
        assert r.client.transition("configure") and r.client.transition("activate"), r.node.log_text()[-2000:]
        r.client.wait_subscribed(10)
        assert send_frame(r.client, sample_queries[0].image, 4242) is not None
    finally:
        r.close()


@pytest.mark.parametrize("damage,message", [
    ("changed_weights", "index manifest field 'weights_sha256'"),
    ("truncated_weights", "could not read weights file"),
])
def test_weights_mismatch_fails_configure_with_typed_error_and_node_recovers(tmp_path, gem_index_dir, sample_queries,
                                                                             damage, message):
    """Weights hash mismatch through the node process: `weights` names a checkpoint other than the one the
    index was built with (one tensor changed), or a truncated file. Configure is refused with a
    ConfigurationError that says what to fix (ERROR log + flight-data record); the node stays up, and with
    `weights` cleared the same process configures, activates and serves."""
    import json

    import torch

    from vpr_node.core.backbones import create_backbone
    from vpr_node.core.io.recorder import read_records
    model = create_backbone("efficientnet_lite0_gem", **json.loads(GEM_OPTS))
    state = model.state_dict()
    key = next(k for k, v in state.items() if v.dtype.is_floating_point and v.ndim == 4)
    state[key] = state[key] * 1.01
    wfile = tmp_path / "finetuned.pt"
    torch.save(state, wfile)
    if damage == "truncated_weights":
        wfile.write_bytes(wfile.read_bytes()[: wfile.stat().st_size // 3])
    r = Running(tmp_path, node_params(gem_index_dir, tmp_path, weights=str(wfile)))
    try:
        assert not r.client.transition("configure")
        assert r.client.state() == "unconfigured" and r.node.alive()
        log = r.node.log_text()
        assert message in log, log[-2000:]
        errs = [json.loads(x) for x in log.splitlines() if x.startswith("{") and '"level":"ERROR"' in x]
        assert any(e["kind"] == "c2.vpr.configuration_error" for e in errs), log[-2000:]
        assert any(rec["kind"] == "c2.vpr.configuration_error" for rec in read_records(tmp_path / "fdr.jsonl"))
        assert all(r.client.set_parameters({"weights": ""}))
        assert r.client.transition("configure") and r.client.transition("activate"), r.node.log_text()[-2000:]
        r.client.wait_subscribed(10)
        assert send_frame(r.client, sample_queries[0].image, 4343) is not None
    finally:
        r.close()


def test_debug_level_logs_each_frames_distances_and_recorder_has_latency(tmp_path, gem_index_dir, sample_queries):
    """VPR_LOG_LEVEL=DEBUG makes the node log every result's candidate distances (rclpy's own level
    follows it; without that rclpy filtered the DEBUG lines out); the recorder's vpr.embed_query record
    carries the frame's end-to-end latency (receive -> result)."""
    import json

    from vpr_node.core.io.recorder import read_records
    r = Running(tmp_path, node_params(gem_index_dir, tmp_path), env={"VPR_LOG_LEVEL": "DEBUG"})
    try:
        assert r.client.transition("configure") and r.client.transition("activate")
        r.client.wait_subscribed(10)
        res = send_frame(r.client, sample_queries[0].image, 4444)
        assert res is not None, r.node.log_text()[-2000:]
        r.client.transition("deactivate")
        lines = [json.loads(x) for x in r.node.log_text().splitlines() if x.startswith("{")]
        debug = [x for x in lines if x["level"] == "DEBUG" and x["kind"] == "c2.vpr.result"]
        assert debug and debug[0]["frame_uuid"] == res.frame_uuid, r.node.log_text()[-2000:]
        assert debug[0]["distances"] == pytest.approx([c.distance for c in res.candidates], abs=1e-4)
        rec = [x for x in read_records(tmp_path / "fdr.jsonl") if x["kind"] == "c2.vpr.embed_query"]
        assert rec and rec[0]["latency_ms"] >= rec[0]["embed_ms"] > 0
    finally:
        r.close()
