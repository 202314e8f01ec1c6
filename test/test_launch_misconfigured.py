"""launch_testing: vpr.launch.py with a misconfigured params file (top_k: 0). Configure fails with the
message that says what to fix, the node stays up (unconfigured) and exits 0 when launch shuts it down."""
import os
import pathlib
import tempfile
import unittest

import pytest
from launch_helpers import SKIP_REASON, isolate_ros_domain, node_params_file, vpr_launch_description

pytest.importorskip("launch_testing", reason=SKIP_REASON)  # the imports below need the ROS 2 launch tools
import launch_testing.actions
import launch_testing.asserts

pytestmark = pytest.mark.ros_launch

DOMAIN = 50 + os.getpid() % 10


@pytest.mark.launch_test
def generate_test_description():
    isolate_ros_domain(DOMAIN)
    work = pathlib.Path(tempfile.mkdtemp(prefix="vpr_launch_bad_"))
    params = node_params_file(work, work / "no_index_needed", top_k=0)
    return vpr_launch_description(params), {}


class TestMisconfiguredParams(unittest.TestCase):
    def test_configure_fails_with_what_to_fix_and_the_node_stays_up(self, proc_output):
        from vpr_node.ros.harness import VprClient
        client = VprClient(DOMAIN)
        try:
            client.wait_for_node(60)
            self.assertFalse(client.transition("configure"))
            proc_output.assertWaitFor("parameter 'top_k' = 0: must be between 1 and 1000", timeout=30,
                                      stream="stderr")
            self.assertEqual(client.state(), "unconfigured")
        finally:
            client.close()


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_exit_code(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
