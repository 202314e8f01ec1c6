"""The autopilot output the vpr_mavlink node runs: accepted fixes in, MAVLink out, every refusal typed and counted.

`submit(fix)` (on the caller's thread; cheap: encode and write) checks the fix (fixes.py), the link (the autopilot's
heartbeat is recent) and, for ArduPilot's local frame, the EKF origin (its GPS_GLOBAL_ORIGIN, else set from the
parameters with SET_GPS_GLOBAL_ORIGIN after `origin_wait_s`), passes it through the jump gate, and sends:
  px4        GLOBAL_POSITION_SENSOR (EKF2 auxiliary global position)
  ardupilot  ODOMETRY in local NED about the EKF origin (external navigation; a confirmed jump raises
             reset_counter), or GPS_INPUT with `ardupilot_message: gps_input`
One I/O thread polls the link (heartbeats, TIMESYNC, origin, reconnects). When fixes stop, nothing is sent: the
autopilot's EKF times the source out and goes on with its other sensors (docs/autopilot.md).
"""
from __future__ import annotations

import collections
import dataclasses
import math
import threading
import time
from typing import Callable

from vpr_node.core.autopilot import encode
from vpr_node.core.autopilot.fixes import AutopilotFix, JumpGate, check_fix
from vpr_node.core.autopilot.link import AUTOPILOTS, MavlinkLink
from vpr_node.core.io.logs import StructuredLogger
from vpr_node.core.options import option


def _choice(*names):
    return lambda v: None if v in names else f"choose one of {', '.join(names)}"


@dataclasses.dataclass
class AutopilotConfig:
    autopilot: str = option("px4", "the autopilot: px4 (GLOBAL_POSITION_SENSOR) | ardupilot (ODOMETRY or GPS_INPUT)",
                            check=_choice(*AUTOPILOTS))
    connection: str = option("udpout:127.0.0.1:14540", "MAVLink connection: udpout:HOST:PORT | udpin:HOST:PORT | "
                                                      "tcp:HOST:PORT | /dev/ttyX:BAUD | '' (none: the mavros topic "
                                                      "only, about the origin parameters)")
    system_id: int = option(1, "this component's MAVLink system id (the vehicle's)")
    component_id: int = option(191, "this component's MAVLink component id (191: MAV_COMP_ID_ONBOARD_COMPUTER)")
    ardupilot_message: str = option("odometry", "ArduPilot: odometry (external navigation, EK3_SRC1_POSXY 6) | "
                                                "gps_input (opt-in: a GNSS to EKF3, GPS_TYPE 14)",
                                    check=_choice("odometry", "gps_input"))
    sensor_id: int = option(0, "PX4: GLOBAL_POSITION_SENSOR id (the EKF2_AGP instance, 0-3)")
    max_fix_age_s: float = option(1.0, "a fix whose frame was exposed longer ago is stale, not sent")
    heartbeat_timeout_s: float = option(3.0, "the autopilot is lost when its heartbeat is older; fixes wait for it")
    gate_m: float = option(50.0, "a fix farther than this (+ gate_speed_mps x the time since the last sent fix) from "
                                 "the last sent fix is held")
    gate_speed_mps: float = option(30.0, "the vehicle's top speed for the jump gate (m/s)")
    jump_confirmations: int = option(2, "consecutive fixes agreeing at a new place that make a jump a reset")
    origin_lat: float = option(math.nan, "ArduPilot: EKF origin to set when the autopilot has none (deg; NaN: wait "
                                         "for the autopilot's own)")
    origin_lon: float = option(math.nan, "ArduPilot: EKF origin longitude (deg)")
    origin_alt: float = option(0.0, "ArduPilot: EKF origin altitude (m, AMSL)")
    origin_wait_s: float = option(3.0, "ArduPilot: how long to wait for the autopilot's GPS_GLOBAL_ORIGIN before "
                                       "setting the parameters'")
    camera_yaw_offset_deg: float = option(0.0, "camera mounting: image 'up' is this many degrees clockwise of the "
                                               "body's heading (ODOMETRY carries the body's yaw)")
    gps_input_satellites: int = option(0, "GPS_INPUT satellites_visible (0: none are seen; ArduPilot's GPS checks "
                                          "refuse it until deliberately relaxed: docs/autopilot.md)")


