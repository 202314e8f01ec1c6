"""Backbones, runtimes, the FAISS index + manifest, the strategy protocol and evaluation."""
import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from vpr_node.core.backbones import available_backbones, create_backbone
from vpr_node.core.backbones.efficientnet import (
    build_lite0_imagenet,
    lukemelas_to_timm_lite0,
    packaged_lite0_weights_path,
)
from vpr_node.core.backbones.identity import BackboneIdentity
from vpr_node.core.errors import ConfigurationError, IndexUnavailableError
from vpr_node.core.evaluation.recall import evaluate, recall_from_distances
from vpr_node.core.index.faiss_index import make_faiss_index
from vpr_node.core.index.loaded import DescriptorIndex
from vpr_node.core.retrieval.runtimes import create_runtime
from vpr_node.core.retrieval.strategy import RetrievalStrategy, VprStrategy, load_strategy


def test_registry_lists_backbones_and_rejects_unknown():
    assert {"efficientnet_lite0_gem", "efficientnet_lite0_netvlad"} <= set(available_backbones())
    with pytest.raises(ConfigurationError, match="unknown backbone 'nope'; choose one of"):
        create_backbone("nope")


def test_lukemelas_weights_map_onto_timm_exactly():
    raw = torch.load(packaged_lite0_weights_path(), map_location="cpu")
    mapped = lukemelas_to_timm_lite0(raw)
    model, _ = build_lite0_imagenet()
    sd = model.state_dict()
    assert set(mapped) == set(sd) and len(mapped) == len(raw)
    for k, v in mapped.items():
        assert torch.equal(sd[k], v), k
    # A real ImageNet classifier: confident, non-uniform predictions on a natural-looking input
    x = torch.zeros(1, 3, 224, 224)
    x[:, :, 60:160, 60:160] = 1.5
    probs = model(x).softmax(-1)
    assert probs.max() > 5.0 / 1000


def test_gem_backbone_unit_norm_deterministic(gem_strategy, sample_queries):
    img = sample_queries[0].image
    outs = [gem_strategy.embed_query(img) for _ in range(3)]
    assert outs[0].shape == (gem_strategy.descriptor_dim,)
    assert abs(np.linalg.norm(outs[0]) - 1.0) < 1e-3
    assert all(np.array_equal(outs[0], o) for o in outs[1:])


def test_strategy_satisfies_protocol(gem_strategy, gem_index_dir, sample_queries):
    """The C2 protocol as behaviour: embed_query -> (descriptor_dim,) float32 unit vector; retrieve_topk -> k
    candidates, ascending distance, labelled with the backbone and dimension."""
    s = load_strategy("efficientnet_lite0_gem", backbone_options={"input_size": 160}, index_dir=str(gem_index_dir))
    assert isinstance(s, VprStrategy)
    d = s.embed_query(sample_queries[0].image)
    assert d.shape == (s.descriptor_dim,) and d.dtype == np.float32 and abs(np.linalg.norm(d) - 1) < 1e-3
    cands = s.retrieve_topk(d, 4)
    assert len(cands) == 4 and [c.rank for c in cands] == [0, 1, 2, 3]
    assert [c.distance for c in cands] == sorted(c.distance for c in cands)
    assert {(c.backbone_label, c.descriptor_dim) for c in cands} == {("efficientnet_lite0_gem", s.descriptor_dim)}


def test_onnxruntime_matches_pytorch(gem_strategy, sample_queries):
    model = gem_strategy.backbone
    ort = create_runtime("onnxruntime", model)
    x = model.preprocessor([q.image for q in sample_queries[:2]])
    ref = create_runtime("pytorch", model).forward(x)
    assert np.allclose(ort.forward(x), ref, atol=1e-4)


def test_fp16_runtime_close_to_fp32(sample_queries):
    m = create_backbone("efficientnet_lite0_gem", input_size=160)
    x = m.preprocessor([sample_queries[0].image])
    fp32 = create_runtime("pytorch", m, "fp32").forward(x)
    fp16 = create_runtime("pytorch", m, "fp16").forward(x)
    assert fp16.dtype == np.float16 and float(fp32[0] @ fp16[0].astype(np.float32)) > 0.99


def test_unavailable_runtimes_fail_fast_with_a_message():
    m = create_backbone("efficientnet_lite0_gem", input_size=64)
    with pytest.raises(ConfigurationError, match="tensorrt"):
        create_runtime("tensorrt", m)
    with pytest.raises(ConfigurationError, match="BUILD_ONNX_RUNTIME=OFF"):
        create_runtime("onnxruntime", m, installed=frozenset({"pytorch"}))


def test_index_search_sorted_k_and_labelled(gem_strategy, gem_index_dir, sample_queries):
    s = load_strategy("efficientnet_lite0_gem", index_dir=str(gem_index_dir), backbone_options={"input_size": 160})
    cands = s.retrieve_topk(s.embed_query(sample_queries[0].image), 10)
    assert len(cands) == 10
    d = [c.distance for c in cands]
    assert d == sorted(d) and all(0.0 <= x <= 4.0 for x in d)
    assert [c.rank for c in cands] == list(range(10))
    assert {c.backbone_label for c in cands} == {"efficientnet_lite0_gem"}
    assert {c.descriptor_dim for c in cands} == {s.descriptor_dim}
    assert len({c.tile.name for c in cands}) == 10  # one candidate per tile


