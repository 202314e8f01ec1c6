"""DINOv2-based VPR models in their authors' module layouts, so their released files load strictly.

The trunk is timm's DINOv2 ViT (`vit_{small,base,large}_patch14_dinov2`), whose parameter names equal
the facebookresearch/dinov2 torch.hub model's (`cls_token`, `pos_embed`, `patch_embed.proj.*`,
`blocks.<i>.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.fc1,mlp.fc2,ls2.gamma}`, `norm.*`); the
hub's `mask_token` (used only for masked pre-training) is kept as an unused parameter so the authors'
state_dicts load with strict=True. Positional embeddings are resized the hub's way (bicubic with
scale factor (grid + 0.1) / 37, no antialias), not timm's, so outputs match the authors' forward.

- `salad` (serizba/salad, `dino_salad.ckpt`): `backbone.model.*` + SALAD aggregator
  (`aggregator.{token_features,cluster_features,score}.*`, `aggregator.dust_bin`); DINOv2 ViT-B/14
  with the final norm, 64 clusters x 128 + 256 token = 8448-D, 322x322 input.
- `megaloc` (gmberton/MegaLoc, `megaloc.torch`): `backbone.model.*` + `aggregator.agg.*` (SALAD with
  64 x 256 + 256) + `aggregator.linear` (16640 -> 8448), L2; 322x322 input.
- `boq` (amaralibey/Bag-of-Queries, `dinov2_12288.pth`): `backbone.dino.*` (no final norm) + BoQ
  (`aggregator.proj_c`, `aggregator.norm_input`, `aggregator.boqs.<i>.{encoder,queries,self_attn,
  norm_q,cross_attn,norm_out}`, `aggregator.fc`): 384 x 32 = 12288-D, 322x322 input.

Users download the files from the authors' release pages and run
`vpr convert-checkpoint --backbone salad|megaloc|boq --checkpoint <file> --out <file.pt>`.
"""
from __future__ import annotations

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

from vpr_node.core.backbones.base import VprBackbone
from vpr_node.core.backbones.normalise import DescriptorNormaliser
from vpr_node.core.backbones.preprocess import BackbonePreprocessor
from vpr_node.core.backbones.published import convert_by_loading, load_published_weights
from vpr_node.core.backbones.registry import BackboneSpec, register
from vpr_node.core.backbones.weights import Provenance
from vpr_node.core.errors import ConfigurationError

DINOV2_VARIANTS = {"dinov2_vits14": ("vit_small_patch14_dinov2", 384),
                   "dinov2_vitb14": ("vit_base_patch14_dinov2", 768),
                   "dinov2_vitl14": ("vit_large_patch14_dinov2", 1024)}


PATCH = 14


