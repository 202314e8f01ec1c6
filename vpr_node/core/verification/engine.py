"""The verification engine the verifier node runs: frames and their retrieval results arrive separately (two topics)
and are paired by (stamp, frame id); a pair goes through a newest-wins queue to a dedicated thread that decodes the
frame and verifies it. Plain Python: the ROS node and offline replay use it.

Nothing is silently dropped: a frame whose result has not come within `match_timeout_s` (or a result whose frame
has not), a pair displaced by a newer one in the queue, and a frame that fails (decode, no candidates, a tile the
index does not hold) each become a typed record (log line, recorder, counter).
"""
from __future__ import annotations

import collections
import dataclasses
import threading
import time
from typing import Callable

import numpy as np

from vpr_node.core.errors import VprError, VprPreprocessError, VprVerificationError
from vpr_node.core.io.logs import StructuredLogger
from vpr_node.core.io.recorder import FlightDataRecorder
from vpr_node.core.retrieval.frame_queue import Frame, FrameQueue
from vpr_node.core.verification.result import FrameHints, Verification
from vpr_node.core.verification.verifier import Verifier


@dataclasses.dataclass
class RetrievalResult:
    """What the verifier needs of a VprResult: its frame's stamp and id, the index it came from, its candidates,
    and the message itself (republished inside VprVerification)."""

    stamp_ns: int
    frame_id: str
    index_id: str
    candidates: list
    message: object = None
    received: float = dataclasses.field(default_factory=time.monotonic)
    hints: FrameHints | None = None  # the frame's heading / footprint from its priors


@dataclasses.dataclass
class Pair:
    frame: Frame
    result: RetrievalResult


