"""The base class of every retrieval model: preprocessed batch -> unit descriptors, an optional map-fitted
whitening layer, and the identity its descriptors carry into an index manifest."""
from __future__ import annotations

import dataclasses
import hashlib

import torch
import torch.nn as nn

from vpr_node.core.backbones.identity import BackboneIdentity
from vpr_node.core.backbones.preprocess import BackbonePreprocessor
from vpr_node.core.backbones.weights import Provenance
from vpr_node.core.errors import ConfigurationError


class VprBackbone(nn.Module):
    """A retrieval model: preprocessed NCHW batch -> (N, descriptor_dim) unit-norm descriptors.

    Subclasses set `label`, `descriptor_dim`, `preprocessor`, `provenance`, and implement
    descriptor(x) (their unit-norm global descriptor). forward() adds the optional `whiten` layer that
    mission adaptation fits to a map (a Linear: centring + whitening + dimension reduction, then L2;
    see backbones/whitening.py); it is part of the weights file, so the node loads it with the weights.
    `identity()` (label, dimension, weights SHA-256, preprocessing) is what an index manifest records and the
    node verifies.
    """

    label: str = "base"
    required_runtimes: tuple[str, ...] = ()  # set from the spec by create_backbone
    display_name: str = ""

    def __init__(self):
        super().__init__()
        self.descriptor_dim: int = 0
        self.preprocessor: BackbonePreprocessor | None = None
        self.provenance: Provenance = Provenance(source="unset", trained=False)
        self.whiten: nn.Linear | None = None

    def descriptor(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.descriptor(x)
        if self.whiten is not None:
            d = torch.nn.functional.normalize(self.whiten(d), p=2, dim=-1, eps=1e-12)
        return d

    def export_module(self) -> nn.Module:
        """What torch.onnx exports (the model itself unless its layers need converting, e.g. e2cnn's)."""
        return self

    def set_whitening(self, layer: nn.Linear | None) -> None:
        """Install (or remove) a map-fitted whitening layer; the descriptor dimension follows it."""
        if self.whiten is not None:
            self.descriptor_dim = int(self.whiten.in_features)
        self.whiten = layer
        if layer is not None:
            if layer.in_features != self.descriptor_dim:
                raise ConfigurationError(f"{self.label}: whitening expects {layer.in_features}-D descriptors, "
                                         f"the backbone gives {self.descriptor_dim}-D")
            self.descriptor_dim = int(layer.out_features)

    def prepare_for_state(self, state: dict) -> None:
        """Give the model the optional layers a checkpoint carries (a `whiten` layer) before a strict load."""
        if "whiten.weight" in state and self.whiten is None:
            out_dim, in_dim = state["whiten.weight"].shape
            self.set_whitening(nn.Linear(int(in_dim), int(out_dim)))

    @property
    def weights_sha256(self) -> str:
        h = hashlib.sha256()
        for k, v in sorted(self.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().float().numpy().tobytes())
        return h.hexdigest()

    def identity(self) -> BackboneIdentity:
        """What makes this model's descriptors comparable with an index's (index manifest, node check)."""
        return BackboneIdentity(self.label, int(self.descriptor_dim), self.weights_sha256,
                                self.preprocessor.describe() if self.preprocessor else {},
                                dataclasses.asdict(self.provenance))
