"""Authors' checkpoints -> project weights files (`vpr convert-checkpoint`, through each backbone spec's converter),
and the NetVLAD paper's PCA-whitening of a converted NetVLAD (`vpr fit-pca`)."""
from __future__ import annotations

import json
import pathlib

import numpy as np
import torch
from tqdm import tqdm

from vpr_node.core.backbones import get_spec
from vpr_node.core.backbones.netvlad import fit_vlad_pca, netvlad_from_state
from vpr_node.core.backbones.weights import Provenance, save_weights, torch_load
from vpr_node.core.errors import ConfigurationError
from vpr_node.core.io.hashing import sha256_file
from vpr_node.core.maps.tiles import TileCorpus


def convert_checkpoint(backbone: str, checkpoint, out, source: str | None = None, licence: str | None = None,
                       options: dict | None = None) -> dict:
    """Authors' released checkpoint -> project weights file + provenance sidecar."""
    spec = get_spec(backbone)
    if spec.convert is None:
        raise ConfigurationError(f"backbone {backbone!r} has no published-checkpoint converter; its weights come from "
                                 f"{spec.weights_hint}", parameter="backbone")
    model = spec.convert(str(checkpoint), **(options or {}))
    prov = model.provenance
    out = save_weights(model, out, Provenance(
        source=source or prov.source, licence=licence or prov.licence, trained=prov.trained,
        notes=f"converted from {checkpoint} (sha256 {sha256_file(checkpoint)[:16]}...); "
              f"options {json.dumps(options or {})}; {prov.notes}"))
    return {"out": str(out), "backbone": backbone, "descriptor_dim": model.descriptor_dim, "trained": prov.trained}


def fit_pca(weights, corpus_dir, out, dim: int = 512, n_images: int = 600, progress: bool = True) -> pathlib.Path:
    """PCA-whitening for net_vlad (NetVLAD paper recipe) on top of a converted checkpoint's encoder+pool."""
    model = netvlad_from_state(torch_load(weights, "net_vlad"), drop_pca=True).eval()
    corpus = TileCorpus(corpus_dir)
    ids = np.random.default_rng(0).permutation(len(corpus))[:n_images]
    images = (corpus.image(int(i)) for i in tqdm(ids, desc="VLADs for PCA", disable=not progress))
    lin = fit_vlad_pca(model, images, dim)
    state = {**model.state_dict(), "pca.weight": lin.weight.detach(), "pca.bias": lin.bias.detach()}
    out_model = netvlad_from_state(state)
    old = Provenance.read(pathlib.Path(weights))
    prov = Provenance(
        source=f"{old.source if old else weights} + PCA-whitening to {dim}-D over {len(ids)} tiles of {corpus_dir}",
        licence=old.licence if old else "unknown",
        trained=old.trained if old else False,
        notes=(old.notes if old else "") + f"; PCA-whitened {dim}-D",
    )
    with torch.no_grad():
        return save_weights(out_model, out, prov)
