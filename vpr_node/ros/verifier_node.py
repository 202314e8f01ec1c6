"""The vpr_verifier lifecycle node (the spec's C2.5 re-ranker): a thin ROS 2 shell over
vpr_node.core.verification.

configure: read + check parameters, load the index folder's tile images and verifier calibration, create the
           lifecycle publishers. activate: start the verification thread, subscribe to the frames and the
           VprResults. deactivate: unsubscribe, stop the thread. cleanup/shutdown: release everything.

Every verified frame gives a VprVerification (the VprResult it verified, the top-N candidates re-ranked by
inliers, the fix or the reason there is none); an accepted fix is also a NavSatFix and a PoseWithCovarianceStamped
(local ENU). The debug image (frame beside its verified tile with the matches) is drawn only while someone
subscribes to it. Frames and results that never meet their other half are reported, not dropped silently.
"""
from __future__ import annotations

import math
import os
import sys

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseWithCovarianceStamped
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, NavSatFix

from vpr_node.core.errors import VprError
from vpr_node.core.io import image_codec
from vpr_node.core.io.logs import StructuredLogger
from vpr_node.core.io.recorder import FlightDataRecorder
from vpr_node.core.maps.camera import CameraModel
from vpr_node.core.retrieval.frame_queue import Frame
from vpr_node.core.verification.drawing import verification_picture
from vpr_node.core.verification.engine import Pair, RetrievalResult, VerificationEngine
from vpr_node.core.verification.verifier import Verifier
from vpr_node.msg import VprResult as VprResultMsg
from vpr_node.msg import VprVerification as VprVerificationMsg
from vpr_node.ros.conversions import (
    candidates_from_msg,
    compressed_decoder,
    fix_to_navsatfix,
    fix_to_pose,
    hints_from_msg,
    image_decoder,
    time_to_ns,
    verification_to_msg,
)
from vpr_node.ros.lifecycle import ReleasingLifecycleNode, run, steady_timer
from vpr_node.ros.qos import OUTPUT_QOS
from vpr_node.ros.rosout import rosout_sink
from vpr_node.ros.verifier_params import PARAMETERS, VerifierNodeConfig

NODE_NAME = "vpr_verifier"


