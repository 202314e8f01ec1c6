"""The vpr_node lifecycle node: a thin ROS 2 shell over vpr_node.core.

configure: declare+validate parameters, load backbone/runtime/index (manifest verified), create the
           lifecycle result publisher. activate: (re)load if `backbone`/weights/index changed, start
           the inference thread, subscribe with sensor-data QoS. deactivate: unsubscribe, stop the
           thread (the frame in flight finishes; queued frames are dropped and counted).
cleanup/shutdown: release everything.
"""
from __future__ import annotations

import os
import sys

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from rclpy.logging import LoggingSeverity
from rclpy.publisher import Publisher
from rclpy.qos import qos_profile_sensor_data
from rclpy.subscription import Subscription
from rclpy.timer import Timer
from sensor_msgs.msg import CompressedImage, Image

from vpr_node.core.errors import VprError, VprPriorError
from vpr_node.core.io.logs import StructuredLogger
from vpr_node.core.io.recorder import FlightDataRecorder
from vpr_node.core.priors.apply import PriorApplier
from vpr_node.core.priors.samples import ALTITUDE, HEADING, POSITION
from vpr_node.core.retrieval.engine import Frame, VprEngine
from vpr_node.core.retrieval.strategy import RetrievalStrategy, load_strategy
from vpr_node.msg import VprResult as VprResultMsg
from vpr_node.ros.conversions import compressed_decoder, image_decoder, result_to_msg, time_to_ns
from vpr_node.ros.lifecycle import ReleasingLifecycleNode, run, steady_timer
from vpr_node.ros.params import PARAMETERS, NodeConfig
from vpr_node.ros.prior_inputs import message_class
from vpr_node.ros.qos import OUTPUT_QOS
from vpr_node.ros.rosout import rosout_sink


