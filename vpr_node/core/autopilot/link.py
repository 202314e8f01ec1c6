"""The MAVLink link to the autopilot (pymavlink), over the connection strings autopilot users already use:
`udpout:HOST:PORT` (send to the autopilot; replies come back on the same socket), `udpin:HOST:PORT` (listen),
`tcp:HOST:PORT`, or a serial port `/dev/ttyX:BAUD`.

It sends the companion's HEARTBEAT every second, answers and asks TIMESYNC, learns the autopilot from its
HEARTBEAT (system id, PX4 or ArduPilot) and the EKF origin from GPS_GLOBAL_ORIGIN (asking for it with
MAV_CMD_REQUEST_MESSAGE), and tells when the autopilot falls silent (`heartbeat_timeout_s`: `lost`, counted) and
hears it again (`recovered`, counted). A socket or serial error closes the connection; the next poll opens it
again after a back-off (`reconnects`, counted). Thread-safe: sends are serialised; one thread polls."""
from __future__ import annotations

import collections
import os
import threading
import time

from vpr_node.core.autopilot.timesync import TimeSync
from vpr_node.core.errors import ConfigurationError

os.environ.setdefault("MAVLINK20", "1")  # GLOBAL_POSITION_SENSOR (id 296) and ODOMETRY (331) are MAVLink 2 only
DIALECT = "ardupilotmega"  # common + ArduPilot's: every message either autopilot speaks
AUTOPILOTS = {"px4": 12, "ardupilot": 3}  # MAV_AUTOPILOT_PX4, MAV_AUTOPILOT_ARDUPILOTMEGA


def parse_connection(conn: str) -> tuple[str, int | None]:
    """(pymavlink device, baud): `/dev/ttyX:BAUD` (or `,BAUD`) is a serial port, the rest go to pymavlink as they
    are; anything else is a ConfigurationError saying the accepted forms."""
    conn = conn.strip()
    if conn.startswith(("/dev/", "COM")):
        dev, _, baud = conn.replace(",", ":").partition(":")
        if not baud.isdigit():
            raise ConfigurationError(f"serial connection {conn!r} needs a baud rate: /dev/ttyX:BAUD",
                                     parameter="connection")
        return dev, int(baud)
    scheme, _, rest = conn.partition(":")
    host, _, port = rest.rpartition(":")
    if scheme not in ("udpout", "udpin", "udp", "tcp", "tcpin") or not host or not port.isdigit():
        raise ConfigurationError(f"connection {conn!r}: use udpout:HOST:PORT, udpin:HOST:PORT, tcp:HOST:PORT or "
                                 f"/dev/ttyX:BAUD", parameter="connection")
    return conn, None


