"""MAVLink TIMESYNC: the autopilot's clock is not the companion's. Both sides ask (tc1 = 0, ts1 = the asker's time
in ns) and answer (tc1 = the answerer's time, ts1 echoed). This side answers the autopilot's requests, so PX4 and
ArduPilot can map the companion's timestamps (GLOBAL_POSITION_SENSOR.time_usec, ODOMETRY.time_usec) onto their own
clock, and asks itself, to know the offset and round trip (diagnostics): the estimate keeps the sample of the
shortest round trip among the recent ones. Without replies the autopilot stamps by arrival and uses
`processing_time` (PX4) or its own jitter correction (ArduPilot)."""
from __future__ import annotations

import collections


class TimeSync:
    def __init__(self, window: int = 16):
        self.samples: collections.deque = collections.deque(maxlen=window)  # (rtt_ns, offset_ns)
        self.answered = 0

    def request(self, now_ns: int) -> tuple[int, int]:
        """(tc1, ts1) of a request."""
        return 0, int(now_ns)

    def on_timesync(self, tc1: int, ts1: int, now_ns: int) -> tuple[int, int] | None:
        """A TIMESYNC heard: a request -> the (tc1, ts1) to answer with; a reply to ours -> None (sample kept)."""
        if tc1 == 0:
            self.answered += 1
            return int(now_ns), int(ts1)
        rtt = now_ns - ts1
        if 0 <= rtt < 10**9:  # a reply to one of ours (not a stale or foreign one)
            self.samples.append((rtt, int(tc1) - (int(ts1) + int(now_ns)) // 2))
        return None

    @property
    def synced(self) -> bool:
        return bool(self.samples)

    def offset_ns(self) -> int | None:
        """autopilot clock - companion clock (ns), from the sample with the shortest round trip."""
        return min(self.samples)[1] if self.samples else None

    def rtt_ms(self) -> float | None:
        return min(self.samples)[0] / 1e6 if self.samples else None

    def to_autopilot_us(self, companion_ns: int) -> int | None:
        off = self.offset_ns()
        return None if off is None else (int(companion_ns) + off) // 1000
