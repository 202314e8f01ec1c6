"""index/: search contract, manifest verification against the loaded backbone, damaged folders, FAISS types and the
memory budget, exact re-rank, synthetic indexes."""
import dataclasses
import json
import shutil

import numpy as np
import pytest

from vpr_node.core.backbones.identity import BackboneIdentity
from vpr_node.core.errors import ConfigurationError, IndexUnavailableError
from vpr_node.core.index.faiss_index import make_faiss_index, recall_vs_exact
from vpr_node.core.index.loaded import DescriptorIndex
from vpr_node.core.retrieval.strategy import RetrievalStrategy, load_strategy


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


def test_latency_budget_gives_hnsw_where_a_scan_would_be_too_slow(tmp_path):
    """A scan predicted over the latency budget (n * d * the machine's measured ns per float) gives way to HNSW,
    or to IVF-PQ where the graph does not fit the memory budget; a budget the scan meets keeps flat. Through the
    folder: the manifest records the budget, the measured scan rate, the prediction and the chosen index's
    measured search latency."""
    from vpr_node.core.index.faiss_index import choose_index_type, hnsw_bytes
    from vpr_node.core.index.folder import write_index
    from vpr_node.core.maps.tiles import TileRecord

    n, d, rate = 1_000_000, 256, 0.5  # a 1M x 256 scan at 0.5 ns a float: 128 ms predicted
    assert choose_index_type(n, d, latency_budget_ms=500.0, scan_ns_per_float=rate)[0] == "flat"
    kind, params, need = choose_index_type(n, d, latency_budget_ms=20.0, scan_ns_per_float=rate)
    assert kind == "hnsw" and params["M"] == 32 and need == hnsw_bytes(n, d)
    assert choose_index_type(n, d, 2000.0, 20.0, rate)[0] == "hnsw"  # 1.2 GiB graph fits 2 GB
    assert choose_index_type(n, d, 600.0, 20.0, rate)[0] == "ivfpq"  # it does not fit 600 MiB
    assert choose_index_type(n, d, 600.0, 500.0, rate)[0] == "sq8"  # scan fast enough, float32 too big

    rng = np.random.default_rng(0)
    n, d = 2000, 32
    x = rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    recs = [TileRecord(f"t{i}", 18, 60.0 + i * 1e-5, 22.0, 0, 0, 0, 0, "m", 0, 0, 1, 1, f"t{i}.png") for i in range(n)]
    m = write_index(tmp_path / "ix", x, np.arange(n), recs, BackboneIdentity("test", d, "0" * 64, {}), "auto",
                    {"latency_budget_ms": 1e-9})  # no scan is that fast
    assert m["index_type"] == "hnsw" and m["latency_budget_ms"] == 1e-9
    assert m["scan_ns_per_float"] > 0 and m["predicted_exhaustive_ms"] > 1e-9
    assert m["search_ms"]["p50"] > 0 and 0.0 < m["recall_at_10_vs_exact"] <= 1.0
    assert DescriptorIndex(tmp_path / "ix").search(x[7], 5)[0].tile.name == "t7"


GEM = "efficientnet_lite0_gem"


OPTS = {"input_size": 160}


@pytest.mark.parametrize("kind,params", [("sq8", {}), ("ivfpq", {"nlist": 64, "m": 16, "nprobe": 8})])
def test_rerank_restores_exact_top10(kind, params):
    from vpr_node.core.index.synthetic import clustered_descriptors
    x = clustered_descriptors(20_000, 64, 1)[0]
    index = make_faiss_index(x, kind, params)
    plain, reranked = recall_vs_exact(index, x), recall_vs_exact(index, x, rerank=10)
    assert reranked >= 0.99 and reranked >= plain


def test_index_over_the_memory_budget_fails_with_what_to_do(gem_index_dir):
    from vpr_node.core.retrieval.strategy import load_strategy
    size_mib = (gem_index_dir / "index.faiss").stat().st_size / 2**20
    with pytest.raises(ConfigurationError, match="--memory-budget") as e:
        load_strategy(GEM, index_dir=str(gem_index_dir), backbone_options=OPTS, index_memory_budget_mib=size_mib / 2)
    assert e.value.context["field"] == "index_memory_budget_mib"
    assert load_strategy(GEM, index_dir=str(gem_index_dir), backbone_options=OPTS,
                         index_memory_budget_mib=size_mib * 2).index is not None


def test_synthetic_index_loads_with_the_real_backbone(gem_index_dir, tmp_path):
    """bench-scale's synthetic sizes: N clustered vectors that the real backbone's node accepts (same label, hash,
    dimension), the index type picked by the budget."""
    from vpr_node.core.index.synthetic import synthetic_index
    from vpr_node.core.retrieval.strategy import load_strategy
    m = synthetic_index(gem_index_dir, 20_000, tmp_path, memory_budget_mib=1.0)
    assert m["entry_count"] == 20_000 and m["index_type"] == "ivfpq" and m["recall_at_10_vs_exact"] >= 0.95
    s = load_strategy(GEM, index_dir=str(tmp_path), backbone_options=OPTS, index_memory_budget_mib=1.0)
    assert len(s.retrieve_topk(np.zeros(s.descriptor_dim, np.float32) + 0.1, 10)) == 10


@pytest.mark.parametrize("kind", ["flat", "sq8", "ivfpq"])
def test_a_restricted_search_returns_the_exact_best_of_the_allowed_tiles(tmp_path, kind, monkeypatch):
    """A position prior's subset: small ones are read from the descriptors and scored exactly, large ones go through
    FAISS with an ID selector; both return only allowed tiles, and the flat index the same top-k either way."""
    from vpr_node.core.index import loaded
    from vpr_node.core.index.folder import write_index
    from vpr_node.core.index.synthetic import clustered_descriptors
    from vpr_node.core.maps.tiles import TileRecord
    n_tiles, rot, d = 2000, 4, 64
    x = clustered_descriptors(n_tiles * rot, d, 1)[0]
    entries = np.repeat(np.arange(n_tiles), rot)[np.random.default_rng(1).permutation(n_tiles * rot)]
    recs = [TileRecord(f"t{i}", 18, 60.0 + i * 1e-5, 22.0, 0, 0, 0, 0, "m", 0, 0, 1, 1, "") for i in range(n_tiles)]
    params = {"nlist": 64, "m": 16, "nprobe": 64} if kind == "ivfpq" else {}
    write_index(tmp_path, x, entries.astype(np.int32), recs, BackboneIdentity("test", d, "0" * 64, {}), kind, params)
    idx = DescriptorIndex(tmp_path)
    allowed = np.arange(300, 420)
    assert np.array_equal(idx.rows_of_tiles(allowed), np.flatnonzero(np.isin(entries, allowed)))
    q = x[np.flatnonzero(entries == 350)[0]] + 0.01
    q /= np.linalg.norm(q)
    exact = idx.search(q, 10, allowed)
    monkeypatch.setattr(loaded, "EXACT_SUBSET_FLOATS", 0)  # the FAISS selector path
    selected = idx.search(q, 10, allowed)
    for found in (exact, selected):
        assert len(found) == 10 and all(300 <= int(c.tile.name[1:]) < 420 for c in found)
    assert exact[0].tile.name == "t350"
    if kind == "flat":
        assert [c.tile.name for c in exact] == [c.tile.name for c in selected]
