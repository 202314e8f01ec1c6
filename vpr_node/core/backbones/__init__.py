"""Backbones: the registry and the models, plus what only backbones use (preprocessing, normalisation,
layers, VLAD initialisation, whitening layers, weights files, model cards, checkpoint conversion).

Adding a backbone = one new module that calls `register(BackboneSpec(...))`, plus its
name in the import line below (and its model card in models/). Who registers what: efficientnet
(efficientnet_lite0_gem, efficientnet_lite0_netvlad), netvlad (net_vlad), convnext (convnext_tiny_gem),
published (cosplace, eigenplaces, mixvpr), dinov2_family (salad, megaloc, boq), selavpr (selavpr),
ultravpr (ultravpr)."""
from vpr_node.core.backbones import (  # noqa: F401  (each module registers its backbones)
    convnext,
    dinov2_family,
    efficientnet,
    netvlad,
    published,
    selavpr,
    ultravpr,
)
from vpr_node.core.backbones.base import VprBackbone  # noqa: F401
from vpr_node.core.backbones.registry import (  # noqa: F401
    BackboneSpec,
    available_backbones,
    create_backbone,
    get_spec,
    register,
    specs_with,
)
from vpr_node.core.backbones.weights import Provenance  # noqa: F401
