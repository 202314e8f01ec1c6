"""Prior samples: heading from an orientation quaternion, and a buffer of timed samples per prior kind matched
to a frame by stamp."""
from __future__ import annotations

import bisect
import dataclasses
import math
import threading
import time

import numpy as np

from vpr_node.core.errors import VprPriorError

HEADING, ALTITUDE, POSITION = "heading", "altitude", "position"
KINDS = (HEADING, ALTITUDE, POSITION)


def yaw_from_quaternion(x: float, y: float, z: float, w: float) -> float:
    """Yaw (rotation about the vertical axis, radians) of a unit quaternion; typed error when malformed."""
    q = np.array([x, y, z, w], np.float64)
    if not np.all(np.isfinite(q)):
        raise VprPriorError(f"orientation quaternion has non-finite components {q.tolist()}", prior=HEADING,
                            reason="not_finite")
    with np.errstate(over="ignore", invalid="ignore"):
        n = float(np.linalg.norm(q))
    if not math.isfinite(n):
        raise VprPriorError(f"orientation quaternion {q.tolist()} is too large to be an orientation", prior=HEADING,
                            reason="quaternion_not_unit")
    if n < 1e-6:
        raise VprPriorError("orientation quaternion has zero norm", prior=HEADING, reason="quaternion_not_unit")
    x, y, z, w = q / n
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def heading_from_yaw(yaw_rad: float, frame: str = "enu") -> float:
    """Heading in degrees clockwise from north, [0, 360), from a yaw in an ENU or NED world frame."""
    if frame == "enu":  # yaw counter-clockwise from east
        heading = (90.0 - math.degrees(yaw_rad)) % 360.0
    elif frame == "ned":  # yaw clockwise from north
        heading = math.degrees(yaw_rad) % 360.0
    else:
        raise VprPriorError(f"unknown world frame {frame!r}; use 'enu' (REP 103) or 'ned' (REP 105 aerial)",
                            prior=HEADING)
    return 0.0 if heading >= 360.0 else heading  # -1e-17 % 360 rounds to 360.0


@dataclasses.dataclass(frozen=True)
class Sample:
    stamp_ns: int
    value: tuple  # heading: (deg,); altitude: (metres above ground,); position: (lat, lon, sigma_m)


class PriorBuffer:
    """Recent samples per prior kind, matched to a frame by stamp (nearest within max_skew)."""

    def __init__(self, max_skew_s: float = 0.2, keep: int = 400):
        self.max_skew_ns = int(max_skew_s * 1e9)
        self.keep = keep
        self._lock = threading.Condition()
        self._stamps = {k: [] for k in KINDS}
        self._values = {k: [] for k in KINDS}

    def add(self, kind: str, stamp_ns: int, *value: float) -> None:
        with self._lock:
            stamps, values = self._stamps[kind], self._values[kind]
            i = bisect.bisect_right(stamps, stamp_ns)
            stamps.insert(i, int(stamp_ns))
            values.insert(i, tuple(float(v) for v in value))
            if len(stamps) > self.keep:
                del stamps[0], values[0]
            self._lock.notify_all()

    def wait_until_covered(self, kinds, stamp_ns: int, timeout_s: float) -> bool:
        """Wait (at most timeout_s) until every kind has a sample stamped at or after stamp_ns: a frame and the
        attitude/altitude/position samples of its instant are separate messages, and the frame can arrive first.
        Returns whether they all did."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._lock:
            while True:
                if all(self._stamps[k] and self._stamps[k][-1] >= stamp_ns for k in kinds):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)

    def add_error(self, kind: str, stamp_ns: int) -> None:
        """A malformed sample at this stamp: frames matched to it are served without the prior ("error")."""
        self.add(kind, stamp_ns)

    def nearest(self, kind: str, stamp_ns: int, max_skew_ns: int | None = None) -> tuple[Sample | None, str]:
        """(sample, "ok") or (None, "absent" | "stale" | "error")."""
        skew = self.max_skew_ns if max_skew_ns is None else max_skew_ns
        with self._lock:
            stamps = self._stamps[kind]
            if not stamps:
                return None, "absent"
            i = bisect.bisect_left(stamps, stamp_ns)
            j = min((k for k in (i - 1, i) if 0 <= k < len(stamps)), key=lambda k: abs(stamps[k] - stamp_ns))
            if abs(stamps[j] - stamp_ns) > skew:
                return None, "stale"
            if not self._values[kind][j]:
                return None, "error"
            return Sample(stamps[j], self._values[kind][j]), "ok"
