"""What the flight benchmark shows a person: recall and position error against distance flown, the flight drawn on
the map with its accepted fixes, and the table for BENCHMARKS.md."""
from __future__ import annotations

import pathlib

import numpy as np

from vpr_node.core.maps.geo import metres_per_degree

WINDOW = 60  # frames in the rolling recall (20 s at 3 Hz)
COLOURS = {"none": "tab:orange", "heading+altitude": "tab:red", "position": "tab:green", "all": "tab:blue"}


def _rolling(x: np.ndarray, n: int = WINDOW) -> np.ndarray:
    c = np.cumsum(np.insert(x.astype(float), 0, 0.0))
    out = np.full(len(x), np.nan)
    out[n - 1:] = (c[n:] - c[:-n]) / n
    return out


def _real_spans(records):
    spans, start = [], None
    for r in records:
        if r["real"] and start is None:
            start = r["s_m"]
        if not r["real"] and start is not None:
            spans.append((start, r["s_m"]))
            start = None
    if start is not None:
        spans.append((start, records[-1]["s_m"]))
    return spans


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot
    return matplotlib.pyplot


def _save(fig, path) -> pathlib.Path:
    fig.tight_layout()
    path = pathlib.Path(path)
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def plot_flight(runs: dict[str, list[dict]], path, radius_m: float = 25.0) -> pathlib.Path:
    """Three panels against distance flown: rolling recall@1, position error of the VIO estimate (with its reported
    3 sigma) and of accepted fixes, and whether the position is fixed; real-imagery stretches shaded."""
    plt = _pyplot()

    fig, axes = plt.subplots(3, 1, figsize=(12, 9), sharex=True, gridspec_kw={"height_ratios": [2, 2, 1]})
    first = next(iter(runs.values()))
    for ax in axes:
        for a, b in _real_spans(first):
            ax.axvspan(a / 1000, b / 1000, color="gold", alpha=0.18, lw=0)
    for name, recs in runs.items():
        s = np.array([r["s_m"] for r in recs]) / 1000
        hit = np.array([r["dist_m"][0] <= radius_m for r in recs])
        colour = COLOURS.get(name)
        axes[0].plot(s, _rolling(hit), label=name, lw=1.2, color=colour)
        if "position" in name or name == "all":
            err = np.array([r["vio_error_m"] for r in recs])
            sig = np.array([r["vio_sigma_m"] for r in recs])
            line, = axes[1].plot(s, err, lw=1.0, color=colour, label=f"{name}: position prior error")
            axes[1].plot(s, 3 * sig, lw=0.8, ls="--", color=line.get_color(), label=f"{name}: reported 3 sigma")
            acc = [(r["s_m"] / 1000, r["verification"]["fix_error_m"]) for r in recs if r["verification"]["accepted"]]
            if acc:
                axes[1].scatter(*zip(*acc, strict=True), s=6, color=line.get_color(), marker="x",
                                label=f"{name}: accepted fix")
            fixed = np.array([r["verification"]["accepted"] for r in recs], float)
            axes[2].plot(s, _rolling(fixed, 15), lw=1.0, color=line.get_color(), label=name)
    none = runs.get("none")
    if none:
        s = np.array([r["s_m"] for r in none]) / 1000
        axes[1].plot(s, [r["vio_error_m"] for r in none], lw=1.0, color="grey", label="VIO alone (no fixes)")
    axes[0].set_ylabel(f"recall@1 at {radius_m:g} m\n(rolling {WINDOW} frames)")
    axes[0].set_ylim(0, 1.02)
    axes[0].legend(loc="lower right", fontsize=8, ncol=4)
    axes[1].set_yscale("log")
    axes[1].set_ylabel("position error (m)")
    axes[1].legend(loc="upper left", fontsize=7, ncol=2)
    axes[2].set_ylabel("accepted fixes\n(share, 5 s)")
    axes[2].set_ylim(0, 1.02)
    axes[2].set_xlabel("distance flown (km); shaded: over real imagery")
    fig.suptitle("GNSS-denied flight over the composite map")
    return _save(fig, path)


