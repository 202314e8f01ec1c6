"""CosPlace/EigenPlaces and MixVPR load checkpoints in their authors' exact key layouts.

The authors' modules are re-declared here independently (as in gmberton/CosPlace model/network.py
and amaralibey/MixVPR main.py + models/); checkpoints are saved in the authors' containers (plain
state_dict; Lightning checkpoint) and must load strictly and give identical descriptors."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from vpr_node.core.backbones import create_backbone
from vpr_node.core.backbones.convert import convert_checkpoint
from vpr_node.core.backbones.weights import Provenance
from vpr_node.core.errors import ConfigurationError


class AuthorsGeM(nn.Module):
    def __init__(self, p=3, eps=1e-6):
        super().__init__()
        self.p = nn.Parameter(torch.ones(1) * p)
        self.eps = eps

    def forward(self, x):
        return F.avg_pool2d(x.clamp(min=self.eps).pow(self.p), (x.size(-2), x.size(-1))).pow(1. / self.p)


class AuthorsL2(nn.Module):
    def forward(self, x):
        return F.normalize(x, p=2, dim=1)


class AuthorsFlatten(nn.Module):
    def forward(self, x):
        return x[:, :, 0, 0]


class AuthorsGeoLocalizationNet(nn.Module):
    def __init__(self, fc_output_dim=128):
        super().__init__()
        self.backbone = nn.Sequential(*list(torchvision.models.resnet18(weights=None).children())[:-2])
        self.aggregation = nn.Sequential(AuthorsL2(), AuthorsGeM(), AuthorsFlatten(), nn.Linear(512, fc_output_dim),
                                         AuthorsL2())

    def forward(self, x):
        return self.aggregation(self.backbone(x))


class AuthorsMixer(nn.Module):
    def __init__(self, in_dim, mlp_ratio=1):
        super().__init__()
        self.mix = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, int(in_dim * mlp_ratio)), nn.ReLU(),
                                 nn.Linear(int(in_dim * mlp_ratio), in_dim))

    def forward(self, x):
        return x + self.mix(x)


class AuthorsMixVPR(nn.Module):
    def __init__(self, in_channels=1024, in_h=20, in_w=20, out_channels=1024, mix_depth=4, mlp_ratio=1, out_rows=4):
        super().__init__()
        hw = in_h * in_w
        self.mix = nn.Sequential(*[AuthorsMixer(hw, mlp_ratio) for _ in range(mix_depth)])
        self.channel_proj = nn.Linear(in_channels, out_channels)
        self.row_proj = nn.Linear(hw, out_rows)

    def forward(self, x):
        x = self.mix(x.flatten(2)).permute(0, 2, 1)
        x = self.channel_proj(x).permute(0, 2, 1)
        return F.normalize(self.row_proj(x).flatten(1), p=2, dim=-1)


class AuthorsResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.model = torchvision.models.resnet50(weights=None)
        self.model.avgpool, self.model.fc, self.model.layer4 = None, None, None

    def forward(self, x):
        m = self.model
        return m.layer3(m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(x)))))))


class AuthorsVPRModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = AuthorsResNet()
        self.aggregator = AuthorsMixVPR()

    def forward(self, x):
        return self.aggregator(self.backbone(x))


def _randomise(model):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


@pytest.mark.parametrize("name", ["cosplace", "eigenplaces"])
def test_geolocalizationnet_checkpoint(name, tmp_path):
    authors = _randomise(AuthorsGeoLocalizationNet(128))
    ckpt = tmp_path / "resnet18_128.pth"
    torch.save(authors.state_dict(), ckpt)  # released as a plain state_dict
    opts = {"trunk": "resnet18", "descriptor_dim": 128, "input_size": 128}
    ours = create_backbone(name, weights=str(ckpt), **opts)
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert torch.allclose(ours(x), authors(x), atol=1e-5)
        assert torch.equal(ours(x), ours(x))
    assert ours.descriptor_dim == 128 and ours.label == name
    res = convert_checkpoint(name, ckpt, tmp_path / f"{name}.pt", "test", "n/a", opts)
    assert Provenance.read(tmp_path / f"{name}.pt").trained
    again = create_backbone(name, weights=res["out"], **opts)
    with torch.inference_mode():
        assert torch.allclose(again(x), authors(x), atol=1e-5)


def test_mixvpr_lightning_checkpoint(tmp_path):
    authors = _randomise(AuthorsVPRModel())
    sd = authors.state_dict()
    ckpt = tmp_path / "resnet50_MixVPR_4096_channels(1024)_rows(4).ckpt"
    torch.save({"epoch": 9, "global_step": 1000, "state_dict": {**sd, "loss_fn.some_buffer": torch.zeros(1)},
                "optimizer_states": [], "hyper_parameters": {"agg_arch": "MixVPR"}}, ckpt)
    ours = create_backbone("mixvpr", weights=str(ckpt))
    assert ours.descriptor_dim == 4096 and ours.preprocessor.input_shape() == (320, 320)
    x = torch.randn(1, 3, 320, 320, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        out = ours(x)
        assert torch.allclose(out, authors(x), atol=1e-5)
    assert abs(float(out.norm()) - 1) < 1e-4
    assert "loss_fn.some_buffer" in ours.provenance.notes


def test_wrong_layout_is_a_configuration_error(tmp_path):
    torch.save({"state_dict": {"encoder.0.weight": torch.zeros(1)}}, tmp_path / "x.ckpt")
    with pytest.raises(ConfigurationError, match="expected key prefixes"):
        create_backbone("mixvpr", weights=str(tmp_path / "x.ckpt"))
    torch.save(_randomise(AuthorsGeoLocalizationNet(128)).state_dict(), tmp_path / "c.pth")
    with pytest.raises(ConfigurationError, match="does not match"):
        create_backbone("cosplace", weights=str(tmp_path / "c.pth"), trunk="resnet50", descriptor_dim=128)
