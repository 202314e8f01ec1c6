"""SelaVPR in the registry: a checkpoint in the authors' layout (their GeoLocalizationNet re-declared here
on the independently written hub DINOv2 of test_backbones_dinov2: blocks with the serial and parallel
adapters, aggregation = L2Norm/GeM/Flatten, LocalAdapt; saved as {"model_state_dict": ...} with
DataParallel's `module.` prefixes) converts, loads strictly and gives the authors' global descriptor and
local features. ViT-S/14 (the authors' code builds ViT-L/14; the block structure is the same)."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from test_backbones_dinov2 import HubBlock, HubDinoVisionTransformer

from vpr_node.core.backbones import create_backbone
from vpr_node.core.backbones.convert import convert_checkpoint

OPTS = {"variant": "dinov2_vits14", "input_size": 224}


class AuthorsAdapter(nn.Module):
    def __init__(self, d, mlp_ratio=0.75, skip_connect=True):
        super().__init__()
        self.skip_connect, self.act = skip_connect, nn.ReLU()
        self.D_fc1, self.D_fc2 = nn.Linear(d, int(d * mlp_ratio)), nn.Linear(int(d * mlp_ratio), d)

    def forward(self, x):
        xs = self.D_fc2(self.act(self.D_fc1(x)))
        return x + xs if self.skip_connect else xs


class AuthorsBlock(HubBlock):  # SelaVPR backbone/dinov2/block.py: adapters around the hub block's branches
    def __init__(self, dim, heads):
        super().__init__(dim, heads)
        self.adapter1 = AuthorsAdapter(dim, mlp_ratio=0.5)
        self.adapter2 = AuthorsAdapter(dim, mlp_ratio=0.5, skip_connect=False)

    def forward(self, x):
        x = x + self.ls1(self.adapter1(self.attn(self.norm1(x))))
        return x + self.ls2(self.mlp(self.norm2(x)) + 0.2 * self.adapter2(self.norm2(x)))


class AuthorsViT(HubDinoVisionTransformer):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([AuthorsBlock(384, 6) for _ in range(12)])

    def forward(self, x):
        x = self.prepare_tokens_with_masks(x)
        for blk in self.blocks:
            x = blk(x)
        return {"x_norm_patchtokens": self.norm(x)[:, 1:]}


class AuthorsGeM(nn.Module):
    def __init__(self, p=3, eps=1e-6):
        super().__init__()
        self.p, self.eps = nn.Parameter(torch.ones(1) * p), eps

    def forward(self, x):
        return F.avg_pool2d(x.clamp(min=self.eps).pow(self.p), (x.size(-2), x.size(-1))).pow(1. / self.p)


class L2Norm(nn.Module):
    def forward(self, x):
        return F.normalize(x, p=2, dim=1)


class Flatten(nn.Module):
    def forward(self, x):
        return x[:, :, 0, 0]


class AuthorsLocalAdapt(nn.Module):
    def __init__(self):
        super().__init__()
        self.upconv1 = nn.ConvTranspose2d(384, 256, kernel_size=3, stride=2, padding=1)
        self.upconv2 = nn.ConvTranspose2d(256, 128, kernel_size=3, stride=2, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.upconv2(self.relu(self.upconv1(x)))


class AuthorsGeoLocalizationNet(nn.Module):  # SelaVPR network.py (1024 -> 384 channels for ViT-S)
    def __init__(self):
        super().__init__()
        self.backbone = AuthorsViT()
        self.aggregation = nn.Sequential(L2Norm(), AuthorsGeM(), Flatten())
        self.LocalAdapt = AuthorsLocalAdapt()

    def forward(self, x):
        patch = self.backbone(x)["x_norm_patchtokens"].view(-1, 16, 16, 384).permute(0, 3, 1, 2)
        global_feature = F.normalize(self.aggregation(patch), p=2, dim=-1)
        local_feature = F.normalize(self.LocalAdapt(patch).permute(0, 2, 3, 1), p=2, dim=-1)
        return local_feature, global_feature


@pytest.fixture(scope="module")
def authors(tmp_path_factory):
    torch.manual_seed(0)
    m = AuthorsGeoLocalizationNet().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.02 * torch.randn_like(p))  # no parameter left at a trivial value (zeros, LayerScale 1e-5)
        m.aggregation[1].p.fill_(3.2)
    path = tmp_path_factory.mktemp("sela") / "SelaVPR_msls.pth"
    torch.save({"epoch_num": 4, "model_state_dict": {f"module.{k}": v for k, v in m.state_dict().items()},
                "optimizer_state_dict": {}, "best_r5": 90.1, "not_improved_num": 0}, path)
    return m, path


def test_authors_checkpoint_converts_loads_strictly_and_matches(authors, tmp_path):
    m, ckpt = authors
    out = tmp_path / "selavpr.pt"
    info = convert_checkpoint("selavpr", ckpt, out, "test checkpoint in the authors' layout", "MIT", OPTS)
    assert info["descriptor_dim"] == 384
    ours = create_backbone("selavpr", weights=str(out), **OPTS)
    assert set(ours.state_dict()) == set(m.state_dict())
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ref_local, ref_global = m(x)
        got = ours(x)
    assert torch.allclose(got, ref_global, atol=2e-5) and torch.allclose(got.norm(dim=1), torch.ones(2), atol=1e-5)
    local = ours.local_features(x)
    assert local.shape == (2, 61, 61, 128) and torch.allclose(local, ref_local, atol=2e-5)


def test_published_configuration():
    m = create_backbone("selavpr")  # ViT-L/14, 224 px: the authors' released models
    assert m.descriptor_dim == 1024 and m.preprocessor.input_shape() == (224, 224)
    assert len(m.backbone.blocks) == 24 and m.backbone.blocks[0].adapter1.D_fc1.out_features == 512
