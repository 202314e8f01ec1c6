"""Aggregation layers shared by backbones: GeM pooling (flat, or keeping (N, C, 1, 1) as the published
models' heads do), L2 normalisation and spatial flattening as modules, and the NetVLAD pool."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from vpr_node.core.backbones.normalise import DescriptorNormaliser


class GeM(nn.Module):
    """Generalised-mean pooling (Radenovic et al.): (N, C, H, W) -> (N, C)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6, learnable: bool = True):
        super().__init__()
        self.p = nn.Parameter(torch.tensor([float(p)]), requires_grad=learnable)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.p.to(x.dtype)
        return x.clamp(min=self.eps).pow(p).mean(dim=(-2, -1)).pow(1.0 / p)


class GeM4d(GeM):
    """GeM keeping the (N, C, 1, 1) shape, parameter `p` of shape (1,): the layout of CosPlace/EigenPlaces,
    SelaVPR and UltraVPR heads (a mean over the map, so it exports to ONNX with dynamic sizes)."""

    def forward(self, x):
        return super().forward(x)[:, :, None, None]


class L2Norm(nn.Module):
    """L2 normalisation over channels (dim 1) as a module, for nn.Sequential heads."""

    def forward(self, x):
        return F.normalize(x, p=2, dim=1)


class FlattenSpatial(nn.Module):
    """(N, C, 1, 1) -> (N, C)."""

    def forward(self, x):
        return x[:, :, 0, 0]


class NetVLADPool(nn.Module):
    """NetVLAD pooling (Arandjelovic et al. 2016), as in Nanne/pytorch-NetVlad.

    Input features are L2-normalised per location; soft-assignment is a 1x1 conv + softmax; the VLAD
    residuals are intra-normalised per cluster (DescriptorNormaliser.intra_cluster_normalise). The
    global L2 is left to the caller so that it happens exactly once, after any PCA projection.
    Output: (N, K, C) intra-normalised residuals.
    """

    def __init__(self, num_clusters: int = 64, dim: int = 512, alpha: float = 100.0, conv_bias: bool = False,
                 normalise_input: bool = True):
        super().__init__()
        self.num_clusters, self.dim, self.alpha = num_clusters, dim, alpha
        self.normalise_input = normalise_input
        self.conv = nn.Conv2d(dim, num_clusters, kernel_size=1, bias=conv_bias)
        self.centroids = nn.Parameter(torch.rand(num_clusters, dim))

    def init_from_features(self, centroids: np.ndarray, descriptors: np.ndarray) -> None:
        """NetVLAD paper initialisation from k-means centroids over (L2-normalised) local features."""
        centroids = np.asarray(centroids, np.float32)
        clsts = centroids / np.linalg.norm(centroids, axis=1, keepdims=True).clip(1e-12)
        sample = np.asarray(descriptors, np.float32)
        dots = sample @ clsts.T
        dots.sort(axis=1)
        dots = dots[:, ::-1]
        self.alpha = float((-np.log(0.01) / np.mean(dots[:, 0] - dots[:, 1])).item())
        self.centroids.data.copy_(torch.from_numpy(centroids))
        self.conv.weight.data.copy_(torch.from_numpy(self.alpha * clsts).unsqueeze(2).unsqueeze(3))
        if self.conv.bias is not None:
            self.conv.bias.data.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        if self.normalise_input:
            x = F.normalize(x, p=2, dim=1)
        soft_assign = F.softmax(self.conv(x).view(n, self.num_clusters, -1), dim=1)  # (N, K, HW)
        x_flat = x.view(n, c, -1)  # (N, C, HW)
        # sum_i a_k(x_i) (x_i - c_k) = A @ X^T - (sum_i a_k(x_i)) c_k
        vlad = torch.bmm(soft_assign, x_flat.transpose(1, 2)) - soft_assign.sum(
            -1, keepdim=True
        ) * self.centroids.unsqueeze(0)
        return DescriptorNormaliser.intra_cluster_normalise(vlad)
