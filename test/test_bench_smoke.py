"""CI runs a seconds-long smoke of `vpr bench` (the real numbers live in BENCHMARKS.md)."""
import json
import subprocess
import sys


def test_bench_smoke_prints_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "vpr_node.tools.cli", "bench", "--smoke", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["embed"][0]["embed_ms_p50"] > 0
    kinds = {r["index"] for r in res["index"]}
    assert kinds == {"flat", "hnsw", "ivfpq", "ivfpq+rerank"}  # compressed codes also with the exact re-rank
    assert all(0.0 <= r["recall_at_10_vs_exact"] <= 1.0 for r in res["index"])
    node_rows = [r for r in res["node"] if "rate_hz" in r]
    assert node_rows and node_rows[0]["results"] >= 1
    assert any(r.get("node_peak_rss_MiB") for r in res["node"])
    assert "embed  efficientnet_lite0_gem" in proc.stdout
