"""Every registered backbone has a model card (models/<name>.yaml) that agrees with its code."""
import pytest

from vpr_node.core.backbones import available_backbones, create_backbone, get_spec
from vpr_node.core.backbones.model_cards import card_names, read_card

REQUIRED = {"name", "summary", "architecture", "input_size", "normalisation", "descriptor_dim", "weights", "convert"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "ultravpr" else n
                                  for n in available_backbones()])
def test_card_matches_the_backbone(name):
    card = read_card(name)
    assert REQUIRED <= set(card), REQUIRED - set(card)
    assert card["name"] == name
    assert {"source", "url", "licence", "sha256"} <= set(card["weights"])
    model = create_backbone(name, require_weights=False)
    pre = model.preprocessor.describe()
    assert pre["size"] == [card["input_size"], card["input_size"]]
    assert pre["mean"] == card["normalisation"]["mean"] and pre["std"] == card["normalisation"]["std"]
    assert model.descriptor_dim == card["descriptor_dim"]
    # a converter command on the card exactly when the registry has a converter
    assert bool(card["convert"]) == (get_spec(name).convert is not None)


def test_the_cards_are_the_registry():
    """The node checks its `backbone` parameter against the cards (no PyTorch needed): the same names."""
    assert card_names() == available_backbones()


def test_backbones_command_prints_every_card():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "vpr_node.tools.cli", "backbones"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    for name in available_backbones():
        assert name in out.stdout and read_card(name)["summary"][:30] in out.stdout
