"""`vpr recorder`: print flight-data-recorder records (rotated files included, oldest first)."""
from __future__ import annotations

import json


def _recorder(a):
    from vpr_node.core.io.recorder import read_records
    for rec in read_records(a.path):
        if not a.kind or rec.get("kind") == a.kind:
            print(json.dumps(rec))


def register(sub) -> None:
    p = sub.add_parser("recorder", help="print flight-data-recorder records")
    p.add_argument("path")
    p.add_argument("--kind", default=None)
    p.set_defaults(fn=_recorder)
