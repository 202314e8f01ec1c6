"""backbones/: the registry, the default's packaged ImageNet trunk (key mapping, determinism), preprocessing."""
import numpy as np
import pytest
import torch

from vpr_node.core.backbones import available_backbones, create_backbone
from vpr_node.core.backbones.efficientnet import (
    build_lite0_imagenet,
    lukemelas_to_timm_lite0,
    packaged_lite0_weights_path,
)
from vpr_node.core.backbones.preprocess import BackbonePreprocessor
from vpr_node.core.errors import ConfigurationError, VprPreprocessError
from vpr_node.core.io import image_codec


def test_registry_lists_backbones_and_rejects_unknown():
    assert {"efficientnet_lite0_gem", "efficientnet_lite0_netvlad"} <= set(available_backbones())
    with pytest.raises(ConfigurationError, match="unknown backbone 'nope'; choose one of"):
        create_backbone("nope")


def test_lukemelas_weights_map_onto_timm_exactly():
    raw = torch.load(packaged_lite0_weights_path(), map_location="cpu")
    mapped = lukemelas_to_timm_lite0(raw)
    model, _ = build_lite0_imagenet()
    sd = model.state_dict()
    assert set(mapped) == set(sd) and len(mapped) == len(raw)
    for k, v in mapped.items():
        assert torch.equal(sd[k], v), k
    # A real ImageNet classifier: confident, non-uniform predictions on a natural-looking input
    x = torch.zeros(1, 3, 224, 224)
    x[:, :, 60:160, 60:160] = 1.5
    probs = model(x).softmax(-1)
    assert probs.max() > 5.0 / 1000


def test_gem_backbone_unit_norm_deterministic(gem_strategy, sample_queries):
    img = sample_queries[0].image
    outs = [gem_strategy.embed_query(img) for _ in range(3)]
    assert outs[0].shape == (gem_strategy.descriptor_dim,)
    assert abs(np.linalg.norm(outs[0]) - 1.0) < 1e-3
    assert all(np.array_equal(outs[0], o) for o in outs[1:])


def test_preprocessor_shape_crop_and_normalisation():
    pre = BackbonePreprocessor(size=(480, 480))
    img = np.full((720, 1280, 3), 128, np.uint8)
    img[:, :280] = 0  # outside the centred square: must be cropped away
    x = pre(img)
    assert x.shape == (1, 3, 480, 480) and pre.input_shape() == (480, 480)
    expected = (128 / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    assert np.allclose(x[0, :, 240, 0].numpy(), expected, atol=1e-3)


def test_preprocessor_rejects_bad_arrays():
    pre = BackbonePreprocessor(size=(64, 64))
    for bad in (np.zeros((4, 4, 3), np.uint8), np.zeros((64, 64), np.uint8), np.zeros((64, 64, 3), np.float32)):
        with pytest.raises(VprPreprocessError):
            pre(bad)
    with pytest.raises(VprPreprocessError):
        image_codec.decode_compressed("jpeg", b"not an image")
