"""`vpr convert-checkpoint`: authors' published checkpoints -> project format (+ provenance sidecar)."""
from __future__ import annotations

import json


def convert_published(backbone: str, checkpoint, out, source: str, licence: str, options: dict | None = None) -> dict:
    import pathlib

    import torch

    from vpr_node.core.backbones import create_backbone
    from vpr_node.core.backbones.base import Provenance, sha256_file

    model = create_backbone(backbone, weights=str(checkpoint), **(options or {}))
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out)
    Provenance(source=source, licence=licence, sha256=sha256_file(out), trained=True,
               notes=f"converted from {checkpoint} (sha256 {sha256_file(checkpoint)[:16]}...); "
                     f"options {json.dumps(options or {})}; {model.provenance.notes}").write(out)
    return {"out": str(out), "backbone": backbone, "descriptor_dim": model.descriptor_dim}


def register(sub) -> None:
    p = sub.add_parser(
        "convert-checkpoint",
        help="convert a published cosplace / eigenplaces / mixvpr / salad / megaloc / boq checkpoint")
    p.add_argument("--backbone", required=True, choices=("cosplace", "eigenplaces", "mixvpr", "salad", "megaloc", "boq"))
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--backbone-options", default="{}",
                   help='e.g. {"trunk": "resnet50", "descriptor_dim": 2048} or {"variant": "dinov2_vitb14"}')
    p.add_argument("--source", default="authors' published checkpoint")
    p.add_argument("--licence", default="see the authors' repository")
    p.set_defaults(fn=lambda a: print(json.dumps(convert_published(a.backbone, a.checkpoint, a.out, a.source, a.licence,
                                                                   json.loads(a.backbone_options)))))
