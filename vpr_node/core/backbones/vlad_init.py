"""NetVLAD centroid initialisation from corpus features (the NetVLAD paper's recipe): sample local
descriptors (L2-normalised per location) from corpus images, k-means them, set centroids and the
soft-assignment conv (alpha from the top-2 similarity gap)."""
from __future__ import annotations

import pathlib

import faiss
import numpy as np
import torch
import torch.nn.functional as F

from vpr_node.core.backbones.weights import Provenance, save_weights
from vpr_node.core.maps.tiles import TileCorpus


@torch.inference_mode()
def sample_local_features(model, corpus: TileCorpus, n_images: int = 200, per_image: int = 100, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = rng.choice(len(corpus), size=min(n_images, len(corpus)), replace=False)
    out = []
    for i in ids:
        x = model.preprocessor(corpus.image(int(i)))
        f = F.normalize(model.features(x), p=2, dim=1)[0]  # (C, H, W)
        f = f.flatten(1).T.numpy()
        out.append(f[rng.choice(len(f), size=min(per_image, len(f)), replace=False)])
    return np.concatenate(out).astype(np.float32)


def corpus_fitter(backbone: str, trunk: str):
    """The `fit_to_corpus` of a registered backbone whose model has `features(x)` and a NetVLADPool `pool`: the model
    built with `options` (and `weights`, if given), its centroids fitted to the corpus by `init_vlad`."""
    def fit(corpus, out_path, weights=None, n_images: int = 200, seed: int = 0, **options):
        from vpr_node.core.backbones.registry import create_backbone
        model = create_backbone(backbone, weights=weights, require_weights=False, **options)
        return init_vlad(model, corpus, out_path, n_images=n_images, seed=seed, trunk=trunk)
    return fit


def init_vlad(model, corpus: TileCorpus, out_path, n_images: int = 200, per_image: int = 100, seed: int = 0,
              trunk: str = "packaged EfficientNet-Lite0 ImageNet", trunk_trained: bool = True) -> pathlib.Path:
    """Fit centroids for `model.pool` (a NetVLADPool) and save the model's state_dict + provenance.
    `model.features(x)` must return the local feature map the pool aggregates."""
    feats = sample_local_features(model, corpus, n_images, per_image, seed)
    k = model.pool.num_clusters
    km = faiss.Kmeans(feats.shape[1], k, niter=50, seed=seed, verbose=False)
    km.train(feats)
    model.pool.init_from_features(km.centroids, feats[:20000])
    return save_weights(model, out_path, Provenance(
        source=f"k-means ({k} clusters) over {len(feats)} local features of corpus {corpus.root}",
        licence="see trunk weights", trained=trunk_trained, notes=f"centroids from corpus features; trunk = {trunk}"
        + ("" if trunk_trained else "; untrained pool trunk: encoder weights are random")))
