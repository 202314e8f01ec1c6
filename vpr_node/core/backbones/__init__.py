"""Backbone registry. Adding a backbone = one new module that calls `register(BackboneSpec(...))`, plus its
name in the import line below (and its model card in models/). Who registers what: efficientnet
(efficientnet_lite0_gem, efficientnet_lite0_netvlad), netvlad (net_vlad), convnext (convnext_tiny_gem),
published (cosplace, eigenplaces, mixvpr), dinov2_family (salad, megaloc, boq), selavpr (selavpr),
ultravpr (ultravpr)."""
from vpr_node.core.backbones import convnext, dinov2_family, efficientnet, netvlad, published, selavpr, ultravpr  # noqa: F401
from vpr_node.core.backbones.base import (  # noqa: F401
    BackboneSpec,
    Provenance,
    VprBackbone,
    available_backbones,
    create_backbone,
    get_spec,
    register,
    sha256_file,
    specs_with,
)
