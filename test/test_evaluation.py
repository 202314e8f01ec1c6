"""evaluation/: the recall@N definition (within R metres of the truth) and an evaluation run with its report."""
import json

import numpy as np

from vpr_node.core.evaluation.recall import evaluate, recall_from_distances
from vpr_node.core.retrieval.strategy import load_strategy


def test_recall_definition():
    dist = np.array([[30.0, 10.0, 99.0], [5.0, 80.0, 80.0], [60.0, 70.0, 80.0]])
    assert recall_from_distances(dist, (1, 2, 3), 25.0) == {1: 1 / 3, 2: 2 / 3, 3: 2 / 3}


def test_evaluate_on_sample_map(gem_index_dir, sample_queries, tmp_path):
    from vpr_node.core.evaluation.report import write_report
    s = load_strategy("efficientnet_lite0_gem", index_dir=str(gem_index_dir), backbone_options={"input_size": 160})
    r = evaluate(s, sample_queries, k=20, progress=False)
    assert r.n_queries == len(sample_queries) and 0.0 <= r.recall["25"]["1"] <= r.recall["25"]["20"] <= 1.0
    assert r.recall["50"]["10"] >= r.recall["25"]["10"]
    files = write_report([r], tmp_path, sample_queries, s.index)
    assert json.loads((tmp_path / "results.json").read_text())[0]["backbone"] == "efficientnet_lite0_gem"
    for key in ("plot", "mosaic"):
        assert (tmp_path / files[key].split("/")[-1]).stat().st_size > 1000
