"""NetVLAD-VGG16: the mandatory simple baseline (C2 engine rule), on PyTorch FP32/FP16 only.

Architecture: VGG16 `features[:-2]` (conv5_3 without its ReLU and the last max-pool; 512 channels)
-> NetVLAD pool, 64 clusters (1x1 conv + centroids) -> 32768-D intra-normalised VLAD -> optional
PCA-whitening Linear(32768 -> descriptor_dim) -> global L2. Normalisation order: intra-cluster L2
THEN global L2, each exactly once per embed. Preprocessing: centre square crop, 480x480, ImageNet
mean/std.

Weights: `vpr convert-netvlad` turns the Pittsburgh-30k checkpoint of Nanne/pytorch-NetVlad
(vladv2=False; WPCA stored as Conv2d(32768 -> 4096, 1x1)) into this module's format with a
provenance sidecar. Without weights the model is an untrained scaffold and says so (WARN at configure).
"""
from __future__ import annotations

import math
import pathlib

import numpy as np
import torch
import torch.nn as nn
import torchvision

from vpr_node.core.backbones.base import VprBackbone
from vpr_node.core.backbones.layers import NetVLADPool
from vpr_node.core.backbones.normalise import DescriptorNormaliser
from vpr_node.core.backbones.preprocess import BackbonePreprocessor
from vpr_node.core.backbones.registry import BackboneSpec, register
from vpr_node.core.backbones.vlad_init import init_vlad
from vpr_node.core.backbones.weights import Provenance, load_state_dict_strict, torch_load
from vpr_node.core.errors import ConfigurationError
from vpr_node.core.io.hashing import sha256_file

NUM_CLUSTERS = 64
ENCODER_DIM = 512
VLAD_DIM = NUM_CLUSTERS * ENCODER_DIM  # 32768


class NetVladVgg16(VprBackbone):
    label = "net_vlad"

    def __init__(self, descriptor_dim: int = 4096, conv_bias: bool = False):
        super().__init__()
        vgg = torchvision.models.vgg16(weights=None)
        self.encoder = nn.Sequential(*list(vgg.features.children())[:-2])
        self.pool = NetVLADPool(NUM_CLUSTERS, ENCODER_DIM, conv_bias=conv_bias)
        if descriptor_dim == VLAD_DIM:
            self.pca = None
        elif 0 < descriptor_dim < VLAD_DIM:
            self.pca = nn.Linear(VLAD_DIM, descriptor_dim)
        else:
            raise ConfigurationError(f"net_vlad descriptor_dim must be in 1..{VLAD_DIM}, got {descriptor_dim}")
        self.descriptor_dim = int(descriptor_dim)
        self.preprocessor = BackbonePreprocessor(size=(480, 480))
        self.provenance = Provenance(source="random initialisation", trained=False,
                                     notes="untrained pool: scaffold weights, not for retrieval")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """conv5_3 local features (N, 512, H/16, W/16) that the NetVLAD pool aggregates."""
        return self.encoder(x)

    def aggregate(self, features: torch.Tensor) -> torch.Tensor:
        vlad = self.pool(features).flatten(1)  # intra-normalised (first stage)
        if self.pca is not None:
            vlad = self.pca(vlad)
        return DescriptorNormaliser.l2_normalise(vlad)  # global L2 (second stage), exactly once

    def descriptor(self, x: torch.Tensor) -> torch.Tensor:
        return self.aggregate(self.features(x))


