"""The developer maps: ../shared/data/*/tiles.csv beside the checkout (read there, never copied: tests and
benchmarks skip where they are absent)."""
from __future__ import annotations

import os
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[3]  # vpr_node/core/benchmarks/ -> the checkout


def shared_data_dir() -> pathlib.Path:
    """VPR_SHARED_DIR/data, else ../shared/data beside the checkout."""
    return pathlib.Path(os.environ.get("VPR_SHARED_DIR", REPO.parent / "shared")) / "data"


def developer_maps() -> list[pathlib.Path]:
    """Every developer map (../shared/data/*/tiles.csv beside the checkout)."""
    return sorted(shared_data_dir().glob("*/tiles.csv"))


def default_maps_csv() -> pathlib.Path:
    return shared_data_dir() / "wildnav_turku" / "tiles.csv"


def resolve_maps(arg) -> str | None:
    """compare-backbones' single map (default: wildnav_turku)."""
    maps = arg or str(default_maps_csv())
    if not pathlib.Path(maps).exists():
        print(f"map table {maps} not found; pass --maps")
        return None
    return maps
