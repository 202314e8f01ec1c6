"""Descriptor normalisation shared by all backbones (torch and numpy)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


class DescriptorNormaliser:
    """L2 normalisations. NetVLAD uses `intra_cluster_normalise` THEN `l2_normalise`."""

    eps = 1e-12

    @staticmethod
    def l2_normalise(x):
        """Unit-norm rows. Accepts torch tensors (N, D) or numpy arrays (N, D)/(D,)."""
        if isinstance(x, torch.Tensor):
            return F.normalize(x, p=2, dim=-1, eps=DescriptorNormaliser.eps)
        x = np.asarray(x, dtype=np.float32)
        n = np.linalg.norm(x, axis=-1, keepdims=True)
        return x / np.maximum(n, DescriptorNormaliser.eps)

    @staticmethod
    def intra_cluster_normalise(vlad: torch.Tensor) -> torch.Tensor:
        """Unit-norm each cluster's residual sub-vector: input (N, K, C) -> (N, K, C)."""
        if vlad.dim() != 3:
            raise ValueError(f"intra-cluster normalisation expects (N, K, C), got {tuple(vlad.shape)}")
        return F.normalize(vlad, p=2, dim=2, eps=DescriptorNormaliser.eps)
