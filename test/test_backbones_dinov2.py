"""SALAD, MegaLoc and BoQ load checkpoints in their authors' exact key layouts and compute what the
authors' code computes.

The authors' modules are re-declared here independently of vpr_node: the facebookresearch/dinov2 hub
ViT (PatchEmbed, Attention, LayerScale, Mlp, Block, prepare_tokens_with_masks with its bicubic
position-embedding resize, mask_token), serizba/salad (SALAD + log_optimal_transport), gmberton/MegaLoc
(Aggregator + get_matching_probs) and amaralibey/Bag-of-Queries (BoQBlock, BoQ, VPRModel). Tests use
the ViT-S/14 variant the authors' code also accepts (fast on CPU); the default ViT-B/14 configuration
is checked for its published descriptor dimensions."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from vpr_node.core.backbones import create_backbone
from vpr_node.core.backbones.convert import convert_checkpoint
from vpr_node.core.errors import ConfigurationError


# ---- facebookresearch/dinov2 hub ViT (dinov2_vits14), as in dinov2/models/vision_transformer.py --
class HubAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.num_heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class HubLayerScale(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.gamma = nn.Parameter(1e-5 * torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


class HubMlp(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class HubBlock(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1, self.attn, self.ls1 = nn.LayerNorm(dim, eps=1e-6), HubAttention(dim, heads), HubLayerScale(dim)
        self.norm2, self.mlp, self.ls2 = nn.LayerNorm(dim, eps=1e-6), HubMlp(dim), HubLayerScale(dim)

    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class HubPatchEmbed(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, 14, 14)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class HubDinoVisionTransformer(nn.Module):
    def __init__(self, dim=384, depth=12, heads=6, img_size=518):
        super().__init__()
        self.patch_size, self.embed_dim = 14, dim
        self.patch_embed = HubPatchEmbed(dim)
        n = (img_size // 14) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        self.blocks = nn.ModuleList([HubBlock(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def interpolate_pos_encoding(self, x, w, h):
        npatch, n = x.shape[1] - 1, self.pos_embed.shape[1] - 1
        if npatch == n and w == h:
            return self.pos_embed
        pos = self.pos_embed.float()
        cls_pos, patch_pos = pos[:, 0], pos[:, 1:]
        w0, h0, m = w // 14, h // 14, int(math.sqrt(n))
        patch_pos = F.interpolate(patch_pos.reshape(1, m, m, -1).permute(0, 3, 1, 2), mode="bicubic",
                                  antialias=False, scale_factor=((w0 + 0.1) / m, (h0 + 0.1) / m))
        patch_pos = patch_pos.permute(0, 2, 3, 1).view(1, -1, self.embed_dim)
        return torch.cat((cls_pos.unsqueeze(0), patch_pos), dim=1).to(x.dtype)

    def prepare_tokens_with_masks(self, x):
        b, _, w, h = x.shape
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        return x + self.interpolate_pos_encoding(x, w, h)


class HubDINOv2Wrapper(
    nn.Module
):  # SALAD models/backbones/dinov2.py and MegaLoc DINOv2 (frozen split irrelevant at eval)
    def __init__(self, norm_layer=True):
        super().__init__()
        self.model = HubDinoVisionTransformer()
        self.num_channels, self.norm_layer = 384, norm_layer

    def forward(self, x):
        b, _, h, w = x.shape
        x = self.model.prepare_tokens_with_masks(x)
        for blk in self.model.blocks:
            x = blk(x)
        if self.norm_layer:
            x = self.model.norm(x)
        return x[:, 1:].reshape((b, h // 14, w // 14, self.num_channels)).permute(0, 3, 1, 2), x[:, 0]


# ---- serizba/salad models/aggregators/salad.py ------------------------------------------------
def log_sinkhorn_iterations(z, log_mu, log_nu, iters):
    u, v = torch.zeros_like(log_mu), torch.zeros_like(log_nu)
    for _ in range(iters):
        u = log_mu - torch.logsumexp(z + v.unsqueeze(1), dim=2)
        v = log_nu - torch.logsumexp(z + u.unsqueeze(2), dim=1)
    return z + u.unsqueeze(2) + v.unsqueeze(1)


def log_optimal_transport(scores, alpha, iters):
    b, m, n = scores.shape
    one = scores.new_tensor(1)
    ms, ns, bs = (m * one).to(scores), (n * one).to(scores), ((n - m) * one).to(scores)
    couplings = torch.cat([scores, alpha.expand(b, 1, n)], 1)
    norm = - (ms + ns).log()
    log_mu = torch.cat([norm.expand(m), bs.log()[None] + norm])
    log_nu = norm.expand(n)
    z = log_sinkhorn_iterations(couplings, log_mu[None].expand(b, -1), log_nu[None].expand(b, -1), iters)
    return z - norm


def get_matching_probs(s, dustbin_score=1.0, num_iters=3):  # MegaLoc's OpenGlue variant
    b, m, n = s.size()
    s_aug = torch.empty(b, m + 1, n, dtype=s.dtype)
    s_aug[:, :m, :n] = s
    s_aug[:, m, :] = dustbin_score
    norm = -torch.tensor(math.log(n + m))
    log_a, log_b = norm.expand(m + 1).contiguous(), norm.expand(n).contiguous()
    log_a[-1] = log_a[-1] + math.log(n - m)
    log_a, log_b = log_a.expand(b, -1), log_b.expand(b, -1)
    u, v = torch.zeros_like(log_a), torch.zeros_like(log_b)
    for _ in range(num_iters):
        u = log_a - torch.logsumexp(s_aug + v.unsqueeze(1), dim=2).squeeze()
        v = log_b - torch.logsumexp(s_aug + u.unsqueeze(2), dim=1).squeeze()
    return s_aug + u.unsqueeze(2) + v.unsqueeze(1) - norm


class AuthorsSALAD(nn.Module):
    def __init__(self, num_channels, num_clusters=64, cluster_dim=128, token_dim=256, mlp_dim=512, megaloc=False):
        super().__init__()
        self.num_clusters, self.cluster_dim, self.megaloc = num_clusters, cluster_dim, megaloc
        drop = nn.Dropout(0.3)
        self.token_features = nn.Sequential(nn.Linear(num_channels, mlp_dim), nn.ReLU(), nn.Linear(mlp_dim, token_dim))
        self.cluster_features = nn.Sequential(nn.Conv2d(num_channels, mlp_dim, 1), drop, nn.ReLU(),
                                              nn.Conv2d(mlp_dim, cluster_dim, 1))
        self.score = nn.Sequential(
            nn.Conv2d(num_channels, mlp_dim, 1), drop, nn.ReLU(), nn.Conv2d(mlp_dim, num_clusters, 1)
        )
        self.dust_bin = nn.Parameter(torch.tensor(1.))

    def forward(self, x):
        x, t = x
        f = self.cluster_features(x).flatten(2)
        p = self.score(x).flatten(2)
        t = self.token_features(t)
        p = get_matching_probs(p, self.dust_bin, 3) if self.megaloc else log_optimal_transport(p, self.dust_bin, 3)
        p = torch.exp(p)[:, :-1, :]
        p = p.unsqueeze(1).repeat(1, self.cluster_dim, 1, 1)
        f = f.unsqueeze(2).repeat(1, 1, self.num_clusters, 1)
        f = torch.cat([F.normalize(t, p=2, dim=-1), F.normalize((f * p).sum(dim=-1), p=2, dim=1).flatten(1)], dim=-1)
        return F.normalize(f, p=2, dim=-1)


class AuthorsSaladVPRModel(nn.Module):  # serizba/salad vpr_model.VPRModel: backbone + aggregator
    def __init__(self):
        super().__init__()
        self.backbone = HubDINOv2Wrapper()
        self.aggregator = AuthorsSALAD(384)

    def forward(self, x):
        return self.aggregator(self.backbone(x))


class AuthorsMegaLocAggregator(nn.Module):
    def __init__(self, feat_dim, salad_out_dim):
        super().__init__()
        self.agg = AuthorsSALAD(384, 64, 256, 256, 512, megaloc=True)
        self.linear = nn.Linear(salad_out_dim, feat_dim)

    def forward(self, x):
        return self.linear(self.agg(x))


class AuthorsMegaLocModel(nn.Module):
    def __init__(self, feat_dim=8448):
        super().__init__()
        self.backbone = HubDINOv2Wrapper()
        self.aggregator = AuthorsMegaLocAggregator(feat_dim, 64 * 256 + 256)

    def forward(self, x):
        return F.normalize(self.aggregator(self.backbone(x)), p=2.0, dim=1)


# ---- amaralibey/Bag-of-Queries src/boq.py, src/backbones.py, hubconf.VPRModel -------------------
class AuthorsBoQBlock(nn.Module):
    def __init__(self, in_dim, num_queries, nheads=8):
        super().__init__()
        self.encoder = nn.TransformerEncoderLayer(d_model=in_dim, nhead=nheads, dim_feedforward=4 * in_dim,
                                                  batch_first=True, dropout=0.)
        self.queries = nn.Parameter(torch.randn(1, num_queries, in_dim))
        self.self_attn = nn.MultiheadAttention(in_dim, num_heads=nheads, batch_first=True)
        self.norm_q = nn.LayerNorm(in_dim)
        self.cross_attn = nn.MultiheadAttention(in_dim, num_heads=nheads, batch_first=True)
        self.norm_out = nn.LayerNorm(in_dim)

    def forward(self, x):
        x = self.encoder(x)
        q = self.queries.repeat(x.size(0), 1, 1)
        q = self.norm_q(q + self.self_attn(q, q, q)[0])
        out, attn = self.cross_attn(q, x, x)
        return x, self.norm_out(out), attn.detach()


class AuthorsBoQ(nn.Module):
    def __init__(self, in_channels, proj_channels=384, num_queries=64, num_layers=2, row_dim=32):
        super().__init__()
        self.proj_c = nn.Conv2d(in_channels, proj_channels, kernel_size=3, padding=1)
        self.norm_input = nn.LayerNorm(proj_channels)
        self.boqs = nn.ModuleList([AuthorsBoQBlock(proj_channels, num_queries, nheads=proj_channels // 64)
                                   for _ in range(num_layers)])
        self.fc = nn.Linear(num_layers * num_queries, row_dim)

    def forward(self, x):
        x = self.norm_input(self.proj_c(x).flatten(2).permute(0, 2, 1))
        outs, attns = [], []
        for blk in self.boqs:
            x, out, attn = blk(x)
            outs.append(out)
            attns.append(attn)
        out = self.fc(torch.cat(outs, dim=1).permute(0, 2, 1)).flatten(1)
        return F.normalize(out, p=2, dim=-1), attns


class AuthorsBoQDinoV2(nn.Module):
    def __init__(self):
        super().__init__()
        self.dino = HubDinoVisionTransformer()

    def forward(self, x):
        b, _, h, w = x.shape
        x = self.dino.prepare_tokens_with_masks(x)
        for blk in self.dino.blocks:
            x = blk(x)
        x = x[:, 1:]
        return x.permute(0, 2, 1).view(b, x.shape[-1], h // 14, w // 14)


class AuthorsBoQVPRModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = AuthorsBoQDinoV2()
        self.aggregator = AuthorsBoQ(384, proj_channels=384, num_queries=64, num_layers=2, row_dim=32)

    def forward(self, x):
        return self.aggregator(self.backbone(x))


def _randomise(model: nn.Module, seed: int) -> nn.Module:
    """Non-trivial values everywhere (zero pos/cls/ls would hide layout mistakes)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.copy_(0.1 + 0.5 * torch.rand(p.shape, generator=g))
            elif p.ndim <= 1 and "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (0.02 if p.ndim > 1 else 0.1))
    return model.eval()


