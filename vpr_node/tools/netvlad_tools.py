"""NetVLAD-VGG16 tools: convert the Nanne/pytorch-NetVlad checkpoint, fit PCA-whitening, init centroids."""
from __future__ import annotations

import json
import pathlib


def convert(nanne_ckpt, out, source: str, licence: str) -> dict:
    from vpr_node.core.backbones.base import Provenance
    from vpr_node.core.backbones.netvlad import (UNTRAINED_POOL_ALIGNMENT, NetVladVgg16, convert_nanne_checkpoint,
                                                 pool_alignment, save_project_checkpoint)
    from vpr_node.core.backbones.base import load_state_dict_strict, torch_load

    state = convert_nanne_checkpoint(torch_load(nanne_ckpt, "net_vlad (Nanne checkpoint)"))
    dim = state["pca.weight"].shape[0] if "pca.weight" in state else 32768
    model = NetVladVgg16(dim, conv_bias="pool.conv.bias" in state)
    load_state_dict_strict(model, state, "net_vlad")
    align = pool_alignment(state)
    trained = align >= UNTRAINED_POOL_ALIGNMENT
    prov = Provenance(source=source, licence=licence, trained=trained,
                      notes=(f"converted from Nanne/pytorch-NetVlad layout; pool alignment {align:.3f}"
                             + ("" if trained else "; untrained pool: assignment conv not aligned with centroids")))
    path = save_project_checkpoint(model, out, prov)
    return {"out": str(path), "descriptor_dim": dim, "trained": trained, "pool_alignment": round(align, 4)}


def register(sub) -> None:
    p = sub.add_parser("convert-netvlad", help="convert a Nanne/pytorch-NetVlad checkpoint for backbone net_vlad")
    p.add_argument("--checkpoint", required=True, help="e.g. vgg16_netvlad_checkpoint/checkpoints/checkpoint.pth.tar")
    p.add_argument("--out", required=True)
    p.add_argument("--source", default="Nanne/pytorch-NetVlad Pittsburgh-30k checkpoint (vladv2=False, WPCA 4096)")
    p.add_argument("--licence", default="see the upstream repository's licence")
    p.set_defaults(fn=lambda a: print(json.dumps(convert(a.checkpoint, a.out, a.source, a.licence))))

    p = sub.add_parser("make-nanne-checkpoint", help="write a random checkpoint in Nanne's exact key layout "
                                                     "(to test the converter; never for retrieval)")
    p.add_argument("--out", required=True)
    p.add_argument("--wpca-dim", type=int, default=4096)
    p.set_defaults(fn=_make_nanne)

    p = sub.add_parser("fit-pca", help="fit PCA-whitening for net_vlad from corpus tiles (NetVLAD paper recipe)")
    p.add_argument("--weights", required=True, help="project-format net_vlad checkpoint (any descriptor_dim)")
    p.add_argument("--corpus", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--images", type=int, default=600)
    p.set_defaults(fn=_fit_pca)


def _make_nanne(a):
    from vpr_node.core.backbones.netvlad import make_nanne_layout_checkpoint
    print(make_nanne_layout_checkpoint(a.out, a.wpca_dim))


def fit_pca(weights, corpus_dir, out, dim: int = 512, n_images: int = 600, progress: bool = True) -> pathlib.Path:
    import numpy as np
    import torch
    from tqdm import tqdm

    from vpr_node.core.backbones.base import Provenance, load_state_dict_strict, torch_load
    from vpr_node.core.backbones.netvlad import NetVladVgg16, fit_pca_whitening, save_project_checkpoint
    from vpr_node.core.corpus import TileCorpus

    state = torch_load(weights, "net_vlad")
    base = NetVladVgg16(state["pca.weight"].shape[0] if "pca.weight" in state else 32768,
                        conv_bias="pool.conv.bias" in state)
    load_state_dict_strict(base, state, "net_vlad")
    corpus = TileCorpus(corpus_dir)
    ids = np.random.default_rng(0).permutation(len(corpus))[:n_images]
    images = (corpus.image(int(i)) for i in tqdm(ids, desc="VLADs for PCA", disable=not progress))
    lin = fit_pca_whitening(base.eval(), images, dim)
    model = NetVladVgg16(dim, conv_bias="pool.conv.bias" in state)
    sd = {k: v for k, v in state.items() if not k.startswith("pca.")}
    sd.update({"pca.weight": lin.weight.detach(), "pca.bias": lin.bias.detach()})
    load_state_dict_strict(model, sd, "net_vlad")
    old = Provenance.read(pathlib.Path(weights))
    prov = Provenance(source=f"{old.source if old else weights} + PCA-whitening to {dim}-D over {len(ids)} tiles of {corpus_dir}",
                      licence=old.licence if old else "unknown", trained=old.trained if old else False,
                      notes=(old.notes if old else "") + f"; PCA-whitened {dim}-D")
    with torch.no_grad():
        return save_project_checkpoint(model, out, prov)


def _fit_pca(a):
    print(fit_pca(a.weights, a.corpus, a.out, a.dim, a.images))
