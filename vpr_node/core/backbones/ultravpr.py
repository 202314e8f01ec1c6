"""UltraVPR (Chen et al., IEEE RA-L 10(9), 2025; github.com/cbbhuxx/UltraVPR, MIT): the C2 spec's primary
backbone. A rotation-equivariant ResNet built with e2cnn (ReDet's ReResNet: regular representation of the
cyclic group C8) -> group pooling over the orientations (a rotation-invariant 256-channel map) -> GeM ->
Linear(256, 256) -> L2 = a 256-D descriptor ("se2gem"); the 32-cluster VLAD head ("upscale") exists only
in training.

Module names follow the authors' `ultravpr(backbone=E2ResNet(depth=50, orientation=8,
middle_channels=2048), aggregator=se2gem(256, 256))`, so their `model_best.pth.tar` ({"state_dict":
...}, e2cnn 0.2.3 parameters and buffers) loads strictly after dropping the training-only `upscale.*`
keys. Preprocessing as their training: ImageNet mean/std, square input; 321 px by default (an input whose
size stays odd through the five stride-2 stages keeps rotations by 90 degrees exact: 321 -> 161 -> 81 ->
41 -> 21 -> 11), 320 px (their training size) via backbone_options.

Rotation invariance means one rotation per tile in the index (build-index --rotations 1). ONNX/TensorRT:
`export_module()` converts the e2cnn layers to plain PyTorch layers (e2cnn's own .export()), which
torch.onnx exports; the outputs agree with the e2cnn model (test_ultravpr.py).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from vpr_node.core.backbones.base import VprBackbone
from vpr_node.core.backbones.layers import GeM4d
from vpr_node.core.backbones.normalise import DescriptorNormaliser
from vpr_node.core.backbones.preprocess import IMAGENET_MEAN, IMAGENET_STD, BackbonePreprocessor
from vpr_node.core.backbones.published import load_published_weights
from vpr_node.core.backbones.registry import BackboneSpec, register
from vpr_node.core.backbones.weights import Provenance
from vpr_node.core.errors import ConfigurationError

DEFAULT_INPUT_SIZE = 321  # odd into every stride-2 stage: 321, 161, 81, 41, 21 (exact 90-degree rotations)


def _enn():
    try:
        from e2cnn import gspaces
        from e2cnn import nn as enn
    except ImportError as exc:  # pragma: no cover - e2cnn is in requirements.txt
        raise ConfigurationError("backbone ultravpr needs the e2cnn package (pip install e2cnn==0.2.3)") from exc
    return gspaces, enn


def _regular(gspace, planes: int):
    _, enn = _enn()
    return enn.FieldType(gspace, [gspace.regular_repr] * int(planes / gspace.fibergroup.order()))


def _conv(gspace, in_planes: int, out_planes: int, k: int, stride: int = 1, padding: int = 0, dilation: int = 1,
          in_type=None):
    _, enn = _enn()
    return enn.R2Conv(in_type or _regular(gspace, in_planes), _regular(gspace, out_planes), k, stride=stride,
                      padding=padding, dilation=dilation, bias=False, sigma=None, frequencies_cutoff=lambda r: 3 * r)


def _bn(gspace, planes: int):
    return _enn()[1].InnerBatchNorm(_regular(gspace, planes))


def _plain_children(module: nn.Module) -> OrderedDict:
    """A module's children with every e2cnn layer converted to plain PyTorch (e2cnn's .export())."""
    return OrderedDict((name, m.export() if hasattr(m, "export") else m) for name, m in module._modules.items())


class _Bottleneck(nn.Module):
    """ReResNet bottleneck (conv1 1x1, conv2 3x3 with the stride, conv3 1x1 to 4x the width, residual)."""

    expansion = 4

    def __init__(self, gspace, in_planes: int, out_planes: int, stride: int = 1, downsample=None):
        super().__init__()
        _, enn = _enn()
        mid = out_planes // self.expansion
        self.conv1 = _conv(gspace, in_planes, mid, 1)
        self.bn1 = _bn(gspace, mid)
        self.relu1 = enn.ReLU(self.conv1.out_type, inplace=True)
        self.conv2 = _conv(gspace, mid, mid, 3, stride=stride, padding=1)
        self.bn2 = _bn(gspace, mid)
        self.relu2 = enn.ReLU(self.conv2.out_type, inplace=True)
        self.conv3 = _conv(gspace, mid, out_planes, 1)
        self.bn3 = _bn(gspace, out_planes)
        self.relu3 = enn.ReLU(self.conv3.out_type, inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = self.downsample(x) if self.downsample is not None else x
        return self.relu3(out + identity)


class _BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, gspace, in_planes: int, out_planes: int, stride: int = 1, downsample=None):
        super().__init__()
        _, enn = _enn()
        self.conv1 = _conv(gspace, in_planes, out_planes, 3, stride=stride, padding=1)
        self.bn1 = _bn(gspace, out_planes)
        self.relu1 = enn.ReLU(self.conv1.out_type, inplace=True)
        self.conv2 = _conv(gspace, out_planes, out_planes, 3, padding=1)
        self.bn2 = _bn(gspace, out_planes)
        self.relu2 = enn.ReLU(self.conv1.out_type, inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        identity = self.downsample(x) if self.downsample is not None else x
        return self.relu2(out + identity)


class _PlainBlock(nn.Module):
    """The exported (plain PyTorch) form of a block: same computation on ordinary tensors."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.layers = nn.ModuleDict(_plain_children(block))

    def forward(self, x):
        m = self.layers
        out = m["relu1"](m["bn1"](m["conv1"](x)))
        if "conv3" in m:
            out = m["relu2"](m["bn2"](m["conv2"](out)))
            out = m["bn3"](m["conv3"](out))
            last = m["relu3"]
        else:
            out = m["bn2"](m["conv2"](out))
            last = m["relu2"]
        identity = m["downsample"](x) if "downsample" in m else x
        return last(out + identity)


