"""Developer benchmark on real satellite imagery (../shared/data/wildnav_turku): recall@N at 25 m for
the default backbone on synthesised drone queries (fixed seed), the legacy query protocol of the
earlier README rows (60 m footprint +-30 %, tilt <= 10 deg, standard photometrics). The full benchmark
(every developer map, the harder protocol, default vs adapted) is `scripts/vpr bench-recall`."""
import json

import pytest
from conftest import WILDNAV, requires_wildnav

pytestmark = [requires_wildnav(), pytest.mark.benchmark]


def test_default_backbone_recall_on_wildnav(tmp_path):
    from vpr_node.core.benchmarks.recall import run_recall_benchmark
    results = run_recall_benchmark(WILDNAV, tmp_path, n_queries=100, seed=0, report_dir=tmp_path / "report",
                                   configs=("default",), protocol="legacy")
    r = results[0]
    print(json.dumps(r.to_json(), indent=2))
    # spec floor: recall@10 >= 0.85 at 25 m; unknown yaw 0-360
    assert r.recall["25"]["10"] >= 0.85
    assert r.recall["25"]["1"] >= 0.5
