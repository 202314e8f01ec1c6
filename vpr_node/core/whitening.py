"""Descriptor whitening fitted on a mission map: hubness reduction and cheap domain adaptation.

Global descriptors of one map share a large common component (every tile is "aerial imagery of this
area"), so a few generic tiles end up near everything: hubs that win top-1 for unrelated queries.
Centring on the map's own mean and whitening its covariance removes that component.

- `fit_pca_whitening`: unsupervised PCA-whitening of the map's descriptors (centre, rotate onto the
  principal axes, divide by sqrt(eigenvalue + shrinkage)).
- `fit_learned_whitening`: the supervised "Lw" of Radenovic, Tolias and Chum (TPAMI 2018, cirtorch's
  `whitenlearn`): whiten by the covariance of *matching-pair differences* (here: a synthesised drone
  view of a map position and the map tile at that position), so directions in which a camera frame
  differs from its own tile (season, sensor, scale, tilt) are damped, then rotate onto the principal
  axes of the whitened data and keep the strongest `dim`. No labels beyond the map's own geometry.

Both return a `Whitening` (mean, projection) that is applied as `normalise(P (x - mean))`, i.e. a
Linear layer with weight P and bias -P mean followed by L2; backbones store it as their `whiten` layer
so the adapted weights file carries it and the node loads it like any other weights.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn as nn


@dataclasses.dataclass
class Whitening:
    mean: np.ndarray  # (D,)
    projection: np.ndarray  # (d, D)
    method: str
    shrinkage: float

    @property
    def dim(self) -> int:
        return int(self.projection.shape[0])

    def truncated(self, dim: int) -> "Whitening":
        """The same whitening keeping its `dim` strongest output directions (rows are sorted by variance)."""
        return Whitening(self.mean, self.projection[:dim], self.method, self.shrinkage)

    def apply(self, x: np.ndarray) -> np.ndarray:
        y = (np.asarray(x, np.float64) - self.mean) @ self.projection.T
        return (y / np.maximum(np.linalg.norm(y, axis=-1, keepdims=True), 1e-12)).astype(np.float32)

    def as_linear(self) -> nn.Linear:
        lin = nn.Linear(self.projection.shape[1], self.dim)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(self.projection).float())
            lin.bias.copy_(torch.from_numpy(-(self.projection @ self.mean)).float())
        return lin


def _shrunk(cov: np.ndarray, shrinkage: float) -> np.ndarray:
    """Ledoit-Wolf-style shrinkage towards a scaled identity (the covariances here are rank-deficient:
    a few thousand samples in 3072 dimensions)."""
    d = cov.shape[0]
    return (1.0 - shrinkage) * cov + shrinkage * (np.trace(cov) / d) * np.eye(d)


def _inv_sqrt(cov: np.ndarray) -> np.ndarray:
    evals, evecs = np.linalg.eigh(cov)
    evals = np.maximum(evals, evals.max() * 1e-9)
    return (evecs / np.sqrt(evals)) @ evecs.T


def fit_pca_whitening(x: np.ndarray, dim: int, shrinkage: float = 0.1) -> Whitening:
    x = np.asarray(x, np.float64)
    mean = x.mean(0)
    xc = x - mean
    return pca_whitening_from_moments(mean, xc.T @ xc / max(1, len(x) - 1), dim, shrinkage)


def pca_whitening_from_moments(mean: np.ndarray, cov: np.ndarray, dim: int, shrinkage: float = 0.1) -> Whitening:
    """PCA-whitening from a mean and covariance (accumulated in one streaming pass over a large corpus)."""
    evals, evecs = np.linalg.eigh(_shrunk(np.asarray(cov, np.float64), shrinkage))
    order = np.argsort(evals)[::-1][:dim]
    proj = (evecs[:, order] / np.sqrt(np.maximum(evals[order], 1e-12))).T
    return Whitening(np.asarray(mean, np.float64), proj, "pca", shrinkage)


def fit_learned_whitening(x: np.ndarray, pairs: np.ndarray, dim: int | None = None,
                          shrinkage: float = 0.1) -> Whitening:
    """x: (N, D) descriptors; pairs: (P, 2) row indices of matching descriptors (view, its tile). Output rows
    sorted by whitened variance, so `.truncated(d)` gives the d-dimensional fit (dim=None keeps all)."""
    x = np.asarray(x, np.float64)
    pairs = np.asarray(pairs, np.int64)
    if pairs.ndim != 2 or pairs.shape[1] != 2 or len(pairs) < 2:
        raise ValueError("learned whitening needs at least two matching pairs (P, 2)")
    mean = x[np.unique(pairs.ravel())].mean(0)
    diff = x[pairs[:, 0]] - x[pairs[:, 1]]
    p_intra = _inv_sqrt(_shrunk(diff.T @ diff / len(diff), shrinkage))
    xw = (x - mean) @ p_intra.T
    evals, evecs = np.linalg.eigh(xw.T @ xw / max(1, len(x) - 1))
    order = np.argsort(evals)[::-1][:dim]
    proj = evecs[:, order].T @ p_intra
    return Whitening(mean, proj, "learned", shrinkage)


def top1_hubness(top1: np.ndarray, n_tiles: int) -> dict:
    """How concentrated the top-1 answers are. `max_share`: fraction of all queries whose top-1 is the
    single most frequent tile (a hub); `distinct_share`: distinct top-1 tiles / min(queries, tiles);
    `skewness` of the per-tile top-1 counts (0 for an even spread, large when a few tiles win)."""
    top1 = np.asarray(top1, np.int64)
    if top1.size == 0:
        return {"queries": 0, "max_share": 0.0, "hub_tile_row": None, "distinct_share": 0.0, "skewness": 0.0}
    counts = np.bincount(top1, minlength=n_tiles).astype(np.float64)
    sd = counts.std()
    skew = float(((counts - counts.mean()) ** 3).mean() / sd ** 3) if sd > 0 else 0.0
    return {"queries": int(top1.size), "max_share": round(float(counts.max() / top1.size), 4),
            "hub_tile_row": int(counts.argmax()),
            "distinct_share": round(float((counts > 0).sum() / min(top1.size, n_tiles)), 4),
            "skewness": round(skew, 3)}
