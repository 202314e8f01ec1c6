"""The index folder: what build-index and prepare-mission write and the node loads (loaded.py).

An index folder holds:
  index.faiss       the FAISS index (inner product on unit descriptors)
  descriptors.npy   float32 (rows, dim) descriptors, read by row on load (loaded.DescriptorRows)
  entries.npy       int32 (rows,) tile row of each descriptor (a tile may have several rotated views)
  tiles.csv         the tile table (tile id, zoom, centre lat/lon, bounds, ...)
  tiles/            the tile images (hard links to the corpus's where the file system allows), listed with their
                    SHA-256 in tile_images.sha256: the pixels the verifier matches frames against
  verification.json the verifier's calibration (confidence model, threshold, covariance scale), when fitted
  manifest.json     backbone label, weights SHA-256, descriptor dim, preprocessing, index type and
                    parameters, tile count, file SHA-256s, format version
Loading verifies the manifest (loaded.py): a field that differs from what the node expects -> ConfigurationError
naming the field; a missing, truncated or corrupt file -> IndexUnavailableError. No silent fallback.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import time

import faiss
import numpy as np

from vpr_node.core.backbones.identity import BackboneIdentity
from vpr_node.core.errors import ConfigurationError
from vpr_node.core.index.faiss_index import (
    AUTO,
    RERANK_DEFAULT,
    choose_index_type,
    default_rerank,
    make_faiss_index,
    measure_scan_ns_per_float,
    recall_vs_exact,
    search_latency_ms,
    tune_nprobe,
)
from vpr_node.core.index.hubness import hubness_report
from vpr_node.core.io.hashing import sha256_file
from vpr_node.core.maps.tiles import TileRecord, write_tile_table

FORMAT_VERSION = 1
INDEX_FILES = ("index.faiss", "descriptors.npy", "entries.npy", "tiles.csv")
OPTIONAL_FILES = ("backbone_weights.pt", "tile_images.sha256", "verification.json")
TILE_IMAGES = "tile_images.sha256"
VERIFICATION = "verification.json"


def write_tile_images(corpus_root, records: list[TileRecord], out_dir) -> int:
    """The corpus's tile images into out_dir/<their path> (a hard link where the file system allows, else a copy),
    and their SHA-256 list (sha256sum format). Returns the number of images."""
    corpus_root, out_dir = pathlib.Path(corpus_root), pathlib.Path(out_dir)
    lines = []
    for r in records:
        src, dst = corpus_root / r.path, out_dir / r.path
        if not src.is_file():
            raise ConfigurationError(f"tile image {src} of the corpus is missing; cut the corpus again")
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
        lines.append(f"{sha256_file(dst)}  {r.path}\n")
    (out_dir / TILE_IMAGES).write_text("".join(lines))
    return len(lines)


def add_to_manifest(out_dir, name: str, **fields) -> dict:
    """Record a file written into an existing index folder (its SHA-256 in the manifest) and extra fields."""
    out_dir = pathlib.Path(out_dir)
    manifest = json.loads((out_dir / "manifest.json").read_text())
    manifest["files"][name] = sha256_file(out_dir / name)
    manifest.update(fields)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def write_index(out_dir, descriptors: np.ndarray, entries: np.ndarray, records: list[TileRecord],
                identity: BackboneIdentity, kind: str = "flat", params: dict | None = None,
                extra: dict | None = None) -> dict:
    """Build the FAISS index and write the index folder + manifest. `identity` is the backbone that made the
    descriptors (what the node checks its own against). Returns the manifest."""
    if identity.descriptor_dim != descriptors.shape[1]:
        raise ValueError(f"descriptors are {descriptors.shape[1]}-D but {identity.label} gives "
                         f"{identity.descriptor_dim}-D")
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    budget = latency_budget = scan_rate = None
    if kind == AUTO:
        params = dict(params or {})
        budget = float(params.pop("memory_budget_mib", 0) or 0)
        latency_budget = float(params.pop("latency_budget_ms", 0) or 0)
        if budget <= 0 and latency_budget <= 0:
            raise ConfigurationError("index type auto needs a memory budget (--memory-budget MiB) or a latency "
                                     "budget (--latency-budget ms)")
        scan_rate = measure_scan_ns_per_float(descriptors.shape[1]) if latency_budget > 0 else None
        kind, chosen, _ = choose_index_type(len(descriptors), descriptors.shape[1], budget, latency_budget, scan_rate)
        params = {**chosen, **params}
    params = dict(params or {})
    if kind in RERANK_DEFAULT:
        params.setdefault("rerank", default_rerank(kind))
    t0 = time.perf_counter()
    index = make_faiss_index(descriptors, kind, params)
    build_s = time.perf_counter() - t0
    compression = {}
    recall = None
    if kind == "ivfpq" and "nprobe" not in params:
        params["nprobe"], compression["nprobe_sweep"] = tune_nprobe(index, descriptors, params.get("rerank", 0))
        recall = compression["nprobe_sweep"][-1]["recall_at_10_vs_exact"]  # measured at the chosen nprobe
    if budget is not None or kind != "flat":  # the recall cost of a compressed index, measured
        if recall is None:
            recall = recall_vs_exact(index, descriptors, rerank=params.get("rerank", 0))
        compression.update({"memory_budget_mib": budget, "recall_at_10_vs_exact": round(recall, 4)})
        if latency_budget:  # what the latency choice predicted, and the chosen index's measured search
            compression.update({"latency_budget_ms": latency_budget, "scan_ns_per_float": round(scan_rate, 4),
                                "predicted_exhaustive_ms": round(len(descriptors) * descriptors.shape[1]
                                                                 * scan_rate / 1e6, 3),
                                "search_ms": search_latency_ms(index, descriptors)})
        if params.get("rerank"):
            compression["recall_at_10_vs_exact_without_rerank"] = round(recall_vs_exact(index, descriptors), 4)
    compression["hubness"] = hubness_report(descriptors, entries, index, params.get("rerank", 0))
    faiss.write_index(index, str(out_dir / "index.faiss"))
    compression["index_bytes"] = (out_dir / "index.faiss").stat().st_size
    target = out_dir / "descriptors.npy"
    if not (isinstance(descriptors, np.memmap) and pathlib.Path(descriptors.filename).resolve() == target.resolve()):
        np.save(target, np.ascontiguousarray(descriptors, np.float32))  # else: already written there, streamed
    np.save(out_dir / "entries.npy", np.asarray(entries, np.int32))
    write_tile_table(out_dir / "tiles.csv", records)
    manifest = {
        "format_version": FORMAT_VERSION,
        **identity.manifest_fields(),
        "index_type": kind,
        "index_params": params,
        "metric": "inner_product",
        "tile_count": len(records),
        "entry_count": int(len(entries)),
        "build_seconds": round(build_s, 3),
        **compression,
        "files": {
            name: sha256_file(out_dir / name) for name in INDEX_FILES + OPTIONAL_FILES if (out_dir / name).exists()
        },
        **(extra or {}),
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