def plot_flight_map(map_path, poses, records: list[dict], parts, path, radius_m: float = 25.0) -> pathlib.Path:
    """The map (an overview read), the true path, the VIO estimate and the accepted fixes coloured by error."""
    plt = _pyplot()
    import rasterio
    import rasterio.windows

    lat = np.array([p.lat for p in poses])
    lon = np.array([p.lon for p in poses])
    m_lat, m_lon = metres_per_degree(float(lat.mean()))
    margin = 150.0  # m around the flight
    n, s_, w, e = (lat.max() + margin / m_lat, lat.min() - margin / m_lat, lon.min() - margin / m_lon,
                   lon.max() + margin / m_lon)
    with rasterio.open(map_path) as src:
        win = rasterio.windows.from_bounds(w, s_, e, n, src.transform).round_offsets().round_lengths()
        scale = max(1.0, max(win.width, win.height) / 2000)
        img = src.read([1, 2, 3], window=win, out_shape=(3, int(win.height / scale), int(win.width / scale)),
                       boundless=True).transpose(1, 2, 0)
        w, s_, e, n = rasterio.windows.bounds(win, src.transform)
    fig, ax = plt.subplots(figsize=(11, 10))
    ax.imshow(img, extent=(w, e, s_, n))
    for part in parts:
        ax.add_patch(plt.Rectangle((part.west, part.south), part.east - part.west, part.north - part.south,
                                   fill=False, ec="gold", lw=0.8))
    fixes = [(r["i"], r["verification"]) for r in records if r["verification"]["accepted"]]
    if fixes:
        fi = np.array([i for i, _ in fixes])
        fe = np.array([v["fix_error_en"] for _, v in fixes])
        err = np.array([v["fix_error_m"] for _, v in fixes])
        sc = ax.scatter(lon[fi] + fe[:, 0] / m_lon, lat[fi] + fe[:, 1] / m_lat, c=err, vmin=0, vmax=radius_m,
                        cmap="plasma", s=4, label="accepted fixes", zorder=3)
        fig.colorbar(sc, ax=ax, shrink=0.6, label="fix error (m)")
    missed = np.array([not r["verification"]["accepted"] for r in records])
    ax.plot(lon, lat, color="white", lw=0.6, label="true path", zorder=2)
    if missed.any():
        ax.scatter(lon[missed], lat[missed], s=6, color="cyan", marker="x", label="no accepted fix", zorder=4)
    ax.set_aspect(1 / np.cos(np.radians(lat.mean())))
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.legend(loc="upper right")
    ax.set_title("flight on the map (gold: real imagery)")
    return _save(fig, path)


COLUMNS = (("recall_at_1", "R@1"), ("recall_at_10", "R@10"), ("real_recall_at_1", "real R@1"),
           ("real_small_map_recall_at_1", "real R@1 small map"), ("real_recall_at_10", "real R@10"),
           ("real_small_map_recall_at_10", "real R@10 small map"), ("procedural_recall_at_1", "procedural R@1"),
           ("accepted_fixes", "accepted fixes"), ("fix_precision", "fix precision"),
           ("fix_error_m_p50", "fix err p50 (m)"), ("fix_error_m_p95", "fix err p95 (m)"),
           ("share_fixed", "share fixed"), ("longest_gap_s", "longest gap (s)"),
           ("vio_error_m_p95", "position prior err p95 (m)"), ("vio_error_m_max", "max (m)"))


def format_markdown(summaries: dict[str, dict]) -> str:
    head = "| config | " + " | ".join(c for _, c in COLUMNS) + " |"
    rows = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for name, s in summaries.items():
        rows.append(f"| {name} | " + " | ".join("-" if s.get(k) is None else f"{s[k]:g}" for k, _ in COLUMNS) + " |")
    return "\n".join(rows)
