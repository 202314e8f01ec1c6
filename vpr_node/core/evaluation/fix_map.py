"""A flight on its map, the picture a person looks at first: the map, the true track, each accepted fix with its
covariance ellipse (95 %), and the frames that got no accepted fix marked where they were. In metres east/north of
the map's centre."""
from __future__ import annotations

import math
import pathlib

import numpy as np

from vpr_node.core.maps.geo import metres_per_degree

CHI2_95_2D = 5.991  # 95 % of a 2-D Gaussian lies inside the ellipse of squared Mahalanobis radius 5.991


def covariance_ellipse(cov_en, scale: float = 1.0, n: int = 48) -> np.ndarray:
    """(n, 2) east/north points of the 95 % ellipse of a 2x2 covariance (m^2), its axes times `scale`."""
    w, v = np.linalg.eigh(np.asarray(cov_en, np.float64))
    t = np.linspace(0, 2 * math.pi, n)
    circle = np.stack([np.cos(t), np.sin(t)], 1) * np.sqrt(np.maximum(w, 0) * CHI2_95_2D) * scale
    return circle @ v.T


def plot_fixes_on_map(map_rgb: np.ndarray, geo, track: list[tuple[float, float]], fixes: list, path,
                      title: str = "", ellipse_scale: float | None = None) -> pathlib.Path:
    """`geo`: the map's GeoImage; `track`: the true (lat, lon) of each frame; `fixes`: per frame None or a dict with
    lat, lon, cov_en (m^2) and accepted. Ellipses are drawn `ellipse_scale` times their size (default: enlarged so
    that the median one is 3 % of the map wide, and the legend says by how much)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lat0, lon0 = (geo.lat0 + geo.lat1) / 2, (geo.lon0 + geo.lon1) / 2
    m_lat, m_lon = metres_per_degree(lat0)

    def en(lat, lon):
        return (np.asarray(lon) - lon0) * m_lon, (np.asarray(lat) - lat0) * m_lat

    west, north = en(geo.lat0, geo.lon0)
    east, south = en(geo.lat1, geo.lon1)
    fig, ax = plt.subplots(figsize=(9, 9))
    ax.imshow(map_rgb, extent=(west, east, south, north))
    tx, ty = en([p[0] for p in track], [p[1] for p in track])
    ax.plot(tx, ty, color="white", lw=1.2, label="true track", zorder=2)
    accepted = [(i, f) for i, f in enumerate(fixes) if f and f.get("accepted")]
    if accepted:
        sizes = [math.sqrt(max(np.linalg.eigvalsh(np.asarray(f["cov_en"])).max(), 1e-6) * CHI2_95_2D)
                 for _, f in accepted]
        scale = ellipse_scale or max(1.0, round(0.03 * (east - west) / max(np.median(sizes), 1e-6)))
        for k, (_, f) in enumerate(accepted):
            fx, fy = en(f["lat"], f["lon"])
            e = covariance_ellipse(f["cov_en"], scale) + [fx, fy]
            ax.plot(e[:, 0], e[:, 1], color="lime", lw=0.8, zorder=3,
                    label=f"95 % covariance (x{scale:g})" if k == 0 else None)
        ax_, ay_ = en([f["lat"] for _, f in accepted], [f["lon"] for _, f in accepted])
        ax.scatter(ax_, ay_, s=14, color="lime", edgecolor="black", lw=0.4, zorder=4, label="accepted fix")
    missed = [i for i, f in enumerate(fixes) if not (f and f.get("accepted"))]
    if missed:
        ax.scatter(tx[missed], ty[missed], s=40, color="red", marker="x", zorder=5, label="no accepted fix")
    ax.set_xlabel("east (m)")
    ax.set_ylabel("north (m)")
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(title or f"{len(accepted)} of {len(track)} frames fixed")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
