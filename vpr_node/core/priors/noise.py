"""Simulated priors (the truth plus noise) for benchmarks and synthesised bags."""
from __future__ import annotations

import dataclasses

from vpr_node.core.maps.geo import metres_per_degree
from vpr_node.core.priors.apply import PriorApplier, PriorConfig, PriorSwitches
from vpr_node.core.priors.samples import ALTITUDE, HEADING, POSITION


@dataclasses.dataclass
class PriorNoise(PriorSwitches):
    """Simulated priors for benchmarks and synthesised bags: the truth of each query plus Gaussian noise
    (heading in degrees, altitude in percent of itself, position in metres per axis, reported as the
    prior's 1-sigma)."""

    heading_sigma_deg: float = 10.0
    altitude_sigma_pct: float = 10.0
    position_sigma_m: float = 200.0
    seed: int = 0

    def label(self) -> str:
        parts = []
        if self.heading:
            parts.append(f"heading +-{self.heading_sigma_deg:g} deg")
        if self.altitude:
            parts.append(f"altitude +-{self.altitude_sigma_pct:g} %")
        if self.position:
            parts.append(f"position +-{self.position_sigma_m:g} m")
        return ", ".join(parts) or "no prior"

    def sample(self, rng, yaw_deg: float, altitude_m: float | None, lat: float, lon: float) -> dict:
        """{kind: value tuple} for one frame (altitude only when the query has one)."""
        out = {}
        if self.heading:
            out[HEADING] = ((yaw_deg + rng.normal(0, self.heading_sigma_deg)) % 360.0,)
        if self.altitude and altitude_m:
            out[ALTITUDE] = (max(1.0, altitude_m * (1 + rng.normal(0, self.altitude_sigma_pct / 100.0))),)
        if self.position:
            m_lat, m_lon = metres_per_degree(lat)
            dn, de = rng.normal(0, self.position_sigma_m, 2)
            out[POSITION] = (lat + dn / m_lat, lon + de / m_lon, self.position_sigma_m)
        return out

    def applier(self, index, camera, **cfg) -> PriorApplier:
        return PriorApplier(PriorConfig(heading=self.heading, altitude=self.altitude, position=self.position,
                                        camera=camera, **cfg), index)