def convert_nanne_checkpoint(state: dict) -> dict:
    """Map a Nanne/pytorch-NetVlad checkpoint onto NetVladVgg16's state_dict.

    Nanne keys: encoder.<i>.weight/bias, pool.conv.weight (+bias if vladv2), pool.centroids,
    WPCA.0.weight (D, 32768, 1, 1) and WPCA.0.bias (D). Nanne applies the WPCA conv to the globally
    L2-normalised VLAD; after intra-normalisation every cluster block has unit norm, so that global
    norm is exactly sqrt(64) = 8 and is folded into the Linear weight (W / 8), keeping one global L2.
    """
    if "state_dict" in state:
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    out = {}
    for k, v in state.items():
        if k.startswith("encoder.") or k.startswith("pool."):
            out[k] = v
        elif k == "WPCA.0.weight":
            if v.dim() != 4 or v.shape[1] != VLAD_DIM:
                raise ConfigurationError(f"WPCA.0.weight has shape {tuple(v.shape)}, expected (D, {VLAD_DIM}, 1, 1)")
            out["pca.weight"] = v.flatten(1) / math.sqrt(NUM_CLUSTERS)
        elif k == "WPCA.0.bias":
            out["pca.bias"] = v
        else:
            raise ConfigurationError(f"unexpected key {k!r} in NetVLAD checkpoint")
    missing = [k for k in ("pool.centroids", "pool.conv.weight") if k not in out]
    if missing:
        raise ConfigurationError(f"NetVLAD checkpoint lacks {', '.join(missing)}")
    return out


def netvlad_from_state(state: dict, what: str = "net_vlad", drop_pca: bool = False) -> NetVladVgg16:
    """A NetVladVgg16 holding a project-format state_dict, strictly loaded. The layout decides the shape:
    `pool.conv.bias` present = vladv2, `pca.weight` rows = descriptor dim (32768 = no PCA). drop_pca
    keeps the encoder and pool only (32768-D), e.g. to refit centroids or PCA on a converted model."""
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if drop_pca:
        state = {k: v for k, v in state.items() if not k.startswith("pca.")}
    dim = state["pca.weight"].shape[0] if "pca.weight" in state else VLAD_DIM
    model = NetVladVgg16(dim, conv_bias="pool.conv.bias" in state)
    model.prepare_for_state(state)
    load_state_dict_strict(model, state, what)
    return model


def load_netvlad(weights: str | None, descriptor_dim: int = 4096) -> NetVladVgg16:
    """Project-format checkpoint (state_dict + <file>.provenance.json) or a scaffold without weights."""
    if not weights:
        return NetVladVgg16(descriptor_dim)
    model = netvlad_from_state(torch_load(weights, "net_vlad"))
    got = model.pca.out_features if model.pca is not None else VLAD_DIM
    if got != descriptor_dim:
        raise ConfigurationError(f"engine output shape mismatch: expected (1, {descriptor_dim}), got (1, {got})",
                                 weights=str(weights))
    prov = Provenance.read(pathlib.Path(weights))
    model.provenance = prov or Provenance(source=str(weights), sha256=sha256_file(weights), trained=False,
                                          notes="no provenance sidecar: origin unknown")
    return model


def _net_vlad(weights=None, descriptor_dim: int = 4096, **_):
    return load_netvlad(weights, int(descriptor_dim))


def _fit_net_vlad(corpus, out_path, weights=None, n_images: int = 200, seed: int = 0, **_):
    """`vpr init-vlad --backbone net_vlad`: k-means centroids over conv5_3 features; the encoder (and the
    conv layout) come from a converted checkpoint when given (its PCA is dropped: 32768-D result; run
    fit-pca afterwards for 4096/512-D), else from random initialisation (an untrained scaffold)."""
    model, trained = NetVladVgg16(VLAD_DIM), False
    if weights:
        model = netvlad_from_state(torch_load(weights, "net_vlad"), drop_pca=True)
        prov = Provenance.read(pathlib.Path(weights))
        trained = bool(prov and prov.trained)
    return init_vlad(model.eval(), corpus, out_path, n_images=n_images, seed=seed,
                     trunk=f"VGG16 encoder from {weights or 'random initialisation'}", trunk_trained=trained)


def _convert_nanne(checkpoint, **_):
    """The Pittsburgh-30k checkpoint of Nanne/pytorch-NetVlad -> NetVladVgg16 (provenance says whether
    the pool looks trained)."""
    model = netvlad_from_state(convert_nanne_checkpoint(torch_load(checkpoint, "net_vlad (Nanne checkpoint)")))
    align = pool_alignment(model.state_dict())
    trained = align >= UNTRAINED_POOL_ALIGNMENT
    model.provenance = Provenance(source=f"Nanne/pytorch-NetVlad checkpoint {checkpoint}", trained=trained,
                                  notes=(f"converted from Nanne/pytorch-NetVlad layout; pool alignment {align:.3f}"
                                         + ("" if trained else "; untrained pool: assignment conv not aligned with "
                                                               "centroids")))
    return model


