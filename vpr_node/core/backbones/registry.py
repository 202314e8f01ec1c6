"""The one backbone registry: each backbone module registers a BackboneSpec (factory, weights facts, corpus
fitting, converter); everything else builds models by name through `create_backbone`."""
from __future__ import annotations

import dataclasses
from typing import Callable

from vpr_node.core.backbones.base import VprBackbone
from vpr_node.core.errors import ConfigurationError

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


def _loaded() -> dict[str, BackboneSpec]:
    from vpr_node.core.backbones import load_models
    load_models()
    return _REGISTRY


def available_backbones() -> list[str]:
    return sorted(_loaded())


def get_spec(name: str) -> BackboneSpec:
    """The registered spec; an unknown name is a ConfigurationError listing the choices."""
    if name not in _loaded():
        raise ConfigurationError(f"unknown backbone {name!r}; choose one of: {', '.join(available_backbones())}",
                                 parameter="backbone", value=name)
    return _REGISTRY[name]


def specs_with(attribute: str) -> list[str]:
    """Names of the backbones whose spec has `attribute` set (e.g. 'convert', 'fit_to_corpus')."""
    return sorted(n for n, s in _loaded().items() if getattr(s, attribute))


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
