"""The inference engine the node runs: newest-frame-wins queue -> dedicated thread -> decode ->
embed -> top-K -> result callback. Plain Python: the ROS node, replay and tests all use it.

Error contract: a frame that fails (decode, backbone, index) yields a typed error, an ERROR/WARN log
line, a recorder entry and an error count; the thread keeps serving the next frame.
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Callable

import numpy as np

from vpr_node.core.errors import VprBackboneError, VprError, VprPreprocessError
from vpr_node.core.io.logs import StructuredLogger
from vpr_node.core.io.recorder import FlightDataRecorder
from vpr_node.core.priors.apply import PriorApplier
from vpr_node.core.retrieval.frame_queue import Frame, FrameQueue  # noqa: F401 (Frame: part of this API)
from vpr_node.core.retrieval.strategy import RetrievalStrategy
from vpr_node.core.types import VprResult


class EngineStats:
    """Counters and a rolling latency window (thread-safe snapshot)."""

    def __init__(self, window: int = 200):
        self.lock = threading.Lock()
        self.frames_in = 0
        self.results_out = 0
        self.errors = collections.Counter()
        self.prior_states = collections.Counter()  # "heading:ok", "position:stale", ... per result
        self.priors_in = collections.Counter()  # prior samples received per kind (accepted + typed errors)
        self.latency_ms = collections.deque(maxlen=window)
        self.result_times = collections.deque(maxlen=window)

    def snapshot(self, drops: int) -> dict:
        with self.lock:
            lat = np.asarray(self.latency_ms, np.float64)
            times = list(self.result_times)
            rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
            return {"frames_in": self.frames_in, "results_out": self.results_out, "drops": drops,
                    "errors": dict(self.errors), "errors_total": sum(self.errors.values()),
                    "prior_states": dict(self.prior_states), "priors_in": dict(self.priors_in),
                    "latency_ms_p50": float(np.percentile(lat, 50)) if lat.size else 0.0,
                    "latency_ms_p95": float(np.percentile(lat, 95)) if lat.size else 0.0, "rate_hz": rate}


class VprEngine:
    def __init__(self, strategy: RetrievalStrategy, on_result: Callable[[VprResult], None], top_k: int = 10,
                 queue_depth: int = 1, warn_distance: float = 1.5, logger: StructuredLogger | None = None,
                 recorder: FlightDataRecorder | None = None, clock_ns: Callable[[], int] = time.time_ns,
                 priors: PriorApplier | None = None):
        self.strategy, self.on_result, self.top_k = strategy, on_result, int(top_k)
        self.priors = priors  # heading / altitude / position priors applied before embedding (priors.py)
        self.clock_ns = clock_ns  # stamps retrieved_at; the ROS node passes its clock (sim time when replaying)
        self.warn_distance = float(warn_distance)
        self.log = logger or StructuredLogger()
        self.recorder = recorder
        self.queue = FrameQueue(queue_depth)
        self.stats = EngineStats()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._inflight: tuple[Frame, float] | None = None  # (frame, monotonic start) while processing
        self._hang_reported: str | None = None

    # --- lifecycle -------------------------------------------------------------------------
    def start(self, warm_up: bool = True, warm_up_timeout: float = 120.0) -> None:
        """Start the inference thread. With warm_up, the thread first embeds a blank frame and searches
        once (the first forward on a new thread builds its math thread pool and kernel caches: seconds on
        a loaded CPU), and start() returns when that is done, so the first camera frame after
        activation is served at steady-state latency instead of being late and dropping its successors."""
        if self._thread and self._thread.is_alive():
            return
        self._stop.clear()
        self.queue.reopen()
        warmed = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(warm_up, warmed), name="vpr-inference", daemon=True)
        self._thread.start()
        warmed.wait(warm_up_timeout)

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop taking frames, drop queued ones, give the frame in flight up to `timeout` s to finish. True if
        the thread ended; otherwise the frame in flight is abandoned and recorded (c2.vpr.frame_abandoned)."""
        self._stop.set()
        self.queue.close()
        if self._thread is not None:
            self._thread.join(timeout)
            alive = self._thread.is_alive()
            self._thread = None if not alive else self._thread
            inflight = self._inflight
            if alive and inflight is not None:
                frame, started = inflight
                fields = {"frame_uuid": frame.uuid, "frame_id": frame.frame_id, "stamp_ns": frame.stamp_ns,
                          "inflight_ms": round((time.monotonic() - started) * 1e3, 1), "waited_s": timeout}
                self.log.warn("c2.vpr.frame_abandoned", "frame in flight abandoned at stop", **fields)
                if self.recorder:
                    self.recorder.record("c2.vpr.frame_abandoned", **fields)
            return not alive
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --- input -----------------------------------------------------------------------------
    def submit(self, frame: Frame) -> bool:
        with self.stats.lock:
            self.stats.frames_in += 1
        return self.queue.put(frame)

    def snapshot(self) -> dict:
        snap = self.stats.snapshot(self.queue.dropped_total)
        inflight = self._inflight
        snap["inflight_ms"] = (time.monotonic() - inflight[1]) * 1e3 if inflight else 0.0
        return snap

    def check_hang(self, timeout_s: float) -> bool:
        """Watchdog (call periodically, e.g. from the diagnostics timer): a frame in flight for longer
        than timeout_s is reported once as vpr.backbone_hang (ERROR log + recorder + error count).
        Frames arriving meanwhile are dropped by the newest-wins queue and counted, so memory stays bounded."""
        inflight = self._inflight
        if not inflight or time.monotonic() - inflight[1] < timeout_s:
            return False
        frame = inflight[0]
        if self._hang_reported != frame.uuid:
            self._hang_reported = frame.uuid
            self._fail(
                frame,
                VprBackboneError(
                    f"{self.strategy.label}: frame in flight for more than {timeout_s:.1f} s "
                    "(backbone or runtime hung?)",
                    kind_detail="hang",
                ),
                kind="c2.vpr.backbone_hang",
            )
        return True

    # --- inference thread ------------------------------------------------------------------
    def _warm_up(self) -> None:
        t0 = time.perf_counter()
        self._inflight = (Frame(decode=lambda: None, frame_id="warm-up"), time.monotonic())  # watchdog sees it
        try:
            self.strategy.warm_up()
        except Exception as exc:  # noqa: BLE001 - a failing warm-up is reported; real frames get typed errors
            self.log.warn("c2.vpr.warm_up_failed", f"{type(exc).__name__}: {exc}")
            return
        finally:
            self._inflight = None
        self.log.info("c2.vpr.warmed_up", "inference thread warmed up", ms=round((time.perf_counter() - t0) * 1e3, 1))

    def _loop(self, warm_up: bool = False, warmed: threading.Event | None = None) -> None:
        if warm_up:
            self._warm_up()
        if warmed is not None:
            warmed.set()
        while not self._stop.is_set():
            frame, dropped = self.queue.get(timeout=0.2)
            if frame is None:
                continue
            self._inflight = (frame, time.monotonic())
            try:
                self.process(frame, dropped)
            finally:
                self._inflight = None

    def count_prior(self, kind: str) -> None:
        """A prior sample of this kind arrived (it is then buffered or reported as a typed error)."""
        with self.stats.lock:
            self.stats.priors_in[kind] += 1

    def report(self, exc: VprError, level: str = "WARN", **context) -> None:
        """A typed error outside a frame (e.g. a malformed prior sample): log line, recorder record, count."""
        with self.stats.lock:
            self.stats.errors[exc.kind] += 1
        rec = {**context, **exc.to_record()}
        self.log.event(level, exc.kind, str(exc), **{k: v for k, v in rec.items() if k not in ("kind", "message")})
        if self.recorder:
            self.recorder.record(exc.kind, **{k: v for k, v in rec.items() if k != "kind"})

    def _fail(self, frame: Frame, exc: VprError, level: str = "ERROR", kind: str | None = None) -> None:
        kind = kind or exc.kind
        with self.stats.lock:
            self.stats.errors[kind] += 1
        rec = {"frame_uuid": frame.uuid, "frame_id": frame.frame_id, "stamp_ns": frame.stamp_ns, **exc.to_record()}
        self.log.event(level, kind, str(exc), **{k: v for k, v in rec.items() if k not in ("kind", "message")})
        if self.recorder:
            self.recorder.record(kind, **{k: v for k, v in rec.items() if k != "kind"})

    def process(self, frame: Frame, dropped: int = 0) -> VprResult | None:
        """Run one frame synchronously (the thread's body; also used by offline replay)."""
        t0 = time.perf_counter()
        try:
            try:
                rgb = frame.decode()
            except VprPreprocessError:
                raise
            except Exception as exc:  # noqa: BLE001 - any decoder failure is a preprocess error
                raise VprPreprocessError(f"frame could not be decoded: {type(exc).__name__}: {exc}") from exc
            allowed, prior_state = None, None
            if self.priors is not None:
                rgb, allowed, prior_state = self.priors.apply(rgb, frame.stamp_ns)
            descriptor = self.strategy.embed_query(rgb)
            t1 = time.perf_counter()
            candidates = self.strategy.retrieve_topk(descriptor, self.top_k, allowed)
            t2 = time.perf_counter()
        except VprError as exc:  # preprocess, backbone, index: typed, logged, recorded, counted
            self._fail(frame, exc)
            return None
        except Exception as exc:  # noqa: BLE001 - never let the thread die on an unexpected error
            self._fail(frame, VprBackboneError(f"unexpected error: {type(exc).__name__}: {exc}"))
            return None
        result = VprResult(frame_uuid=frame.uuid, frame_id=frame.frame_id, stamp_ns=frame.stamp_ns,
                           retrieved_at_ns=self.clock_ns(), backbone_label=self.strategy.label,
                           descriptor_dim=self.strategy.descriptor_dim, candidates=candidates,
                           embed_latency_ms=(t1 - t0) * 1e3, search_latency_ms=(t2 - t1) * 1e3,
                           frames_dropped=int(dropped), priors=prior_state)
        total_ms = (time.monotonic_ns() - frame.received_ns) / 1e6
        with self.stats.lock:
            self.stats.results_out += 1
            self.stats.latency_ms.append(total_ms)
            self.stats.result_times.append(time.monotonic())
            if prior_state is not None:
                self.stats.prior_states.update(prior_state.label().split())
        if prior_state is not None and prior_state.position == "outside_map":
            self.log.warn(
                "c2.vpr.prior_outside_map",
                "no tile within k sigma of the position prior: whole map searched",
                frame_uuid=frame.uuid,
                sigma_m=prior_state.position_sigma_m,
            )
        top = candidates[0] if candidates else None
        if self.recorder:
            self.recorder.record(
                "c2.vpr.embed_query",
                frame_uuid=frame.uuid,
                frame_id=frame.frame_id,
                stamp_ns=frame.stamp_ns,
                backbone=self.strategy.label,
                embed_ms=round(result.embed_latency_ms, 3),
                search_ms=round(result.search_latency_ms, 3),
                latency_ms=round(total_ms, 3),
                top1=top.tile.name if top else None,
                top1_distance=top.distance if top else None,
                dropped=int(dropped),
                priors=prior_state.label() if prior_state is not None else None,
            )
        if top is not None and top.distance > self.warn_distance:
            self.log.warn("c2.vpr.low_confidence", "top-1 descriptor distance above warn threshold",
                          frame_uuid=frame.uuid, top1_distance=round(top.distance, 4), warn_distance=self.warn_distance)
            if self.recorder:
                self.recorder.record("c2.vpr.low_confidence", frame_uuid=frame.uuid, top1_distance=top.distance)
        self.log.debug(
            "c2.vpr.result", frame_uuid=frame.uuid, distances=[round(c.distance, 4) for c in candidates[:10]]
        )
        try:
            self.on_result(result)
        except Exception as exc:  # noqa: BLE001
            self.log.error("c2.vpr.publish_error", f"result callback failed: {exc}", frame_uuid=frame.uuid)
        return result
