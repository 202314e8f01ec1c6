"""The vpr_mavlink node as a real process over real topics, against a simulated ArduPilot on loopback UDP: it sets the
EKF origin the autopilot lacks, sends each accepted VprVerification as ODOMETRY about it and publishes the mavros
pose; a stale fix, a broken covariance and a jump are refused with their reason in the recorder and /diagnostics;
unaccepted verifications are not sent; the node keeps serving and exits 0."""
import math
import socket
import time

import numpy as np
import pytest
from conftest import _domains

from vpr_node.core.io.recorder import read_records
from vpr_node.core.maps.geo import metres_per_degree

pytestmark = pytest.mark.process

LAT, LON = 60.45, 22.26


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(cond, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return False


def _verification(clock_ns: int, dn: float, accepted=True, cov=(4.0, 0.0, 0.0, 2.0)):
    from vpr_node.msg import VprVerification
    from vpr_node.ros.conversions import ns_to_time
    m_lat, _ = metres_per_degree(LAT)
    v = VprVerification()
    v.header.stamp = ns_to_time(clock_ns)
    v.header.frame_id = "nav_camera"
    v.fix_valid, v.accepted = True, accepted
    v.reason = "" if accepted else "low_confidence"
    v.latitude, v.longitude = LAT + dn / m_lat, LON
    v.heading_deg, v.heading_sigma_deg, v.confidence = 45.0, 2.0, 0.9
    v.position_covariance = [float(c) for c in cov]
    return v


def test_the_node_sends_accepted_fixes_to_the_autopilot_and_refuses_bad_ones(tmp_path):
    from vpr_node.core.autopilot.sim_peer import SimulatedAutopilot
    from vpr_node.ros.harness import NodeProcess, VprClient, write_params_file
    from vpr_node.ros.node_spec import MAVLINK_EXECUTABLE, MAVLINK_NAME
    from vpr_node.ros.qos import OUTPUT_QOS
    domain, port = next(_domains), _free_port()
    params = write_params_file(tmp_path / "mav.yaml", {
        "autopilot": "ardupilot", "connection": f"udpout:127.0.0.1:{port}", "origin_lat": LAT, "origin_lon": LON,
        "origin_wait_s": 0.5, "recorder_path": str(tmp_path / "mav_fdr.jsonl"), "diagnostics_period": 0.3,
        "max_fix_age_s": 2.0}, node_name=MAVLINK_NAME)
    with SimulatedAutopilot("ardupilot", port=port) as ap:
        node = NodeProcess(params, tmp_path / "mav.log", domain, executable=MAVLINK_EXECUTABLE, name=MAVLINK_NAME)
        client = VprClient(domain, node_name=MAVLINK_NAME, autopilot=True)
        try:
            client.wait_for_node(60)
            for t in ("configure", "activate"):
                assert client.transition(t), node.log_text()[-3000:]
            from vpr_node.msg import VprVerification
            pub = client.node.create_publisher(VprVerification, "/vpr/verification", OUTPUT_QOS)
            assert _wait(lambda: pub.get_subscription_count() > 0)
            assert _wait(lambda: ap.messages("SET_GPS_GLOBAL_ORIGIN"))  # ArduPilot had none: set from parameters
            time.sleep(1.0)  # the origin comes back as GPS_GLOBAL_ORIGIN
            now = time.time_ns()
            pub.publish(_verification(now, 0.0))
            pub.publish(_verification(now, 5.0, accepted=False))  # not accepted: not the autopilot's business
            pub.publish(_verification(now - 10 * 10**9, 0.0))  # stale
            pub.publish(_verification(now, 0.0, cov=(1.0, 0.0, 0.0, float("nan"))))  # broken covariance
            pub.publish(_verification(now, 900.0))  # a jump: held
            pub.publish(_verification(now, 3.0))
            assert _wait(lambda: len(ap.messages("ODOMETRY")) == 2), node.log_text()[-3000:]
            odo = ap.messages("ODOMETRY")
            assert [round(m.x, 2) for m in odo] == [0.0, 3.0] and all(math.isnan(m.vx) for m in odo)
            assert client.mavros_poses.get(timeout=10).pose.pose.position.y == pytest.approx(0.0, abs=0.01)

            def diag():
                while not client.diagnostics.empty():
                    arr = client.diagnostics.get()
                    for st in arr.status:
                        if st.name.startswith(MAVLINK_NAME):
                            diag.values = {kv.key: kv.value for kv in st.values}
                return getattr(diag, "values", {})
            assert _wait(lambda: diag().get("rejected.jump") == "1" and diag().get("sent.ODOMETRY") == "2")
            vals = diag()
            assert vals["rejected.stale"] == "1" and vals["rejected.bad_covariance"] == "1"
            assert vals["link_state"] == "connected" and vals["autopilot_heard"] == "ardupilot"
            assert node.alive()
            assert '"kind":"c2.vpr.autopilot_rejected"' in node.log_text()  # warnings reach the console and rosout
        finally:
            client.close()
            assert node.stop() == 0
    recs = read_records(tmp_path / "mav_fdr.jsonl")
    assert sorted(r["reason"] for r in recs if r["kind"] == "c2.vpr.autopilot_rejected") == \
        ["bad_covariance", "jump", "stale"]
    assert len([r for r in recs if r["kind"] == "c2.vpr.autopilot_sent"]) == 2
    assert np.isfinite([r["processing_us"] for r in recs if r["kind"] == "c2.vpr.autopilot_sent"]).all()
