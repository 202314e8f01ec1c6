"""Narrowing a deep candidate list with a second descriptor: retrieve K_deep (50-100) tiles with the node's backbone,
score the same tiles with another backbone's index over the same tiles, keep the k with the smallest summed distance
(squared L2 between unit vectors = 2 - 2 cos, so the sum ranks by the sum of cosines). Two descriptors that fail on
different frames narrow a deep list better than either ranks it (BENCHMARKS.md "Retrieval on real imagery")."""
from __future__ import annotations

import dataclasses

import numpy as np

from vpr_node.core.index.loaded import DescriptorIndex
from vpr_node.core.types import Candidate

MISSING_DISTANCE = 4.0  # the largest squared L2 between unit vectors: a tile the second index lacks ranks last


def narrow(candidates: list[Candidate], second: DescriptorIndex, descriptor: np.ndarray, k: int) -> list[Candidate]:
    """The k of `candidates` (ranked by the first descriptor) with the smallest summed distance of both descriptors;
    ranks renumbered, distances the sums."""
    if not candidates:
        return []
    row_of = {str(t): i for i, t in enumerate(second.tile_array("tile_id"))}
    rows = np.array(sorted({row_of[c.tile.name] for c in candidates if c.tile.name in row_of}), np.int64)
    other = {c.tile.name: c.distance for c in second.search(descriptor, len(rows), rows)} if len(rows) else {}
    fused = sorted(candidates, key=lambda c: c.distance + other.get(c.tile.name, MISSING_DISTANCE))
    return [dataclasses.replace(c, rank=i, distance=c.distance + other.get(c.tile.name, MISSING_DISTANCE))
            for i, c in enumerate(fused[:k])]
