"""SelaVPR (Lu et al., ICLR 2024, github.com/Lu-Feng/SelaVPR): DINOv2 ViT-L/14 with lightweight adapters
in every block (a serial adapter after attention, a parallel one beside the MLP, scaled 0.2), then the
global descriptor = GeM over the L2-normalised patch tokens (1024-D), and dense local features for
re-ranking = two transposed convolutions over the patch-token map (LocalAdapt: 16x16 -> 61x61 x 128 at
224 px), exposed as `local_features()` for the downstream re-ranker.

Module names follow the authors' GeoLocalizationNet (`backbone` = the DINOv2 ViT with `blocks.<i>.adapter1
/ adapter2.D_fc1 / D_fc2`, `aggregation.1.p`, `LocalAdapt.upconv1 / upconv2`), so their released
checkpoints ({"model_state_dict": ...}, DataParallel `module.` prefixes) load strictly through
`vpr convert-checkpoint --backbone selavpr`. The ViT is timm's DINOv2 in the hub's parameter layout
(dinov2_family.py), position embeddings resized the hub's way. Input 224x224 (the authors' default
resize), ImageNet mean/std.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vpr_node.core.backbones.base import VprBackbone
from vpr_node.core.backbones.dinov2_family import PATCH, hub_tokens, timm_dinov2
from vpr_node.core.backbones.layers import FlattenSpatial, GeM4d, L2Norm
from vpr_node.core.backbones.normalise import DescriptorNormaliser
from vpr_node.core.backbones.preprocess import BackbonePreprocessor
from vpr_node.core.backbones.published import convert_by_loading, load_published_weights
from vpr_node.core.backbones.registry import BackboneSpec, register
from vpr_node.core.backbones.weights import Provenance
from vpr_node.core.errors import ConfigurationError


class Adapter(nn.Module):
    """The authors' Adapter: Linear(D, D * ratio) -> ReLU -> Linear(D * ratio, D), plus x when skip_connect."""

    def __init__(self, dim: int, mlp_ratio: float = 0.5, skip_connect: bool = True):
        super().__init__()
        self.skip_connect = skip_connect
        self.act = nn.ReLU()
        self.D_fc1 = nn.Linear(dim, int(dim * mlp_ratio))
        self.D_fc2 = nn.Linear(int(dim * mlp_ratio), dim)

    def forward(self, x):
        xs = self.D_fc2(self.act(self.D_fc1(x)))
        return x + xs if self.skip_connect else xs


class LocalAdapt(nn.Module):
    def __init__(self, dim: int = 1024):
        super().__init__()
        self.upconv1 = nn.ConvTranspose2d(dim, 256, kernel_size=3, stride=2, padding=1)
        self.upconv2 = nn.ConvTranspose2d(256, 128, kernel_size=3, stride=2, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.upconv2(self.relu(self.upconv1(x)))


class SelaVprNet(VprBackbone):
    label = "selavpr"

    def __init__(self, variant: str = "dinov2_vitl14", input_size: int = 224):
        super().__init__()
        if input_size % PATCH:
            raise ConfigurationError(f"selavpr: input_size {input_size} must be a multiple of 14 (e.g. 224)",
                                     parameter="backbone_options.input_size")
        self.backbone, channels = timm_dinov2(variant)
        for blk in self.backbone.blocks:
            blk.adapter1 = Adapter(channels, 0.5)  # serial adapter
            blk.adapter2 = Adapter(channels, 0.5, skip_connect=False)  # parallel adapter
        self.aggregation = nn.Sequential(L2Norm(), GeM4d(), FlattenSpatial())
        self.LocalAdapt = LocalAdapt(channels)
        self.descriptor_dim = channels
        self.preprocessor = BackbonePreprocessor(size=(input_size, input_size))
        self.provenance = Provenance(source="random initialisation", trained=False, notes="no published weights loaded")

    def patch_map(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised patch tokens as a (B, C, H/14, W/14) map, through the adapted blocks."""
        b, _, h, w = x.shape
        vit = self.backbone
        t = hub_tokens(vit, x)
        for blk in vit.blocks:
            t = t + blk.ls1(blk.adapter1(blk.attn(blk.norm1(t))))
            n2 = blk.norm2(t)
            t = t + blk.ls2(blk.mlp(n2) + 0.2 * blk.adapter2(n2))
        t = vit.norm(t)[:, 1:]
        return t.reshape(b, h // PATCH, w // PATCH, -1).permute(0, 3, 1, 2)

    def descriptor(self, x: torch.Tensor) -> torch.Tensor:
        return DescriptorNormaliser.l2_normalise(self.aggregation(self.patch_map(x)))

    @torch.inference_mode()
    def local_features(self, x: torch.Tensor) -> torch.Tensor:
        """Dense local features for re-ranking: (B, 4H/14 - 3, 4W/14 - 3, 128), unit-norm (61x61 at 224 px)."""
        return F.normalize(self.LocalAdapt(self.patch_map(x)).permute(0, 2, 3, 1), p=2, dim=-1)


def _selavpr(weights=None, **opts):
    try:
        model = SelaVprNet(**opts)
    except TypeError as exc:
        raise ConfigurationError(f"selavpr: bad backbone_options {opts}: {exc}", parameter="backbone_options") from exc
    return load_published_weights(model, weights, "selavpr", ("backbone.", "aggregation.", "LocalAdapt.")) \
        if weights else model


register(BackboneSpec("selavpr", _selavpr, display_name="SelaVPR", convert=convert_by_loading("selavpr")))
