"""Drive a vpr_node process through its real lifecycle services and topics.

`NodeProcess` starts the installed node executable as a separate OS process exactly as
launch/vpr.launch.py does (`--ros-args -r __node:=... --params-file ...`), in its own ROS_DOMAIN_ID.
`VprClient` is an rclpy node in the calling process: lifecycle change_state/get_state, an image
publisher (sensor-data QoS), and subscriptions to the results and /diagnostics.
"""
from __future__ import annotations

import os
import pathlib
import queue
import signal
import subprocess
import time

import yaml
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, NavSatFix

from vpr_node.core.io import image_codec
from vpr_node.core.resources import data_file
from vpr_node.msg import VprResult, VprVerification
from vpr_node.ros.client_node import FRAME_READERS, BackgroundNode, wait_diagnostics, wait_frames_matched, wait_wired
from vpr_node.ros.conversions import ns_to_time
from vpr_node.ros.node_spec import (
    EXECUTABLE,
    FASTDDS_PROFILE,
    MAVLINK_NAME,
    NODE_ENV,
    NODE_NAME,
    VERIFIER_NAME,
    default_sigint,
    launch_command,
    node_command,
)
from vpr_node.ros.qos import OUTPUT_QOS

TRANSITIONS = {"configure": Transition.TRANSITION_CONFIGURE, "activate": Transition.TRANSITION_ACTIVATE,
               "deactivate": Transition.TRANSITION_DEACTIVATE, "cleanup": Transition.TRANSITION_CLEANUP,
               "shutdown": Transition.TRANSITION_INACTIVE_SHUTDOWN,
               "shutdown_unconfigured": Transition.TRANSITION_UNCONFIGURED_SHUTDOWN,
               "shutdown_active": Transition.TRANSITION_ACTIVE_SHUTDOWN}


def default_fastdds_profile() -> str | None:
    """config/fastdds_large_frames.xml from the source tree or the installed share folder."""
    p = data_file(*FASTDDS_PROFILE)
    return str(p) if p else None


def _ros_env_defaults() -> None:
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    profile = default_fastdds_profile()
    if profile:
        os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", profile)


def write_params_file(path, params: dict, node_name: str = "vpr_node") -> pathlib.Path:
    path = pathlib.Path(path)
    path.write_text(yaml.safe_dump({node_name: {"ros__parameters": params}}, sort_keys=True))
    return path


class NodeProcess:
    """The node as a child process (node_spec.py: the launch file's command and environment), directly or,
    with via_launch, through `ros2 launch vpr_node vpr.launch.py auto_start:=false`; output to a log file."""

    def __init__(self, params_file, log_path, domain_id: int, extra_env: dict | None = None, via_launch: bool = False,
                 executable: str = EXECUTABLE, name: str = NODE_NAME, launch_args: dict | None = None):
        """`executable`/`name`: which node (vpr_node, or the verifier: VERIFIER_EXECUTABLE/VERIFIER_NAME);
        `launch_args` (with via_launch): launch_command's keywords, e.g. verifier=True."""
        self.log_path = pathlib.Path(log_path)
        _ros_env_defaults()
        env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id), **NODE_ENV, **(extra_env or {}))
        self._log = open(self.log_path, "wb")
        cmd = (launch_command(params_file, **(launch_args or {})) if via_launch
               else node_command(params_file, executable, name))
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                     preexec_fn=default_sigint)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


