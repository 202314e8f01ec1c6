"""Synthetic descriptors and index folders for scale benchmarks: sizes no map here reaches (node memory, search
latency, index types), never for recall in metres."""
from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np

from vpr_node.core.backbones.identity import BackboneIdentity
from vpr_node.core.index.folder import write_index
from vpr_node.core.maps.geo import metres_per_degree
from vpr_node.core.maps.tiles import TileRecord, read_tile_table


def clustered_descriptors(n: int, d: int, n_queries: int, seed: int = 0):
    """Unit descriptors in many tight clusters (like views of places); queries are noisy database points."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(8, n // 20), d)).astype(np.float32)
    x = centres[rng.integers(len(centres), size=n)] + 0.35 * rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[rng.integers(n, size=n_queries)] + 0.15 * rng.standard_normal((n_queries, d)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return x, q


def grid_tiles(n_tiles: int, lat0: float, lon0: float, ground_m: float = 60.0, zoom: int = 18) -> list[TileRecord]:
    """n_tiles half-overlapping square tiles of `ground_m` on a grid going south and east of (lat0, lon0)."""
    m_lat, m_lon = metres_per_degree(lat0)
    side = int(np.ceil(np.sqrt(n_tiles)))
    dlat, dlon = ground_m / 2 / m_lat, ground_m / 2 / m_lon
    records = []
    for i in range(n_tiles):
        r, c = divmod(i, side)
        lat, lon = lat0 - r * dlat, lon0 + c * dlon
        records.append(TileRecord(f"synthetic_{i:07d}", zoom, lat, lon, lat + dlat, lat - dlat, lon - dlon,
                                  lon + dlon, "synthetic", 0, 0, 0, 0, "", ground_m))
    return records


def synthetic_index(like, n: int, out, memory_budget_mib: float, seed: int = 0) -> dict:
    """An index folder of n synthetic clustered unit vectors (clustered_descriptors) carrying the
    backbone identity of the real index `like` (label, weights file and hash, preprocessing, dimension, rotations),
    so the node configures and activates against it: node memory and search latency at sizes no map here reaches.
    Tiles continue the real map's grid eastwards, one per `rotations` vectors; retrieved places are meaningless."""
    like, out = pathlib.Path(like), pathlib.Path(out)
    m = json.loads((like / "manifest.json").read_text())
    rot = int(m.get("rotations") or 1)
    proto = read_tile_table(like / "tiles.csv")[0]
    n_tiles = -(-n // rot)
    records = grid_tiles(n_tiles, proto.lat, proto.lon, proto.ground_m or 60.0, proto.zoom)
    x = clustered_descriptors(n, int(m["descriptor_dim"]), 1, seed)[0]
    out.mkdir(parents=True, exist_ok=True)
    if m.get("weights_file"):
        shutil.copy(like / m["weights_file"], out / m["weights_file"])
    entries = np.minimum(np.arange(n) // rot, n_tiles - 1).astype(np.int32)
    return write_index(out, x, entries, records, BackboneIdentity.from_manifest(m), "auto",
                       {"memory_budget_mib": memory_budget_mib},
                       extra={"rotations": rot, "weights_file": m.get("weights_file"), "synthetic_like": str(like)})
