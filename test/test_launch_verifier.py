"""launch_testing over the real launch/vpr.launch.py with verifier:=true and auto_start:=true: both nodes start
themselves; a frame goes in and a verified fix (VprVerification, NavSatFix, PoseWithCovarianceStamped) comes
out; a frame whose VprResult never comes (vpr_node deactivated) is a typed record in the verifier's recorder,
and both nodes exit 0 when launch shuts them down."""
import os
import pathlib
import queue
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

pytest.importorskip("launch_testing", reason=SKIP_REASON)  # the imports below need the ROS 2 launch tools
import launch_testing.actions
import launch_testing.asserts

from vpr_node.core.io.recorder import read_records
from vpr_node.core.maps.geo import haversine_m

pytestmark = pytest.mark.ros_launch

DOMAIN = 70 + os.getpid() % 10


@pytest.mark.launch_test
def generate_test_description():
    isolate_ros_domain(DOMAIN)
    work = pathlib.Path(tempfile.mkdtemp(prefix="vpr_launch_verifier_"))
    sample = small_index(work, map_features=True)
    accept_every_fix(sample["index"])
    params = node_params_file(work, sample["index"], verifier={"match_timeout": 0.5})
    return (vpr_launch_description(params, auto_start="true", verifier="true"),
            {"work": work, "queries": sample["queries"]})


def _get(q, timeout=60):
    try:
        return q.get(timeout=timeout)
    except queue.Empty:
        return None


class TestVerifierUnderLaunch(unittest.TestCase):
    def test_frame_in_fix_out_and_an_unmatched_frame_is_recorded(self, work, queries):
        from vpr_node.ros.harness import VprClient
        from vpr_node.ros.node_spec import VERIFIER_NAME
        client = VprClient(DOMAIN, verifier=True)
        try:
            client.wait_for_node(60)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not all(
                    client.state(node=n) == "active" for n in (None, VERIFIER_NAME)):
                time.sleep(0.2)
            self.assertEqual(client.state(node=VERIFIER_NAME), "active")
            self.assertTrue(client.wait_subscribed(30, count=2))
            self.assertTrue(client.wait_result_subscribers(2))  # vpr_node -> verifier matched too
            q = queries[0]
            client.publish(client.make_image(q.image, 5_000_000_000))
            v = _get(client.verifications)
            self.assertIsNotNone(v)
            self.assertTrue(v.fix_valid and v.accepted)
            self.assertLess(haversine_m(q.lat, q.lon, v.latitude, v.longitude), 10.0)
            fix, pose = _get(client.fixes), _get(client.poses)
            self.assertIsNotNone(fix)
            self.assertEqual(fix.position_covariance_type, fix.COVARIANCE_TYPE_KNOWN)
            self.assertIsNotNone(pose)

            self.assertTrue(client.transition("deactivate"))  # vpr_node: the next frame gets no result
            client.publish(client.make_image(q.image, 6_000_000_000))
            deadline = time.monotonic() + 30
            reasons = []
            while time.monotonic() < deadline and "frame_without_result" not in reasons:
                time.sleep(0.5)
                reasons = [r.get("reason") for r in read_records(work / "verifier_fdr.jsonl")
                           if r["kind"] == "c2.vpr.verify_error"]
            self.assertIn("frame_without_result", reasons)
            self.assertEqual(client.state(node=VERIFIER_NAME), "active")
        finally:
            client.close()


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_every_process_exited_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
