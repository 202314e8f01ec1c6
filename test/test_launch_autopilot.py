"""launch_testing over the real launch/vpr.launch.py with verifier:=true autopilot:=px4: vpr_node, vpr_verifier and
vpr_mavlink start themselves; frames go in, and a simulated PX4 on loopback UDP receives each accepted fix as
GLOBAL_POSITION_SENSOR (lat/lon in degE7 within metres of the truth, eph the fix's 1-sigma, processing_time from
the frame's stamp), the companion's HEARTBEAT and TIMESYNC; the mavros pose is published; all exit 0."""
import math
import os
import pathlib
import socket
import tempfile
import time
import unittest

import pytest
from launch_helpers import (
    SKIP_REASON,
    accept_every_fix,
    isolate_ros_domain,
    node_params_file,
    small_index,
    vpr_launch_description,
)

pytest.importorskip("launch_testing", reason=SKIP_REASON)
import launch_testing.actions
import launch_testing.asserts
import yaml

from vpr_node.core.maps.geo import haversine_m

pytestmark = pytest.mark.ros_launch

DOMAIN = 90 + os.getpid() % 10


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.launch_test
def generate_test_description():
    isolate_ros_domain(DOMAIN)
    work = pathlib.Path(tempfile.mkdtemp(prefix="vpr_launch_autopilot_"))
    sample = small_index(work, map_features=True)
    accept_every_fix(sample["index"])
    port = _free_port()
    params = node_params_file(work, sample["index"], verifier={"match_timeout": 2.0})
    doc = yaml.safe_load(params.read_text())
    doc["vpr_mavlink"] = {"ros__parameters": {"connection": f"udpout:127.0.0.1:{port}", "diagnostics_period": 0.5,
                                              "recorder_path": str(work / "mavlink_fdr.jsonl"),
                                              "max_fix_age_s": 30.0}}
    params.write_text(yaml.safe_dump(doc))
    return (vpr_launch_description(params, auto_start="true", verifier="true", autopilot="px4"),
            {"work": work, "queries": sample["queries"], "port": port})


class TestAutopilotUnderLaunch(unittest.TestCase):
    def test_accepted_fixes_reach_the_simulated_px4(self, work, queries, port):
        from vpr_node.core.autopilot.sim_peer import SimulatedAutopilot
        from vpr_node.core.autopilot.units import horizontal_sigma_m
        from vpr_node.ros.harness import VprClient
        from vpr_node.ros.node_spec import MAVLINK_NAME, VERIFIER_NAME
        with SimulatedAutopilot("px4", port=port, origin=(queries[0].lat, queries[0].lon, 0.0)) as px4:
            client = VprClient(DOMAIN, verifier=True, autopilot=True)
            try:
                client.wait_for_node(60)
                deadline = time.monotonic() + 180
                while time.monotonic() < deadline and not all(
                        client.state(node=n) == "active" for n in (None, VERIFIER_NAME, MAVLINK_NAME)):
                    time.sleep(0.5)
                self.assertEqual(client.state(node=MAVLINK_NAME), "active")
                self.assertTrue(client.wait_subscribed(30, count=2))
                self.assertTrue(client.wait_result_subscribers(2))
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and not px4.messages("HEARTBEAT"):
                    time.sleep(0.2)
                verifications = []
                for q in queries[:4]:  # stamped now: the output refuses fixes of frames exposed long ago
                    client.publish(client.make_image(q.image, time.time_ns()))
                    v = client.verifications.get(timeout=120)
                    verifications.append((q, v))
                accepted = [(q, v) for q, v in verifications if v.accepted]
                self.assertGreaterEqual(len(accepted), 3)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and len(px4.messages("GLOBAL_POSITION_SENSOR")) < len(accepted):
                    time.sleep(0.2)
                sent = px4.messages("GLOBAL_POSITION_SENSOR")
                self.assertEqual(len(sent), len(accepted))
                for (q, v), m in zip(accepted, sent, strict=True):
                    self.assertLess(haversine_m(q.lat, q.lon, m.lat / 1e7, m.lon / 1e7), 10.0)
                    cov = [list(v.position_covariance[:2]), list(v.position_covariance[2:])]
                    self.assertAlmostEqual(m.eph, horizontal_sigma_m(cov), places=4)
                    self.assertEqual(m.source, 2)
                    self.assertGreater(m.processing_time, 0)
                    self.assertTrue(math.isnan(m.epv))
                beat = px4.messages("HEARTBEAT")[0]
                self.assertEqual((beat.type, beat.autopilot), (18, 8))
                self.assertTrue(px4.messages("TIMESYNC"))
                self.assertIsNotNone(client.mavros_poses.get(timeout=10))  # the mavros users' pose too
            finally:
                client.close()


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_every_process_exited_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