@torch.inference_mode()
def fit_vlad_pca(model: NetVladVgg16, images, out_dim: int = 512, eps: float = 1e-9) -> nn.Linear:
    """PCA-whitening from VLAD vectors of corpus images (the NetVLAD paper's recipe): returns the
    Linear(32768 -> out_dim) to install as model.pca (its input is the intra-normalised VLAD)."""
    vlads = []
    for img in images:
        vlads.append(model.pool(model.encoder(model.preprocessor(img))).flatten(1).double())
    x = torch.cat(vlads)
    n = x.shape[0]
    if n < 2:
        raise ConfigurationError("PCA-whitening needs at least 2 images")
    mu = x.mean(0, keepdim=True)
    xc = x - mu
    # dual trick: eigen-decompose the n x n Gram matrix (n << 32768)
    gram = xc @ xc.T / (n - 1)
    evals, evecs = torch.linalg.eigh(gram)
    order = torch.argsort(evals, descending=True)[: min(out_dim, n - 1)]
    evals, evecs = evals[order].clamp_min(eps), evecs[:, order]
    u = xc.T @ evecs / torch.sqrt(evals * (n - 1))  # (32768, k) unit principal directions
    w = (u / torch.sqrt(evals)).T  # whitening
    k = w.shape[0]
    lin = nn.Linear(VLAD_DIM, out_dim)
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.zero_()
        lin.weight[:k] = w.float()
        lin.bias[:k] = -(w @ mu.T).squeeze(1).float()
    return lin


def make_nanne_layout_checkpoint(path, wpca_dim: int = 4096, vladv2: bool = False, seed: int = 0) -> pathlib.Path:
    """A checkpoint in Nanne/pytorch-NetVlad's exact key layout (random values): for converter tests
    and for users to check a converter install without the 500 MB download."""
    g = torch.Generator().manual_seed(seed)
    vgg = torchvision.models.vgg16(weights=None)
    enc = nn.Sequential(*list(vgg.features.children())[:-2])
    sd = {f"encoder.{k}": v for k, v in enc.state_dict().items()}
    sd["pool.conv.weight"] = torch.randn(NUM_CLUSTERS, ENCODER_DIM, 1, 1, generator=g)
    if vladv2:
        sd["pool.conv.bias"] = torch.randn(NUM_CLUSTERS, generator=g)
    sd["pool.centroids"] = torch.rand(NUM_CLUSTERS, ENCODER_DIM, generator=g)
    sd["WPCA.0.weight"] = torch.randn(wpca_dim, VLAD_DIM, 1, 1, generator=g) / math.sqrt(VLAD_DIM)
    sd["WPCA.0.bias"] = torch.randn(wpca_dim, generator=g) * 0.01
    torch.save({"epoch": 30, "state_dict": sd, "best_score": np.float64(0.0).item(), "optimizer": {}}, path)
    return pathlib.Path(path)


def pool_alignment(state: dict) -> float:
    """Mean cosine between each cluster's assignment-conv row and its centroid. NetVLAD training starts
    from conv = alpha * centroid direction and keeps them strongly aligned; a random (untrained)
    pool gives ~0. Used to detect scaffold checkpoints."""
    w = state["pool.conv.weight"].flatten(1).double()
    c = state["pool.centroids"].double()
    return float(torch.nn.functional.cosine_similarity(w, c, dim=1).mean())


UNTRAINED_POOL_ALIGNMENT = 0.2

register(BackboneSpec("net_vlad", _net_vlad, display_name="NetVLAD", required_runtimes=("pytorch",),
                      fit_to_corpus=_fit_net_vlad, convert=_convert_nanne, weights_hint="`vpr convert-checkpoint`"))
