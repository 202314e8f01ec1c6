"""Backbone registry. Adding a backbone = one new module + one import line here."""
from .base import (VprBackbone, Provenance, available_backbones, create_backbone, register,  # noqa: F401
                   sha256_file)
from . import efficientnet  # noqa: F401  (registers efficientnet_lite0_*)
from . import netvlad  # noqa: F401,E402  (registers net_vlad)
from . import convnext  # noqa: F401,E402  (registers convnext_tiny_gem)
from . import published  # noqa: F401,E402  (registers cosplace, eigenplaces, mixvpr)
from . import dinov2_family  # noqa: F401,E402  (registers salad, megaloc, boq)
