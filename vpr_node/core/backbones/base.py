"""Backbone base class and the one registry every backbone registers in."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
from typing import Callable

import torch
import torch.nn as nn

from vpr_node.core.errors import ConfigurationError
from vpr_node.core.preprocess import BackbonePreprocessor


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

    Subclasses set `label`, `descriptor_dim`, `preprocessor`, `provenance`, and implement
    descriptor(x) (their unit-norm global descriptor). forward() adds the optional `whiten` layer that
    mission adaptation fits to a map (a Linear: centring + whitening + dimension reduction, then L2;
    see core/whitening.py); it is part of the weights file, so the node loads it with the weights.
    `weights_sha256` identifies the exact weights (written into the index manifest).
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

    def describe(self) -> dict:
        return {"label": self.label, "descriptor_dim": self.descriptor_dim,
                "preprocessing": self.preprocessor.describe() if self.preprocessor else None,
                "provenance": dataclasses.asdict(self.provenance)}


BackboneFactory = Callable[..., VprBackbone]


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """Everything the rest of the package needs to know about one backbone, in one place.

    factory(weights=None, **options) -> VprBackbone builds the architecture and loads `weights` (a
    project checkpoint, or an authors' file where the layouts agree); without weights it has the
    weights that install with the package (ImageNet trunks) or random ones.
    The descriptive facts (weights source URL, licence, input size, ...) live in its model card
    (models/<name>.yaml), which `vpr backbones` prints and a test checks against the code.
    """

    name: str
    factory: BackboneFactory
    display_name: str = ""  # used in messages ("NetVLAD requires BUILD_PYTORCH_RUNTIME=ON ...")
    required_runtimes: tuple[str, ...] = ()
    # non-empty: the backbone cannot run without a weights file; this says how to make one
    weights_required: str = ""
    # real weights install with the package: usable with no weights file (compare-backbones runs it)
    packaged_weights: bool = False
    # fit_to_corpus(corpus, out_path, weights=None, **options) -> weights file fitted to a tile corpus
    # (NetVLAD centroids by k-means). build-index calls it when `weights_required` and no weights are given.
    fit_to_corpus: Callable | None = None
    # convert(checkpoint, **options) -> VprBackbone with the authors' released weights loaded
    # (`vpr convert-checkpoint`); None = no published checkpoint to convert
    convert: Callable | None = None
    # how to get weights when there are none here (compare-backbones' skip reason)
    weights_hint: str = "`vpr convert-checkpoint`"

    @property
    def pretty(self) -> str:
        return self.display_name or self.name


_REGISTRY: dict[str, BackboneSpec] = {}


def register(spec: BackboneSpec) -> BackboneSpec:
    """Add a backbone to the registry (each backbone module calls this once per backbone it defines)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"backbone {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def available_backbones() -> list[str]:
    return sorted(_REGISTRY)


def get_spec(name: str) -> BackboneSpec:
    """The registered spec; an unknown name is a ConfigurationError listing the choices."""
    if name not in _REGISTRY:
        raise ConfigurationError(f"unknown backbone {name!r}; choose one of: {', '.join(available_backbones())}",
                                 parameter="backbone", value=name)
    return _REGISTRY[name]


def specs_with(attribute: str) -> list[str]:
    """Names of the backbones whose spec has `attribute` set (e.g. 'convert', 'fit_to_corpus')."""
    return sorted(n for n, s in _REGISTRY.items() if getattr(s, attribute))


def create_backbone(name: str, weights: str | None = None, require_weights: bool = True, **options) -> VprBackbone:
    """Build a registered backbone in eval mode. Unknown name -> ConfigurationError listing the choices;
    a backbone that needs a weights file and got none -> ConfigurationError saying how to make one
    (require_weights=False builds it anyway, e.g. to time it or to fit it to a corpus)."""
    spec = get_spec(name)
    if spec.weights_required and not weights and require_weights:
        raise ConfigurationError(spec.weights_required, parameter="weights")
    model = spec.factory(weights=weights or None, **options)
    model.required_runtimes, model.display_name = spec.required_runtimes, spec.pretty
    return model.eval()


def load_project_weights(model: VprBackbone, weights, what: str) -> VprBackbone:
    """Strict load of a project checkpoint (a state_dict from `vpr train`, `init-vlad`, a converter or
    mission adaptation) and its provenance sidecar."""
    state = torch_load(weights, what)
    model.prepare_for_state(state)
    load_state_dict_strict(model, state, what)
    model.provenance = Provenance.read(pathlib.Path(weights)) or Provenance(source=str(weights),
                                                                            sha256=sha256_file(weights))
    return model


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
