"""Training data: GPS-based triplets from a tile corpus plus its source maps.

Each sample: an anchor = a synthesised drone view (rotation 0-360, scale, tilt, colour, blur, noise,
JPEG: the query synthesiser's augmentations) at a random map position; a positive = a corpus tile
whose centre is within `pos_m` (25 m); a negative = a tile farther than `neg_m`. Batches are mined
online for hard negatives in the Lightning module. The seed's file formats are read too:
triplet CSV `anchor,positive,negative,place` and database CSV `image,lat,lon,heading`.
"""
from __future__ import annotations

import csv
import pathlib

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from vpr_node.core.backbones.preprocess import BackbonePreprocessor
from vpr_node.core.maps.geo import haversine_m
from vpr_node.core.maps.sources import GeoRaster
from vpr_node.core.maps.tiles import TileCorpus
from vpr_node.core.views import augment
from vpr_node.core.views.queries import QuerySpec, synthesise_queries


class CorpusTripletDataset(Dataset):
    """Deterministic (by seed and index) synthesised triplets over a corpus."""

    def __init__(self, corpus: TileCorpus, rasters: list[GeoRaster], preprocessor: BackbonePreprocessor, size: int,
                 seed: int = 0, pos_m: float = 25.0, neg_m: float = 100.0, spec: QuerySpec | None = None,
                 tile_profile: str = "none"):
        self.corpus, self.rasters, self.pre = corpus, rasters, preprocessor
        self.size, self.seed, self.pos_m, self.neg_m = size, seed, pos_m, neg_m
        self.spec = spec or QuerySpec(camera=(480, 270))
        self.tile_profile = tile_profile
        self.lat = np.array([r.lat for r in corpus.records])
        self.lon = np.array([r.lon for r in corpus.records])
        self._maps = None

    def __len__(self):
        return self.size

    def __getitem__(self, i):
        rng = np.random.default_rng((self.seed, i))
        for _ in range(20):
            q = next(synthesise_queries(self.rasters, 1, seed=int(rng.integers(1 << 31)), spec=self.spec))
            d = haversine_m(q.lat, q.lon, self.lat, self.lon)
            pos = np.flatnonzero(d <= self.pos_m)
            neg = np.flatnonzero(d > self.neg_m)
            if len(pos) and len(neg):
                break
        else:
            raise RuntimeError("could not sample a triplet: corpus and maps do not overlap")
        p = int(pos[np.argmin(d[pos])]) if rng.random() < 0.5 else int(rng.choice(pos))
        n = int(rng.choice(neg))
        tile_p = np.ascontiguousarray(np.rot90(self.corpus.image(p), int(rng.integers(4))))
        tile_n = self.corpus.image(n)
        if self.tile_profile != "none":  # the map imagery varies too (another capture, season or sensor)
            tile_p, tile_n = (
                augment.apply(self.tile_profile, rng, tile_p),
                augment.apply(self.tile_profile, rng, tile_n),
            )
        x = self.pre([q.image, tile_p, tile_n])
        return {"anchor": x[0], "positive": x[1], "negative": x[2], "place": p,
                "anchor_latlon": torch.tensor([q.lat, q.lon], dtype=torch.float64),
                "positive_latlon": torch.tensor([self.lat[p], self.lon[p]], dtype=torch.float64),
                "negative_latlon": torch.tensor([self.lat[n], self.lon[n]], dtype=torch.float64)}


class TripletCsvDataset(Dataset):
    """The seed's triplet file: `anchor,positive,negative,place` (image paths relative to the CSV)."""

    def __init__(self, csv_path, preprocessor: BackbonePreprocessor):
        self.root = pathlib.Path(csv_path).parent
        with open(csv_path, newline="") as f:
            self.rows = list(csv.DictReader(f))
        missing = {"anchor", "positive", "negative", "place"} - set(self.rows[0] if self.rows else {})
        if missing:
            raise ValueError(
                f"{csv_path}: triplet file needs columns anchor,positive,negative,place (missing {missing})"
            )
        self.pre = preprocessor

    def __len__(self):
        return len(self.rows)

    def _img(self, rel):
        img = cv2.imread(str(self.root / rel), cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(self.root / rel)
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    def __getitem__(self, i):
        r = self.rows[i]
        x = self.pre([self._img(r["anchor"]), self._img(r["positive"]), self._img(r["negative"])])
        return {"anchor": x[0], "positive": x[1], "negative": x[2], "place": int(r["place"])}


def read_database_csv(csv_path) -> list[dict]:
    """The seed's database file: `image,lat,lon,heading` -> list of dicts with floats."""
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [{"image": str(pathlib.Path(csv_path).parent / r["image"]), "lat": float(r["lat"]), "lon": float(r["lon"]),
             "heading": float(r.get("heading") or 0.0)} for r in rows]