def _images(n=2, size=322, seed=1):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


CASES = {
    "salad": (AuthorsSaladVPRModel, lambda m, x: m(x), 64 * 128 + 256),
    "megaloc": (AuthorsMegaLocModel, lambda m, x: m(x), 8448),
    "boq": (AuthorsBoQVPRModel, lambda m, x: m(x)[0], 384 * 32),
}


@pytest.mark.parametrize("name", list(CASES))
def test_authors_checkpoint_converts_loads_strictly_and_matches(name, tmp_path):
    authors_cls, run, dim = CASES[name]
    torch.manual_seed(0)
    authors = _randomise(authors_cls(), seed=3)
    ckpt = tmp_path / f"{name}_authors.pth"
    torch.save(authors.state_dict(), ckpt)  # the authors release plain state_dicts
    out = tmp_path / f"{name}.pt"
    info = convert_checkpoint(name, ckpt, out, "test", "test", {"variant": "dinov2_vits14"})
    assert info["descriptor_dim"] == dim

    ours = create_backbone(name, weights=str(out), variant="dinov2_vits14")
    assert ours.descriptor_dim == dim and ours.provenance.trained
    x = _images()
    with torch.no_grad():
        expected = run(authors, x)
        got = ours(x)
        again = ours(x)
    assert got.shape == (2, dim)
    np.testing.assert_allclose(got.norm(dim=1).numpy(), 1.0, atol=1e-5)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=2e-5)
    assert torch.equal(got, again)  # deterministic


