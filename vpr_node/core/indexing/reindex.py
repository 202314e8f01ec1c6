"""`vpr reindex`: an index folder's FAISS index rebuilt from its descriptors with another type or memory budget
(another aircraft's budget, a tuned IVF), without embedding anything."""
from __future__ import annotations

import pathlib
import shutil

import numpy as np

from vpr_node.core.backbones.identity import BackboneIdentity
from vpr_node.core.index.folder import TILE_IMAGES, VERIFICATION, write_index
from vpr_node.core.index.loaded import DescriptorIndex
from vpr_node.core.maps.tiles import read_tile_table

CARRIED = ("rotations", "corpus", "weights_file", "tile_plan", "build", "pca", "adaptation", "tile_images",
           "verification")


def rebuild_index(src, out, kind: str = "flat", params: dict | None = None) -> dict:
    """Descriptors, tiles, entries and the weights file are copied (streamed) to `out`, the backbone identity and
    build records carry over. `out` may be `src`."""
    src, out = pathlib.Path(src), pathlib.Path(out)
    old = DescriptorIndex(src)  # verified: hashes match the manifest
    m = old.manifest
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() != src.resolve():
        extras = [n for n in (TILE_IMAGES, VERIFICATION) if (src / n).is_file()]
        for name in ("descriptors.npy", *([m["weights_file"]] if m.get("weights_file") else []), *extras):
            shutil.copyfile(src / name, out / name)
        if (src / "tiles").is_dir():
            shutil.copytree(src / "tiles", out / "tiles", dirs_exist_ok=True)
    del old
    descriptors = np.load(out / "descriptors.npy", mmap_mode="r")
    return write_index(out, descriptors, np.load(src / "entries.npy"), read_tile_table(src / "tiles.csv"),
                       BackboneIdentity.from_manifest(m), kind, params,
                       extra={**{k: m[k] for k in CARRIED if k in m}, "rebuilt_from": str(src)})
