"""Geometry of a verified match: a robust homography from frame pixels to tile pixels (near-nadir camera over
near-planar ground), the checks that make it plausible, and what it implies: where the frame's centre lies in the
tile (the camera's boresight ground point, the position fix), the heading, and their covariance.

Covariance: the homography's 8 parameters are fitted to the inlier correspondences; their covariance is
s^2 (J^T J)^-1 (J: reprojection residuals' Jacobian, s^2: residual variance), and it is propagated to the fix and
the heading through their own Jacobians (numerical, central differences). A calibration (confidence.py) scales it
so that its Mahalanobis errors on validation views have the expected size.
"""
from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

USAC = getattr(cv2, "USAC_MAGSAC", cv2.RANSAC)


@dataclasses.dataclass
class HomographyFit:
    H: np.ndarray  # 3x3, frame px -> tile px
    src: np.ndarray  # inlier frame points (n, 2)
    dst: np.ndarray  # inlier tile points (n, 2)
    matches: int
    rms_px: float

    @property
    def inliers(self) -> int:
        return len(self.src)

    @property
    def inlier_ratio(self) -> float:
        return self.inliers / max(1, self.matches)


def project(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.asarray(pts, np.float64).reshape(-1, 2)
    q = np.c_[p, np.ones(len(p))] @ H.T
    return q[:, :2] / q[:, 2:3]


def estimate(src: np.ndarray, dst: np.ndarray, threshold_px: float,
             min_inliers: int) -> tuple[HomographyFit | None, str]:
    """USAC-MAGSAC (RANSAC where OpenCV lacks it) homography; (None, reason) when there is none worth checking."""
    if len(src) < max(8, min_inliers):
        return None, "too_few_matches"
    H, mask = cv2.findHomography(src.astype(np.float32), dst.astype(np.float32), USAC, threshold_px, maxIters=2000,
                                 confidence=0.999)
    if H is None or mask is None:
        return None, "no_homography"
    keep = mask.ravel().astype(bool)
    if keep.sum() < min_inliers:
        return None, "too_few_inliers"
    s, d = src[keep].astype(np.float64), dst[keep].astype(np.float64)
    rms = float(np.sqrt(np.mean(np.sum((project(H, s) - d) ** 2, axis=1))))
    return HomographyFit(H / H[2, 2], s, d, int(len(src)), rms), ""


def implausible(fit: HomographyFit, frame_size: tuple[int, int], tile_size: tuple[int, int],
                scale_range: tuple[float, float] = (0.2, 5.0), max_anisotropy: float = 2.5) -> str:
    """Why a homography cannot be a down-looking camera over the ground ('' when it can): orientation flipped,
    scale far from the expected, sheared or stretched, the frame's outline not convex, its centre off the tile."""
    w, h = frame_size
    corners = project(fit.H, [[0, 0], [w, 0], [w, h], [0, h]])
    centre = project(fit.H, [[w / 2, h / 2]])[0]
    # local linearisation at the frame centre
    eps = 1.0
    jx = (project(fit.H, [[w / 2 + eps, h / 2]])[0] - centre) / eps
    jy = (project(fit.H, [[w / 2, h / 2 + eps]])[0] - centre) / eps
    a = np.stack([jx, jy], 1)
    det = float(np.linalg.det(a))
    if not np.all(np.isfinite(corners)) or det <= 0:
        return "degenerate_homography"
    sv = np.linalg.svd(a, compute_uv=False)
    scale = math.sqrt(det)
    if not scale_range[0] <= scale <= scale_range[1]:
        return "implausible_scale"
    if sv[0] / max(sv[1], 1e-9) > max_anisotropy:
        return "degenerate_homography"
    signs = [np.cross(corners[(i + 1) % 4] - corners[i], corners[(i + 2) % 4] - corners[(i + 1) % 4])
             for i in range(4)]
    if not (all(s > 0 for s in signs) or all(s < 0 for s in signs)):
        return "degenerate_homography"
    tw, th = tile_size
    if not (-0.5 * tw <= centre[0] <= 1.5 * tw and -0.5 * th <= centre[1] <= 1.5 * th):
        return "fix_outside_tile"
    return ""


def _h_vec(H):
    return (H / H[2, 2]).ravel()[:8]


def _h_mat(v):
    return np.append(v, 1.0).reshape(3, 3)


def _residual_jacobian(v: np.ndarray, src: np.ndarray) -> np.ndarray:
    """d(projected points)/d(homography parameters): (2n, 8), analytically."""
    x, y = src[:, 0], src[:, 1]
    h = v
    den = h[6] * x + h[7] * y + 1.0
    u = (h[0] * x + h[1] * y + h[2]) / den
    w = (h[3] * x + h[4] * y + h[5]) / den
    n = len(src)
    J = np.zeros((2 * n, 8))
    J[0::2, 0], J[0::2, 1], J[0::2, 2] = x / den, y / den, 1 / den
    J[1::2, 3], J[1::2, 4], J[1::2, 5] = x / den, y / den, 1 / den
    J[0::2, 6], J[0::2, 7] = -u * x / den, -u * y / den
    J[1::2, 6], J[1::2, 7] = -w * x / den, -w * y / den
    return J


def parameter_covariance(fit: HomographyFit) -> np.ndarray:
    """8 x 8 covariance of the homography parameters from the inlier residuals (Gauss-Newton at the solution)."""
    v = _h_vec(fit.H)
    J = _residual_jacobian(v, fit.src)
    r = (project(fit.H, fit.src) - fit.dst).ravel()
    dof = max(1, len(r) - 8)
    s2 = max(float(r @ r) / dof, 0.25 ** 2)  # at least a quarter pixel: subpixel keypoint noise
    return s2 * np.linalg.pinv(J.T @ J)


def centre_and_heading(v: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """[x, y] in tile pixels of the frame's centre, and the heading (deg clockwise from north) of the frame's 'up'
    direction, for homography parameters v (tile images are north-up: tile -y is north)."""
    w, h = frame_size
    H = _h_mat(v)
    c, up = project(H, [[w / 2, h / 2], [w / 2, h / 2 - h / 4]])
    d = up - c
    heading = math.degrees(math.atan2(d[0], -d[1])) % 360.0
    return np.array([c[0], c[1], heading])


def fix_covariance(fit: HomographyFit, frame_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """([x, y, heading], 3 x 3 covariance in tile px^2 / px deg / deg^2) of the fit."""
    v = _h_vec(fit.H)
    out = centre_and_heading(v, frame_size)
    jac = np.zeros((3, 8))
    for k in range(8):
        step = 1e-6 * max(1.0, abs(v[k])) if k < 6 else 1e-9 * max(1.0, abs(v[k])) + 1e-12
        dv = np.zeros(8)
        dv[k] = step
        a, b = centre_and_heading(v + dv, frame_size), centre_and_heading(v - dv, frame_size)
        d = a - b
        d[2] = (d[2] + 180.0) % 360.0 - 180.0
        jac[:, k] = d / (2 * step)
    return out, jac @ parameter_covariance(fit) @ jac.T
