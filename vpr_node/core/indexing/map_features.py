"""Making an index folder's map features (verification/map_features.py reads them): every map raster resampled to
`gsd_m` in overlapping square blocks, each block's features extracted with the learned matcher (a block keeps the
keypoints of its own part, so the overlap adds none twice), stored by cell of a metric grid, hashed in the manifest,
with the matcher exported to ONNX beside them (parity-checked against PyTorch) where it exports.

What `vpr prepare-mission` and `vpr map-features` run. Blocks are extracted in chunks kept as shards under
work/map_features (chunks.ShardStore): an interrupted build resumes; assembling streams the shards (extent and
count per cell, then each row into its cell's run), so memory is one chunk whatever the map's size.
"""
from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import time

import numpy as np
from tqdm import tqdm

from vpr_node.core.errors import ConfigurationError
from vpr_node.core.index.folder import add_to_manifest
from vpr_node.core.indexing.chunks import Chunk, ShardStore
from vpr_node.core.options import option
from vpr_node.core.verification.map_features import CELLS, FEATURES, FORMAT_VERSION, META, LocalFrame, features_dir
from vpr_node.core.verification.matchers import FEATURES_OF, MAP_SOURCE


@dataclasses.dataclass
class MapFeaturesConfig:
    matcher: str = option("xfeat", "learned matcher whose features are prepared (xfeat | aliked; '' = none)")
    gsd_m: float = option(0.2, "ground resolution of the map features (m/px): frames are resampled to it "
                                "(about the developer maps' and the real map's own resolution: finer adds "
                                "pixels the map does not have)")
    block_px: int = option(512, "side of the square blocks features are extracted from (px at gsd_m)")
    overlap_px: int = option(64, "overlap of neighbouring blocks (px): a keypoint near a block's edge is taken from "
                                 "the block it is inside of")
    max_features: int = option(2048, "features per block (the extractor's top K; also its exported top K)")
    cell_m: float = option(32.0, "cell of the metric grid features are stored by (m)")
    chunk_blocks: int = option(16, "blocks per chunk (the unit of checkpointing)")
    runtime: str = option("pytorch", "runtime blocks are extracted on: pytorch | onnxruntime (the exported model)")


@dataclasses.dataclass(frozen=True)
class Block:
    raster: int
    x0: int  # raster px of the window
    y0: int
    side: int  # raster px
    own: tuple[float, float, float, float]  # (x_lo, x_hi, y_lo, y_hi) raster px this block owns


def _starts(length: int, side: int, stride: int) -> list[int]:
    if length <= side:
        return [0]
    starts = list(range(0, length - side, stride)) + [length - side]
    return sorted(set(starts))


def _owned(starts: list[int], side: int, length: int) -> list[tuple[float, float]]:
    """Each window's own part: up to the midpoints of its overlaps with its neighbours."""
    mids = [(a + side + b) / 2 for a, b in zip(starts, starts[1:], strict=False)]
    return list(zip([0.0] + mids, mids + [float(length)], strict=True))


def plan_blocks(rasters, cfg: MapFeaturesConfig) -> list[Block]:
    """Square windows covering every raster at cfg.gsd_m, each owning the part up to the midpoints of its overlaps."""
    blocks = []
    for r, raster in enumerate(rasters):
        w, h = raster.geo.width, raster.geo.height
        scale = cfg.gsd_m / raster.geo.gsd_m  # raster px per feature px
        side = min(w, h, max(8, round(cfg.block_px * scale)))
        stride = max(1, round((cfg.block_px - cfg.overlap_px) * scale))
        xs, ys = _starts(w, side, stride), _starts(h, side, stride)

        for (y0, (ylo, yhi)) in zip(ys, _owned(ys, side, h), strict=True):
            for (x0, (xlo, xhi)) in zip(xs, _owned(xs, side, w), strict=True):
                blocks.append(Block(r, x0, y0, side, (xlo, xhi, ylo, yhi)))
    return blocks


def _extract_block(matcher, raster, block: Block, cfg: MapFeaturesConfig, frame: LocalFrame) -> np.ndarray:
    img, valid = raster.read_window(block.x0, block.y0, block.side, cfg.block_px)
    if valid < 0.5:
        return np.zeros((0, 3), np.float32)
    f = matcher.extract(img)
    s = block.side / cfg.block_px
    x, y = block.x0 + f.xy[:, 0].astype(np.float64) * s, block.y0 + f.xy[:, 1].astype(np.float64) * s
    xlo, xhi, ylo, yhi = block.own
    keep = (x >= xlo) & (x < xhi) & (y >= ylo) & (y < yhi)
    lat, lon = raster.geo.pixel_to_latlon(x[keep], y[keep])
    e, n = frame.to_en(lat, lon)
    return np.concatenate([np.stack([e, n, f.scores[keep]], 1), f.descriptors[keep]], 1).astype(np.float32)


def map_origin(rasters) -> tuple[float, float]:
    lats = [v for r in rasters for v in (r.geo.lat0, r.geo.lat1)]
    lons = [v for r in rasters for v in (r.geo.lon0, r.geo.lon1)]
    return (min(lats) + max(lats)) / 2, (min(lons) + max(lons)) / 2


