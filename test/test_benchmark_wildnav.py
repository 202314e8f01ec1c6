"""Developer benchmark on real satellite imagery (../shared/data/wildnav_turku): recall@N at 25 m for
the default backbone on synthesised drone queries (fixed seed). Same settings as the README command
`scripts/vpr bench-recall`; prints the table and writes artifacts/benchmark_wildnav.json."""
import json
import pathlib

import pytest

from conftest import REPO, WILDNAV, requires_wildnav

pytestmark = [requires_wildnav(), pytest.mark.benchmark]


def test_default_backbone_recall_on_wildnav(tmp_path):
    from vpr_node.tools.bench_recall import run_recall_benchmark
    out = REPO / "artifacts"
    results = run_recall_benchmark(WILDNAV, tmp_path, n_queries=100, seed=0, report_dir=out / "benchmark_wildnav",
                                   configs=("default",))
    r = results[0]
    print(json.dumps(r.to_json(), indent=2))
    (out / "benchmark_wildnav.json").write_text(json.dumps([x.to_json() for x in results], indent=2) + "\n")
    # spec floor: recall@10 >= 0.85 at 25 m; unknown yaw 0-360
    assert r.recall["25"]["10"] >= 0.85
    assert r.recall["25"]["1"] >= 0.5