class VerifierNode(ReleasingLifecycleNode):
    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        for name, (default, description) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=description))
        self.log = StructuredLogger(NODE_NAME, level=os.environ.get("VPR_LOG_LEVEL", "INFO").upper(), stream=False,
                                    sink=rosout_sink(self))
        self.config: VerifierNodeConfig | None = None
        self.verifier: Verifier | None = None
        self.engine: VerificationEngine | None = None
        self.recorder: FlightDataRecorder | None = None
        self.pubs: dict = {}
        self.subs: list = []
        self.diag_pub = None
        self.timer = None
        self.origin = (math.nan, math.nan)
        self.camera = None
        self.state_label = "unconfigured"
        self.start_if_autostart()

    def _failed(self, exc: VprError, transition: str) -> TransitionCallbackReturn:
        self.log.error(exc.kind, f"{transition} failed: {exc}", transition=transition, **exc.context)
        if self.recorder:
            self.recorder.record(exc.kind, transition=transition,
                                 **{k: v for k, v in exc.to_record().items() if k != "kind"})
        return TransitionCallbackReturn.FAILURE

    # --- lifecycle -------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            cfg = VerifierNodeConfig.from_params({n: self.get_parameter(n).value for n in PARAMETERS})
            if self.recorder is not None:
                self.recorder.close()
                self.recorder = None
            if cfg.recorder_path:
                self.recorder = FlightDataRecorder(cfg.recorder_path, cfg.recorder_max_bytes)
            self.verifier = Verifier.for_index(cfg.index_dir, cfg.verify_config(),
                                               require_calibration=cfg.require_calibration)
            self.camera = CameraModel.from_camera_info_yaml(cfg.camera_info_file) if cfg.camera_info_file else None
        except VprError as exc:
            self.verifier = None
            return self._failed(exc, "configure")
        self.config = cfg
        cols = self.verifier.tiles.cols
        self.origin = (cfg.origin_lat if math.isfinite(cfg.origin_lat) else float(np.mean(cols["lat"])),
                       cfg.origin_lon if math.isfinite(cfg.origin_lon) else float(np.mean(cols["lon"])))
        self.pubs = {"verification": self.create_lifecycle_publisher(VprVerificationMsg, cfg.verification_topic,
                                                                     OUTPUT_QOS),
                     "fix": self.create_lifecycle_publisher(NavSatFix, cfg.fix_topic, OUTPUT_QOS),
                     "pose": self.create_lifecycle_publisher(PoseWithCovarianceStamped, cfg.pose_topic, OUTPUT_QOS),
                     "debug": self.create_lifecycle_publisher(Image, cfg.debug_image_topic, 2)}
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.timer = steady_timer(self, cfg.diagnostics_period, self._tick)
        self.state_label = "inactive"
        cal = self.verifier.calibration
        self.log.info("c2.vpr.verifier_ready", "verifier ready", index_tiles=len(self.verifier.tiles),
                      index_id=self.verifier.tiles.index_id, matcher=self.verifier.label,
                      matcher_runtime=getattr(self.verifier.fallback or self.verifier.primary, "runtime", ""),
                      verify_k=cfg.verify_k,
                      calibrated=cal is not None, threshold=cal.threshold if cal else None)
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        cfg = self.config
        self.engine = VerificationEngine(self.verifier, self._publish, self.log, self.recorder, cfg.match_timeout,
                                         cfg.max_pending, cfg.queue_depth)
        self.engine.start()
        msg_type, decoder = (CompressedImage, compressed_decoder) if cfg.compressed else (Image, image_decoder)
        self.subs = [
            self.create_subscription(msg_type, cfg.image_topic, lambda m: self._on_image(m, decoder),
                                     qos_profile_sensor_data),
            self.create_subscription(VprResultMsg, cfg.result_topic, self._on_result, OUTPUT_QOS),
        ]
        self.state_label = "active"
        self.log.info("c2.vpr.verifier_activated", image_topic=cfg.image_topic, result_topic=cfg.result_topic)
        return super().on_activate(state)

    def _stop(self) -> None:
        for sub in self.subs:
            self.destroy_subscription(sub)
        self.subs = []
        if self.engine is not None:
            self.engine.stop(timeout=5.0)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop()
        self.state_label = "inactive"
        return super().on_deactivate(state)

    def _release(self) -> None:
        self._stop()
        self.engine = None
        if self.timer is not None:
            self.destroy_timer(self.timer)
            self.timer = None
        for pub in self.pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self.pubs = {}
        if self.diag_pub is not None:
            self.destroy_publisher(self.diag_pub)
            self.diag_pub = None
        self.verifier = None
        if self.recorder is not None:
            self.recorder.close()
            self.recorder = None

    # --- input -----------------------------------------------------------------------------
    def _on_image(self, msg, decoder) -> None:
        if self.engine is not None:
            self.engine.add_frame(Frame(decode=decoder(msg), frame_id=msg.header.frame_id,
                                        stamp_ns=time_to_ns(msg.header.stamp)))

    def _on_result(self, msg) -> None:
        if self.engine is not None:
            self.engine.add_result(RetrievalResult(time_to_ns(msg.header.stamp), msg.header.frame_id, msg.index_id,
                                                   candidates_from_msg(msg), msg,
                                                   hints=hints_from_msg(msg, self.camera)))

    # --- output (on the verification thread) -----------------------------------------------
    def _publish(self, pair: Pair, v) -> None:
        cfg, pubs = self.config, self.pubs
        if not pubs:
            return
        msg = pair.result.message
        pubs["verification"].publish(verification_to_msg(v, msg, cfg.top_n))
        if v.accepted:
            pubs["fix"].publish(fix_to_navsatfix(v, msg.header))
            pubs["pose"].publish(fix_to_pose(v, msg.header, cfg.map_frame, *self.origin, cfg.camera_yaw_offset_deg))
        if pubs["debug"].get_subscription_count() > 0:
            picture = verification_picture(self.verifier, np.asarray(pair.frame.decode()), v)
            if picture is not None:
                img = Image()
                img.header = msg.header
                img.height, img.width = picture.shape[:2]
                img.encoding = "rgb8"
                img.data, img.step = image_codec.encode_raw(picture, "rgb8")
                pubs["debug"].publish(img)

    def _tick(self) -> None:
        engine = self.engine
        if engine is not None:
            engine.expire()
        stats = engine.snapshot() if engine is not None else {}
        status = DiagnosticStatus()
        status.name = f"{self.get_name()}: geometric verification"
        errors = sum(v for k, v in stats.items() if k.startswith("c2.vpr."))
        status.level = DiagnosticStatus.OK if errors == 0 else DiagnosticStatus.WARN
        status.message = (f"{self.state_label}; {stats.get('verified', 0)} verified, {stats.get('accepted', 0)} fixes "
                          f"accepted, {errors} errors")
        # publishers its frame and result subscriptions are matched to (as vpr_node's image_publishers)
        matched = {"image_publishers": self.subs[0].get_publisher_count() if self.subs else 0,
                   "result_publishers": self.subs[1].get_publisher_count() if self.subs else 0}
        status.values = [KeyValue(key="state", value=self.state_label)] + [
            KeyValue(key=k, value=f"{v:.2f}" if isinstance(v, float) else str(v))
            for k, v in sorted((stats | matched).items())]
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [status]
        if self.diag_pub is not None:
            self.diag_pub.publish(arr)


def main(argv=None, fast_exit: bool = False) -> int:
    return run(VerifierNode, argv, fast_exit, "verifier stopped")


if __name__ == "__main__":
    sys.exit(main())
