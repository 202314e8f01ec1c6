"""Backbone registry. Adding a backbone = one new module that calls `register(BackboneSpec(...))`, plus
its import line here (and its model card in models/)."""
from . import (
                   convnext,  # noqa: F401,E402  (convnext_tiny_gem)
                   dinov2_family,  # noqa: F401,E402  (salad, megaloc, boq)
                   efficientnet,  # noqa: F401,E402  (efficientnet_lite0_gem, efficientnet_lite0_netvlad)
                   netvlad,  # noqa: F401,E402  (net_vlad)
                   published,  # noqa: F401,E402  (cosplace, eigenplaces, mixvpr)
)
from .base import (  # noqa: F401
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
