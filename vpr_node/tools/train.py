"""`vpr train`: its options are TrainConfig's fields (name, type, default, help), so they are declared once."""
from __future__ import annotations

import json

from vpr_node.tools.common import add_dataclass_options, dataclass_from_args


def _train(a):
    from vpr_node.core.training.trainer import TrainConfig, train
    print(json.dumps(train(dataclass_from_args(TrainConfig, a))))
    return 0


def register(sub) -> None:
    from vpr_node.core.training.trainer import TrainConfig
    p = sub.add_parser("train", help="train a retrieval backbone on GPS triplets (triplet + InfoNCE, Lightning)")
    add_dataclass_options(p, TrainConfig, required=("maps", "corpus"))
    p.set_defaults(fn=_train)
