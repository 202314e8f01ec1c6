"""Where the package's data folders are: msg/, config/, models/ (model cards).

The same code runs from a source checkout (the folders beside vpr_node/), from a colcon install
(share/vpr_node/<folder> on AMENT_PREFIX_PATH) and from a pip install (share/vpr_node/<folder> under
sys.prefix, installed as data files by setup.py)."""
from __future__ import annotations

import os
import pathlib
import sys


def data_dir(name: str) -> pathlib.Path | None:
    """The first existing <root>/<name> among: the source tree, the install prefix's share folder,
    AMENT_PREFIX_PATH share folders, sys.prefix share."""
    here = pathlib.Path(__file__).resolve()
    candidates = [here.parents[2] / name]
    if len(here.parents) > 5:  # <prefix>/lib/pythonX.Y/site-packages/vpr_node/core: pip --prefix, colcon install
        candidates.append(here.parents[5] / "share" / "vpr_node" / name)
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(pathlib.Path(prefix) / "share" / "vpr_node" / name)
    candidates.append(pathlib.Path(sys.prefix) / "share" / "vpr_node" / name)
    return next((c for c in candidates if c.is_dir()), None)


def data_file(folder: str, filename: str) -> pathlib.Path | None:
    d = data_dir(folder)
    return d / filename if d is not None and (d / filename).is_file() else None
