"""Cutting maps into tiles: tile ground size should match what the camera sees, so `plan_for_camera` takes the
planned altitude range and the camera (camera.py) and picks one size or several (a multi-scale corpus), with
tile centres close enough that every ground point is within reach of the recall radius; `cut_corpus` cuts
every raster at every scale of the plan into a corpus folder (tiles.py)."""
from __future__ import annotations

import json
import pathlib

import cv2

from vpr_node.core.errors import ConfigurationError
from vpr_node.core.maps.camera import stride_for_radius, tile_sizes_for_altitudes
from vpr_node.core.maps.geo import slippy_zoom_for_gsd
from vpr_node.core.maps.sources import GeoRaster
from vpr_node.core.maps.tiles import TilePlan, TileRecord, write_tile_table


def plan_for_camera(camera, altitude_min_m: float, altitude_max_m: float, radius_m: float = 25.0,
                    max_scale_step: float = 1.5) -> TilePlan:
    """Tiles matched to the camera's ground footprint over the planned altitude range (camera.py)."""
    sizes = tile_sizes_for_altitudes(camera, altitude_min_m, altitude_max_m, max_scale_step)
    lo, hi = camera.square_footprint_m(altitude_min_m), camera.square_footprint_m(altitude_max_m)
    return TilePlan(
        [(t, stride_for_radius(t, radius_m)) for t in sizes],
        reason=f"camera footprint {lo:.1f}-{hi:.1f} m at {altitude_min_m:g}-{altitude_max_m:g} m "
        f"(hfov {camera.hfov_deg:.1f} deg, {camera.width_px}x{camera.height_px}); scales at most "
        f"x{max_scale_step:g} apart; stride keeps every point within 0.85 x {radius_m:g} m of a centre",
        camera={
            "width_px": camera.width_px,
            "height_px": camera.height_px,
            "fx": camera.fx,
            "hfov_deg": round(camera.hfov_deg, 3),
        },
        altitude_m=(float(altitude_min_m), float(altitude_max_m)),
        radius_m=float(radius_m),
    )


def cut_corpus(rasters: list[GeoRaster], out_dir, plan: TilePlan, tile_px: int | None = 320,
               progress: bool = True) -> list[TileRecord]:
    """Cut every raster at every scale of the plan; write tiles/, tiles.csv and corpus.json."""
    from tqdm import tqdm

    out_dir = pathlib.Path(out_dir)
    (out_dir / "tiles").mkdir(parents=True, exist_ok=True)
    multi = len(plan.scales) > 1
    records: list[TileRecord] = []
    skipped = 0
    for r in tqdm(rasters, desc="cutting tiles", disable=not progress, unit="map"):
        width, height = r.geo.width, r.geo.height
        for tile_m, stride_m in plan.scales:
            side = int(round(tile_m / r.geo.gsd_m))
            if side > min(width, height):
                raise ConfigurationError(f"tile size {tile_m} m ({side} px) is larger than map {r.path.name}")
            stride = max(1, int(round(stride_m / r.geo.gsd_m)))
            zoom = slippy_zoom_for_gsd(tile_m / (tile_px or side), (r.geo.lat0 + r.geo.lat1) / 2)
            for y0 in range(0, height - side + 1, stride):
                for x0 in range(0, width - side + 1, stride):
                    crop, valid = r.read_window(x0, y0, side, tile_px)
                    if valid < r.min_valid:
                        skipped += 1  # mostly nodata (outside the orthophoto's footprint)
                        continue
                    (lat, lon) = (float(v) for v in r.geo.pixel_to_latlon(x0 + side / 2, y0 + side / 2))
                    north, west = (float(v) for v in r.geo.pixel_to_latlon(x0, y0))
                    south, east = (float(v) for v in r.geo.pixel_to_latlon(x0 + side, y0 + side))
                    tid = f"{r.path.stem}{f'_m{tile_m:g}' if multi else ''}_{y0:05d}_{x0:05d}"
                    rel = f"tiles/{tid}.png"
                    cv2.imwrite(str(out_dir / rel), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
                    src_bounds = " ".join(f"{v:.3f}" for v in r.source_bounds(north, south, west, east))
                    records.append(TileRecord(tid, zoom, lat, lon, north, south, west, east, r.path.name,
                                              x0, y0, x0 + side, y0 + side, rel, float(tile_m), r.src_crs,
                                              src_bounds))
        r.release()
    if not records:
        raise ConfigurationError(f"no tiles cut: every window was mostly nodata or the maps are smaller than "
                                 f"{min(t for t, _ in plan.scales):g} m")
    write_tile_table(out_dir / "tiles.csv", records)
    (out_dir / "skipped.json").write_text(json.dumps({"nodata_windows": skipped}) + "\n")
    (out_dir / "corpus.json").write_text(json.dumps(plan.to_json(), indent=2) + "\n")
    return records


def cut_tiles(rasters: list[GeoRaster], out_dir, tile_m: float = 60.0, overlap: float = 0.5,
              tile_px: int | None = None, progress: bool = True) -> list[TileRecord]:
    """One scale: square tiles of `tile_m` metres with fractional `overlap`."""
    return cut_corpus(rasters, out_dir, TilePlan.single(tile_m, overlap), tile_px, progress)
