"""What the autopilot output receives (`AutopilotFix`: an accepted fix with the exposure time of its frame) and the
checks before anything is sent, each refusal a typed reason the node counts and records:

  stale          the frame was exposed longer ago than `max_age_s` (a late fix misleads a moving vehicle's EKF)
  bad_position   its latitude/longitude are not finite or out of range
  bad_covariance its covariance is not finite, symmetric and positive definite (no honest eph can be given)
  no_heartbeat   the autopilot has not been heard within the heartbeat timeout (nobody to send to)
  no_origin      ArduPilot's local frame has no origin yet (neither its GPS_GLOBAL_ORIGIN nor the parameter's)
  jump           the fix lies farther from the last sent one than the gate allows; held until `confirmations`
                 fixes agree at the new place, then sent as a position reset (ODOMETRY's reset_counter)
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from vpr_node.core.autopilot.units import horizontal_sigma_m
from vpr_node.core.maps.geo import haversine_m

REASONS = ("stale", "bad_position", "bad_covariance", "no_heartbeat", "no_origin", "jump")


@dataclasses.dataclass
class AutopilotFix:
    stamp_ns: int  # the frame's exposure (its header stamp), the node's clock
    lat: float
    lon: float
    cov_en: np.ndarray  # east/north covariance, m^2
    heading_deg: float = math.nan  # the camera's 'up', clockwise from north
    heading_sigma_deg: float = math.nan
    confidence: float = math.nan  # calibrated probability of being within 25 m
    trouble: bool = False  # the verifier reported trouble (its output is UNHEALTHY for PX4)
    frame_id: str = ""


def check_fix(fix: AutopilotFix, now_ns: int, max_age_s: float) -> str:
    """'' or why the fix cannot be sent at all (stale, bad_covariance)."""
    if not (math.isfinite(fix.lat) and math.isfinite(fix.lon)) or abs(fix.lat) > 90 or abs(fix.lon) > 180:
        return "bad_position"
    if (now_ns - fix.stamp_ns) / 1e9 > max_age_s:
        return "stale"
    try:
        horizontal_sigma_m(fix.cov_en)
    except ValueError:
        return "bad_covariance"
    return ""


class JumpGate:
    """Refuses a fix farther from the last sent fix than `gate_m` + `speed_mps` x the time between them (a vehicle
    cannot be there), until `confirmations` consecutive fixes agree (within the gate of each other) at the new place:
    then the new place is accepted as a reset. One wrong fix never moves the vehicle's estimate."""

    def __init__(self, gate_m: float, speed_mps: float, confirmations: int):
        self.gate_m, self.speed_mps, self.confirmations = float(gate_m), float(speed_mps), int(confirmations)
        self.last: AutopilotFix | None = None
        self.pending: list[AutopilotFix] = []

    def _allowed(self, a: AutopilotFix, b: AutopilotFix) -> float:
        return self.gate_m + self.speed_mps * abs(b.stamp_ns - a.stamp_ns) / 1e9

    def offer(self, fix: AutopilotFix) -> str:
        """'' (send it), 'reset' (send it as a position reset: the jump is confirmed) or 'jump' (hold it)."""
        if self.last is None:
            self.last = fix
            return ""
        if haversine_m(self.last.lat, self.last.lon, fix.lat, fix.lon) <= self._allowed(self.last, fix):
            self.pending = []
            self.last = fix
            return ""
        if self.pending and haversine_m(self.pending[-1].lat, self.pending[-1].lon, fix.lat, fix.lon) > \
                self._allowed(self.pending[-1], fix):
            self.pending = []  # disagrees with the held ones too: start over
        self.pending.append(fix)
        if len(self.pending) >= self.confirmations:
            self.pending = []
            self.last = fix
            return "reset"
        return "jump"
