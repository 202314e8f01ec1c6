"""The vpr_verifier node as a real process beside vpr_node, over real topics: a frame in -> VprResult ->
VprVerification with the fix, NavSatFix and PoseWithCovarianceStamped out; the debug image only while someone
subscribes; a frame whose result never comes, and a result with no candidates, are typed records, no fix, and the
node keeps serving."""
import json
import math
import shutil
import time

import pytest
from conftest import _domains, node_params
from launch_helpers import accept_every_fix

from vpr_node.core.io.recorder import read_records
from vpr_node.core.maps.geo import haversine_m
from vpr_node.ros.qos import OUTPUT_QOS

pytestmark = pytest.mark.process


@pytest.fixture(scope="module")
def calibrated_index(gem_index_dir, tmp_path_factory):
    """The GeM index with a calibration that accepts every fix (the node's publishing path, not the model)."""
    out = tmp_path_factory.mktemp("calibrated") / "index"
    shutil.copytree(gem_index_dir, out)
    accept_every_fix(out)
    return out


@pytest.fixture
def nodes(calibrated_index, tmp_path):
    from vpr_node.ros.harness import NodeProcess, VprClient, write_params_file
    from vpr_node.ros.node_spec import VERIFIER_EXECUTABLE, VERIFIER_NAME
    domain = next(_domains)
    vpr = NodeProcess(write_params_file(tmp_path / "vpr.yaml", node_params(calibrated_index, tmp_path)),
                      tmp_path / "vpr.log", domain)
    ver = NodeProcess(write_params_file(tmp_path / "ver.yaml", {
        "index_dir": str(calibrated_index), "recorder_path": str(tmp_path / "verifier_fdr.jsonl"),
        "match_timeout": 0.5, "diagnostics_period": 0.2}, node_name=VERIFIER_NAME), tmp_path / "ver.log", domain,
        executable=VERIFIER_EXECUTABLE, name=VERIFIER_NAME)
    client = VprClient(domain, verifier=True)
    try:
        client.wait_for_node(60)
        for node in (None, VERIFIER_NAME):
            assert client.transition("configure", node=node), (vpr.log_text() + ver.log_text())[-3000:]
            assert client.transition("activate", node=node)
        assert client.wait_subscribed(30, count=2) and client.wait_result_subscribers(2), \
            (vpr.log_text() + ver.log_text())[-3000:]
        yield client, vpr, ver, tmp_path
    finally:
        client.close()
        assert ver.stop() == 0 and vpr.stop() == 0


def _next(q, timeout=30):
    import queue
    try:
        return q.get(timeout=timeout)
    except queue.Empty:
        return None


def test_a_frame_gives_a_verified_fix_on_every_output(nodes, sample_queries):
    client, _, _, _ = nodes
    q = sample_queries[0]
    client.publish(client.make_image(q.image, 5_000_000_000))
    v = _next(client.verifications)
    assert v is not None and v.header.stamp.sec == 5
    assert v.result.candidates and len(v.candidates) <= 3 and v.fix_valid and v.accepted and v.reason == ""
    assert haversine_m(q.lat, q.lon, v.latitude, v.longitude) < 5.0
    valid = [c.inliers for c in v.candidates if not c.reason]
    assert valid == sorted(valid, reverse=True) and v.candidates[0].inliers == valid[0]
    fix = _next(client.fixes)
    assert fix is not None and fix.position_covariance_type == fix.COVARIANCE_TYPE_KNOWN
    assert abs(fix.latitude - v.latitude) < 1e-9 and math.isnan(fix.altitude) and fix.position_covariance[0] > 0
    pose = _next(client.poses)
    assert pose is not None and pose.header.frame_id == "map" and pose.pose.covariance[0] > 0


def test_the_debug_image_is_drawn_only_while_subscribed(nodes, sample_queries):
    client, _, _, _ = nodes
    client.publish(client.make_image(sample_queries[1].image, 6_000_000_000))
    assert _next(client.verifications) is not None
    images = client.subscribe_debug_images()
    time.sleep(1.0)  # discovery of the new subscription
    client.publish(client.make_image(sample_queries[1].image, 7_000_000_000))
    img = _next(images)
    assert img is not None and img.encoding == "rgb8" and img.width > img.height


def test_unmatched_frames_and_empty_results_are_recorded_and_the_node_keeps_serving(nodes, sample_queries):
    from vpr_node.msg import VprResult
    from vpr_node.ros.conversions import ns_to_time
    from vpr_node.ros.node_spec import VERIFIER_NAME
    client, vpr, ver, tmp_path = nodes
    assert client.transition("deactivate")  # vpr_node stops: frames get no result
    client.publish(client.make_image(sample_queries[2].image, 8_000_000_000))
    time.sleep(2.0)
    empty = VprResult()
    empty.header.stamp, empty.header.frame_id = ns_to_time(9_000_000_000), "nav_camera"
    pub = client.node.create_publisher(VprResult, "/vpr/result", OUTPUT_QOS)
    deadline = time.monotonic() + 10
    while pub.get_subscription_count() < 2 and time.monotonic() < deadline:  # the verifier and the client
        time.sleep(0.05)
    client.publish(client.make_image(sample_queries[2].image, 9_000_000_000))
    pub.publish(empty)
    time.sleep(2.0)
    records = read_records(tmp_path / "verifier_fdr.jsonl")
    reasons = [r.get("reason") for r in records if r["kind"] == "c2.vpr.verify_error"]
    assert "frame_without_result" in reasons and "no_candidates" in reasons, json.dumps(records)[-2000:]
    assert client.state(node=VERIFIER_NAME) == "active" and ver.alive()
    assert client.transition("activate")  # and the next frame is verified again
    client.publish(client.make_image(sample_queries[0].image, 10_000_000_000))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        v = _next(client.verifications, timeout=max(0.1, deadline - time.monotonic()))
        if v is not None and v.header.stamp.sec == 10:
            break
    assert v is not None and v.header.stamp.sec == 10 and v.accepted
