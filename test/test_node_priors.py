"""Priors through the node process's real topics (sensor_msgs/Imu heading, NavSatFix position prior):
a fresh heading is applied; a stale one falls back to the heading-free path and is counted; a heading
180 deg wrong degrades but is served; a position prior far outside the map searches the whole map with
a WARN; malformed quaternions (NaN, zero norm) are typed errors, recorded, and the frame is still served
without the prior."""
import json
import math
import time

import pytest
from conftest import Running, node_params
from sensor_msgs.msg import Imu, NavSatFix

from vpr_node.core.io.recorder import read_records
from vpr_node.ros.conversions import ns_to_time

pytestmark = pytest.mark.process

T0 = 1_700_000_000_000_000_000


@pytest.fixture(scope="module")
def node(gem_index_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("priors_node")
    r = Running(tmp, node_params(gem_index_dir, tmp, heading_topic="/imu", heading_type="imu", heading_max_skew=0.5,
                                 prior_topic="/prior/fix", prior_type="navsatfix", prior_k_sigma=2.0))
    r.imu = r.client.node.create_publisher(Imu, "/imu", 10)
    r.fix = r.client.node.create_publisher(NavSatFix, "/prior/fix", 10)
    r.fdr = tmp / "fdr.jsonl"
    assert r.client.transition("configure") and r.client.transition("activate"), r.node.log_text()[-3000:]
    r.client.wait_subscribed(10)
    deadline = time.monotonic() + 10
    while (r.imu.get_subscription_count() == 0 or r.fix.get_subscription_count() == 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    yield r
    assert r.close() == 0


def imu(stamp, heading_deg=None, q=None):
    m = Imu()
    m.header.stamp = ns_to_time(stamp)
    if q is None:
        yaw = math.radians(90.0 - heading_deg)  # ENU
        q = (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2))
    m.orientation.x, m.orientation.y, m.orientation.z, m.orientation.w = q
    return m


def fix(stamp, lat, lon, sigma):
    m = NavSatFix()
    m.header.stamp = ns_to_time(stamp)
    m.latitude, m.longitude = lat, lon
    m.position_covariance = [sigma ** 2, 0.0, 0.0, 0.0, sigma ** 2, 0.0, 0.0, 0.0, 4 * sigma ** 2]
    m.position_covariance_type = NavSatFix.COVARIANCE_TYPE_DIAGONAL_KNOWN
    return m


def frame(node, query, stamp, *priors):
    for pub, msg in priors:
        pub.publish(msg)
    time.sleep(0.3)  # the prior samples reach the node before the frame
    node.client.drain(node.client.results)
    node.client.publish(node.client.make_image(query.image, stamp))
    res = node.client.next_result(timeout=30)
    while res is not None and (res.header.stamp.sec * 10**9 + res.header.stamp.nanosec) != stamp:
        res = node.client.next_result(timeout=30)
    return res


def test_fresh_heading_and_position_are_applied(node, sample_queries):
    q = sample_queries[0]
    res = frame(node, q, T0, (node.imu, imu(T0, q.yaw_deg)), (node.fix, fix(T0, q.lat, q.lon, 30.0)))
    assert res is not None, node.node.log_text()[-3000:]
    assert res.prior_state == "heading:ok altitude:off position:ok"
    assert res.heading_applied and res.heading_deg == pytest.approx(q.yaw_deg, abs=0.01)
    assert res.position_applied and res.position_sigma_m == pytest.approx(30.0) and 0 < res.tiles_searched < 36


def test_stale_heading_falls_back_and_is_counted(node, sample_queries):
    res = frame(node, sample_queries[1], T0 + 10 * 10**9)  # the last IMU sample is 10 s older than the frame
    assert res is not None and res.prior_state.startswith("heading:stale") and not res.heading_applied
    diag = node.client.latest_diagnostics(5)
    assert int(diag["priors.heading:stale"]) >= 1 and int(diag["priors.heading:ok"]) >= 1


def test_heading_180_degrees_wrong_is_served(node, sample_queries):
    q, stamp = sample_queries[2], T0 + 20 * 10**9
    res = frame(node, q, stamp, (node.imu, imu(stamp, q.yaw_deg + 180.0)))
    assert res is not None and res.heading_applied and len(res.candidates) == 5
    assert res.heading_deg == pytest.approx((q.yaw_deg + 180.0) % 360.0, abs=0.01)


def test_position_prior_outside_the_map_searches_everything_with_a_warning(node, sample_queries):
    q, stamp = sample_queries[3], T0 + 30 * 10**9
    res = frame(node, q, stamp, (node.imu, imu(stamp, q.yaw_deg)), (node.fix, fix(stamp, q.lat + 1.0, q.lon, 30.0)))
    assert res is not None and "position:outside_map" in res.prior_state
    assert not res.position_applied and res.tiles_searched == 0 and len(res.candidates) == 5
    warns = [json.loads(x) for x in node.node.log_text().splitlines() if '"c2.vpr.prior_outside_map"' in x]
    assert warns and warns[0]["level"] == "WARN"


@pytest.mark.parametrize("q", [(float("nan"), 0.0, 0.0, 1.0), (0.0, 0.0, 0.0, 0.0)], ids=["nan", "zero_norm"])
def test_malformed_quaternion_is_a_typed_error_and_the_frame_is_served(node, sample_queries, q):
    stamp = T0 + (40 if q[0] != q[0] else 50) * 10**9
    res = frame(node, sample_queries[4], stamp, (node.imu, imu(stamp, q=q)))
    assert res is not None and res.prior_state.startswith("heading:error") and not res.heading_applied
    assert node.node.alive()
    recs = [r for r in read_records(node.fdr) if r["kind"] == "c2.vpr.prior_error" and r.get("stamp_ns") == stamp]
    assert recs and recs[0]["error"] == "VprPriorError" and recs[0]["prior"] == "heading"
    diag = node.client.latest_diagnostics(5)
    assert int(diag["errors.c2.vpr.prior_error"]) >= 1
