"""ConvNeXt-Tiny retrieval model: timm trunk -> GeM (or global average pooling) -> projection head
(Linear-BN-ReLU-Dropout-Linear) -> L2-normalised 512-D embedding. Trained with `vpr train`
(triplet + InfoNCE). ImageNet trunk weights cannot be downloaded here: pass a timm-format
convnext_tiny state_dict as `trunk_weights`, or a project checkpoint from `vpr train` as `weights`."""
from __future__ import annotations

import timm
import torch
import torch.nn as nn

from vpr_node.core.backbones.base import VprBackbone
from vpr_node.core.backbones.layers import GeM
from vpr_node.core.backbones.normalise import DescriptorNormaliser
from vpr_node.core.backbones.preprocess import BackbonePreprocessor
from vpr_node.core.backbones.registry import BackboneSpec, register
from vpr_node.core.backbones.weights import Provenance, load_project_weights, load_state_dict_strict, torch_load
from vpr_node.core.errors import ConfigurationError
from vpr_node.core.io.hashing import sha256_file


class ConvNextTinyVpr(VprBackbone):
    label = "convnext_tiny_gem"

    def __init__(self, pooling: str = "gem", descriptor_dim: int = 512, hidden_dim: int = 1024, dropout: float = 0.1,
                 input_size: int = 224):
        super().__init__()
        self.trunk = timm.create_model("convnext_tiny", pretrained=False, num_classes=0, global_pool="")
        if pooling == "gem":
            self.pool = GeM(p=3.0)
        elif pooling == "avg":
            self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        else:
            raise ConfigurationError(f"convnext_tiny_gem pooling must be 'gem' or 'avg', got {pooling!r}")
        self.head = nn.Sequential(nn.Linear(768, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
                                  nn.Dropout(dropout), nn.Linear(hidden_dim, descriptor_dim))
        self.descriptor_dim = int(descriptor_dim)
        self.preprocessor = BackbonePreprocessor(size=(input_size, input_size))
        self.provenance = Provenance(source="random initialisation", trained=False,
                                     notes="untrained: train with `vpr train` or load trunk weights")

    def descriptor(self, x: torch.Tensor) -> torch.Tensor:
        return DescriptorNormaliser.l2_normalise(self.head(self.pool(self.trunk(x))))


def _convnext(weights=None, trunk_weights=None, pooling: str = "gem", descriptor_dim: int = 512,
              input_size: int = 224, **_):
    model = ConvNextTinyVpr(pooling, int(descriptor_dim), input_size=int(input_size))
    if trunk_weights:
        state = torch_load(trunk_weights, "convnext_tiny trunk")
        state = {k: v for k, v in state.get("state_dict", state).items() if not k.startswith("head.fc")}
        load_state_dict_strict(model.trunk, state, "convnext_tiny trunk (timm layout)")
        model.provenance = Provenance(source=f"trunk {trunk_weights}", sha256=sha256_file(trunk_weights), trained=False,
                                      notes="trunk weights loaded; projection head untrained")
    return load_project_weights(model, weights, "convnext_tiny_gem") if weights else model


register(BackboneSpec("convnext_tiny_gem", _convnext, display_name="ConvNeXt-Tiny + GeM", weights_hint="`vpr train`"))
