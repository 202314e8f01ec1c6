"""Backbones: the registry and the models, plus what only backbones use (preprocessing, normalisation,
layers, VLAD initialisation, whitening layers, weights files, model cards, checkpoint conversion).

Adding a backbone = one new module that calls `register(BackboneSpec(...))`, plus its name in MODEL_MODULES
below (and its model card in models/). Who registers what: efficientnet (efficientnet_lite0_gem,
efficientnet_lite0_netvlad), netvlad (net_vlad), convnext (convnext_tiny_gem), published (cosplace, eigenplaces,
mixvpr), dinov2_family (salad, megaloc, boq), selavpr (selavpr), ultravpr (ultravpr),
xfeat_netvlad (xfeat_netvlad).

The package is lazy: importing a light part of it (identity.py: what an index manifest records about a model)
does not import PyTorch or the models; the registry loads the model modules the first time it is asked for a
backbone. So the verifier node, which reads index folders but runs no backbone, starts without PyTorch."""
import importlib

# The backbone the product runs unless told otherwise (node parameter, prepare-mission, build-index, demo); why this
# one: BENCHMARKS.md "Retrieval: the default backbone". A name only, so reading it imports no model.
DEFAULT_BACKBONE = "xfeat_netvlad"

MODEL_MODULES = ("convnext", "dinov2_family", "efficientnet", "netvlad", "published", "selavpr", "ultravpr",
                 "xfeat_netvlad")

# public names -> the module that defines them
_API = {"VprBackbone": "base", "BackboneSpec": "registry", "available_backbones": "registry",
        "create_backbone": "registry", "get_spec": "registry", "register": "registry", "specs_with": "registry",
        "Provenance": "weights"}


def load_models() -> None:
    """Import every model module (each registers its backbones); cheap after the first call."""
    for name in MODEL_MODULES:
        importlib.import_module(f"{__name__}.{name}")


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(f"{__name__}.{_API[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DEFAULT_BACKBONE", "MODEL_MODULES", "load_models", *_API]
