"""What the package's three lifecycle nodes share: the `autostart` parameter (configure and activate at start, so a
respawned node serves again by itself), cleanup / shutdown / error releasing everything the node holds (its own
`_release`), and the process's main loop (`run`)."""
from __future__ import annotations

import os
import sys
import time

import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from vpr_node.ros import dds_shm


class ReleasingLifecycleNode(LifecycleNode):
    """A lifecycle node whose subclass implements `_release()` (idempotent) and sets `state_label`."""

    state_label = "unconfigured"

    def start_if_autostart(self) -> None:
        """Call at the end of __init__ (after declaring the `autostart` parameter)."""
        if self.get_parameter("autostart").value:
            self._autostart_timer = self.create_timer(0.05, self._autostart)

    def _autostart(self) -> None:
        """One-shot: configure, then activate; a failure is logged and recorded by the transition and the node stays
        where it stopped."""
        self.destroy_timer(self._autostart_timer)
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def _release(self) -> None:
        raise NotImplementedError

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.state_label = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.state_label = "finalized"
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.state_label = "unconfigured"
        return TransitionCallbackReturn.SUCCESS


def steady_timer(node, period_s: float, callback):
    """A timer on the steady clock, for diagnostics and watchdogs: under `use_sim_time` a node's own timers follow
    /clock, so a replay not started yet, paused or ended would silence the node's health report (and a hang)."""
    return node.create_timer(period_s, callback, clock=Clock(clock_type=ClockType.STEADY_TIME))


def run(make_node, argv=None, fast_exit: bool = False, stopped: str = "node stopped") -> int:
    """Run a node until SIGINT/SIGTERM/shutdown on a SingleThreadedExecutor (rclpy 9.1.2's MultiThreadedExecutor
    can busy-spin: docs/design-notes.md), then release it and shut ROS down. fast_exit (the installed
    executables): end the process as soon as that is done (about 10 ms after the signal) instead of letting the
    interpreter finalise torch/timm/faiss (about 2 s), so `ros2 launch`'s SIGINT -> SIGTERM (5 s) -> SIGKILL
    escalation never has to escalate."""
    os.environ.setdefault("RCUTILS_CONSOLE_OUTPUT_FORMAT", "{message}")  # the JSON line is the whole message
    cleaned = dds_shm.clean_at_start()  # before our own participant exists
    rclpy.init(args=argv if argv is not None else sys.argv)
    node = make_node()
    dds_shm.report(node.log, cleaned)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        t0 = time.monotonic()
        try:
            node._release()
        except Exception:  # noqa: BLE001 - shutting down: what is left is released by the process's end
            pass
        t1 = time.monotonic()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
        node.log.info("c2.vpr.shutdown", stopped, release_ms=round((t1 - t0) * 1e3, 1),
                      ros_ms=round((time.monotonic() - t1) * 1e3, 1))
        if fast_exit:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
    return 0
