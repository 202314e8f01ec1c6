"""Backbone base class and the one registry every backbone registers in."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
from typing import Callable

import torch
import torch.nn as nn

from ..errors import ConfigurationError
from ..preprocess import BackbonePreprocessor


@dataclasses.dataclass
class Provenance:
    """Where a backbone's weights came from; written beside checkpoints as <file>.provenance.json."""

    source: str
    licence: str = "unknown"
    sha256: str = ""
    trained: bool = True
    notes: str = ""

    @staticmethod
    def sidecar_path(weights: pathlib.Path) -> pathlib.Path:
        return weights.with_name(weights.name + ".provenance.json")

    def write(self, weights: pathlib.Path) -> None:
        self.sidecar_path(weights).write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, weights: pathlib.Path) -> "Provenance | None":
        p = cls.sidecar_path(weights)
        if not p.exists():
            return None
        return cls(**json.loads(p.read_text()))


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class VprBackbone(nn.Module):
    """A retrieval model: preprocessed NCHW batch -> (N, descriptor_dim) unit-norm descriptors.

    Subclasses set `label`, `descriptor_dim`, `preprocessor`, `provenance`, and implement forward().
    `weights_sha256` identifies the exact weights (written into the index manifest).
    """

    label: str = "base"
    required_runtimes: tuple[str, ...] = ()

    def __init__(self):
        super().__init__()
        self.descriptor_dim: int = 0
        self.preprocessor: BackbonePreprocessor | None = None
        self.provenance: Provenance = Provenance(source="unset", trained=False)

    @property
    def weights_sha256(self) -> str:
        h = hashlib.sha256()
        for k, v in sorted(self.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().float().numpy().tobytes())
        return h.hexdigest()

    def describe(self) -> dict:
        return {"label": self.label, "descriptor_dim": self.descriptor_dim,
                "preprocessing": self.preprocessor.describe() if self.preprocessor else None,
                "provenance": dataclasses.asdict(self.provenance)}


BackboneFactory = Callable[..., VprBackbone]
_REGISTRY: dict[str, BackboneFactory] = {}


def register(name: str):
    """Decorator: `@register("net_vlad")` on a factory `(weights=None, **options) -> VprBackbone`."""

    def deco(factory: BackboneFactory) -> BackboneFactory:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} registered twice")
        _REGISTRY[name] = factory
        return factory

    return deco


def available_backbones() -> list[str]:
    return sorted(_REGISTRY)


def create_backbone(name: str, weights: str | None = None, **options) -> VprBackbone:
    """Build a registered backbone in eval mode. Unknown name -> ConfigurationError listing the choices."""
    if name not in _REGISTRY:
        raise ConfigurationError(f"unknown backbone {name!r}; choose one of: {', '.join(available_backbones())}",
                                 parameter="backbone", value=name)
    model = _REGISTRY[name](weights=weights, **options)
    return model.eval()


def load_state_dict_strict(model: nn.Module, state: dict, what: str) -> None:
    """Strict load; shape/key problems become a ConfigurationError that names the offending keys."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ConfigurationError(f"{what}: checkpoint does not match the model: {str(exc).splitlines()[0]} "
                                 f"({str(exc)[:600]})") from exc


def torch_load(path: str, what: str) -> dict:
    p = pathlib.Path(path)
    if not p.is_file():
        raise ConfigurationError(f"{what}: weights file {path} does not exist; set the `weights` parameter to a "
                                 f"converted checkpoint (see README 'Backbones and weights')", weights=str(path))
    try:
        return torch.load(p, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a config error here
        raise ConfigurationError(f"{what}: could not read weights file {path}: {exc}", weights=str(path)) from exc
