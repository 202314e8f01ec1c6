"""launch_testing over the real launch/vpr.launch.py (auto_start:=false): the node is driven through its
lifecycle services, a frame goes in and a VprResult comes out, and after launch shuts it down every
process exits 0 and the flight-data record is whole."""
import json
import os
import pathlib
import tempfile
import time
import unittest

import pytest
from launch_helpers import SKIP_REASON, isolate_ros_domain, node_params_file, small_index, vpr_launch_description

pytest.importorskip("launch_testing", reason=SKIP_REASON)  # the imports below need the ROS 2 launch tools
import launch_testing.actions
import launch_testing.asserts

pytestmark = pytest.mark.ros_launch

DOMAIN = 30 + os.getpid() % 20


@pytest.mark.launch_test
def generate_test_description():
    isolate_ros_domain(DOMAIN)
    work = pathlib.Path(tempfile.mkdtemp(prefix="vpr_launch_test_"))
    sample = small_index(work)
    params = node_params_file(work, sample["index"])
    return vpr_launch_description(params), {"work": work, "queries": sample["queries"]}


class TestVprNodeUnderLaunch(unittest.TestCase):
    def test_lifecycle_services_and_a_frame_in_a_result_out(self, proc_output, queries):
        from vpr_node.ros.harness import VprClient
        client = VprClient(DOMAIN)
        try:
            client.wait_for_node(60)
            self.assertEqual(client.state(), "unconfigured")
            self.assertTrue(client.transition("configure"))
            proc_output.assertWaitFor('"kind":"c2.vpr.ready"', timeout=60, stream="stderr")
            self.assertTrue(client.transition("activate"))
            self.assertEqual(client.state(), "active")
            self.assertTrue(client.wait_subscribed(10))
            stamp = time.time_ns()
            client.publish(client.make_image(queries[0].image, stamp))
            res = client.next_result(timeout=60)
            self.assertIsNotNone(res)
            self.assertEqual(res.header.stamp.sec * 10**9 + res.header.stamp.nanosec, stamp)
            self.assertEqual(len(res.candidates), 5)
            self.assertEqual(res.backbone_label, "efficientnet_lite0_gem")
        finally:
            client.close()


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_every_process_exited_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)

    def test_flight_data_record_is_whole(self, work):
        lines = (work / "fdr.jsonl").read_text().splitlines()
        records = [json.loads(x) for x in lines]  # every line a whole record: closed cleanly
        self.assertIn("c2.vpr.embed_query", {r["kind"] for r in records})
