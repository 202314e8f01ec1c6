"""`vpr bench-real`: retrieval and verification on crops of a real drone photograph against an independent
orthophoto of another season (core/benchmarks/real_imagery.py)."""
from __future__ import annotations

import json
import pathlib


def register(sub) -> None:
    from vpr_node.core.benchmarks.real_imagery import VERIFIERS

    p = sub.add_parser("bench-real", help="real imagery: crops of ../shared/data/ortholoc_demo_real's photograph "
                                          "against its independent orthophoto; retrieval recall and each verifier")
    p.add_argument("--workdir", default="artifacts/bench_real")
    p.add_argument("--n", type=int, default=40, help="crops")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verifiers", nargs="+", default=["sift", "xfeat", "xfeat-mnn", "aliked", "default"],
                   choices=list(VERIFIERS))
    p.add_argument("--retrieval", nargs="*", default=None, metavar="BACKBONE",
                   help="instead of the verifiers: each backbone's retrieval recall@1/5/10/50, map-fitted and adapted "
                        "(no names: the default xfeat_netvlad, efficientnet_lite0_netvlad and efficientnet_lite0_gem)")
    p.add_argument("--no-distractors", action="store_true",
                   help="--retrieval against the real orthophoto alone (default: among the other developer maps' "
                        "tiles)")
    p.set_defaults(fn=_cmd)


def _cmd(a):
    from vpr_node.core.benchmarks.real_imagery import crops_mosaic, dataset_dir, format_markdown, real_crops, run

    if not dataset_dir().is_dir():
        print(f"{dataset_dir()} is absent: the real-imagery benchmark needs ../shared/data/ortholoc_demo_real")
        return 2
    out = pathlib.Path(a.workdir)
    if a.retrieval is not None:
        return _retrieval(a, out)
    res = run(out, a.n, a.seed, a.verifiers)
    table = format_markdown(res)
    print(table)
    (out / "results.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    (out / "results.md").write_text(table + "\n")
    crops_mosaic(real_crops(a.n, a.seed), out / "crops.png")
    return 0


def _retrieval(a, out: pathlib.Path) -> int:
    from vpr_node.core.benchmarks.real_retrieval import BACKBONES, format_markdown, run_retrieval

    res = run_retrieval(out, a.retrieval or BACKBONES, a.n, a.seed, distractors=not a.no_distractors)
    table = format_markdown(res)
    print(table)
    (out / "retrieval.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    (out / "retrieval.md").write_text(table + "\n")
    return 0
