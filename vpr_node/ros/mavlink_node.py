"""The vpr_mavlink lifecycle node: accepted fixes to the autopilot. A thin ROS 2 shell over
vpr_node.core.autopilot.

configure: read + check parameters, open the recorder, create the output (its MAVLink link is not opened yet) and the
           mavros pose publisher. activate: open the link (HEARTBEAT, TIMESYNC, the EKF origin; a polling thread),
           subscribe to VprVerification. deactivate: unsubscribe, close the link. cleanup/shutdown: release it all.

Every accepted VprVerification is offered to the output: sent as GLOBAL_POSITION_SENSOR (PX4) or ODOMETRY /
GPS_INPUT (ArduPilot), or refused with a typed reason (stale, bad covariance, no heartbeat, no origin, jump, link
down), logged, recorded and counted in /diagnostics. What was sent is also published as a pose in ENU about the EKF
origin for mavros users. docs/autopilot.md: the autopilots' settings.
"""
from __future__ import annotations

import math
import os
import sys

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseWithCovarianceStamped
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn

from vpr_node.core.autopilot.output import AutopilotOutput
from vpr_node.core.errors import ConfigurationError, VprError
from vpr_node.core.io.logs import StructuredLogger
from vpr_node.core.io.recorder import FlightDataRecorder
from vpr_node.msg import VprVerification as VprVerificationMsg
from vpr_node.ros.conversions import autopilot_fix_from_msg, pose_msg
from vpr_node.ros.lifecycle import ReleasingLifecycleNode, run, steady_timer
from vpr_node.ros.mavlink_params import PARAMETERS, MavlinkNodeConfig
from vpr_node.ros.rosout import rosout_sink

NODE_NAME = "vpr_mavlink"


class MavlinkNode(ReleasingLifecycleNode):
    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        for name, (default, description) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=description))
        self.log = StructuredLogger(NODE_NAME, level=os.environ.get("VPR_LOG_LEVEL", "INFO").upper(), stream=False,
                                    sink=rosout_sink(self))
        self.config: MavlinkNodeConfig | None = None
        self.output: AutopilotOutput | None = None
        self.recorder: FlightDataRecorder | None = None
        self.pose_pub = None
        self.sub = None
        self.diag_pub = None
        self.timer = None
        self.state_label = "unconfigured"
        self.start_if_autostart()

    def _clock_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    # --- lifecycle -------------------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            cfg = MavlinkNodeConfig.from_params({n: self.get_parameter(n).value for n in PARAMETERS})
            if cfg.autopilot == "ardupilot" and not cfg.connection and not math.isfinite(cfg.origin_lat):
                raise ConfigurationError("with no MAVLink connection the mavros pose needs the EKF origin: set "
                                         "origin_lat and origin_lon", parameter="origin_lat")
            if self.recorder is not None:
                self.recorder.close()
            self.recorder = FlightDataRecorder(cfg.recorder_path, cfg.recorder_max_bytes) if cfg.recorder_path \
                else None
            self.output = AutopilotOutput(cfg.output_config(), self._clock_ns, self.log, self.recorder)
        except VprError as exc:
            self.log.error(exc.kind, f"configure failed: {exc}", transition="configure", **exc.context)
            if self.recorder:
                self.recorder.record(exc.kind, transition="configure",
                                     **{k: v for k, v in exc.to_record().items() if k != "kind"})
            return TransitionCallbackReturn.FAILURE
        self.config = cfg
        if cfg.mavros_topic:
            self.pose_pub = self.create_lifecycle_publisher(PoseWithCovarianceStamped, cfg.mavros_topic, 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.timer = steady_timer(self, cfg.diagnostics_period, self._tick)
        self.state_label = "inactive"
        self.log.info("c2.vpr.mavlink_ready", "autopilot output ready", autopilot=cfg.autopilot,
                      connection=cfg.connection or "none (mavros topic only)", system_id=cfg.system_id,
                      component_id=cfg.component_id)
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.output.start()
        # volatile: only fixes from now on (the verifier keeps its last ones for late joiners, stale by now)
        self.sub = self.create_subscription(VprVerificationMsg, self.config.verification_topic, self._on_verification,
                                            10)
        self.state_label = "active"
        self.log.info("c2.vpr.mavlink_activated", verification_topic=self.config.verification_topic)
        return super().on_activate(state)

    def _stop(self) -> None:
        if self.sub is not None:
            self.destroy_subscription(self.sub)
            self.sub = None
        if self.output is not None:
            self.output.stop()

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop()
        self.state_label = "inactive"
        return super().on_deactivate(state)

    def _release(self) -> None:
        self._stop()
        self.output = None
        for attr in ("timer",):
            if getattr(self, attr) is not None:
                self.destroy_timer(getattr(self, attr))
                setattr(self, attr, None)
        if self.pose_pub is not None:
            self.destroy_lifecycle_publisher(self.pose_pub)
            self.pose_pub = None
        if self.diag_pub is not None:
            self.destroy_publisher(self.diag_pub)
            self.diag_pub = None
        if self.recorder is not None:
            self.recorder.close()
            self.recorder = None

    # --- fixes -----------------------------------------------------------------------------------------------
    def _on_verification(self, msg) -> None:
        out = self.output
        if out is None or not msg.accepted:
            return
        outcome = out.submit(autopilot_fix_from_msg(msg))
        origin = out.origin
        if outcome.sent and self.pose_pub is not None and origin is not None:
            self.pose_pub.publish(pose_msg(msg.header.stamp, self.config.mavros_frame_id, msg.latitude,
                                           msg.longitude, msg.heading_deg, msg.heading_sigma_deg,
                                           [list(msg.position_covariance[:2]), list(msg.position_covariance[2:])],
                                           origin[0], origin[1], self.config.camera_yaw_offset_deg))

    def _tick(self) -> None:
        stats = self.output.snapshot() if self.output is not None else {}
        status = DiagnosticStatus()
        status.name = f"{self.get_name()}: autopilot output"
        rejected = sum(v for k, v in stats.items() if k.startswith("rejected."))
        lost = stats.get("link_state") not in ("connected", "none")
        status.level = DiagnosticStatus.WARN if (lost and self.state_label == "active") or rejected else \
            DiagnosticStatus.OK
        status.message = (f"{self.state_label}; link {stats.get('link_state', '-')}; "
                          f"{sum(v for k, v in stats.items() if k.startswith('sent.'))} sent, {rejected} refused")
        # the verifier publishers its (volatile) fix subscription is matched to: fixes before the match are not seen
        stats["verification_publishers"] = self.sub.get_publisher_count() if self.sub is not None else 0
        status.values = [KeyValue(key="state", value=self.state_label)] + [
            KeyValue(key=k, value=f"{v:.3f}" if isinstance(v, float) else str(v)) for k, v in sorted(stats.items())]
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [status]
        if self.diag_pub is not None:
            self.diag_pub.publish(arr)


def main(argv=None, fast_exit: bool = False) -> int:
    return run(MavlinkNode, argv, fast_exit, "autopilot output stopped")


if __name__ == "__main__":
    sys.exit(main())
