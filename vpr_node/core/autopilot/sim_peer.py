"""A simulated autopilot on the network: what the autopilot output is tested against (no PX4 or ArduPilot SITL
installs here). It listens (pymavlink `udpin`), sends its HEARTBEAT as PX4 or ArduPilot and a TIMESYNC request
once a second, answers TIMESYNC with its own clock (time since its boot, not the companion's), keeps an EKF origin
(given, or set by SET_GPS_GLOBAL_ORIGIN) and sends it as GPS_GLOBAL_ORIGIN when asked (MAV_CMD_REQUEST_MESSAGE
49), and decodes and keeps every message it receives with its arrival time. Used by the tests and by the demo."""
from __future__ import annotations

import os
import threading
import time

from vpr_node.core.autopilot.link import AUTOPILOTS, DIALECT

os.environ.setdefault("MAVLINK20", "1")


class SimulatedAutopilot:
    def __init__(self, kind: str = "px4", port: int = 14540, host: str = "127.0.0.1", system_id: int = 1,
                 origin: tuple[float, float, float] | None = None, heartbeat: bool = True):
        from pymavlink import mavutil

        self.kind, self.origin, self.beating = kind, origin, heartbeat
        self.conn = mavutil.mavlink_connection(f"udpin:{host}:{port}", source_system=system_id, source_component=1,
                                               dialect=DIALECT)
        self.boot_ns = time.monotonic_ns()
        self.received: list = []  # (arrival time.time_ns(), message)
        self.timesync_rtt_ns: int | None = None
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sim-autopilot", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)
        self.conn.close()

    def clock_ns(self) -> int:
        return time.monotonic_ns() - self.boot_ns

    def messages(self, kind: str) -> list:
        with self.lock:
            return [m for _, m in self.received if m.get_type() == kind]

    def arrivals(self, kind: str) -> list:
        with self.lock:
            return [(t, m) for t, m in self.received if m.get_type() == kind]

    def _send(self, msg) -> None:
        if self.conn.clients:  # udpin: replies go to whoever has spoken to it
            self.conn.mav.send(msg)

    def _loop(self) -> None:
        mav = self.conn.mav
        next_beat = 0.0
        while not self._stop.is_set():
            if self.beating and time.monotonic() >= next_beat:
                next_beat = time.monotonic() + 1.0
                self._send(mav.heartbeat_encode(2, AUTOPILOTS[self.kind], 0, 0, 4))  # a quadrotor, active
                self._send(mav.timesync_encode(0, self.clock_ns()))  # as PX4 and ArduPilot ask their companions
            msg = self.conn.recv_match(blocking=True, timeout=0.05)
            if msg is None or msg.get_type() == "BAD_DATA":
                continue
            with self.lock:
                self.received.append((time.time_ns(), msg))
            kind = msg.get_type()
            if kind == "TIMESYNC" and msg.tc1 == 0:
                self._send(mav.timesync_encode(self.clock_ns(), msg.ts1))
            elif kind == "TIMESYNC":
                self.timesync_rtt_ns = self.clock_ns() - msg.ts1  # the companion answered ours
            elif kind == "SET_GPS_GLOBAL_ORIGIN":
                self.origin = (msg.latitude / 1e7, msg.longitude / 1e7, msg.altitude / 1000.0)
                self._send_origin()
            elif kind in ("COMMAND_LONG", "COMMAND_INT") and msg.command == 512 and int(msg.param1) == 49:
                self._send_origin()

    def _send_origin(self) -> None:
        if self.origin is not None:
            lat, lon, alt = self.origin
            self._send(self.conn.mav.gps_global_origin_encode(int(round(lat * 1e7)), int(round(lon * 1e7)),
                                                              int(round(alt * 1000)), self.clock_ns() // 1000))