class VprLifecycleNode(ReleasingLifecycleNode):
    def __init__(self, **kwargs):
        super().__init__("vpr_node", **kwargs)
        for name, (default, description) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=description))
        level = os.environ.get("VPR_LOG_LEVEL", "INFO").upper()
        self.log = StructuredLogger("vpr_node", level=level, stream=False, sink=rosout_sink(self))
        if "VPR_LOG_LEVEL" in os.environ:  # rclpy filters at its own level (INFO unless --ros-args --log-level)
            self.get_logger().set_level(getattr(LoggingSeverity, "WARN" if level == "WARN" else level))
        self.config: NodeConfig | None = None
        self.loaded_key: tuple | None = None
        self.strategy: RetrievalStrategy | None = None
        self.engine: VprEngine | None = None
        self.recorder: FlightDataRecorder | None = None
        self.result_pub: Publisher | None = None
        self.diag_pub: Publisher | None = None
        self.diag_timer: Timer | None = None
        self.sub: Subscription | None = None
        self.prior_subs: list[Subscription] = []
        self.prior_inputs = None  # core.prior_messages.PriorInputs while priors are configured
        self.state_label: str = "unconfigured"
        self._last_stats: dict = {}
        self.start_if_autostart()

    # --- helpers ---------------------------------------------------------------------------

    def _read_config(self) -> NodeConfig:
        values = {name: self.get_parameter(name).value for name in PARAMETERS}
        return NodeConfig.from_params(values)  # raises ConfigurationError with what to fix

    def _load(self, cfg: NodeConfig) -> None:
        if self.strategy is not None:
            self.strategy.close()
            self.strategy = None
        self.strategy = load_strategy(cfg.backbone, weights=cfg.weights, index_dir=cfg.index_dir, runtime=cfg.runtime,
                                      precision=cfg.precision, device=cfg.device, backbone_options=cfg.backbone_options,
                                      verify_index_weights=cfg.verify_index_weights,
                                      index_memory_budget_mib=cfg.index_memory_budget_mib, narrow_k=cfg.narrow_k)
        self.loaded_key = cfg.model_key()
        if cfg.precision == "fp16" and cfg.device == "cpu":
            self.log.warn("c2.vpr.slow_precision", "fp16 on CPU: PyTorch has no fast half-precision kernels there "
                          "(about 100x slower than fp32, see BENCHMARKS.md); use fp32 on CPU or fp16 on CUDA",
                          precision=cfg.precision, device=cfg.device)
        prov = self.strategy.backbone.provenance
        if not prov.trained:
            self.log.warn("c2.vpr.untrained_weights", f"backbone {cfg.backbone} has untrained weights ({prov.notes}); "
                          "results are not meaningful", strategy=cfg.backbone, source=prov.source)
        self.log.info("c2.vpr.ready", f"strategy {self.strategy.label} ready", strategy=self.strategy.label,
                      descriptor_dim=self.strategy.descriptor_dim, runtime=cfg.runtime, precision=cfg.precision,
                      index_tiles=len(self.strategy.index), index_id=self.strategy.index.index_id)

    def _config_failed(self, exc: VprError, transition: str) -> TransitionCallbackReturn:
        self.log.error(exc.kind, f"{transition} failed: {exc}", transition=transition, **exc.context)
        if self.recorder:
            self.recorder.record(exc.kind, transition=transition,
                                 **{k: v for k, v in exc.to_record().items() if k != "kind"})
        return TransitionCallbackReturn.FAILURE

    def _publish_result(self, result) -> None:
        pub = self.result_pub
        if pub is not None and self.strategy is not None:
            pub.publish(result_to_msg(result, self.strategy.index.index_id))

    # --- lifecycle -------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            cfg = self._read_config()
            if self.recorder is not None:  # a previous configure attempt failed after opening it
                self.recorder.close()
                self.recorder = None
            if cfg.recorder_path:
                self.recorder = FlightDataRecorder(cfg.recorder_path, cfg.recorder_max_bytes)
            self._load(cfg)
        except VprError as exc:
            self.strategy = None
            return self._config_failed(exc, "configure")
        self.config = cfg
        self.result_pub = self.create_lifecycle_publisher(VprResultMsg, cfg.result_topic, OUTPUT_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.diag_timer = steady_timer(self, cfg.diagnostics_period, self._publish_diagnostics)
        self.state_label = "inactive"
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            cfg = self._read_config()
            if cfg.model_key() != self.loaded_key:
                self.log.info("c2.vpr.reload", "backbone/weights/index changed since configure; reloading",
                              old=str(self.loaded_key), new=str(cfg.model_key()))
                self._load(cfg)
            self.config = cfg
        except VprError as exc:
            return self._config_failed(exc, "activate")
        try:
            priors = self._make_priors(cfg)
        except VprError as exc:
            return self._config_failed(exc, "activate")
        self.engine = VprEngine(self.strategy, self._publish_result, top_k=cfg.top_k, queue_depth=cfg.queue_depth,
                                warn_distance=cfg.warn_distance, logger=self.log, recorder=self.recorder,
                                clock_ns=lambda: self.get_clock().now().nanoseconds, priors=priors)
        self.engine.start(warm_up=True, warm_up_timeout=cfg.hang_timeout)
        msg_type, decoder = (CompressedImage, compressed_decoder) if cfg.compressed else (Image, image_decoder)
        self.sub = self.create_subscription(msg_type, cfg.image_topic, lambda m: self._on_image(m, decoder),
                                            qos_profile_sensor_data)
        self._subscribe_priors(cfg)
        self.state_label = "active"
        self.log.info("c2.vpr.activated", strategy=self.strategy.label, image_topic=cfg.image_topic,
                      compressed=cfg.compressed)
        return super().on_activate(state)

    def _make_priors(self, cfg: NodeConfig) -> PriorApplier | None:
        made = cfg.priors()
        if made is None:
            return None
        prior_cfg, self.prior_inputs = made
        return PriorApplier(prior_cfg, self.strategy.index)

    def _subscribe_priors(self, cfg: NodeConfig) -> None:
        for kind, topic, type_name in ((HEADING, cfg.heading_topic, cfg.heading_type),
                                       (ALTITUDE, cfg.altitude_topic, cfg.altitude_type),
                                       (POSITION, cfg.prior_topic, cfg.prior_type)):
            if topic:
                self.prior_subs.append(
                    self.create_subscription(
                        message_class(kind, type_name),
                        topic,
                        lambda m, k=kind: self._on_prior(k, m),
                        qos_profile_sensor_data,
                    )
                )
        if self.prior_subs:
            self.log.info("c2.vpr.priors", "prior topics subscribed", heading=cfg.heading_topic or None,
                          altitude=cfg.altitude_topic or None, position=cfg.prior_topic or None)

    def _on_prior(self, kind: str, msg) -> None:
        engine = self.engine
        if engine is None or engine.priors is None:
            return
        engine.count_prior(kind)
        try:
            now = self.get_clock().now().nanoseconds
            sample = getattr(self.prior_inputs, kind)(msg, now or None)  # 0: a sim-time clock not yet started
            engine.priors.buffer.add(kind, *sample)
        except VprPriorError as exc:
            stamp = time_to_ns(msg.header.stamp)
            engine.priors.buffer.add_error(kind, stamp)
            engine.report(exc, stamp_ns=stamp, topic_kind=kind)

    def _on_image(self, msg, decoder) -> None:
        engine = self.engine
        if engine is None:
            return
        engine.submit(Frame(decode=decoder(msg), frame_id=msg.header.frame_id, stamp_ns=time_to_ns(msg.header.stamp)))

    def _stop_engine(self, timeout: float = 30.0) -> None:
        """Unsubscribe, then give the frame in flight `timeout` s (deactivate: 30 s; shutdown: shutdown_timeout,
        after which it is abandoned and recorded by the engine)."""
        if self.sub is not None:
            self.destroy_subscription(self.sub)
            self.sub = None
        for sub in self.prior_subs:
            self.destroy_subscription(sub)
        self.prior_subs = []
        if self.engine is not None:
            if not self.engine.stop(timeout=timeout) and timeout >= 30.0:
                self.log.error("c2.vpr.thread_stuck", f"inference thread did not stop within {timeout:.0f} s")
            self._last_stats = self.engine.snapshot()

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_engine()
        self.state_label = "inactive"
        return super().on_deactivate(state)

    def _release(self) -> None:
        self._stop_engine(self.config.shutdown_timeout if self.config else 1.0)
        self.engine = None
        if self.diag_timer is not None:
            self.destroy_timer(self.diag_timer)
            self.diag_timer = None
        if self.result_pub is not None:
            self.destroy_lifecycle_publisher(self.result_pub)
            self.result_pub = None
        if self.diag_pub is not None:
            self.destroy_publisher(self.diag_pub)
            self.diag_pub = None
        if self.strategy is not None:
            self.strategy.close()
            self.strategy = None
        self.loaded_key = None
        if self.recorder is not None:
            self.recorder.close()
            self.recorder = None

    # --- diagnostics -----------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        pub = self.diag_pub
        if pub is None:
            return
        engine = self.engine
        hung = engine.check_hang(self.config.hang_timeout) if engine is not None and self.config else False
        stats = engine.snapshot() if engine is not None else self._last_stats
        status = DiagnosticStatus()
        status.name = f"{self.get_name()}: visual place recognition"
        status.hardware_id = self.strategy.label if self.strategy else ""
        errors = stats.get("errors_total", 0)
        status.level = (
            DiagnosticStatus.ERROR if hung else (DiagnosticStatus.OK if errors == 0 else DiagnosticStatus.WARN)
        )
        status.message = f"{self.state_label}; {stats.get('results_out', 0)} results, {errors} errors"
        values = {"state": self.state_label, "backbone": self.strategy.label if self.strategy else "",
                  "rate_hz": f"{stats.get('rate_hz', 0.0):.3f}", "frames_in": stats.get("frames_in", 0),
                  "results_out": stats.get("results_out", 0), "drops": stats.get("drops", 0),
                  "latency_ms_p50": f"{stats.get('latency_ms_p50', 0.0):.2f}",
                  "latency_ms_p95": f"{stats.get('latency_ms_p95', 0.0):.2f}", "errors_total": errors,
                  "inflight_ms": f"{stats.get('inflight_ms', 0.0):.0f}",
                  # subscriptions matched to the VprResult publisher (the verifier, a recorder): a result
                  # published before a subscriber is matched does not reach it
                  "result_subscribers": self.result_pub.get_subscription_count() if self.result_pub else 0,
                  # camera publishers this node's frame subscription is matched to: a best-effort reader drops
                  # what a writer sends before the reader has matched it, even when the writer already sees it
                  "image_publishers": self.sub.get_publisher_count() if self.sub is not None else 0}
        for kind, n in sorted(stats.get("errors", {}).items()):
            values[f"errors.{kind}"] = n
        for state, n in sorted(stats.get("prior_states", {}).items()):
            values[f"priors.{state}"] = n  # frames per prior state, e.g. priors.heading:stale
        for kind, n in sorted(stats.get("priors_in", {}).items()):
            values[f"priors_in.{kind}"] = n  # prior samples received (accepted + c2.vpr.prior_error)
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [status]
        pub.publish(arr)


def main(argv=None, fast_exit: bool = False) -> int:
    """Run the node until SIGINT/SIGTERM/shutdown (ros/lifecycle.run: the executor and the fast exit). Inference has
    its own thread (VprEngine); the executor only runs quick callbacks (enqueue a frame, lifecycle services, the
    diagnostics/watchdog timer)."""
    return run(VprLifecycleNode, argv, fast_exit)


if __name__ == "__main__":
    sys.exit(main())
