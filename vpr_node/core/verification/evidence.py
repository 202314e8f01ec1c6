"""Evidence about a fix beyond its inlier count, for the calibrated confidence (confidence.py):

- spread: how the inliers cover the frame: the area of their convex hull over the frame's, the share of a 4x4
  grid's cells holding one, and how deep the frame's centre (the fixed point) lies inside their hull (negative:
  outside, the fix extrapolated). A look-alike patch or a repeated texture matches in one part of the frame: a clean
  homography whose inliers sit in one patch, away from the centre;
- rival: the inliers of the best valid candidate elsewhere (its fix farther than agree_m from the chosen one) over
  the chosen one's: a second, distant, valid place is a warning (`ambiguous` when it is nearly as good);
- anisotropy: log of the ratio of the homography's singular values at the frame's centre (a camera over the
  ground stretches little; a fit through a narrow cluster of points is ill-conditioned);
- prior: the Mahalanobis distance of the fix from the drone's position prior under both covariances, where the
  drone has one (NaN where it has none).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from vpr_node.core.maps.geo import metres_per_degree
from vpr_node.core.verification import geometry

GRID = 4


def inlier_spread(src: np.ndarray, frame_size: tuple[int, int]) -> tuple[float, float, float]:
    """(convex hull area / frame area, share of GRID x GRID frame cells with an inlier, signed distance of the frame's
    centre from the hull's boundary over the frame's short side: > 0 inside) of inlier frame points."""
    w, h = frame_size
    if len(src) < 3:
        return 0.0, 0.0, -1.0
    pts = np.asarray(src, np.float32)
    hull_pts = cv2.convexHull(pts)
    hull = float(cv2.contourArea(hull_pts)) / max(1.0, w * h)
    cx = np.clip((pts[:, 0] / w * GRID).astype(int), 0, GRID - 1)
    cy = np.clip((pts[:, 1] / h * GRID).astype(int), 0, GRID - 1)
    cells = len(set(zip(cx.tolist(), cy.tolist(), strict=True))) / GRID ** 2
    depth = float(cv2.pointPolygonTest(hull_pts, (w / 2, h / 2), True)) / max(1.0, min(w, h))
    return min(1.0, hull), cells, depth


def rival_ratio(valid, agree_m: float) -> float:
    """Inliers of the best valid candidate whose fix lies farther than agree_m from the first's, over the first's
    (0 without one). `valid`: valid VerifiedCandidates, most inliers first."""
    from vpr_node.core.maps.geo import haversine_m

    if len(valid) < 2:
        return 0.0
    best = valid[0]
    far = [v.inliers for v in valid[1:] if haversine_m(best.fix_lat, best.fix_lon, v.fix_lat, v.fix_lon) > agree_m]
    return max(far, default=0) / max(1, best.inliers)


def anisotropy(H: np.ndarray, frame_size: tuple[int, int]) -> float:
    """log(largest / smallest singular value) of the homography's Jacobian at the frame's centre."""
    w, h = frame_size
    c = geometry.project(H, [[w / 2, h / 2]])[0]
    jx = geometry.project(H, [[w / 2 + 1, h / 2]])[0] - c
    jy = geometry.project(H, [[w / 2, h / 2 + 1]])[0] - c
    sv = np.linalg.svd(np.stack([jx, jy], 1), compute_uv=False)
    return float(math.log(max(sv[0], 1e-9) / max(sv[1], 1e-9)))


def prior_distance(lat: float, lon: float, cov_en, prior_lat: float, prior_lon: float, prior_sigma_m: float) -> float:
    """Mahalanobis distance of a fix from a position prior (1-sigma prior_sigma_m per axis) under both covariances;
    NaN without a prior."""
    if not (math.isfinite(prior_lat) and math.isfinite(prior_lon) and math.isfinite(prior_sigma_m)):
        return math.nan
    m_lat, m_lon = metres_per_degree(prior_lat)
    d = np.array([(lon - prior_lon) * m_lon, (lat - prior_lat) * m_lat])
    cov = np.asarray(cov_en, np.float64) + np.eye(2) * prior_sigma_m ** 2
    return float(math.sqrt(max(0.0, d @ np.linalg.solve(cov, d))))
