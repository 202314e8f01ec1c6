"""Published VPR models in their authors' module layouts, so their released checkpoints load strictly.

- `cosplace`, `eigenplaces`: GeoLocalizationNet of gmberton/CosPlace and gmberton/EigenPlaces:
  backbone = children of a torchvision ResNet (or VGG16 features) without the last two layers,
  aggregation = [L2Norm, GeM, Flatten, Linear(features_dim -> fc_output_dim), L2Norm].
  Released files are plain state_dicts (`backbone.0.weight`, ..., `aggregation.1.p`, `aggregation.3.weight`).
- `mixvpr`: amaralibey/MixVPR VPRModel: ResNet-50 cropped after layer3 (`backbone.model.*`) + MixVPR
  aggregator (`aggregator.mix.<i>.mix.{0,1,3}`, `aggregator.channel_proj`, `aggregator.row_proj`);
  released as a Lightning checkpoint ({"state_dict": ...}). Published config: 320x320 input,
  1024 channels, 20x20, out_channels 1024, mix_depth 4, mlp_ratio 1, out_rows 4 -> 4096-D.

Weights cannot be downloaded here: users fetch them from the authors' release pages and run
`vpr convert-checkpoint --backbone <name> --checkpoint <file> --out <file.pt>`.
"""
from __future__ import annotations

import pathlib

import torch.nn as nn
import torchvision

from vpr_node.core.backbones.base import VprBackbone
from vpr_node.core.backbones.layers import FlattenSpatial, GeM4d, L2Norm
from vpr_node.core.backbones.normalise import DescriptorNormaliser
from vpr_node.core.backbones.preprocess import BackbonePreprocessor
from vpr_node.core.backbones.registry import BackboneSpec, create_backbone, register
from vpr_node.core.backbones.weights import Provenance, load_state_dict_strict, torch_load
from vpr_node.core.errors import ConfigurationError
from vpr_node.core.io.hashing import sha256_file

# --- CosPlace / EigenPlaces -------------------------------------------------------------------
_TRUNK_DIMS = {"resnet18": 512, "resnet50": 2048, "resnet101": 2048, "resnet152": 2048, "vgg16": 512}


def _trunk(name: str) -> nn.Sequential:
    if name == "vgg16":
        return nn.Sequential(*list(torchvision.models.vgg16(weights=None).features.children())[:-2])
    if name not in _TRUNK_DIMS:
        raise ConfigurationError(f"backbone trunk {name!r} not supported; choose one of {', '.join(_TRUNK_DIMS)}")
    return nn.Sequential(*list(getattr(torchvision.models, name)(weights=None).children())[:-2])


class GeoLocalizationNet(VprBackbone):
    def __init__(self, label: str, trunk: str = "resnet50", fc_output_dim: int = 2048, input_size: int = 512):
        super().__init__()
        self.label = label
        self.backbone = _trunk(trunk)
        self.aggregation = nn.Sequential(
            L2Norm(), GeM4d(p=3.0), FlattenSpatial(), nn.Linear(_TRUNK_DIMS[trunk], fc_output_dim), L2Norm()
        )
        self.descriptor_dim = int(fc_output_dim)
        self.preprocessor = BackbonePreprocessor(size=(input_size, input_size))
        self.provenance = Provenance(source="random initialisation", trained=False, notes="no published weights loaded")

    def descriptor(self, x):
        h = self.aggregation[3](self.aggregation[2](self.aggregation[1](self.aggregation[0](self.backbone(x)))))
        return DescriptorNormaliser.l2_normalise(h)


# --- MixVPR ------------------------------------------------------------------------------------
class _FeatureMixerLayer(nn.Module):
    def __init__(self, in_dim: int, mlp_ratio: float = 1.0):
        super().__init__()
        self.mix = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, int(in_dim * mlp_ratio)), nn.ReLU(),
                                 nn.Linear(int(in_dim * mlp_ratio), in_dim))

    def forward(self, x):
        return x + self.mix(x)


class _MixVPRAggregator(nn.Module):
    def __init__(self, in_channels=1024, in_h=20, in_w=20, out_channels=1024, mix_depth=4, mlp_ratio=1.0, out_rows=4):
        super().__init__()
        hw = in_h * in_w
        self.mix = nn.Sequential(*[_FeatureMixerLayer(hw, mlp_ratio) for _ in range(mix_depth)])
        self.channel_proj = nn.Linear(in_channels, out_channels)
        self.row_proj = nn.Linear(hw, out_rows)

    def forward(self, x):
        x = self.mix(x.flatten(2))
        x = self.channel_proj(x.permute(0, 2, 1)).permute(0, 2, 1)
        return self.row_proj(x).flatten(1)