def hub_tokens(vit: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Patch embedding + class token + position embedding, resized the torch.hub DINOv2 way (bicubic with
    scale factor (grid + 0.1) / 37, no antialias), for a timm DINOv2 ViT in the hub's parameter layout."""
    b, _, h, w = x.shape
    if h % PATCH or w % PATCH:
        raise ConfigurationError(f"DINOv2 input {h}x{w} must be a multiple of {PATCH}")
    c = vit.cls_token.shape[-1]
    tokens = torch.cat([vit.cls_token.expand(b, -1, -1), vit.patch_embed(x).reshape(b, -1, c)], dim=1)
    h0, w0 = h // PATCH, w // PATCH
    pos = vit.pos_embed.float()
    cls_pos, patch_pos = pos[:, :1], pos[:, 1:]
    m = int(round(patch_pos.shape[1] ** 0.5))
    if (h0, w0) != (m, m):
        grid = F.interpolate(patch_pos.reshape(1, m, m, -1).permute(0, 3, 1, 2), mode="bicubic", antialias=False,
                             scale_factor=((h0 + 0.1) / m, (w0 + 0.1) / m))
        if tuple(grid.shape[-2:]) != (h0, w0):
            raise ConfigurationError(f"position-embedding resize gave {tuple(grid.shape[-2:])}, wanted {(h0, w0)}")
        patch_pos = grid.permute(0, 2, 3, 1).reshape(1, h0 * w0, -1)
    return tokens + torch.cat([cls_pos, patch_pos], dim=1).to(tokens.dtype)


def timm_dinov2(variant: str) -> tuple[nn.Module, int]:
    """A timm DINOv2 ViT with the hub's parameter names (+ the hub's unused mask_token) and its width."""
    if variant not in DINOV2_VARIANTS:
        raise ConfigurationError(
            f"DINOv2 variant {variant!r} not supported; choose one of {', '.join(DINOV2_VARIANTS)}"
        )
    timm_name, channels = DINOV2_VARIANTS[variant]
    vit = timm.create_model(timm_name, pretrained=False, dynamic_img_size=True, num_classes=0)
    vit.mask_token = nn.Parameter(torch.zeros(1, channels))  # hub layout; unused at inference
    return vit, channels


class DinoV2Trunk(nn.Module):
    """DINOv2 ViT stored under `attr` (`model` for SALAD/MegaLoc, `dino` for BoQ).

    forward(x) -> (patch features (B, C, H/14, W/14), class token (B, C)), after the final LayerNorm
    when `final_norm` (SALAD, MegaLoc) and without it otherwise (BoQ)."""

    PATCH = PATCH

    def __init__(self, variant: str = "dinov2_vitb14", attr: str = "model", final_norm: bool = True):
        super().__init__()
        vit, self.num_channels = timm_dinov2(variant)
        self._attr = attr
        setattr(self, attr, vit)
        self.final_norm = final_norm

    @property
    def vit(self) -> nn.Module:
        return getattr(self, self._attr)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, h, w = x.shape
        vit = self.vit
        tokens = hub_tokens(vit, x)
        for blk in vit.blocks:
            tokens = blk(tokens)
        if self.final_norm:
            tokens = vit.norm(tokens)
        feats = tokens[:, 1:].reshape(b, h // self.PATCH, w // self.PATCH, self.num_channels).permute(0, 3, 1, 2)
        return feats, tokens[:, 0]


# --- SALAD (also the core of MegaLoc) ----------------------------------------------------------
def sinkhorn_with_dustbin(scores: torch.Tensor, dustbin: torch.Tensor, iters: int = 3) -> torch.Tensor:
    """Log-space optimal transport of SuperGlue as used by SALAD/MegaLoc: scores (B, m, n) plus a
    dustbin row of value `dustbin`; returns log assignment (B, m + 1, n) scaled by m + n."""
    b, m, n = scores.shape
    couplings = torch.cat([scores, dustbin.to(scores).expand(b, 1, n)], dim=1)
    norm = -torch.log(torch.tensor(float(m + n), dtype=scores.dtype, device=scores.device))
    log_mu = torch.cat([norm.expand(m), (torch.log(torch.tensor(float(n - m), dtype=scores.dtype,
                                                                 device=scores.device)) + norm)[None]])
    log_nu = norm.expand(n)
    log_mu, log_nu = log_mu[None].expand(b, -1), log_nu[None].expand(b, -1)
    u, v = torch.zeros_like(log_mu), torch.zeros_like(log_nu)
    for _ in range(iters):
        u = log_mu - torch.logsumexp(couplings + v.unsqueeze(1), dim=2)
        v = log_nu - torch.logsumexp(couplings + u.unsqueeze(2), dim=1)
    return couplings + u.unsqueeze(2) + v.unsqueeze(1) - norm


class SaladAggregator(nn.Module):
    def __init__(self, num_channels=768, num_clusters=64, cluster_dim=128, token_dim=256, mlp_dim=512, dropout=0.3):
        super().__init__()
        self.num_clusters, self.cluster_dim, self.token_dim = num_clusters, cluster_dim, token_dim
        drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.token_features = nn.Sequential(nn.Linear(num_channels, mlp_dim), nn.ReLU(), nn.Linear(mlp_dim, token_dim))
        self.cluster_features = nn.Sequential(nn.Conv2d(num_channels, mlp_dim, 1), drop, nn.ReLU(),
                                              nn.Conv2d(mlp_dim, cluster_dim, 1))
        self.score = nn.Sequential(nn.Conv2d(num_channels, mlp_dim, 1), drop, nn.ReLU(),
                                   nn.Conv2d(mlp_dim, num_clusters, 1))
        self.dust_bin = nn.Parameter(torch.tensor(1.0))

    @property
    def out_dim(self) -> int:
        return self.num_clusters * self.cluster_dim + self.token_dim

    def forward(self, x: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        feats, token = x
        f = self.cluster_features(feats).flatten(2)  # (B, l, n)
        p = torch.exp(sinkhorn_with_dustbin(self.score(feats).flatten(2), self.dust_bin, 3))[:, :-1, :]  # (B, m, n)
        t = self.token_features(token)
        vlad = torch.einsum("bln,bmn->blm", f, p)  # = sum_n f[b,l,n] * p[b,m,n]
        vlad = F.normalize(vlad, p=2, dim=1).flatten(1)
        return F.normalize(torch.cat([F.normalize(t, p=2, dim=-1), vlad], dim=-1), p=2, dim=-1)


class _MegaLocAggregator(nn.Module):
    def __init__(self, num_channels=768, feat_dim=8448, num_clusters=64, cluster_dim=256, token_dim=256, mlp_dim=512):
        super().__init__()
        self.agg = SaladAggregator(num_channels, num_clusters, cluster_dim, token_dim, mlp_dim)
        self.linear = nn.Linear(self.agg.out_dim, feat_dim)

    def forward(self, x):
        return self.linear(self.agg(x))


# --- BoQ ---------------------------------------------------------------------------------------
class BoQBlock(nn.Module):
    def __init__(self, in_dim: int, num_queries: int, nheads: int):
        super().__init__()
        self.encoder = nn.TransformerEncoderLayer(d_model=in_dim, nhead=nheads, dim_feedforward=4 * in_dim,
                                                  batch_first=True, dropout=0.0)
        self.queries = nn.Parameter(torch.randn(1, num_queries, in_dim))
        self.self_attn = nn.MultiheadAttention(in_dim, num_heads=nheads, batch_first=True)
        self.norm_q = nn.LayerNorm(in_dim)
        self.cross_attn = nn.MultiheadAttention(in_dim, num_heads=nheads, batch_first=True)
        self.norm_out = nn.LayerNorm(in_dim)

    def forward(self, x):
        x = self.encoder(x)
        q = self.queries.expand(x.size(0), -1, -1)
        q = self.norm_q(q + self.self_attn(q, q, q, need_weights=False)[0])
        out = self.norm_out(self.cross_attn(q, x, x, need_weights=False)[0])
        return x, out


class BoQAggregator(nn.Module):
    def __init__(self, in_channels=768, proj_channels=384, num_queries=64, num_layers=2, row_dim=32):
        super().__init__()
        self.proj_c = nn.Conv2d(in_channels, proj_channels, kernel_size=3, padding=1)
        self.norm_input = nn.LayerNorm(proj_channels)
        self.boqs = nn.ModuleList(
            [BoQBlock(proj_channels, num_queries, proj_channels // 64) for _ in range(num_layers)]
        )
        self.fc = nn.Linear(num_layers * num_queries, row_dim)
        self.out_dim = proj_channels * row_dim

    def forward(self, x):
        x = self.norm_input(self.proj_c(x).flatten(2).permute(0, 2, 1))
        outs = []
        for blk in self.boqs:
            x, out = blk(x)
            outs.append(out)
        out = self.fc(torch.cat(outs, dim=1).permute(0, 2, 1)).flatten(1)
        return F.normalize(out, p=2, dim=-1)


# --- the three registry backbones --------------------------------------------------------------
class _DinoV2Vpr(VprBackbone):
    def __init__(self, label: str, input_size: int):
        super().__init__()
        if input_size % DinoV2Trunk.PATCH:
            raise ConfigurationError(f"{label}: input_size {input_size} must be a multiple of 14 (e.g. 322)",
                                     parameter="backbone_options.input_size", value=input_size)
        self.label = label
        self.preprocessor = BackbonePreprocessor(size=(input_size, input_size))
        self.provenance = Provenance(source="random initialisation", trained=False, notes="no published weights loaded")


class SaladNet(_DinoV2Vpr):
    def __init__(self, variant="dinov2_vitb14", input_size=322, num_clusters=64, cluster_dim=128, token_dim=256):
        super().__init__("salad", input_size)
        self.backbone = DinoV2Trunk(variant, "model", final_norm=True)
        self.aggregator = SaladAggregator(self.backbone.num_channels, num_clusters, cluster_dim, token_dim)
        self.descriptor_dim = self.aggregator.out_dim

    def descriptor(self, x):
        return DescriptorNormaliser.l2_normalise(self.aggregator(self.backbone(x)))


class MegaLocNet(_DinoV2Vpr):
    def __init__(self, variant="dinov2_vitb14", input_size=322, feat_dim=8448, num_clusters=64, cluster_dim=256,
                 token_dim=256, mlp_dim=512):
        super().__init__("megaloc", input_size)
        self.backbone = DinoV2Trunk(variant, "model", final_norm=True)
        self.aggregator = _MegaLocAggregator(self.backbone.num_channels, feat_dim, num_clusters, cluster_dim,
                                             token_dim, mlp_dim)
        self.descriptor_dim = int(feat_dim)

    def descriptor(self, x):
        return DescriptorNormaliser.l2_normalise(self.aggregator(self.backbone(x)))


class BoQNet(_DinoV2Vpr):
    def __init__(self, variant="dinov2_vitb14", input_size=322, proj_channels=384, num_queries=64, num_layers=2,
                 row_dim=32):
        super().__init__("boq", input_size)
        self.backbone = DinoV2Trunk(variant, "dino", final_norm=False)
        self.aggregator = BoQAggregator(self.backbone.num_channels, proj_channels, num_queries, num_layers, row_dim)
        self.descriptor_dim = self.aggregator.out_dim

    def descriptor(self, x):
        feats, _ = self.backbone(x)
        return DescriptorNormaliser.l2_normalise(self.aggregator(feats))


def _dinov2_model(name: str, cls):
    def factory(weights=None, **opts) -> VprBackbone:
        try:
            model = cls(**opts)
        except TypeError as exc:
            raise ConfigurationError(
                f"{name}: bad backbone_options {opts}: {exc}", parameter="backbone_options"
            ) from exc
        return load_published_weights(model, weights, name, ("backbone.", "aggregator.")) if weights else model
    return factory


register(BackboneSpec("salad", _dinov2_model("salad", SaladNet), display_name="SALAD",
                      convert=convert_by_loading("salad")))
register(BackboneSpec("megaloc", _dinov2_model("megaloc", MegaLocNet), display_name="MegaLoc",
                      convert=convert_by_loading("megaloc")))
register(BackboneSpec("boq", _dinov2_model("boq", BoQNet), display_name="BoQ", convert=convert_by_loading("boq")))
