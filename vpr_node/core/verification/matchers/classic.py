"""Classic detectors with no learned weights: OpenCV SIFT (RootSIFT descriptors, exact two nearest neighbours with
FAISS's BLAS search: faster here than a KD-tree FLANN, and exact; BENCHMARKS.md "Verification"), ORB or AKAZE
(binary descriptors, Hamming brute force), Lowe's ratio test. Rotation invariant: they match a frame against the
index folder's tile images as it is."""
from __future__ import annotations

import cv2
import numpy as np

from vpr_node.core.verification.matchers.base import LocalFeatures, Matcher, no_matches

CLASSIC = ("sift", "orb", "akaze")


def to_gray(rgb: np.ndarray) -> np.ndarray:
    return rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


class ClassicMatcher(Matcher):
    map_source = "tiles"
    upright = False
    version = 2  # 2: exact FAISS nearest neighbours instead of FLANN

    def __init__(self, name: str = "sift", max_features: int = 2000, ratio: float = 0.8):
        if name not in CLASSIC:
            raise ValueError(name)
        self.name, self.max_features, self.ratio = name, int(max_features), float(ratio)
        self._bf = None if name == "sift" else cv2.BFMatcher(cv2.NORM_HAMMING)

    def detector(self, max_features: int):
        if self.name == "sift":
            return cv2.SIFT_create(nfeatures=int(max_features))
        if self.name == "orb":
            return cv2.ORB_create(nfeatures=int(max_features), scaleFactor=1.2, nlevels=8, fastThreshold=10)
        return cv2.AKAZE_create(threshold=5e-4)

    def extract(self, rgb: np.ndarray, max_features: int | None = None) -> LocalFeatures:
        """Keypoints and descriptors of an image (SIFT descriptors as RootSIFT: L1-normalised, square-rooted)."""
        gray = to_gray(rgb)
        cap = int(max_features or self.max_features)
        kps, desc = self.detector(cap).detectAndCompute(gray, None)
        size = (gray.shape[1], gray.shape[0])
        if desc is None or not kps:
            dim = 32 if self.name == "orb" else (61 if self.name == "akaze" else 128)
            return LocalFeatures(np.zeros((0, 2), np.float32),
                                 np.zeros((0, dim), np.float32 if self.name == "sift" else np.uint8), size)
        if len(kps) > cap:  # AKAZE has no feature cap of its own: keep the strongest
            keep = np.argsort([-k.response for k in kps])[:cap]
            kps, desc = [kps[i] for i in keep], desc[keep]
        if self.name == "sift":
            desc = np.sqrt(desc / np.maximum(desc.sum(1, keepdims=True), 1e-7)).astype(np.float32)
        return LocalFeatures(np.array([k.pt for k in kps], np.float32), desc, size,
                             np.array([k.response for k in kps], np.float32))

    def match(self, query: LocalFeatures, ref: LocalFeatures) -> tuple[np.ndarray, np.ndarray]:
        """Nearest two neighbours of each query descriptor among the reference's, kept when the nearest is clearly
        nearer (Lowe's ratio test)."""
        if len(query) < 2 or len(ref) < 2:
            return no_matches()
        if self._bf is None:  # float descriptors: exact two nearest neighbours, squared L2
            import faiss

            d2, nn = faiss.knn(np.ascontiguousarray(query.descriptors, np.float32),
                               np.ascontiguousarray(ref.descriptors, np.float32), 2)
            keep = np.flatnonzero(np.sqrt(np.maximum(d2[:, 0], 0)) < self.ratio * np.sqrt(np.maximum(d2[:, 1], 0)))
            return keep.astype(np.int64), nn[keep, 0].astype(np.int64)
        qi, ti = [], []
        for p in self._bf.knnMatch(query.descriptors, ref.descriptors, k=2):
            if len(p) == 2 and p[0].distance < self.ratio * p[1].distance:
                qi.append(p[0].queryIdx)
                ti.append(p[0].trainIdx)
        return np.asarray(qi, np.int64), np.asarray(ti, np.int64)