class _CroppedResNet(nn.Module):
    """MixVPR's ResNet wrapper: `self.model` is a torchvision ResNet with avgpool/fc (and layer4) removed."""

    def __init__(self, name: str = "resnet50", crop_layer4: bool = True):
        super().__init__()
        self.model = getattr(torchvision.models, name)(weights=None)
        self.model.avgpool = None
        self.model.fc = None
        if crop_layer4:
            self.model.layer4 = None

    def forward(self, x):
        m = self.model
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        x = m.layer3(m.layer2(m.layer1(x)))
        return m.layer4(x) if m.layer4 is not None else x


class MixVPRNet(VprBackbone):
    label = "mixvpr"

    def __init__(self, input_size: int = 320, out_channels: int = 1024, out_rows: int = 4, mix_depth: int = 4):
        super().__init__()
        self.backbone = _CroppedResNet("resnet50", crop_layer4=True)
        side = input_size // 16
        self.aggregator = _MixVPRAggregator(1024, side, side, out_channels, mix_depth, 1.0, out_rows)
        self.descriptor_dim = out_channels * out_rows
        self.preprocessor = BackbonePreprocessor(size=(input_size, input_size), crop="center_square")
        self.provenance = Provenance(source="random initialisation", trained=False, notes="no published weights loaded")

    def descriptor(self, x):
        return DescriptorNormaliser.l2_normalise(self.aggregator(self.backbone(x)))


# --- converters + registry ---------------------------------------------------------------------
def normalise_published_state(state: dict, keep_prefixes: tuple[str, ...]) -> tuple[dict, list[str]]:
    """Unwrap a Lightning/DataParallel container; keep the model's keys. Returns (state, dropped keys),
    dropped = training-only entries such as loss or miner buffers."""
    for wrapper in ("state_dict", "model_state_dict"):  # Lightning / torch.save({"state_dict": ...}); SelaVPR
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
            break
    state = {k.removeprefix("module."): v for k, v in state.items()}
    kept = {k: v for k, v in state.items() if k.startswith(keep_prefixes + ("whiten.",))}
    if not kept:
        raise ConfigurationError(f"checkpoint has none of the expected key prefixes {keep_prefixes}")
    return kept, sorted(set(state) - set(kept))


def load_published_weights(model: VprBackbone, weights, what: str, prefixes: tuple[str, ...]) -> VprBackbone:
    """Strict load of an authors' file (plain or Lightning/DataParallel-wrapped) + provenance."""
    raw = torch_load(weights, what)
    state, dropped = normalise_published_state(raw, prefixes)
    model.prepare_for_state(state)
    load_state_dict_strict(model, state, what)
    model.provenance = Provenance.read(pathlib.Path(weights)) or Provenance(
        source=f"published {what} checkpoint {weights}", sha256=sha256_file(weights), trained=True,
        notes="loaded from the authors' file" + (f"; ignored training-only keys: {', '.join(dropped[:8])}"
                                                  if dropped else ""))
    return model


def _geolocalization_net(name: str):
    def factory(weights=None, trunk: str = "resnet50", descriptor_dim: int = 2048, input_size: int = 512, **_):
        m = GeoLocalizationNet(name, trunk, int(descriptor_dim), int(input_size))
        return load_published_weights(m, weights, name, ("backbone.", "aggregation.")) if weights else m
    return factory


def _mixvpr(weights=None, input_size: int = 320, out_channels: int = 1024, out_rows: int = 4, mix_depth: int = 4, **_):
    m = MixVPRNet(int(input_size), int(out_channels), int(out_rows), int(mix_depth))
    return load_published_weights(m, weights, "mixvpr", ("backbone.", "aggregator.")) if weights else m


def convert_by_loading(spec_name: str):
    """Converter for layouts this module declares exactly: loading the authors' file IS the conversion."""
    def convert(checkpoint, **options):
        return create_backbone(spec_name, weights=str(checkpoint), **options)
    return convert


register(BackboneSpec("cosplace", _geolocalization_net("cosplace"), display_name="CosPlace",
                      convert=convert_by_loading("cosplace")))
register(BackboneSpec("eigenplaces", _geolocalization_net("eigenplaces"), display_name="EigenPlaces",
                      convert=convert_by_loading("eigenplaces")))
register(BackboneSpec("mixvpr", _mixvpr, display_name="MixVPR", convert=convert_by_loading("mixvpr")))
