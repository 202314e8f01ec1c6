"""launch_testing over the real launch/vpr.launch.py with auto_start:=true (respawn is on by default): the node
configures and activates itself, serves a frame, is killed with SIGKILL mid-flight, and launch restarts it; the
respawned node starts itself again and serves the next frame. The dead process's flight-data record stays whole
(rotated to fdr.jsonl.1) and the new process writes a new file; the dead process's Fast DDS shared-memory
segment is removed when its successor starts."""
import json
import os
import pathlib
import signal
import tempfile
import time
import unittest

import pytest
from launch_helpers import SKIP_REASON, isolate_ros_domain, node_params_file, small_index, vpr_launch_description

pytest.importorskip("launch_testing", reason=SKIP_REASON)  # the imports below need the ROS 2 launch tools
import launch_testing.actions
import launch_testing.asserts

from vpr_node.core.io.recorder import OPEN_KIND, read_records
from vpr_node.ros import dds_shm

pytestmark = pytest.mark.ros_launch

DOMAIN = 60 + os.getpid() % 10
RESPAWN_WAIT_S = 120  # a timeout, not a measurement: the measured time is printed (BENCHMARKS.md, "Respawn")


@pytest.mark.launch_test
def generate_test_description():
    isolate_ros_domain(DOMAIN)
    work = pathlib.Path(tempfile.mkdtemp(prefix="vpr_launch_respawn_"))
    sample = small_index(work)
    params = node_params_file(work, sample["index"])
    return vpr_launch_description(params, auto_start="true"), {"work": work, "queries": sample["queries"]}


def _wait_active(client, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.state(timeout=5) == "active":
                return True
        except TimeoutError:
            pass
        time.sleep(0.2)
    return False


def _serve(client, image, timeout, period=0.5):
    """Publish a frame every `period` s (fresh stamps) until one of them comes back as a result."""
    sent, deadline = set(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        stamp = time.time_ns()
        sent.add(stamp)
        client.publish(client.make_image(image, stamp))
        res = client.next_result(timeout=period)
        while res is not None:
            if res.header.stamp.sec * 10**9 + res.header.stamp.nanosec in sent:
                return res
            res = client.next_result(timeout=0.01)
    return None


class TestRespawnAfterKill9(unittest.TestCase):
    def test_a_killed_node_is_respawned_starts_itself_and_serves_again(self, work, queries):
        from vpr_node.ros.harness import VprClient
        client = VprClient(DOMAIN)
        try:
            client.wait_for_node(60)
            self.assertTrue(_wait_active(client, 120), "auto_start:=true: the node did not reach 'active'")
            self.assertTrue(client.wait_subscribed(10))
            self.assertIsNotNone(_serve(client, queries[0].image, 60))
            first = read_records(work / "fdr.jsonl", include_rotated=False)
            self.assertEqual(first[0]["kind"], OPEN_KIND)
            pid = first[0]["pid"]
            mapped = dds_shm.segments_mapped_by(pid)
            self.assertTrue(mapped, "the node mapped no Fast DDS shared-memory segment")

            os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            res = _serve(client, queries[1].image, RESPAWN_WAIT_S)
            took = time.monotonic() - killed
            self.assertIsNotNone(res, f"no result within {RESPAWN_WAIT_S} s of kill -9")
            print(f"respawn: first result {took:.1f} s after kill -9 (respawn_delay 1.0 s, start, warm-up)")
            (work / "respawn_s.txt").write_text(f"{took:.2f}\n")

            lines = (work / "fdr.jsonl.1").read_bytes().splitlines()
            old = [json.loads(line) for line in lines[:-1]] + read_records(work / "fdr.jsonl.1", False)[len(lines) - 1:]
            self.assertEqual(old[0]["pid"], pid)  # the dead process's file: every line a record (the last may be torn)
            self.assertIn("c2.vpr.embed_query", {r["kind"] for r in old})
            new = read_records(work / "fdr.jsonl", include_rotated=False)
            self.assertEqual(new[0]["kind"], OPEN_KIND)
            self.assertNotEqual(new[0]["pid"], pid)
            self.assertEqual(client.state(), "active")
            # the dead node's 64 MiB segment was removed by its successor at start (live ones are still held)
            orphans = [p for p in mapped if p.exists() and dds_shm.lock_is_free(p.with_name(p.name + "_el"))]
            self.assertEqual(orphans, [], "the killed node's shared-memory segment was left in /dev/shm")
        finally:
            client.close()


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_the_respawned_node_exited_cleanly(self, proc_info):
        # the killed process ended by SIGKILL; its respawned successor exits 0 when launch shuts it down
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -signal.SIGKILL])
