"""Model cards (models/<backbone>.yaml): where each backbone's weights come from and what it expects.

Fields: name, summary, architecture, input_size, normalisation {mean, std}, descriptor_dim, weights
{source, url, licence, sha256 (of the authors' file, where known), file}, convert (the command that
makes project weights from the authors' file, or null), notes. `vpr backbones` prints them; the
registry keeps only what code needs (factory, corpus fitting, converter, runtimes) and
test/test_model_cards.py checks that every registered backbone has a card that agrees with its code.
"""
from __future__ import annotations

import functools

import yaml

from vpr_node.core.errors import ConfigurationError
from vpr_node.core.resources import data_dir


def card_names() -> list[str]:
    """The backbones that have a model card: the registry's names (test_backbones_cards.py keeps them equal),
    read without importing the models, so a parameter check needs no PyTorch."""
    d = data_dir("models")
    return sorted(p.stem for p in d.glob("*.yaml")) if d is not None else []


@functools.lru_cache(maxsize=None)
def read_card(name: str) -> dict:
    d = data_dir("models")
    path = d / f"{name}.yaml" if d is not None else None
    if path is None or not path.is_file():
        raise ConfigurationError(f"no model card for backbone {name!r} (models/{name}.yaml)", backbone=name)
    return yaml.safe_load(path.read_text())