def build_map_features(maps, index_dir, cfg: MapFeaturesConfig | None = None, matcher=None, progress: bool = True,
                       log=print) -> dict:
    """Extract, assemble and hash the map's features into index_dir/map_features (and export the matcher there when
    it exports). Returns meta.json's content."""
    from vpr_node.core.maps.sources import load_maps
    from vpr_node.core.verification.matchers import make_matcher

    cfg = cfg or MapFeaturesConfig()
    if MAP_SOURCE.get(cfg.matcher) != "windows" or cfg.matcher in FEATURES_OF:
        raise ConfigurationError(f"map features are made by a learned matcher (xfeat, aliked), not {cfg.matcher!r}",
                                 parameter="map_features_matcher")
    root = pathlib.Path(index_dir)
    out = features_dir(root, cfg.matcher)
    rel = out.relative_to(root).as_posix()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    export = None
    if cfg.matcher == "xfeat":
        from vpr_node.core.verification.matchers.xfeat import export_onnx
        export = export_onnx(out, cfg.max_features)
    matcher = matcher or make_matcher(cfg.matcher, max_features=cfg.max_features, runtime=cfg.runtime,
                                      onnx_dir=out)
    rasters = load_maps(maps)
    frame = LocalFrame(*map_origin(rasters))
    blocks = plan_blocks(rasters, cfg)
    key = {"maps": str(maps), "matcher": matcher.identity(), "settings": dataclasses.asdict(cfg),
           "origin": [frame.lat0, frame.lon0], "blocks": len(blocks)}
    store = ShardStore(root / "work" / rel, key, log)
    chunks = [Chunk(i, tuple(range(s, min(s + cfg.chunk_blocks, len(blocks)))))
              for i, s in enumerate(range(0, len(blocks), cfg.chunk_blocks))]
    todo = [c for c in chunks if not store.done(c)]
    log(f"[map-features] {cfg.matcher} at {cfg.gsd_m:g} m/px: {len(blocks)} blocks of {cfg.block_px} px over "
        f"{len(rasters)} raster(s), {len(chunks) - len(todo)} of {len(chunks)} chunks already done")
    bar = tqdm(total=len(blocks), initial=sum(len(c.rows) for c in chunks) - sum(len(c.rows) for c in todo),
               desc="map features", unit="block", disable=not progress)
    for chunk in todo:
        rows, owner = [], []
        for b in chunk.rows:
            f = _extract_block(matcher, rasters[blocks[b].raster], blocks[b], cfg, frame)
            rows.append(f)
            owner.append(np.full(len(f), b, np.int32))
            bar.update(1)
        dim = max((r.shape[1] for r in rows), default=3)
        packed = np.concatenate([r if r.shape[1] == dim else np.zeros((0, dim), np.float32) for r in rows])
        store.write(chunk, packed, np.concatenate(owner) if owner else np.zeros(0, np.int32))
    bar.close()
    meta = _assemble(store, chunks, out, frame, cfg, matcher)
    meta.update({"build_seconds": round(time.perf_counter() - t0, 1), "blocks": len(blocks),
                 "exported": export is not None})
    (out / META).write_text(json.dumps(meta, indent=2) + "\n")
    names = [META, FEATURES, CELLS] + (list(export["files"]) + ["matcher_onnx.json"] if export else [])
    for name in names:
        add_to_manifest(root, f"{rel}/{name}")
    add_to_manifest(root, f"{rel}/{META}", **{f"map_features_{cfg.matcher}": {
        k: meta[k] for k in ("matcher", "version", "gsd_m", "features")}})
    log(f"[map-features] {meta['features']} features in {meta['cells'][0] * meta['cells'][1]} cells, "
        f"{meta['build_seconds']} s")
    return meta


def _assemble(store: ShardStore, chunks, out: pathlib.Path, frame: LocalFrame, cfg: MapFeaturesConfig,
              matcher) -> dict:
    lo, hi, dim, n = np.array([np.inf, np.inf]), np.array([-np.inf, -np.inf]), None, 0
    for c in chunks:  # pass 1: extent and count
        d, _ = store.read(c)
        if len(d):
            lo, hi = np.minimum(lo, d[:, :2].min(0)), np.maximum(hi, d[:, :2].max(0))
            dim, n = d.shape[1], n + len(d)
    if n == 0:
        raise ConfigurationError("the map gave no local features (is it blank or all nodata?)")
    west, north = float(lo[0]), float(hi[1])
    ncx = int(math.floor((hi[0] - west) / cfg.cell_m)) + 1
    ncy = int(math.floor((north - lo[1]) / cfg.cell_m)) + 1

    def cell_of(d):
        cx = np.clip(((d[:, 0] - west) // cfg.cell_m).astype(np.int64), 0, ncx - 1)
        cy = np.clip(((north - d[:, 1]) // cfg.cell_m).astype(np.int64), 0, ncy - 1)
        return cy * ncx + cx

    counts = np.zeros(ncx * ncy, np.int64)
    for c in chunks:  # pass 2: rows per cell
        d, _ = store.read(c)
        counts += np.bincount(cell_of(d), minlength=ncx * ncy)
    starts = np.concatenate([[0], np.cumsum(counts)])
    arr = np.lib.format.open_memmap(out / FEATURES, mode="w+", dtype=np.float32, shape=(n, dim))
    fill = starts[:-1].copy()
    for c in chunks:  # pass 3: each row into its cell's run, in chunk order
        d, _ = store.read(c)
        cell = cell_of(d)
        order = np.argsort(cell, kind="stable")
        cs = cell[order]
        first = np.searchsorted(cs, np.arange(ncx * ncy))
        rank = np.arange(len(cs)) - first[cs]
        arr[fill[cs] + rank] = d[order]
        fill += np.bincount(cs, minlength=ncx * ncy)
    arr.flush()
    del arr
    np.save(out / CELLS, starts.astype(np.int64))
    return {"format_version": FORMAT_VERSION, **matcher.identity(), "gsd_m": cfg.gsd_m, "block_px": cfg.block_px,
            "max_features": cfg.max_features, "descriptor_dim": dim - 3, "origin": [frame.lat0, frame.lon0],
            "grid": {"west_m": west, "north_m": north, "cell_m": cfg.cell_m}, "cells": [ncy, ncx], "features": n}