class MavlinkLink:
    def __init__(self, connection: str, system_id: int, component_id: int, heartbeat_timeout_s: float = 3.0,
                 wall_ns=time.monotonic_ns, epoch_ns=time.time_ns):
        self.device, self.baud = parse_connection(connection)
        self.connection = connection
        self.system_id, self.component_id = int(system_id), int(component_id)
        self.heartbeat_timeout_ns = int(heartbeat_timeout_s * 1e9)
        self.wall_ns, self.epoch_ns = wall_ns, epoch_ns
        self.conn = None
        self.lock = threading.Lock()
        self.timesync = TimeSync()
        self.counts: collections.Counter = collections.Counter()
        self.autopilot: dict | None = None  # sysid, compid, autopilot, type of the autopilot heard
        self.origin: tuple[float, float, float] | None = None
        self.last_heartbeat_ns: int | None = None
        self.state = "closed"
        self._next_beat = self._next_open = 0
        self._origin_asked = 0

    # --- connection --------------------------------------------------------------------------------------
    def open(self) -> bool:
        from pymavlink import mavutil

        try:
            kw = {"baud": self.baud} if self.baud else {}
            self.conn = mavutil.mavlink_connection(self.device, source_system=self.system_id,
                                                   source_component=self.component_id, dialect=DIALECT, **kw)
        except (OSError, ValueError) as exc:
            self.counts["open_errors"] += 1
            self.conn, self.state = None, f"closed: {exc}"
            return False
        self.state = "waiting"
        return True

    def close(self) -> None:
        with self.lock:
            if self.conn is not None:
                try:
                    self.conn.close()
                except OSError:
                    pass
            self.conn, self.state = None, "closed"

    def _broken(self, exc: Exception) -> None:
        self.counts["link_errors"] += 1
        self.close()
        self.state = f"reconnecting: {type(exc).__name__}"
        self._next_open = self.wall_ns() + 10**9

    # --- state -------------------------------------------------------------------------------------------
    @property
    def heard(self) -> bool:
        """The autopilot's heartbeat is recent."""
        return self.last_heartbeat_ns is not None and self.wall_ns() - self.last_heartbeat_ns <= \
            self.heartbeat_timeout_ns

    @property
    def target_system(self) -> int:
        return self.autopilot["sysid"] if self.autopilot else 0

    # --- I/O ---------------------------------------------------------------------------------------------
    def send(self, msg) -> bool:
        """Encode and write a message built by `self.mav`; False (counted) when the link is down."""
        with self.lock:
            if self.conn is None:
                self.counts["send_while_closed"] += 1
                return False
            try:
                self.conn.mav.send(msg)
                return True
            except OSError as exc:
                error = exc
        self._broken(error)
        return False

    @property
    def mav(self):
        """The encoder (pymavlink MAVLink of this connection: sequence numbers, ids)."""
        return self.conn.mav if self.conn is not None else None

    def poll(self, timeout_s: float = 0.05) -> list:
        """Read what has arrived (handling heartbeats, TIMESYNC and the origin), send what is due; reopen a broken
        connection after its back-off. Returns the messages read."""
        now = self.wall_ns()
        if self.conn is None:
            if now >= self._next_open:
                if self.open() and self.counts["opened"]:
                    self.counts["reconnects"] += 1
                self.counts["opened"] += self.conn is not None
                self._next_open = now + 10**9
            if self.conn is None:
                time.sleep(timeout_s)
                return []
        got = []
        try:
            msg = self.conn.recv_match(blocking=True, timeout=timeout_s)
            while msg is not None:
                got.append(msg)
                self._handle(msg)
                msg = self.conn.recv_match(blocking=False)
        except (OSError, ValueError) as exc:
            self._broken(exc)
            return got
        self._tick()
        return got

    def _handle(self, msg) -> None:
        kind = msg.get_type()
        if kind == "HEARTBEAT":
            if msg.autopilot == 8 or msg.get_srcSystem() == self.system_id and \
                    msg.get_srcComponent() == self.component_id:
                return  # another companion, a GCS, or our own echo
            if self.last_heartbeat_ns is not None and not self.heard:
                self.counts["recovered"] += 1
            self.last_heartbeat_ns = self.wall_ns()
            self.autopilot = {"sysid": msg.get_srcSystem(), "compid": msg.get_srcComponent(),
                              "autopilot": int(msg.autopilot), "type": int(msg.type)}
            self.state = "connected"
        elif kind == "TIMESYNC":
            answer = self.timesync.on_timesync(int(msg.tc1), int(msg.ts1), self.wall_ns())
            if answer is not None and self.conn is not None:
                self.send(self.conn.mav.timesync_encode(*answer))
        elif kind == "GPS_GLOBAL_ORIGIN":
            self.origin = (msg.latitude / 1e7, msg.longitude / 1e7, msg.altitude / 1000.0)

    def _tick(self) -> None:
        now = self.wall_ns()
        if self.state == "connected" and not self.heard:
            self.state = "lost"
            self.counts["lost"] += 1
        if now >= self._next_beat and self.conn is not None:
            from vpr_node.core.autopilot.encode import heartbeat

            self._next_beat = now + 10**9
            self.send(heartbeat(self.conn.mav))
            if self.conn is not None:
                self.send(self.conn.mav.timesync_encode(*self.timesync.request(now)))

    def request_origin(self) -> None:
        """Ask the autopilot for GPS_GLOBAL_ORIGIN (MAV_CMD_REQUEST_MESSAGE 49)."""
        if self.conn is not None and self.autopilot:
            self.counts["origin_requests"] += 1
            self.send(self.conn.mav.command_long_encode(self.target_system, self.autopilot["compid"], 512, 0, 49,
                                                        0, 0, 0, 0, 0, 0))

    def snapshot(self) -> dict:
        age = (self.wall_ns() - self.last_heartbeat_ns) / 1e9 if self.last_heartbeat_ns else None
        ap = self.autopilot or {}
        name = {v: k for k, v in AUTOPILOTS.items()}.get(ap.get("autopilot"), str(ap.get("autopilot", "")))
        return {"link_state": self.state, "connection": self.connection, "autopilot_heard": name,
                "autopilot_sysid": ap.get("sysid"), "heartbeat_age_s": None if age is None else round(age, 2),
                "timesync_offset_ms": None if self.timesync.offset_ns() is None else
                round(self.timesync.offset_ns() / 1e6, 3), "timesync_rtt_ms": self.timesync.rtt_ms(),
                "timesync_answered": self.timesync.answered, "origin": self.origin, **dict(self.counts)}
