"""Domain objects passed between the core and the ROS layer."""
from __future__ import annotations

import dataclasses
from typing import Sequence


@dataclasses.dataclass(frozen=True)
class TileId:
    """A map tile: slippy-map zoom level plus its centre latitude/longitude and a string id."""

    zoom: int
    lat: float
    lon: float
    name: str

    @property
    def label(self) -> str:
        return f"{self.zoom}/{self.lat:.7f}/{self.lon:.7f}"


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One ranked retrieval candidate. Smaller distance = more similar."""

    rank: int
    tile: TileId
    distance: float
    descriptor_dim: int
    backbone_label: str


@dataclasses.dataclass
class VprResult:
    """Result for one nav-camera frame."""

    frame_uuid: str
    frame_id: str
    stamp_ns: int
    retrieved_at_ns: int
    backbone_label: str
    descriptor_dim: int
    candidates: Sequence[Candidate]
    embed_latency_ms: float = 0.0
    search_latency_ms: float = 0.0
    frames_dropped: int = 0
    priors: object | None = None  # priors.PriorState when the node uses priors


def stamp_to_ns(stamp) -> int:
    """A ROS time (builtin_interfaces/Time of rclpy or rosbags: .sec, .nanosec) in nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def candidate_fields(c: Candidate) -> dict:
    """vpr_node/msg/VprCandidate fields of a candidate (one mapping for the node and the bag writer)."""
    return {"rank": int(c.rank), "tile_id": c.tile.name, "zoom": int(c.tile.zoom), "latitude": float(c.tile.lat),
            "longitude": float(c.tile.lon), "distance": float(c.distance), "descriptor_dim": int(c.descriptor_dim)}


def result_fields(result: VprResult, index_id: str = "") -> dict:
    """vpr_node/msg/VprResult fields other than header, retrieved_at and candidates."""
    p = result.priors
    nan = float("nan")
    return {"frame_uuid": result.frame_uuid, "backbone_label": result.backbone_label,
            "descriptor_dim": int(result.descriptor_dim), "embed_latency_ms": float(result.embed_latency_ms),
            "search_latency_ms": float(result.search_latency_ms), "frames_dropped": int(result.frames_dropped),
            "index_id": index_id,
            "prior_state": p.label() if p else "heading:off altitude:off position:off",
            "heading_applied": bool(p and p.applied("heading")), "heading_deg": float(p.heading_deg if p else nan),
            "altitude_applied": bool(p and p.applied("altitude")), "altitude_m": float(p.altitude_m if p else nan),
            "tile_scale_m": float(p.tile_scale_m if p else nan),
            "position_applied": bool(p and p.applied("position")),
            "position_sigma_m": float(p.position_sigma_m if p else nan),
            "position_latitude": float(p.position_lat if p else nan),
            "position_longitude": float(p.position_lon if p else nan),
            "tiles_searched": int(p.candidates_searched if p else 0)}
