"""benchmarks/ and `vpr bench`: the speed smoke run, compare-backbones, and the developer-map recall benchmark."""
import json
import subprocess
import sys

import pytest
import torch
from conftest import WILDNAV, requires_wildnav

from vpr_node.core.backbones import Provenance, create_backbone
from vpr_node.core.benchmarks.compare import compare_backbones, format_markdown
from vpr_node.core.io.hashing import sha256_file


@pytest.mark.slow
def test_bench_smoke_prints_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "vpr_node.tools.cli", "bench", "--smoke", "--out", str(out),
                           "--parts", "embed", "index", "prior", "node"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["embed"][0]["embed_ms_p50"] > 0
    kinds = {r["index"] for r in res["index"]}
    assert kinds == {"flat", "hnsw", "ivfpq", "ivfpq+rerank"}  # compressed codes also with the exact re-rank
    assert all(0.0 <= r["recall_at_10_vs_exact"] <= 1.0 for r in res["index"])
    prior = {(r["index"], r["prior_sigma_m"]) for r in res["prior_search"]}
    assert prior == {(kind, s) for kind in ("flat", "ivfpq") for s in (None, 50.0, 200.0, 500.0)}
    assert all(r["tiles_searched_mean"] > 0 for r in res["prior_search"])
    node_rows = [r for r in res["node"] if "rate_hz" in r]
    assert node_rows and node_rows[0]["results"] >= 1
    assert any(r.get("node_peak_rss_MiB") for r in res["node"])
    assert "embed  efficientnet_lite0_gem" in proc.stdout


def _weights_file(path, gem_p: float):
    """The packaged ImageNet GeM model re-saved with another GeM exponent (a different, real weights file)."""
    sd = create_backbone("efficientnet_lite0_gem").state_dict()
    sd["pool.p"] = torch.full_like(sd["pool.p"], gem_p)
    torch.save(sd, path)
    Provenance(source=f"test: packaged ImageNet weights, GeM p={gem_p}", sha256=sha256_file(path)).write(path)
    return str(path)


@pytest.mark.slow
def test_rows_for_backbones_with_weights_and_reasons_for_the_rest(sample_maps, tmp_path):
    a, b = _weights_file(tmp_path / "gem_a.pt", 3.0), _weights_file(tmp_path / "gem_b.pt", 4.5)
    work = tmp_path / "work"
    kw = dict(backbones=["efficientnet_lite0_gem", "salad", "convnext_tiny_gem"], n_queries=3, seed=0)
    rows = {r["backbone"]: r for r in compare_backbones(sample_maps, work, weights={"efficientnet_lite0_gem": a}, **kw)}

    gem = rows["efficientnet_lite0_gem"]
    assert gem["weights"] == a and gem["descriptor_dim"] == 192 and gem["n_queries"] == 3
    assert 2.0 < gem["params_m"] < 3.0 and gem["embed_ms_p50"] > 0
    assert all(0.0 <= gem["recall_25m"][n] <= 1.0 for n in (1, 5, 10))
    assert gem["recall_25m"][1] <= gem["recall_25m"][5] <= gem["recall_25m"][10]
    # no weights here: skipped with the command that makes them, never evaluated on random weights
    assert "convert-checkpoint" in rows["salad"]["skipped"] and "recall_25m" not in rows["salad"]
    assert "vpr train" in rows["convnext_tiny_gem"]["skipped"]
    table = format_markdown(list(rows.values()))
    assert "| efficientnet_lite0_gem | 192 |" in table and "skipped: no weights here" in table

    # other weights for the same backbone get their own index instead of failing the stale one's manifest
    again = compare_backbones(sample_maps, work, weights={"efficientnet_lite0_gem": b}, **kw)[0]
    assert "skipped" not in again and again["weights"] == b
    manifests = [json.loads(p.read_text()) for p in sorted(work.glob("index_efficientnet_lite0_gem_*/manifest.json"))]
    assert len(manifests) == 2 and manifests[0]["weights_sha256"] != manifests[1]["weights_sha256"]


@requires_wildnav()
def test_developer_maps_are_found_beside_the_checkout():
    from vpr_node.core.benchmarks.developer_maps import developer_maps
    assert WILDNAV in developer_maps()


@requires_wildnav()
@pytest.mark.benchmark
@pytest.mark.slow
def test_default_backbone_recall_on_wildnav(tmp_path):
    from vpr_node.core.benchmarks.recall import run_recall_benchmark
    results = run_recall_benchmark(WILDNAV, tmp_path, n_queries=100, seed=0, report_dir=tmp_path / "report",
                                   configs=("default",), protocol="legacy")
    r = results[0]
    print(json.dumps(r.to_json(), indent=2))
    # spec floor: recall@10 >= 0.85 at 25 m; unknown yaw 0-360
    assert r.recall["25"]["10"] >= 0.85
    assert r.recall["25"]["1"] >= 0.5
