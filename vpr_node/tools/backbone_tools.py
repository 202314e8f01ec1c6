"""Backbone tools: `vpr backbones`, `convert-checkpoint` (any backbone whose spec has a converter;
`convert-netvlad` is its net_vlad alias), `init-vlad` (any backbone whose spec fits weights to a
corpus), `fit-pca` and `make-nanne-checkpoint` (net_vlad), `export-onnx`."""
from __future__ import annotations

import json
import pathlib

from vpr_node.core.backbones import DEFAULT_BACKBONE
from vpr_node.core.backbones.convert import convert_checkpoint, fit_pca
from vpr_node.tools.common import add_backbone_args, print_json


def _backbones(a):
    from vpr_node.core.backbones import available_backbones
    from vpr_node.core.backbones.model_cards import read_card
    for name in available_backbones():
        card = read_card(name)
        print(f"{name:28s} {card.get('summary', '')}" if not a.long else json.dumps(card))


def _convert(a):
    print_json(convert_checkpoint(a.backbone, a.checkpoint, a.out, a.source, a.licence, a.backbone_options))


def _init_vlad(a):
    from vpr_node.core.backbones import get_spec
    from vpr_node.core.maps.tiles import TileCorpus
    opts = dict(a.backbone_options)
    if a.clusters:
        opts["num_clusters"] = a.clusters
    print(get_spec(a.backbone).fit_to_corpus(TileCorpus(a.corpus), a.out, weights=a.weights, n_images=a.images,
                                              seed=a.seed, **opts))


def _export_onnx(a):
    if a.into_index:  # beside the index it was built for: the node runs it without PyTorch
        from vpr_node.core.retrieval.exported import export_to_index
        from vpr_node.core.retrieval.strategy import load_strategy
        strategy = load_strategy(a.backbone, weights=a.weights, index_dir=a.into_index,
                                 backbone_options=a.backbone_options)
        print_json(export_to_index(strategy, a.into_index))
        return
    if not a.out:
        raise SystemExit("export-onnx: give --out FILE.onnx or --into-index INDEX_DIR")
    from vpr_node.core.backbones import create_backbone
    from vpr_node.core.retrieval.runtimes import export_onnx
    m = create_backbone(a.backbone, weights=a.weights, **a.backbone_options)
    print(export_onnx(m, m.preprocessor.input_shape(), a.out))


def _make_nanne(a):
    from vpr_node.core.backbones.netvlad import make_nanne_layout_checkpoint
    print(make_nanne_layout_checkpoint(a.out, a.wpca_dim))


def _rotation_invariance(a):
    """Cosine between the descriptor of a frame's centre square and of the same square rotated by 90/180/270
    and 45 degrees (min and mean over frames): how many rotations per tile an index of this backbone needs."""
    import cv2
    import numpy as np
    import torch

    from vpr_node.core.backbones import create_backbone
    from vpr_node.core.views.queries import read_queries
    model = create_backbone(a.backbone, weights=a.weights, require_weights=False, **a.backbone_options)
    cos = {k: [] for k in ("90", "180", "270", "45")}
    for q in read_queries(a.queries)[:a.n]:
        s = min(q.image.shape[:2])
        y0, x0 = (q.image.shape[0] - s) // 2, (q.image.shape[1] - s) // 2
        sq = np.ascontiguousarray(q.image[y0:y0 + s, x0:x0 + s])
        turned = {str(90 * k): np.ascontiguousarray(np.rot90(sq, k)) for k in (1, 2, 3)}
        turned["45"] = cv2.warpAffine(sq, cv2.getRotationMatrix2D((s / 2, s / 2), 45, 1.0), (s, s),
                                      borderMode=cv2.BORDER_REFLECT)
        with torch.no_grad():
            d = model(model.preprocessor(sq))
            for k, img in turned.items():
                cos[k].append(float(torch.nn.functional.cosine_similarity(d, model(model.preprocessor(img)))))
    out = {"backbone": a.backbone, "weights": a.weights, "frames": len(cos["90"]),
           **{f"cos_{k}deg_min_mean": [round(min(v), 5), round(float(np.mean(v)), 5)] for k, v in cos.items()}}
    print_json(out)
    if a.out:
        pathlib.Path(a.out).write_text(json.dumps(out, indent=1) + "\n")


def register(sub) -> None:
    from vpr_node.core.backbones import specs_with

    p = sub.add_parser("rotation-invariance", help="descriptor cosine between frames and their 90/180/270/45 deg "
                                                   "rotations (how many rotations per tile an index needs)")
    add_backbone_args(p)
    p.add_argument("--queries", required=True, help="queries.csv from synth-queries")
    p.add_argument("--n", type=int, default=8, help="frames")
    p.add_argument("--out", default=None, help="JSON file")
    p.set_defaults(fn=_rotation_invariance)

    p = sub.add_parser("backbones", help="list registered backbones (from their model cards)")
    p.add_argument("--long", action="store_true", help="the whole model card of each, as JSON")
    p.set_defaults(fn=_backbones)

    convertible = specs_with("convert")
    p = sub.add_parser(
        "convert-checkpoint", help=f"convert an authors' published checkpoint ({', '.join(convertible)})"
    )
    p.add_argument("--backbone", required=True, choices=convertible)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--backbone-options", default="{}", type=json.loads,
                   help='e.g. {"trunk": "resnet50", "descriptor_dim": 2048} or {"variant": "dinov2_vitb14"}')
    p.add_argument("--source", default=None, help="provenance: where the file came from (URL)")
    p.add_argument("--licence", default=None)
    p.set_defaults(fn=_convert)

    p = sub.add_parser(
        "convert-netvlad", help="alias of `convert-checkpoint --backbone net_vlad` (Nanne/pytorch-NetVlad)"
    )
    p.add_argument("--checkpoint", required=True, help="e.g. vgg16_netvlad_checkpoint/checkpoints/checkpoint.pth.tar")
    p.add_argument("--out", required=True)
    p.add_argument("--source", default="Nanne/pytorch-NetVlad Pittsburgh-30k checkpoint (vladv2=False, WPCA 4096)")
    p.add_argument("--licence", default="see the upstream repository's licence")
    p.set_defaults(fn=_convert, backbone="net_vlad", backbone_options={})

    fittable = specs_with("fit_to_corpus")
    p = sub.add_parser(
        "init-vlad", help="weights fitted to a corpus: NetVLAD centroids by k-means (NetVLAD paper recipe)"
    )
    p.add_argument("--backbone", default=DEFAULT_BACKBONE, choices=fittable)
    p.add_argument(
        "--weights", default=None, help="start from these weights (net_vlad: a converted checkpoint's encoder)"
    )
    p.add_argument("--backbone-options", default="{}", type=json.loads)
    p.add_argument("--corpus", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--clusters", type=int, default=None,
                   help="number of clusters (efficientnet_lite0_netvlad: 16, xfeat_netvlad: 64)")
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=_init_vlad)

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
    p.set_defaults(fn=lambda a: print(fit_pca(a.weights, a.corpus, a.out, a.dim, a.images)))

    p = sub.add_parser("export-onnx", help="export a backbone to ONNX (a file, or into its index folder for a "
                                           "torch-free node: runtime onnxruntime)")
    add_backbone_args(p)
    p.add_argument("--out", help="the .onnx file")
    p.add_argument("--into-index", help="an index folder built with this backbone: writes model.onnx + "
                                        "model_onnx.json there (parity-checked, hashed in the manifest)")
    p.set_defaults(fn=_export_onnx)
