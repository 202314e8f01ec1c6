"""`vpr compare-backbones`: one table over the backbones that have real weights; the rest skipped, never run."""
import json

import torch

from vpr_node.core.backbones import Provenance, create_backbone
from vpr_node.core.benchmarks.compare import compare_backbones, format_markdown
from vpr_node.core.io.hashing import sha256_file


def _weights_file(path, gem_p: float):
    """The packaged ImageNet GeM model re-saved with another GeM exponent (a different, real weights file)."""
    sd = create_backbone("efficientnet_lite0_gem").state_dict()
    sd["pool.p"] = torch.full_like(sd["pool.p"], gem_p)
    torch.save(sd, path)
    Provenance(source=f"test: packaged ImageNet weights, GeM p={gem_p}", sha256=sha256_file(path)).write(path)
    return str(path)


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
