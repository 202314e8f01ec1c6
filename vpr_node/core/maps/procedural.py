"""Procedurally generated, aerial-like sample map: the embedded default for the demo (no ../shared).

Fields with crop-row texture, forest patches, a river, a road network, buildings with shadows and
individual trees: enough distinct structure for place recognition, deterministic by seed.
"""
from __future__ import annotations

import csv
import pathlib

import cv2
import numpy as np

SAMPLE_ORIGIN = (60.4500, 22.3000)  # top-left lat/lon of the synthetic map (an arbitrary Finnish-like spot)


def _noise(rng, h, w, scale, octaves=4):
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        s = max(2, int(scale / (2 ** o)))
        small = rng.standard_normal((h // s + 2, w // s + 2)).astype(np.float32)
        out += amp * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
    return out / total


def generate_sample_map(width: int = 1400, height: int = 1400, seed: int = 7) -> np.ndarray:
    """RGB uint8 aerial-like image; about 0.3 m/px when georeferenced by `write_sample_map`."""
    rng = np.random.default_rng(seed)
    h, w = height, width
    # 1. fields: Voronoi cells, each a crop colour with oriented row texture
    n_cells = 45
    pts = rng.uniform(0, [w, h], size=(n_cells, 2)).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = np.stack([(xx - px) ** 2 + (yy - py) ** 2 for px, py in pts])
    label = d.argmin(0)
    palette = np.array([[96, 128, 58], [140, 150, 72], [170, 160, 100], [110, 90, 60], [80, 110, 50],
                        [150, 130, 80], [60, 95, 45], [185, 175, 120], [125, 140, 95]], np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(n_cells):
        m = label == c
        base = palette[rng.integers(len(palette))] * rng.uniform(0.85, 1.15)
        ang = rng.uniform(0, np.pi)
        period = rng.uniform(5, 14)
        rows = 0.5 + 0.5 * np.sin((xx * np.cos(ang) + yy * np.sin(ang)) * 2 * np.pi / period)
        tex = 1.0 + rng.uniform(0.03, 0.12) * (rows - 0.5)
        img[m] = base * tex[m, None]
    # field boundaries (hedges)
    edges = cv2.Canny(label.astype(np.uint8) * 5, 1, 1) > 0
    edges = cv2.dilate(edges.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    img[edges] = img[edges] * 0.6 + np.array([40, 60, 30], np.float32) * 0.4
    # 2. forest patches: dark green noise blobs
    forest = _noise(rng, h, w, 220) > 0.45
    canopy = _noise(rng, h, w, 12, 3)
    fcol = np.array([38, 62, 32], np.float32)
    img[forest] = fcol * (1.0 + 0.35 * canopy[forest, None])
    # 3. river: a smooth random curve
    t = np.linspace(0, 1, 400)
    rx = w * (0.15 + 0.7 * t)
    ry = h * (0.3 + 0.15 * np.sin(2 * np.pi * (t * rng.uniform(0.8, 1.6) + rng.uniform())))
    river = np.stack([rx, ry], 1).astype(np.int32)
    cv2.polylines(img, [river], False, (52, 74, 88), thickness=int(rng.integers(16, 26)), lineType=cv2.LINE_AA)
    # 4. roads: random polylines with lighter asphalt, plus a grid-ish village
    for _ in range(9):
        p0 = rng.uniform(0, [w, h])
        ang = rng.uniform(0, 2 * np.pi)
        pts_r = [p0]
        for _ in range(12):
            ang += rng.normal(0, 0.25)
            pts_r.append(pts_r[-1] + 70 * np.array([np.cos(ang), np.sin(ang)]))
        cv2.polylines(img, [np.array(pts_r, np.int32)], False, (120, 118, 112), thickness=int(rng.integers(5, 10)),
                      lineType=cv2.LINE_AA)
    # 5. buildings with shadows, clustered in villages
    for _ in range(6):
        cx, cy = rng.uniform(80, [w - 80, h - 80])
        for _ in range(int(rng.integers(12, 30))):
            bx, by = cx + rng.normal(0, 70), cy + rng.normal(0, 70)
            bw, bh = rng.uniform(12, 40), rng.uniform(10, 30)
            ang = rng.uniform(0, 180)
            box = cv2.boxPoints(((bx, by), (bw, bh), ang)).astype(np.int32)
            cv2.fillConvexPoly(img, box + np.array([6, 6], np.int32), (35, 38, 35), lineType=cv2.LINE_AA)
            roof = [(150, 60, 50), (90, 90, 95), (170, 165, 160), (120, 70, 45), (60, 60, 70)][rng.integers(5)]
            cv2.fillConvexPoly(img, box, roof, lineType=cv2.LINE_AA)
    # 6. single trees
    for _ in range(900):
        tx, ty = rng.uniform(0, [w, h])
        r = int(rng.integers(3, 8))
        cv2.circle(img, (int(tx) + 3, int(ty) + 3), r, (30, 40, 28), -1, lineType=cv2.LINE_AA)
        cv2.circle(img, (int(tx), int(ty)), r, (45, 80, 40), -1, lineType=cv2.LINE_AA)
    # sensor-like grain and vignetting-free illumination variation
    img *= (1.0 + 0.06 * _noise(rng, h, w, 300, 2))[..., None]
    img += rng.normal(0, 3.0, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_sample_map(out_dir, seed: int = 7, gsd_m: float = 0.3, size_px: int = 1400) -> pathlib.Path:
    """Write the sample map as one georeferenced image plus its corner table; returns the CSV path."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    img = generate_sample_map(size_px, size_px, seed)
    lat0, lon0 = SAMPLE_ORIGIN
    m_lat = 111_195.0
    m_lon = m_lat * np.cos(np.radians(lat0))
    name = "sample_map.png"
    cv2.imwrite(str(out_dir / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    br = (lat0 - size_px * gsd_m / m_lat, lon0 + size_px * gsd_m / m_lon)
    csv_path = out_dir / "tiles.csv"
    with open(csv_path, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(
            [
                "filename",
                "top_left_lat",
                "top_left_lon",
                "bottom_right_lat",
                "bottom_right_lon",
                "width_px",
                "height_px",
            ]
        )
        wr.writerow([name, f"{lat0:.7f}", f"{lon0:.7f}", f"{br[0]:.7f}", f"{br[1]:.7f}", size_px, size_px])
    return csv_path


LARGE_MAP_CRS = "EPSG:32634"  # UTM zone 34N: the sample map's spot, in a projected CRS like most orthophotos
LARGE_MAP_ORIGIN = (571_000.0, 6_703_000.0)  # top-left easting/northing (m)


def write_large_map(path, size_m: float = 10_000.0, gsd_m: float = 1.0, block_px: int = 1000, seed: int = 11,
                    progress: bool = True) -> pathlib.Path:
    """A mission-sized procedural orthophoto: a tiled, deflate-compressed GeoTIFF in UTM (LARGE_MAP_CRS) with
    overviews, made of `block_px` blocks of the sample-map generator (each its own seed, so every block is a
    different landscape), written block by block: memory stays at one block whatever the map's size. 10 km at
    1 m/px (100 km2, 10,000 x 10,000 px) takes about 5 min on 2 cores."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.transform import from_origin
    from rasterio.windows import Window
    from tqdm import tqdm

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    side = int(round(size_m / gsd_m))
    n = -(-side // block_px)
    profile = {"driver": "GTiff", "width": side, "height": side, "count": 3, "dtype": "uint8", "crs": LARGE_MAP_CRS,
               "transform": from_origin(*LARGE_MAP_ORIGIN, gsd_m, gsd_m), "tiled": True, "blockxsize": 256,
               "blockysize": 256, "compress": "deflate", "photometric": "RGB"}
    tmp = path.with_suffix(".partial.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        for b in tqdm(range(n * n), desc="generating map blocks", unit="block", disable=not progress):
            by, bx = divmod(b, n)
            h, w = min(block_px, side - by * block_px), min(block_px, side - bx * block_px)
            img = generate_sample_map(block_px, block_px, seed + b)[:h, :w]
            dst.write(img.transpose(2, 0, 1), window=Window(bx * block_px, by * block_px, w, h))
        dst.build_overviews([2, 4, 8, 16], Resampling.average)
    tmp.replace(path)
    return path
