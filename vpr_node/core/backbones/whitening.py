"""Descriptor whitening fitted on a mission map: hubness reduction and cheap domain adaptation.

Global descriptors of one map share a large common component (every tile is "aerial imagery of this
area"), so a few generic tiles end up near everything: hubs that win top-1 for unrelated queries.
Centring on the map's own mean and whitening its covariance removes that component.

- `pca_whitening_from_moments`: unsupervised PCA-whitening of a corpus's descriptors from their mean and
  covariance (centre, rotate onto the principal axes, divide by sqrt(eigenvalue + shrinkage)); build-index
  --pca-dim accumulates the moments over every shard.
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

    def apply(self, x: np.ndarray, block_rows: int = 8192) -> np.ndarray:
        """normalise(P (x - mean)) of every row, float32, computed a block of rows at a time."""
        out = np.empty((len(x), self.dim), np.float32)
        for s in range(0, len(x), block_rows):
            y = (np.asarray(x[s:s + block_rows], np.float64) - self.mean) @ self.projection.T
            out[s:s + block_rows] = y / np.maximum(np.linalg.norm(y, axis=-1, keepdims=True), 1e-12)
        return out

    def save(self, path) -> None:
        np.savez(path, mean=self.mean, projection=self.projection, method=self.method, shrinkage=self.shrinkage)

    @classmethod
    def load(cls, path) -> "Whitening":
        z = np.load(path)
        return cls(z["mean"], z["projection"], str(z["method"]), float(z["shrinkage"]))

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


def pca_whitening_from_moments(mean: np.ndarray, cov: np.ndarray, dim: int, shrinkage: float = 0.1) -> Whitening:
    """PCA-whitening from a mean and covariance (accumulated in one streaming pass over a large corpus)."""
    evals, evecs = np.linalg.eigh(_shrunk(np.asarray(cov, np.float64), shrinkage))
    order = np.argsort(evals)[::-1][:dim]
    proj = (evecs[:, order] / np.sqrt(np.maximum(evals[order], 1e-12))).T
    return Whitening(np.asarray(mean, np.float64), proj, "pca", shrinkage)


def fit_learned_whitening(x: np.ndarray, pairs: np.ndarray, dim: int | None = None, shrinkage: float = 0.1,
                          block_rows: int = 4096) -> Whitening:
    """x: (N, D) descriptors (float32; in memory or memory-mapped); pairs: (P, 2) row indices of matching
    descriptors (view, its tile). Output rows sorted by whitened variance, so `.truncated(d)` gives the
    d-dimensional fit (dim=None keeps all). The covariances are accumulated in float64 a block of rows at a time:
    memory is a few D x D matrices and a block, not a float64 copy of x."""
    pairs = np.asarray(pairs, np.int64)
    if pairs.ndim != 2 or pairs.shape[1] != 2 or len(pairs) < 2:
        raise ValueError("learned whitening needs at least two matching pairs (P, 2)")
    d = x.shape[1]
    paired = np.unique(pairs.ravel())
    mean = np.zeros(d)
    for s in range(0, len(paired), block_rows):
        mean += np.asarray(x[paired[s:s + block_rows]], np.float64).sum(0)
    mean /= len(paired)
    c_diff = np.zeros((d, d))
    for s in range(0, len(pairs), block_rows):
        p = pairs[s:s + block_rows]
        diff = np.asarray(x[p[:, 0]], np.float64) - np.asarray(x[p[:, 1]], np.float64)
        c_diff += diff.T @ diff
    p_intra = _inv_sqrt(_shrunk(c_diff / len(pairs), shrinkage))
    c_x = np.zeros((d, d))
    for s in range(0, len(x), block_rows):
        xc = np.asarray(x[s:s + block_rows], np.float64) - mean
        c_x += xc.T @ xc
    evals, evecs = np.linalg.eigh(p_intra @ (c_x / max(1, len(x) - 1)) @ p_intra.T)  # covariance of the whitened x
    order = np.argsort(evals)[::-1][:dim]
    proj = evecs[:, order].T @ p_intra
    return Whitening(mean, proj, "learned", shrinkage)