class VerificationEngine:
    def __init__(self, verifier: Verifier, on_verified: Callable[[Pair, Verification], None],
                 logger: StructuredLogger | None = None, recorder: FlightDataRecorder | None = None,
                 match_timeout_s: float = 1.0, max_pending: int = 64, queue_depth: int = 1):
        self.verifier, self.on_verified = verifier, on_verified
        self.log = logger or StructuredLogger("vpr_verifier")
        self.recorder = recorder
        self.match_timeout_s, self.max_pending = float(match_timeout_s), int(max_pending)
        self.queue = FrameQueue(queue_depth)
        self._frames: collections.OrderedDict = collections.OrderedDict()  # (stamp, frame_id) -> (Frame, t)
        self._results: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()
        self.counts = collections.Counter()
        self.latency_ms = collections.deque(maxlen=200)
        self._said_shallow = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread and self._thread.is_alive():
            return
        self._stop.clear()
        self.queue.reopen()
        self._thread = threading.Thread(target=self._loop, name="vpr-verification", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        self._stop.set()
        self.counts["dropped_at_stop"] += self.queue.close()
        if self._thread is not None:
            self._thread.join(timeout)
            alive = self._thread.is_alive()
            self._thread = None if not alive else self._thread
            return not alive
        return True

    # --- input (subscription callbacks: cheap) ---------------------------------------------
    def add_frame(self, frame: Frame) -> None:
        self._add(frame, (frame.stamp_ns, frame.frame_id), self._frames, self._results, "frames_in")

    def add_result(self, result: RetrievalResult) -> None:
        self._add(result, (result.stamp_ns, result.frame_id), self._results, self._frames, "results_in")

    def _add(self, item, key, mine: collections.OrderedDict, theirs: collections.OrderedDict, counter: str) -> None:
        with self._lock:
            self.counts[counter] += 1
            other = theirs.pop(key, None)
            if other is None:
                mine[key] = (item, time.monotonic())
                evicted = []
                while len(mine) > self.max_pending:
                    evicted.append(mine.popitem(last=False))
            else:
                pair = Pair(item, other[0]) if isinstance(item, Frame) else Pair(other[0], item)
                evicted = []
        for k, _ in evicted:
            self._unmatched(k, "frame_without_result" if mine is self._frames else "result_without_frame",
                            "pending_limit")
        if other is not None:
            with self._lock:
                self.counts["paired"] += 1
            if not self.queue.put(pair):
                with self._lock:
                    self.counts["dropped_newest_wins"] += 1
                fields = {"displaced_by_stamp_ns": pair.frame.stamp_ns, "frame_id": pair.frame.frame_id,
                          "dropped_total": self.queue.dropped_total}
                self.log.warn("c2.vpr.verify_dropped", "a newer frame displaced one waiting for verification", **fields)
                if self.recorder:
                    self.recorder.record("c2.vpr.verify_dropped", **fields)

    def expire(self, now: float | None = None) -> int:
        """Frames and results that waited longer than match_timeout_s for their other half (call periodically, e.g.
        from the diagnostics timer): each is reported and counted. Returns how many."""
        now = time.monotonic() if now is None else now
        gone = []
        with self._lock:
            for store, reason in ((self._frames, "frame_without_result"), (self._results, "result_without_frame")):
                for key in [k for k, (_, t) in store.items() if now - t > self.match_timeout_s]:
                    store.pop(key)
                    gone.append((key, reason))
        for key, reason in gone:
            self._unmatched(key, reason, f"no match within {self.match_timeout_s:g} s")
        return len(gone)

    def _unmatched(self, key, reason: str, why: str) -> None:
        with self._lock:
            self.counts[reason] += 1
        self.report(VprVerificationError(f"{reason.replace('_', ' ')}: {why}", reason=reason, stamp_ns=key[0],
                                         frame_id=key[1]), level="WARN")

    # --- the thread ------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            pair, _ = self.queue.get(timeout=0.2)
            if pair is not None:
                self.process(pair)

    def process(self, pair: Pair) -> Verification | None:
        """Verify one pair synchronously (the thread's body; also offline replay)."""
        frame, result = pair.frame, pair.result
        try:
            if result.index_id and result.index_id != self.verifier.tiles.index_id:
                raise VprVerificationError(f"the result comes from index {result.index_id}, the verifier holds "
                                           f"{self.verifier.tiles.index_id}: point both nodes at the same index_dir",
                                           reason="other_index")
            try:
                rgb = frame.decode()
            except VprPreprocessError:
                raise
            except Exception as exc:  # noqa: BLE001 - any decoder failure is a preprocess error
                raise VprPreprocessError(f"frame could not be decoded: {type(exc).__name__}: {exc}") from exc
            v = self.verifier.verify(np.asarray(rgb), result.candidates, result.hints)
            self._check_depth(result, v)
        except VprError as exc:
            self.report(exc, level="ERROR", frame_uuid=frame.uuid, frame_id=frame.frame_id, stamp_ns=frame.stamp_ns)
            return None
        except Exception as exc:  # noqa: BLE001 - never let the thread die
            self.report(VprVerificationError(f"unexpected error: {type(exc).__name__}: {exc}"), level="ERROR",
                        frame_uuid=frame.uuid, stamp_ns=frame.stamp_ns)
            return None
        with self._lock:
            self.counts["verified"] += 1
            self.counts["fixes"] += int(v.fix is not None)
            self.counts["accepted"] += int(v.accepted)
            self.counts["fallback_ran"] += int(len(v.stages) > 1)
            self.counts["accepted_by_fallback"] += int(v.accepted and v.stage == 1)
            self.counts[f"reason.{v.reason or 'accepted'}"] += 1
            self.latency_ms.append(v.latency_ms)
        fields = {"frame_uuid": frame.uuid, "frame_id": frame.frame_id, "stamp_ns": frame.stamp_ns,
                  "verify_ms": round(v.latency_ms, 2), "reason": v.reason, "agree": v.agree, "matcher": v.matcher,
                  "stages": len(v.stages),
                  "top": [(c.tile_id, c.inliers, c.reason) for c in v.top(3)]}
        if v.fix is not None:
            fields.update({"lat": v.fix.lat, "lon": v.fix.lon, "sigma_m": round(v.fix.sigma_m, 2),
                           "heading_deg": round(v.fix.heading_deg, 1), "confidence": v.fix.confidence,
                           "accepted": v.accepted})
        if self.recorder:
            self.recorder.record("c2.vpr.verification", **fields)
        if not v.accepted:
            self.log.info("c2.vpr.no_fix", f"no fix accepted: {v.reason}", **fields)
        try:
            self.on_verified(pair, v)
        except Exception as exc:  # noqa: BLE001
            self.log.error("c2.vpr.publish_error", f"verification callback failed: {exc}", frame_uuid=frame.uuid)
        return v

    def _check_depth(self, result, v: Verification) -> None:
        """Once: a frame left without an accepted fix whose result was shallower than deeper_k (a WARN saying why)."""
        cfg = self.verifier.cfg
        if not self._said_shallow and not v.accepted and len(result.candidates) < cfg.deeper_k:
            self._said_shallow = True
            self.log.warn("c2.vpr.verifier_shallow_results",
                          f"results carry {len(result.candidates)} candidates, deeper_k is {cfg.deeper_k}: set "
                          f"vpr_node's top_k to {cfg.deeper_k} for the deeper pass", candidates=len(result.candidates),
                          deeper_k=cfg.deeper_k)

    def report(self, exc: VprError, level: str = "WARN", **context) -> None:
        """A typed error: log line, recorder record, counter."""
        with self._lock:
            self.counts[exc.kind] += 1
        rec = {**context, **exc.to_record()}
        self.log.event(level, exc.kind, str(exc), **{k: v for k, v in rec.items() if k not in ("kind", "message")})
        if self.recorder:
            self.recorder.record(exc.kind, **{k: v for k, v in rec.items() if k != "kind"})

    def snapshot(self) -> dict:
        with self._lock:
            lat = np.asarray(self.latency_ms, np.float64)
            return {**dict(self.counts), "pending_frames": len(self._frames), "pending_results": len(self._results),
                    "verify_ms_p50": float(np.percentile(lat, 50)) if lat.size else 0.0,
                    "verify_ms_p95": float(np.percentile(lat, 95)) if lat.size else 0.0}