class VprClient(BackgroundNode):
    """Test/demo side of the node's ROS interface."""

    def __init__(self, domain_id: int, node_name: str = "vpr_node", image_topic: str = "/camera/image_raw",
                 result_topic: str = "/vpr/result", compressed: bool = False, verifier: bool = False,
                 autopilot: bool = False):
        """`verifier`: also the vpr_verifier's lifecycle services and its outputs (verifications, fixes, poses);
        `autopilot`: the vpr_mavlink's lifecycle services and its mavros pose (`mavros_poses`)."""
        os.environ["ROS_DOMAIN_ID"] = str(domain_id)
        _ros_env_defaults()
        super().__init__("vpr_client", domain_id)
        self.change = self.node.create_client(ChangeState, f"/{node_name}/change_state")
        self.get = self.node.create_client(GetState, f"/{node_name}/get_state")
        self.setp = self.node.create_client(SetParameters, f"/{node_name}/set_parameters")
        self.results: queue.Queue = queue.Queue()
        self.diagnostics: queue.Queue = queue.Queue()
        self._result_sub = self.node.create_subscription(VprResult, result_topic, self.results.put, OUTPUT_QOS)
        self._verification_sub = None
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.put, 10)
        self.compressed = compressed
        self.pub = self.node.create_publisher(
            CompressedImage if compressed else Image, image_topic, qos_profile_sensor_data
        )
        self.lifecycle = {node_name: (self.change, self.get)}
        if verifier:
            self.lifecycle[VERIFIER_NAME] = (self.node.create_client(ChangeState, f"/{VERIFIER_NAME}/change_state"),
                                             self.node.create_client(GetState, f"/{VERIFIER_NAME}/get_state"))
            self.verifications, self.fixes, self.poses = queue.Queue(), queue.Queue(), queue.Queue()
            self._verification_sub = self.node.create_subscription(VprVerification, "/vpr/verification",
                                                                   self.verifications.put, OUTPUT_QOS)
            self.node.create_subscription(NavSatFix, "/vpr/fix", self.fixes.put, OUTPUT_QOS)
            self.node.create_subscription(PoseWithCovarianceStamped, "/vpr/pose", self.poses.put, OUTPUT_QOS)
        if autopilot:
            self.lifecycle[MAVLINK_NAME] = (self.node.create_client(ChangeState, f"/{MAVLINK_NAME}/change_state"),
                                            self.node.create_client(GetState, f"/{MAVLINK_NAME}/get_state"))
            self.mavros_poses: queue.Queue = queue.Queue()
            self.node.create_subscription(PoseWithCovarianceStamped, "/vpr/mavros/vision_pose", self.mavros_poses.put,
                                          10)
        self.start_spinning()

    def subscribe_debug_images(self) -> queue.Queue:
        """The verifier's debug image topic (drawn only while someone subscribes)."""
        self.debug_images = queue.Queue()
        self.node.create_subscription(Image, "/vpr/verification_image", self.debug_images.put, 2)
        return self.debug_images

    def _call(self, client, request, timeout: float):
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {client.srv_name} not available after {timeout} s")
        fut = client.call_async(request)
        deadline = time.monotonic() + timeout
        while not fut.done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"service {client.srv_name} did not answer within {timeout} s")
            time.sleep(0.01)
        return fut.result()

    def wait_for_node(self, timeout: float = 60.0, node: str | None = None) -> None:
        for name, (_, get) in self.lifecycle.items():
            if node in (None, name) and not get.wait_for_service(timeout_sec=timeout):
                raise TimeoutError(f"{name} lifecycle services did not appear")

    def transition(self, name: str, timeout: float = 300.0, node: str | None = None) -> bool:
        req = ChangeState.Request()
        req.transition.id = TRANSITIONS[name]
        change = self.lifecycle[node][0] if node else self.change
        return bool(self._call(change, req, timeout).success)

    def set_parameters(self, values: dict, timeout: float = 10.0) -> list[bool]:
        req = SetParameters.Request()
        req.parameters = [Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
        return [r.successful for r in self._call(self.setp, req, timeout).results]

    def state(self, timeout: float = 10.0, node: str | None = None) -> str:
        get = self.lifecycle[node][1] if node else self.get
        return self._call(get, GetState.Request(), timeout).current_state.label

    def make_image(self, rgb, stamp_ns: int, frame_id: str = "nav_camera", encoding: str = "rgb8"):
        if self.compressed:
            msg = CompressedImage()
            msg.format = "jpeg"
            msg.data = image_codec.encode_jpeg(rgb)
        else:
            msg = Image()
            data, step = image_codec.encode_raw(rgb, encoding)
            msg.height, msg.width = rgb.shape[:2]
            msg.encoding, msg.step, msg.data = encoding, step, data
        msg.header.stamp = ns_to_time(stamp_ns)
        msg.header.frame_id = frame_id
        return msg

    def publish(self, msg) -> None:
        self.pub.publish(msg)

    def wait_subscribed(self, timeout: float = 10.0, count: int = 1) -> bool:
        """Until the pipeline is wired both ways: `count` subscribers (vpr_node, and the verifier when it runs) are
        matched to the image publisher, this client's result (and verification) subscriptions to their publishers,
        and each reader's frame subscription to the image publishers (as its diagnostics report: a best-effort reader
        drops frames from a writer it has not matched yet, even when the writer already counts it). The outputs are
        transient local (ros/qos.py): what was published a moment before a match still arrives."""
        deadline = time.monotonic() + timeout
        subs = [self._result_sub] + ([self._verification_sub] if count >= 2 and self._verification_sub else [])
        if not wait_wired(self.pub, count, subs, timeout):
            return False
        return wait_frames_matched(self.node, self.diagnostics, self.pub.topic_name, FRAME_READERS[:min(count, 2)],
                                   max(0.0, deadline - time.monotonic()))

    def wait_result_subscribers(self, count: int = 2, timeout: float = 30.0) -> bool:
        """Until vpr_node's own VprResult publisher is matched to `count` subscriptions (this client and the
        verifier), as its diagnostics report (wall-clock timer: not under sim time before /clock runs)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            diag = self.latest_diagnostics(max(0.1, min(5.0, deadline - time.monotonic())))
            if diag and int(diag.get("result_subscribers", 0)) >= count:
                return True
        return False

    def next_result(self, timeout: float = 60.0):
        try:
            return self.results.get(timeout=timeout)
        except queue.Empty:
            return None

    def drain(self, q: queue.Queue) -> list:
        out = []
        while True:
            try:
                out.append(q.get_nowait())
            except queue.Empty:
                return out

    def latest_diagnostics(self, timeout: float = 5.0, name: str = "visual place recognition",
                           ready=lambda values: True) -> dict | None:
        """Key/values of the next /diagnostics status whose name contains `name` (vpr_node's by default; the
        verifier's is "geometric verification", vpr_mavlink's "autopilot output") and whose values satisfy `ready`,
        waiting at most `timeout` s for a fresh one."""
        self.drain(self.diagnostics)
        return wait_diagnostics(self.diagnostics, name, ready, timeout)
