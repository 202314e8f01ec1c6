"""Domain objects passed between the core and the ROS layer."""
from __future__ import annotations

import dataclasses
import uuid
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

    @staticmethod
    def new_uuid() -> str:
        return str(uuid.uuid4())