@dataclasses.dataclass
class Outcome:
    sent: str  # the MAVLink message sent, '' when none
    reason: str  # '' or why not (fixes.REASONS), or 'reset' when sent as a confirmed jump
    processing_us: int = 0


class AutopilotOutput:
    def __init__(self, cfg: AutopilotConfig, fix_clock_ns: Callable[[], int] = time.time_ns,
                 logger: StructuredLogger | None = None, recorder=None, link: MavlinkLink | None = None):
        self.cfg = cfg
        self.fix_clock_ns = fix_clock_ns
        self.log = logger or StructuredLogger("vpr_mavlink")
        self.recorder = recorder
        self.link = link or (MavlinkLink(cfg.connection, cfg.system_id, cfg.component_id, cfg.heartbeat_timeout_s)
                             if cfg.connection else None)
        self.gate = JumpGate(cfg.gate_m, cfg.gate_speed_mps, cfg.jump_confirmations)
        self.counts: collections.Counter = collections.Counter()
        self.sent_times: collections.deque = collections.deque(maxlen=50)
        self.latency_us: collections.deque = collections.deque(maxlen=200)
        self.reset_counter = 0
        self.last_sent: dict = {}
        self._origin_set_at: int | None = None
        self._next_origin_request = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wrong_autopilot_logged = False

    # --- lifecycle ---------------------------------------------------------------------------------------
    @property
    def origin(self) -> tuple[float, float, float] | None:
        """The EKF origin: the autopilot's (GPS_GLOBAL_ORIGIN), else the parameters'."""
        if self.link is not None and self.link.origin is not None:
            return self.link.origin
        c = self.cfg
        return (c.origin_lat, c.origin_lon, c.origin_alt) if math.isfinite(c.origin_lat) and \
            math.isfinite(c.origin_lon) else None

    def start(self) -> None:
        self._stop.clear()
        if self.link is None:
            return
        self.link.open()
        self._thread = threading.Thread(target=self._loop, name="vpr-mavlink", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self.link is not None:
            self.link.close()

    def _loop(self) -> None:
        started = self.link.wall_ns()
        while not self._stop.is_set():
            self.link.poll(0.05)
            if self.link.origin is None and self.link.heard:
                self._origin(started)

    def _origin(self, started: int) -> None:
        """No known EKF origin: ask for it every second (ArduPilot's local frame and the mavros pose need it); for
        ArduPilot's ODOMETRY, set the parameters' after origin_wait_s."""
        now = self.link.wall_ns()
        if now >= self._next_origin_request:
            self._next_origin_request = now + 10**9
            self.link.request_origin()
        cfg = self.cfg
        if cfg.autopilot == "ardupilot" and cfg.ardupilot_message == "odometry" and math.isfinite(cfg.origin_lat) \
                and math.isfinite(cfg.origin_lon) and self._origin_set_at is None \
                and now - started >= cfg.origin_wait_s * 1e9:
            self._origin_set_at = now
            self.link.send(encode.set_gps_global_origin(self.link.mav, self.link.target_system, cfg.origin_lat,
                                                        cfg.origin_lon, cfg.origin_alt))
            self.counts["origin_set"] += 1
            self.log.info("c2.vpr.autopilot_origin_set", "the autopilot had no EKF origin: set it from parameters",
                          lat=cfg.origin_lat, lon=cfg.origin_lon, alt=cfg.origin_alt)
            self.link.request_origin()

    # --- fixes -------------------------------------------------------------------------------------------
    def submit(self, fix: AutopilotFix) -> Outcome:
        """Send an accepted fix, or say why not (counted, logged, recorded)."""
        self.counts["fixes_in"] += 1
        now = self.fix_clock_ns()
        reason = check_fix(fix, now, self.cfg.max_fix_age_s)
        if not reason and self.link is not None and not self.link.heard:
            reason = "no_heartbeat"
        local = self.link is None or (self.cfg.autopilot == "ardupilot" and self.cfg.ardupilot_message == "odometry")
        if not reason and local and self.origin is None:
            reason = "no_origin"
        gate = ""
        if not reason:
            if self.link is not None:
                self._check_autopilot()
            gate = self.gate.offer(fix)
            if gate == "jump":
                reason = "jump"
            elif gate == "reset":
                self.reset_counter += 1
                self.counts["resets"] += 1
        if reason:
            return self._refused(fix, reason, now)
        processing_us = max(0, (now - fix.stamp_ns) // 1000)
        if self.link is None:  # no MAVLink connection: the caller publishes the mavros topic
            name = "none"
        else:
            name, msg = self._encode(fix, now, processing_us)
            if not self.link.send(msg):
                return self._refused(fix, "link_down", now)
        self.counts[f"sent.{name}"] += 1
        self.sent_times.append(now)
        self.latency_us.append(processing_us)
        self.last_sent = {"message": name, "stamp_ns": fix.stamp_ns, "sent_ns": now, "lat": fix.lat, "lon": fix.lon,
                          "processing_us": processing_us}
        if self.recorder:
            self.recorder.record("c2.vpr.autopilot_sent", message=name, stamp_ns=fix.stamp_ns, lat=fix.lat,
                                 lon=fix.lon, processing_us=processing_us, reset_counter=self.reset_counter)
        return Outcome(name, "reset" if gate == "reset" else "", processing_us)


    def _encode(self, fix: AutopilotFix, now_ns: int, processing_us: int):
        mav, cfg, target = self.link.mav, self.cfg, self.link.target_system
        if cfg.autopilot == "px4":
            return "GLOBAL_POSITION_SENSOR", encode.global_position_sensor(mav, fix, now_ns // 1000, processing_us,
                                                                           target, cfg.sensor_id)
        if cfg.ardupilot_message == "gps_input":
            return "GPS_INPUT", encode.gps_input(mav, fix, fix.stamp_ns // 1000, time.time(), 0,
                                                 cfg.gps_input_satellites)
        return "ODOMETRY", encode.odometry_ned(mav, fix, self.origin, fix.stamp_ns // 1000, self.reset_counter,
                                               cfg.camera_yaw_offset_deg)

    def _check_autopilot(self) -> None:
        heard = (self.link.autopilot or {}).get("autopilot")
        if heard is not None and heard != AUTOPILOTS[self.cfg.autopilot] and not self._wrong_autopilot_logged:
            self._wrong_autopilot_logged = True
            self.counts["other_autopilot"] += 1
            self.log.warn("c2.vpr.autopilot_mismatch", f"configured for {self.cfg.autopilot}, but the autopilot "
                          f"heard reports MAV_AUTOPILOT {heard}: set the autopilot parameter to match",
                          heard=heard)

    def _refused(self, fix: AutopilotFix, reason: str, now_ns: int) -> Outcome:
        self.counts[f"rejected.{reason}"] += 1
        fields = {"reason": reason, "stamp_ns": fix.stamp_ns, "age_s": round((now_ns - fix.stamp_ns) / 1e9, 3),
                  "lat": fix.lat, "lon": fix.lon, "link_state": self.link.state if self.link else "none"}
        self.log.warn("c2.vpr.autopilot_rejected", f"fix not sent to the autopilot: {reason}", **fields)
        if self.recorder:
            self.recorder.record("c2.vpr.autopilot_rejected", **fields)
        return Outcome("", reason)

    def snapshot(self) -> dict:
        times = list(self.sent_times)
        rate = (len(times) - 1) / ((times[-1] - times[0]) / 1e9) if len(times) > 1 and times[-1] > times[0] else 0.0
        lat = sorted(self.latency_us)
        pick = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1e3) if lat else (lambda q: None)
        return {**dict(self.counts), **(self.link.snapshot() if self.link else {"link_state": "none"}),
                "autopilot": self.cfg.autopilot, "origin": self.origin,
                "send_rate_hz": round(rate, 3), "last_sent": self.last_sent, "reset_counter": self.reset_counter,
                "processing_ms_p50": pick(0.5), "processing_ms_p95": pick(0.95)}
