"""How the vpr_node process is started: one description shared by launch/vpr.launch.py (and replay.launch.py),
the process harness (tests, demo, benchmarks, replay-ros where `ros2 launch` is absent) and the demo's
`ros2 launch` path. Plain Python (no rclpy)."""
from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import time

PACKAGE = "vpr_node"
EXECUTABLE = "vpr_lifecycle_node"
NODE_NAME = "vpr_node"
VERIFIER_EXECUTABLE = "vpr_verifier_node"
VERIFIER_NAME = "vpr_verifier"
MAVLINK_EXECUTABLE = "vpr_mavlink_node"
MAVLINK_NAME = "vpr_mavlink"
RESPAWN_MAX_RETRIES = 100  # a crash loop (a node that dies at once every time) ends, and the launch with it
LAUNCH_FILE = "vpr.launch.py"
# the structured JSON line is the whole console message (it also goes to /rosout)
NODE_ENV = {"RCUTILS_CONSOLE_OUTPUT_FORMAT": "{message}", "PYTHONUNBUFFERED": "1"}
FASTDDS_PROFILE = ("config", "fastdds_large_frames.xml")  # share/vpr_node/<...>: large frames over shared memory


def default_sigint() -> None:
    """preexec_fn of the processes this package starts: SIGINT back to its default before exec. A command started
    in the background by a non-interactive shell (`cmd &`, CI runners, nohup scripts) inherits SIGINT *ignored*;
    Python then installs no SIGINT handler, and `ros2 launch` (which handles SIGINT through Python's handler)
    would never see Ctrl-C or launch_testing's shutdown."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def node_executable(executable: str = EXECUTABLE) -> str:
    """An installed node executable (colcon install tree), as `ros2 run vpr_node vpr_lifecycle_node` finds it."""
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        exe = pathlib.Path(prefix) / "lib" / PACKAGE / executable
        if exe.is_file():
            return str(exe)
    found = shutil.which(executable)
    if found:
        return found
    raise FileNotFoundError(f"{executable} not found: run `bash scripts/setup_env.sh` and `. scripts/env.sh`")


def node_command(params_file, executable: str = EXECUTABLE, name: str = NODE_NAME) -> list[str]:
    """A node started directly (what the launch file's LifecycleNode action runs)."""
    return [node_executable(executable), "--ros-args", "-r", f"__node:={name}", "--params-file", str(params_file)]


def launch_command(params_file, auto_start: bool = False, verifier: bool = False, respawn: bool = True,
                   autopilot: str = "none") -> list[str]:
    """The nodes started through `ros2 launch` (where the ROS 2 launch tools are installed)."""
    def flag(v: bool) -> str:
        return "true" if v else "false"
    return ["ros2", "launch", PACKAGE, LAUNCH_FILE, f"params_file:={params_file}", f"auto_start:={flag(auto_start)}",
            f"verifier:={flag(verifier)}", f"respawn:={flag(respawn)}", f"autopilot:={autopilot}"]


def ros2_cli_available() -> bool:
    return shutil.which("ros2") is not None


class Ros2Cli:
    """The operator's tools, `ros2 lifecycle set/get`, `ros2 param set`, run as subprocesses in one ROS_DOMAIN_ID
    (what the demo shows and the launch suites test). Without the daemon, retried: discovery can take a few
    seconds on a loaded machine."""

    def __init__(self, domain_id: int, tries: int = 5):
        self.env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id))
        self.env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        self.tries = tries

    def run(self, *args, timeout: float = 120.0) -> tuple[bool, str]:
        """(True, stdout) once the verb succeeds, else (False, stdout + stderr of the last try)."""
        out = ""
        for _ in range(self.tries):
            p = subprocess.run(["ros2", *args, "--no-daemon", "--spin-time", "3"], capture_output=True, text=True,
                               timeout=timeout, env=self.env)
            out = (p.stdout + p.stderr).strip()
            if p.returncode == 0 and "Node not found" not in out:
                return True, p.stdout.strip()
            time.sleep(1.0)
        return False, out

    def lifecycle_set(self, transition: str, node: str = f"/{NODE_NAME}") -> tuple[bool, str]:
        ok, out = self.run("lifecycle", "set", node, transition, timeout=600.0)
        return ok and "Transitioning successful" in out, out
