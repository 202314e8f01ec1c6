"""Narrowing a deep candidate list with a second descriptor: retrieve `deep_k` (50-100) tiles with the node's backbone,
score the same tiles with another backbone's index over the same tiles, keep the k with the smallest mean distance
(squared L2 between unit vectors = 2 - 2 cos, so the mean ranks by the sum of cosines and stays in 0..4, the scale
the node's warn_distance and the re-ranker read). Two descriptors that fail on different frames narrow a deep list
better than either ranks it; a weaker second descriptor drags the first down (BENCHMARKS.md "Real drone crops":
with GeM it helps on the real crops and hurts on rendered changed ground).

`prepare-mission --narrow-backbone NAME` builds the second index in the mission folder (`narrow/`); the node's
`narrow_k` parameter turns it on (load_strategy -> NarrowingStrategy)."""
from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np

from vpr_node.core.errors import ConfigurationError
from vpr_node.core.index.loaded import DescriptorIndex
from vpr_node.core.types import Candidate

MISSING_DISTANCE = 4.0  # the largest squared L2 between unit vectors: a tile the second index lacks ranks last
NARROW_DIR = "narrow"  # the second index inside a mission folder


def tile_rows(index: DescriptorIndex) -> dict[str, int]:
    """Tile name -> tile row of an index (what `narrow` restricts the second index's search to)."""
    return {str(t): i for i, t in enumerate(index.tile_array("tile_id"))}


def narrow(candidates: list[Candidate], second: DescriptorIndex, descriptor: np.ndarray, k: int,
           row_of: dict[str, int] | None = None) -> list[Candidate]:
    """The k of `candidates` (ranked by the first descriptor) with the smallest mean distance of both descriptors;
    ranks renumbered, distances the means. `row_of`: the second index's `tile_rows` (computed when not given; a
    caller narrowing every frame keeps it)."""
    if not candidates:
        return []
    row_of = tile_rows(second) if row_of is None else row_of
    rows = np.array(sorted({row_of[c.tile.name] for c in candidates if c.tile.name in row_of}), np.int64)
    other = {c.tile.name: c.distance for c in second.search(descriptor, len(rows), rows)} if len(rows) else {}
    mean = {c.tile.name: (c.distance + other.get(c.tile.name, MISSING_DISTANCE)) / 2 for c in candidates}
    fused = sorted(candidates, key=lambda c: mean[c.tile.name])
    return [dataclasses.replace(c, rank=i, distance=mean[c.tile.name]) for i, c in enumerate(fused[:k])]


def narrow_backbone(index_dir) -> str | None:
    """The backbone of the mission folder's second index, or None when it has none."""
    path = pathlib.Path(index_dir) / NARROW_DIR / "manifest.json"
    return json.loads(path.read_text())["backbone_label"] if path.is_file() else None


class NarrowingStrategy:
    """The node's strategy and a second one over the same tiles, as one strategy: embed_query gives both descriptors
    (concatenated), retrieve_topk takes the first's top `deep_k` (within the priors' allowed tiles) and narrows them
    to k by the second. Label, index, backbone and descriptor dimension are the first's (what VprResult reports)."""

    def __init__(self, first, second, deep_k: int):
        a, b = first.index.tile_array("tile_id"), second.index.tile_array("tile_id")
        if len(a) != len(b) or not np.array_equal(a.astype(str), b.astype(str)):
            raise ConfigurationError(f"the narrowing index {second.index.root} does not hold the tiles of "
                                     f"{first.index.root}; run prepare-mission again with --narrow-backbone",
                                     parameter="narrow_k")
        self.first, self.second, self.deep_k = first, second, int(deep_k)
        self.label, self.index, self.backbone = first.label, first.index, first.backbone
        self.runtime, self.preprocessor = first.runtime, first.preprocessor
        self._second_rows = tile_rows(second.index)  # once, not on every frame

    @property
    def descriptor_dim(self) -> int:
        return self.first.descriptor_dim

    def embed_query(self, image: np.ndarray) -> np.ndarray:
        return np.concatenate([self.first.embed_query(image), self.second.embed_query(image)])

    def retrieve_topk(self, descriptor: np.ndarray, k: int, allowed_tiles: np.ndarray | None = None) -> list[Candidate]:
        d = self.first.descriptor_dim
        deep = self.first.retrieve_topk(descriptor[:d], max(k, self.deep_k), allowed_tiles)
        return narrow(deep, self.second.index, descriptor[d:], k, self._second_rows)

    def warm_up(self) -> None:
        self.first.warm_up()
        self.second.warm_up()

    def close(self) -> None:
        self.first.close()
        self.second.close()
