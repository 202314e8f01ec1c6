"""What every matcher gives the verifier: local features of an image (`LocalFeatures`) and the correspondences
between two sets of them (`Matcher.match`). A matcher says where its map side comes from (`map_source`): the index
folder's tile images (classic detectors, rotation invariant) or windows of map features prepared before flight at
one ground resolution (learned matchers, which also need the frame turned north-up: `upright`)."""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class LocalFeatures:
    """Keypoint positions (N, 2) in the image they came from, their descriptors (N, D), that image's size, and the
    detector's score of each keypoint (N,) where it has one."""

    xy: np.ndarray
    descriptors: np.ndarray
    size: tuple[int, int]  # (width, height)
    scores: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.xy)

    @property
    def nbytes(self) -> int:
        return int(self.xy.nbytes + self.descriptors.nbytes + (0 if self.scores is None else self.scores.nbytes))

    def take(self, keep) -> "LocalFeatures":
        keep = np.asarray(keep)
        return LocalFeatures(self.xy[keep], self.descriptors[keep], self.size,
                             None if self.scores is None else self.scores[keep])


def no_matches() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(0, np.int64), np.zeros(0, np.int64)


def mutual_nearest(d0: np.ndarray, d1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mutual nearest neighbours by cosine similarity (unit descriptors)."""
    if not len(d0) or not len(d1):
        return no_matches()
    sim = d0.astype(np.float32) @ d1.astype(np.float32).T
    m0, m1 = sim.argmax(1), sim.argmax(0)
    i0 = np.arange(len(m0))
    keep = m1[m0] == i0
    return i0[keep].astype(np.int64), m0[keep].astype(np.int64)


class Matcher:
    """A local-feature extractor and its matcher. Subclasses set the class attributes and implement both methods."""

    name = "base"
    version = 1  # bumped when what it extracts or matches changes: map features made by another version are refused
    map_source = "tiles"  # "tiles": the index's tile images; "windows": map features prepared before flight
    upright = False  # True: the frame must be turned north-up (within about 45 degrees) before extraction
    runtime = "opencv"

    def extract(self, rgb: np.ndarray) -> LocalFeatures:
        raise NotImplementedError

    def match(self, query: LocalFeatures, ref: LocalFeatures) -> tuple[np.ndarray, np.ndarray]:
        """(query point indices, reference point indices) of the correspondences."""
        raise NotImplementedError

    def identity(self) -> dict:
        """What map features must have been made with to be matched by this matcher."""
        return {"matcher": self.name, "version": self.version}