def test_index_retrieves_a_tile_from_itself(gem_strategy, gem_index_dir, sample_corpus):
    index = DescriptorIndex(gem_index_dir)
    strat = RetrievalStrategy(gem_strategy.backbone, gem_strategy.runtime, index)
    for i in (0, 7, 20):
        top = strat.retrieve_topk(strat.embed_query(sample_corpus.image(i)), 1)[0]
        assert top.tile.name == sample_corpus.records[i].tile_id and top.distance < 1e-4


def test_manifest_mismatch_names_the_field(gem_strategy, gem_index_dir):
    own = gem_strategy.backbone.identity()
    DescriptorIndex(gem_index_dir, expect=own)  # the backbone the index was built with
    with pytest.raises(ConfigurationError, match=r"'descriptor_dim' is 192 but the configured backbone has 4096"):
        DescriptorIndex(gem_index_dir, expect=dataclasses.replace(own, descriptor_dim=4096))
    with pytest.raises(ConfigurationError, match="'backbone_label'"):
        DescriptorIndex(gem_index_dir, expect=dataclasses.replace(own, label="net_vlad"))
    with pytest.raises(ConfigurationError, match="'weights_sha256'"):
        DescriptorIndex(gem_index_dir, expect=dataclasses.replace(own, weights_sha256="0" * 64))
    DescriptorIndex(gem_index_dir, expect=dataclasses.replace(own, weights_sha256="0" * 64), check_weights=False)


def test_node_config_refuses_index_of_other_preprocessing(gem_index_dir):
    # same backbone, other input size -> preprocessing differs -> refuse
    with pytest.raises(ConfigurationError, match="'preprocessing'|'weights_sha256'"):
        load_strategy("efficientnet_lite0_gem", index_dir=str(gem_index_dir), backbone_options={"input_size": 192})


@pytest.mark.parametrize("damage", ["missing", "truncated", "corrupt_manifest", "no_dir"])
def test_damaged_index_raises_index_unavailable(gem_index_dir, tmp_path, damage):
    d = tmp_path / "idx"
    shutil.copytree(gem_index_dir, d)
    if damage == "missing":
        (d / "index.faiss").unlink()
    elif damage == "truncated":
        data = (d / "descriptors.npy").read_bytes()
        (d / "descriptors.npy").write_bytes(data[: len(data) // 2])
    elif damage == "corrupt_manifest":
        (d / "manifest.json").write_text("{not json")
    else:
        d = tmp_path / "absent"
    with pytest.raises(IndexUnavailableError):
        DescriptorIndex(d)


def test_faiss_index_types_agree_on_easy_data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[:20] + 0.01 * rng.standard_normal((20, 64)).astype(np.float32)
    for kind, params in (("flat", {}), ("hnsw", {"M": 16}), ("ivfpq", {"nlist": 16, "m": 8, "nprobe": 16})):
        _, ids = make_faiss_index(x, kind, params).search(q, 1)
        assert (ids[:, 0] == np.arange(20)).mean() >= 0.9, kind
    with pytest.raises(ConfigurationError, match="ivfpq needs at least"):
        make_faiss_index(x[:50], "ivfpq", {"nlist": 16})


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


def test_memory_budget_picks_the_most_exact_index_that_fits_and_measures_its_recall_cost(tmp_path):
    """flat while float32 vectors fit, then 8-bit scalar quantisation, then IVF-PQ; the manifest records the
    budget, the choice, the file size and recall@10 against exact search; too small a budget says what fits."""
    from vpr_node.core.index.faiss_index import choose_index_type
    from vpr_node.core.index.folder import write_index
    from vpr_node.core.maps.tiles import TileRecord

    assert choose_index_type(1000, 256, 1.0)[0] == "flat"  # 1000 x 256 x 4 B = 0.98 MiB
    assert choose_index_type(4000, 256, 1.0)[0] == "sq8"  # 4000 x 256 B
    kind, params, need = choose_index_type(100_000, 256, 8.0)
    assert kind == "ivfpq" and need <= 8 * 2**20 and 256 % params["m"] == 0
    with pytest.raises(ConfigurationError, match="memory-budget"):
        choose_index_type(1_000_000, 4096, 1.0)

    rng = np.random.default_rng(0)
    n, d = 3000, 64
    x = rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    recs = [TileRecord(f"t{i}", 18, 60.0 + i * 1e-5, 22.0, 0, 0, 0, 0, "m", 0, 0, 1, 1, f"t{i}.png") for i in range(n)]
    info = BackboneIdentity("test", d, "0" * 64, {})
    budgets = {"flat": n * d * 4 / 2**20 + 0.01, "sq8": n * d * 1.5 / 2**20, "ivfpq": n * d * 0.9 / 2**20}
    for want, budget in budgets.items():
        m = write_index(tmp_path / want, x, np.arange(n), recs, info, "auto", {"memory_budget_mib": budget})
        assert m["index_type"] == want and m["memory_budget_mib"] == budget
        assert m["index_bytes"] <= budget * 2**20 * 1.1
        assert 0.0 < m["recall_at_10_vs_exact"] <= 1.0
        assert json.loads((tmp_path / want / "manifest.json").read_text())["index_type"] == want
        idx = DescriptorIndex(tmp_path / want)
        top = idx.search(x[7], 5)
        assert top[0].tile.name == "t7" or want == "ivfpq"
    assert m["recall_at_10_vs_exact"] < 1.0  # IVF-PQ is approximate, and says by how much
