"""Local features and their matching: OpenCV SIFT (RootSIFT descriptors, exact nearest neighbours with FAISS's BLAS
search: faster here than a KD-tree FLANN, and exact; BENCHMARKS.md "Verification"), ORB or AKAZE (binary
descriptors, Hamming brute force), Lowe's ratio test. Real detectors that need no downloaded weights."""
from __future__ import annotations

import dataclasses

import cv2
import faiss
import numpy as np

from vpr_node.core.errors import ConfigurationError

DETECTORS = ("sift", "orb", "akaze")


@dataclasses.dataclass
class LocalFeatures:
    """Keypoint positions (N, 2) in the image they came from, their descriptors (N, D), and that image's size."""

    xy: np.ndarray
    descriptors: np.ndarray
    size: tuple[int, int]  # (width, height)

    def __len__(self) -> int:
        return len(self.xy)

    @property
    def nbytes(self) -> int:
        return int(self.xy.nbytes + self.descriptors.nbytes)


def make_detector(name: str, max_features: int):
    if name == "sift":
        return cv2.SIFT_create(nfeatures=int(max_features))
    if name == "orb":
        return cv2.ORB_create(nfeatures=int(max_features), scaleFactor=1.2, nlevels=8, fastThreshold=10)
    if name == "akaze":
        return cv2.AKAZE_create(threshold=5e-4)
    raise ConfigurationError(f"unknown local feature detector {name!r}; choose one of {', '.join(DETECTORS)}",
                             parameter="features")


def to_gray(rgb: np.ndarray) -> np.ndarray:
    return rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def extract(gray: np.ndarray, detector, name: str, max_features: int) -> LocalFeatures:
    """Keypoints and descriptors of a grey image (SIFT descriptors as RootSIFT: L1-normalised, square-rooted)."""
    kps, desc = detector.detectAndCompute(gray, None)
    if desc is None or not kps:
        dim = 32 if name == "orb" else (61 if name == "akaze" else 128)
        return LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, dim), np.uint8 if name != "sift" else
                                                                    np.float32), (gray.shape[1], gray.shape[0]))
    if len(kps) > max_features:  # AKAZE has no feature cap of its own: keep the strongest
        keep = np.argsort([-k.response for k in kps])[:max_features]
        kps, desc = [kps[i] for i in keep], desc[keep]
    if name == "sift":
        desc = np.sqrt(desc / np.maximum(desc.sum(1, keepdims=True), 1e-7)).astype(np.float32)
    return LocalFeatures(np.array([k.pt for k in kps], np.float32), desc, (gray.shape[1], gray.shape[0]))


class Matcher:
    """Nearest two neighbours of each query descriptor among a tile's, kept when the nearest is clearly nearer
    (Lowe's ratio test)."""

    def __init__(self, name: str, ratio: float = 0.8):
        self.name, self.ratio = name, float(ratio)
        self._m = None if name == "sift" else cv2.BFMatcher(cv2.NORM_HAMMING)

    def match(self, query: LocalFeatures, tile: LocalFeatures) -> tuple[np.ndarray, np.ndarray]:
        """(query point indices, tile point indices) of the matches that pass the ratio test."""
        if len(query) < 2 or len(tile) < 2:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        if self._m is None:  # float descriptors: exact two nearest neighbours, squared L2
            d2, nn = faiss.knn(np.ascontiguousarray(query.descriptors, np.float32),
                               np.ascontiguousarray(tile.descriptors, np.float32), 2)
            keep = np.flatnonzero(np.sqrt(np.maximum(d2[:, 0], 0)) < self.ratio * np.sqrt(np.maximum(d2[:, 1], 0)))
            return keep.astype(np.int64), nn[keep, 0].astype(np.int64)
        pairs = self._m.knnMatch(query.descriptors, tile.descriptors, k=2)
        qi, ti = [], []
        for p in pairs:
            if len(p) == 2 and p[0].distance < self.ratio * p[1].distance:
                qi.append(p[0].queryIdx)
                ti.append(p[0].trainIdx)
        return np.asarray(qi, np.int64), np.asarray(ti, np.int64)