class E2ResNet(nn.Module):
    """Rotation-equivariant ResNet (C_N regular features), group-pooled to a rotation-invariant map."""

    ARCH = {18: (_BasicBlock, (2, 2, 2, 2)), 34: (_BasicBlock, (3, 4, 6, 3)), 50: (_Bottleneck, (3, 4, 6, 3)),
            101: (_Bottleneck, (3, 4, 23, 3))}

    def __init__(self, depth: int = 50, orientation: int = 8, middle_channels: int = 2048, stem_channels: int = 64,
                 base_channels: int = 64):
        super().__init__()
        if depth not in self.ARCH:  # checked before any e2cnn layer is built (building them takes seconds)
            raise ConfigurationError(f"ultravpr depth must be one of {sorted(self.ARCH)}, got {depth}",
                                     parameter="backbone_options.depth")
        gspaces, enn = _enn()
        self.gspace = gspaces.Rot2dOnR2(orientation)
        self.in_type = enn.FieldType(self.gspace, [self.gspace.trivial_repr] * 3)
        self.conv1 = _conv(self.gspace, 3, stem_channels, 7, stride=2, padding=3, in_type=self.in_type)
        self.bn1 = _bn(self.gspace, stem_channels)
        self.relu = enn.ReLU(self.conv1.out_type, inplace=True)
        self.maxpool = enn.PointwiseMaxPool(self.conv1.out_type, kernel_size=3, stride=2, padding=1)
        block, counts = self.ARCH[depth]
        in_planes, out_planes = stem_channels, base_channels * block.expansion
        for i, n in enumerate(counts):
            stride = 1 if i == 0 else 2
            downsample = None
            if stride != 1 or in_planes != out_planes:
                downsample = enn.SequentialModule(_conv(self.gspace, in_planes, out_planes, 1, stride=stride),
                                                  _bn(self.gspace, out_planes))
            blocks = [block(self.gspace, in_planes, out_planes, stride, downsample)]
            blocks += [block(self.gspace, out_planes, out_planes) for _ in range(1, n)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            in_planes, out_planes = out_planes, out_planes * 2
        if in_planes != middle_channels:
            raise ConfigurationError(f"ultravpr: middle_channels {middle_channels} must equal the last stage's "
                                     f"{in_planes} channels for depth {depth}", parameter="backbone_options")
        self.gpool = enn.GroupPooling(_regular(self.gspace, middle_channels))
        self.out_channels = middle_channels // orientation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, enn = _enn()
        x = self.maxpool(self.relu(self.bn1(self.conv1(enn.GeometricTensor(x, self.in_type)))))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return self.gpool(x).tensor

    def export_module(self) -> nn.Module:
        """Plain-PyTorch copy (conv/BN/ReLU/max-pool, group pooling as a max over orientations)."""
        return _PlainE2ResNet(self)


class _PlainE2ResNet(nn.Module):
    def __init__(self, net: E2ResNet):
        super().__init__()
        net.eval()
        self.stem = nn.Sequential(net.conv1.export(), net.bn1.export(), net.relu.export(), net.maxpool.export())
        self.layers = nn.Sequential(*[_PlainBlock(b) for i in range(1, 5) for b in getattr(net, f"layer{i}")])
        self.gpool = net.gpool.export()

    def forward(self, x):
        return self.gpool(self.layers(self.stem(x)))


class Se2Gem(nn.Module):
    """GeM -> Linear(in_dim, out_dim) -> L2 (CosPlace's head without its input normalisation)."""

    def __init__(self, in_dim: int = 256, out_dim: int = 256):
        super().__init__()
        self.gem = GeM4d()  # the authors' se2gem GeM: average-pool over the whole map = a mean
        self.fc = nn.Linear(in_dim, out_dim)

    def forward(self, x):
        return F.normalize(self.fc(self.gem(x).flatten(1)), p=2, dim=1)


class UltraVprNet(VprBackbone):
    label = "ultravpr"

    def __init__(self, depth: int = 50, orientation: int = 8, middle_channels: int = 2048, encoder_dim: int = 256,
                 input_size: int = DEFAULT_INPUT_SIZE):
        super().__init__()
        if middle_channels // orientation != encoder_dim:
            raise ConfigurationError(f"ultravpr: encoder_dim {encoder_dim} must be middle_channels / orientation = "
                                     f"{middle_channels // orientation}", parameter="backbone_options.encoder_dim")
        self.backbone = E2ResNet(int(depth), int(orientation), int(middle_channels))
        self.aggregator = Se2Gem(encoder_dim, encoder_dim)
        self.descriptor_dim = int(encoder_dim)
        self.preprocessor = BackbonePreprocessor(size=(int(input_size), int(input_size)), mean=IMAGENET_MEAN,
                                                 std=IMAGENET_STD)
        self.provenance = Provenance(source="random initialisation", trained=False,
                                     notes="no weights loaded: train with `vpr train --backbone ultravpr` or convert "
                                           "the authors' checkpoint")

    def descriptor(self, x: torch.Tensor) -> torch.Tensor:
        return DescriptorNormaliser.l2_normalise(self.aggregator(self.backbone(x)))

    def export_module(self) -> nn.Module:
        return _PlainUltraVpr(self)


class _PlainUltraVpr(nn.Module):
    """UltraVPR in plain PyTorch layers (for ONNX / TensorRT), whitening included when the model has one."""

    def __init__(self, model: UltraVprNet):
        super().__init__()
        self.backbone = model.backbone.export_module()
        self.aggregator = model.aggregator
        self.whiten = model.whiten

    def forward(self, x):
        d = DescriptorNormaliser.l2_normalise(self.aggregator(self.backbone(x)))
        if self.whiten is not None:
            d = F.normalize(self.whiten(d), p=2, dim=-1, eps=1e-12)
        return d


def _ultravpr(weights=None, **opts):
    try:
        model = UltraVprNet(**opts)
    except TypeError as exc:
        raise ConfigurationError(f"ultravpr: bad backbone_options {opts}: {exc}", parameter="backbone_options") from exc
    return load_published_weights(model, weights, "ultravpr", ("backbone.", "aggregator.")) if weights else model


def _convert(checkpoint, **options):
    """The authors' checkpoint ({"state_dict": ...} with backbone.*, aggregator.* and training-only upscale.*)."""
    return _ultravpr(weights=str(checkpoint), **options)


register(BackboneSpec("ultravpr", _ultravpr, display_name="UltraVPR", convert=_convert,
                      weights_hint="`vpr train --backbone ultravpr` or `vpr convert-checkpoint`"))

