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
  drone has one (`against_prior`), and what agreeing with it is worth (`prior_log_ratio`): the log of how much
  likelier the fix's place is if the fix is right (the truth lies around the prior, as its covariance says, on the
  map) than if it is wrong (a wrong fix lands anywhere on the map the gate lets through, `MapCoverage`). The
  calibrated odds are multiplied by it: a fix that lands where an independent prior put the drone is worth more
  than one that lands anywhere, at most log(gate area / prior density), about +2 logits with a 4-sigma gate on a
  map larger than the gate, and little on a map the prior covers; the calibration's validation views have no prior,
  so this is the one place the prior enters the confidence.
"""
from __future__ import annotations

import dataclasses
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


@dataclasses.dataclass(frozen=True)
class PriorCheck:
    """A fix against the drone's position prior: their Mahalanobis distance under both covariances (`cov_en`, the
    fix's and the prior's summed, east/north m^2)."""

    distance: float
    cov_en: np.ndarray


def against_prior(lat: float, lon: float, cov_en, prior_lat: float, prior_lon: float,
                  prior_sigma_m: float) -> PriorCheck | None:
    """A fix against a position prior (1-sigma prior_sigma_m per axis); None without a prior."""
    if not (math.isfinite(prior_lat) and math.isfinite(prior_lon) and math.isfinite(prior_sigma_m)):
        return None
    m_lat, m_lon = metres_per_degree(prior_lat)
    d = np.array([(lon - prior_lon) * m_lon, (lat - prior_lat) * m_lat])
    cov = np.asarray(cov_en, np.float64) + np.eye(2) * prior_sigma_m ** 2
    return PriorCheck(float(math.sqrt(max(0.0, d @ np.linalg.solve(cov, d)))), cov)


class MapCoverage:
    """The ground an index's tiles cover, as a grid of cells (`cell_m`, 5 m or coarser for a large map): where a wrong
    fix can land. `cols`: the tile table's north/south/west/east columns (degrees)."""

    def __init__(self, cols, max_cells: int = 4_000_000):
        north, south = np.asarray(cols["north"], np.float64), np.asarray(cols["south"], np.float64)
        west, east = np.asarray(cols["west"], np.float64), np.asarray(cols["east"], np.float64)
        self.lat0, self.lon0 = float(south.min()), float(west.min())  # the south-west corner
        self.m_lat, self.m_lon = metres_per_degree(float((north.max() + south.min()) / 2))
        width, height = self.metres(north.max(), east.max())
        self.cell_m = max(5.0, math.sqrt(width * height / max_cells))
        nx, ny = int(math.ceil(width / self.cell_m)) + 1, int(math.ceil(height / self.cell_m)) + 1
        self.grid = np.zeros((ny, nx), bool)
        x0, y0 = self.metres(south, west)
        x1, y1 = self.metres(north, east)
        for a, b, c, d in zip(x0 / self.cell_m, x1 / self.cell_m, y0 / self.cell_m, y1 / self.cell_m, strict=True):
            self.grid[int(c):int(math.ceil(d)), int(a):int(math.ceil(b))] = True

    def metres(self, lat, lon):
        """(east, north) metres of lat/lon (scalars or arrays) from the grid's south-west corner."""
        lat, lon = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
        return (lon - self.lon0) * self.m_lon, (lat - self.lat0) * self.m_lat

    @property
    def area_m2(self) -> float:
        return float(self.grid.sum()) * self.cell_m ** 2

    def within_gate(self, lat: float, lon: float, cov_en, k: float) -> tuple[float, float]:
        """(m^2 of covered ground within Mahalanobis distance k of (lat, lon) under cov_en (east/north, m^2), the
        probability of a Gaussian at (lat, lon) with that covariance on that ground)."""
        cov = np.asarray(cov_en, np.float64)
        e, n = (float(v) for v in self.metres(lat, lon))
        reach = k * math.sqrt(float(np.linalg.eigvalsh(cov).max()))
        ny, nx = self.grid.shape
        x0, x1 = max(0, int((e - reach) / self.cell_m)), min(nx, int(math.ceil((e + reach) / self.cell_m)) + 1)
        y0, y1 = max(0, int((n - reach) / self.cell_m)), min(ny, int(math.ceil((n + reach) / self.cell_m)) + 1)
        if x0 >= x1 or y0 >= y1:
            return 0.0, 0.0
        xx, yy = np.meshgrid((np.arange(x0, x1) + 0.5) * self.cell_m - e, (np.arange(y0, y1) + 0.5) * self.cell_m - n)
        d = np.stack([xx.ravel(), yy.ravel()], 1)
        m2 = np.einsum("ij,ij->i", d @ np.linalg.inv(cov), d)
        on = (m2 <= k * k) & self.grid[y0:y1, x0:x1].ravel()
        return float(on.sum()) * self.cell_m ** 2, float(gaussian_density(m2[on], cov).sum()) * self.cell_m ** 2


def gaussian_density(m2, cov_en):
    """Density (1/m^2) of a 2-D Gaussian with covariance cov_en at squared Mahalanobis distance(s) m2."""
    return np.exp(-0.5 * np.asarray(m2)) / (2 * math.pi * math.sqrt(float(np.linalg.det(cov_en))))


def prior_log_ratio(distance: float, cov_en, area_m2: float, mass: float) -> float:
    """log p(fix place | right) / p(fix place | wrong) for a fix at Mahalanobis `distance` from the prior under
    `cov_en` (the fix's and the prior's covariances summed, m^2: PriorCheck). Right, it lies where the prior's
    Gaussian says, on the map: the Gaussian over `mass`, its probability on the covered ground within the gate;
    wrong, anywhere on that ground (`area_m2`): MapCoverage.within_gate. On a map the prior covers nearly uniformly
    the ratio is about 1 wherever the fix lands; 0 without ground to compare with."""
    if area_m2 <= 0 or mass <= 0:
        return 0.0
    return math.log(max(float(gaussian_density(distance * distance, cov_en)) * area_m2 / mass, 1e-12))


def with_log_ratio(confidence: float, log_ratio: float) -> float:
    """A probability with its odds multiplied by exp(log_ratio)."""
    c = min(max(confidence, 1e-12), 1 - 1e-12)
    z = math.log(c / (1 - c)) + log_ratio
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))
