"""The node as an operator drives it with the real ROS 2 tools: `ros2 launch vpr_node vpr.launch.py`,
`ros2 lifecycle get/set`, `ros2 topic echo /vpr/result`, `ros2 param set` + reactivate; then SIGINT to
`ros2 launch` (what Ctrl-C and launch's own shutdown send) stops the node within 2 s with exit code 0."""
import os
import pathlib
import signal
import subprocess
import time

import pytest
from launch_helpers import SKIP_REASON, node_params_file, small_index

from vpr_node.ros.node_spec import Ros2Cli, default_sigint, ros2_cli_available

pytestmark = [pytest.mark.ros_launch, pytest.mark.skipif(not ros2_cli_available(), reason=SKIP_REASON)]
DOMAIN = 70 + os.getpid() % 20
CLI = Ros2Cli(DOMAIN)  # the operator's verbs without the daemon, retried (discovery is slow under load)


def retried(*args) -> str:
    ok, out = CLI.run(*args)
    assert ok, out
    return out


def lifecycle(*args) -> str:
    return retried("lifecycle", *args)


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    work = tmp_path_factory.mktemp("ros2cli")
    sample = small_index(work)
    params = node_params_file(work, sample["index"])
    log = open(work / "launch.log", "wb")
    proc = subprocess.Popen(["ros2", "launch", "vpr_node", "vpr.launch.py", f"params_file:={params}",
                             "auto_start:=false"], stdout=log, stderr=subprocess.STDOUT,
                            env={**CLI.env, "ROS_LOG_DIR": str(work / "roslog")}, start_new_session=True,
                            preexec_fn=default_sigint)
    yield {"proc": proc, "work": work, "queries": sample["queries"]}
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)


def test_lifecycle_topic_echo_and_param_set_with_the_ros2_cli(launched):
    from vpr_node.ros.harness import VprClient
    assert lifecycle("get", "/vpr_node").startswith("unconfigured")
    assert "Transitioning successful" in lifecycle("set", "/vpr_node", "configure")
    assert "Transitioning successful" in lifecycle("set", "/vpr_node", "activate")
    assert lifecycle("get", "/vpr_node").startswith("active")
    client = VprClient(DOMAIN)
    try:
        client.wait_subscribed(15)
        echo = subprocess.Popen(["ros2", "topic", "echo", "--once", "/vpr/result", "vpr_node/msg/VprResult",
                                 "--field", "candidates"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=CLI.env)
        time.sleep(4)  # the echo subscription is discovered (type given: the topic may not be advertised yet)
        for _ in range(10):
            client.publish(client.make_image(launched["queries"][0].image, time.time_ns()))
            try:
                out, _ = echo.communicate(timeout=3)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            echo.kill()
            raise AssertionError("ros2 topic echo saw no VprResult")
        assert out.count("tile_id=") == 5  # top_k from the params file
        # a parameter change takes effect at the next activation
        assert "Set parameter successful" in retried("param", "set", "/vpr_node", "top_k", "3")
        assert "Transitioning successful" in lifecycle("set", "/vpr_node", "deactivate")
        assert "Transitioning successful" in lifecycle("set", "/vpr_node", "activate")
        client.wait_subscribed(15)
        client.drain(client.results)
        stamp = time.time_ns()
        client.publish(client.make_image(launched["queries"][1].image, stamp))
        res = client.next_result(timeout=30)
        assert res is not None and len(res.candidates) == 3
    finally:
        client.close()


def process_running(pid: int) -> bool:
    """Alive and not a zombie (an exited child that ros2 launch has not reaped yet has stopped running)."""
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def signal_masks(pid: int) -> list[str]:
    return [ln for ln in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("Sig")]


def test_sigint_to_ros2_launch_stops_the_node_within_two_seconds(launched):
    proc = launched["proc"]
    node_pid = int(subprocess.check_output(["pgrep", "-f", f"vpr_lifecycle_node.*{launched['work']}"]).split()[0])
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    while process_running(node_pid):
        assert time.monotonic() - t0 < 10, f"node still running 10 s after SIGINT (ros2 launch: " \
            f"{signal_masks(proc.pid)}):\n" + (launched["work"] / "launch.log").read_text()[-3000:]
        time.sleep(0.02)
    node_s = time.monotonic() - t0
    assert proc.wait(10) == 0
    log = (launched["work"] / "launch.log").read_text()
    print(f"node exited {node_s:.2f} s after SIGINT to ros2 launch")
    assert node_s < 2.0, log[-2000:]
    assert "process has finished cleanly" in log and "Traceback" not in log
    assert '"kind":"c2.vpr.shutdown"' in log


def test_the_vpr_command_runs_through_ros2_run():
    """On the drone the pre-flight tools come with the colcon install: `ros2 run vpr_node vpr ...`."""
    out = subprocess.run(["ros2", "run", "vpr_node", "vpr", "backbones"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "efficientnet_lite0_netvlad" in out.stdout and "ultravpr" in out.stdout