def test_lightning_wrapped_checkpoint_also_loads(tmp_path):
    authors = _randomise(AuthorsSaladVPRModel(), seed=5)
    ckpt = tmp_path / "salad.ckpt"
    torch.save({"state_dict": authors.state_dict(), "epoch": 3}, ckpt)
    ours = create_backbone("salad", weights=str(ckpt), variant="dinov2_vits14")
    with torch.no_grad():
        np.testing.assert_allclose(ours(_images(1)).numpy(), authors(_images(1)).numpy(), atol=2e-5)


@pytest.mark.parametrize("name,dim", [("salad", 8448), ("megaloc", 8448), ("boq", 12288)])
def test_published_default_configuration_dimensions(name, dim):
    model = create_backbone(name)  # DINOv2 ViT-B/14, 322x322 as released
    assert model.descriptor_dim == dim
    assert model.preprocessor.size == (322, 322)
    assert "backbone.model.mask_token" in model.state_dict() or "backbone.dino.mask_token" in model.state_dict()
    with torch.no_grad():
        d = model(_images(1))
    assert d.shape == (1, dim) and abs(float(d.norm()) - 1.0) < 1e-5


def test_wrong_layout_and_bad_options_are_configuration_errors(tmp_path):
    authors = _randomise(AuthorsSaladVPRModel(), seed=7)
    ckpt = tmp_path / "salad_as_boq.pth"
    torch.save(authors.state_dict(), ckpt)
    with pytest.raises(ConfigurationError, match="does not match the model"):
        create_backbone("boq", weights=str(ckpt), variant="dinov2_vits14")
    with pytest.raises(ConfigurationError, match="multiple of 14"):
        create_backbone("salad", input_size=320)
    with pytest.raises(ConfigurationError, match="DINOv2 variant"):
        create_backbone("megaloc", variant="dinov2_vitx99")
