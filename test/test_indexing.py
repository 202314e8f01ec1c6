"""indexing/: the one tile-embedding path: chunked and checkpointed, resumed after kill -9, byte-identical on Dask,
keyed to its settings and rows; PCA to a smaller dimension applied by the node too; reindex without re-embedding."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import REPO

from vpr_node.core.index.loaded import DescriptorIndex
from vpr_node.core.indexing.index_build import build_index_for
from vpr_node.core.indexing.settings import BuildSettings

GEM = "efficientnet_lite0_gem"


OPTS = {"input_size": 160}


BUILT_FILES = ("descriptors.npy", "entries.npy", "index.faiss", "tiles.csv")


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def local_build(sample_corpus, tmp_path_factory):
    """The reference: an uninterrupted in-process build, 2 rotations, 8 tiles a chunk, sq8 (+ re-rank)."""
    out = tmp_path_factory.mktemp("local")
    m = build_index_for(GEM, sample_corpus, out, BuildSettings(rotations=2, chunk_tiles=8, index_type="sq8"),
                        backbone_options=OPTS, progress=False)
    return out, m


def test_manifest_records_the_chunked_build_and_the_rerank(local_build, sample_corpus):
    out, m = local_build
    assert m["build"]["chunks"] == m["build"]["chunks_embedded_now"] == -(-len(sample_corpus) // 8)
    assert m["index_params"]["rerank"] > 0 and m["recall_at_10_vs_exact"] >= m["recall_at_10_vs_exact_without_rerank"]
    assert not (out / "build_work").exists()  # shards removed after a successful build (--keep-work keeps them)
    idx = DescriptorIndex(out)
    assert idx.rerank == m["index_params"]["rerank"]
    # every tile finds itself first: the re-rank scores the shortlist exactly from descriptors.npy
    for row in range(0, len(idx.entries), 7):
        top = idx.search(np.asarray(idx.descriptors[row]), 1)[0]
        assert top.tile.name == idx.records[idx.entries[row]].tile_id


@pytest.mark.slow
def test_interrupted_build_resumes_and_matches_an_uninterrupted_one(local_build, sample_corpus, tmp_path):
    """`vpr build-index` killed after some chunks are on disk; the same command again embeds only the rest and
    writes the same files as the uninterrupted build."""
    out = tmp_path / "index"
    cmd = [sys.executable, "-m", "vpr_node.tools.cli", "build-index", "--backbone", GEM, "--backbone-options",
           json.dumps(OPTS), "--corpus", str(sample_corpus.root), "--out", str(out), "--rotations", "2",
           "--chunk-tiles", "8", "--index-type", "sq8", "--threads", str(torch.get_num_threads())]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    shards = out / "build_work" / "shards"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(shards.glob("[0-9]*[0-9].npy"))) < 2 and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(shards.glob("[0-9]*[0-9].npy")))
    assert 2 <= done_before < 5, f"kill came too late or too early ({done_before} chunks)"
    assert not (out / "manifest.json").exists()

    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert f"resuming: {done_before} of 5 chunks already embedded" in res.stdout + res.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert m["build"]["chunks_embedded_now"] == 5 - done_before
    for name in BUILT_FILES:
        assert sha(out / name) == sha(local_build[0] / name), name


@pytest.mark.slow
def test_dask_build_is_identical_to_the_local_build(local_build, sample_corpus, tmp_path):
    """The same chunks embedded by a Dask LocalCluster of 2 worker processes: byte-identical index folder."""
    m = build_index_for(GEM, sample_corpus, tmp_path, BuildSettings(rotations=2, chunk_tiles=8, index_type="sq8",
                                                                   workers=2), backbone_options=OPTS, progress=False)
    assert m["build"]["executor"].startswith("dask")
    for name in BUILT_FILES:
        assert sha(tmp_path / name) == sha(local_build[0] / name), name
    assert m["files"] == local_build[1]["files"]


def test_shards_of_other_settings_are_not_reused(sample_corpus, tmp_path):
    from vpr_node.core.indexing.embedding import embed_tiles
    from vpr_node.core.retrieval.strategy import load_strategy
    s = load_strategy(GEM, backbone_options=OPTS)
    logs = []
    embed_tiles(sample_corpus, tmp_path, BuildSettings(rotations=1, chunk_tiles=16), s, progress=False,
                log=logs.append)
    emb = embed_tiles(sample_corpus, tmp_path, BuildSettings(rotations=2, chunk_tiles=16), s, progress=False,
                      log=logs.append)
    assert emb.summary["chunks_embedded_now"] == len(emb.chunks)  # rotations changed: nothing reused
    assert any("(rotations differ)" in m for m in logs), logs
    again = embed_tiles(sample_corpus, tmp_path, BuildSettings(rotations=2, chunk_tiles=16), s, progress=False,
                        log=logs.append)
    assert again.summary["chunks_embedded_now"] == 0
    # a sample of the tiles is keyed apart from the whole corpus (prepare-mission's adaptation sample)
    part = embed_tiles(sample_corpus, tmp_path, BuildSettings(rotations=2, chunk_tiles=16), s, rows=[1, 3, 5],
                       progress=False, log=logs.append)
    assert part.summary["chunks_embedded_now"] == 1 and sorted(set(part.load()[1])) == [1, 3, 5]


def test_pca_dim_reduces_the_index_and_the_node_embeds_the_same_way(sample_corpus, tmp_path):
    from vpr_node.core.retrieval.strategy import load_strategy
    m = build_index_for(GEM, sample_corpus, tmp_path, BuildSettings(rotations=1, pca_dim=32), backbone_options=OPTS,
                        progress=False)
    assert m["descriptor_dim"] == 32 and m["pca"]["dim"] == 32 and m["weights_file"] == "backbone_weights.pt"
    s = load_strategy(GEM, index_dir=str(tmp_path), backbone_options=OPTS)  # weights + whitening from the folder
    assert s.descriptor_dim == 32
    hits = [s.retrieve_topk(s.embed_query(sample_corpus.image(i)), 1)[0].tile.name
            == sample_corpus.records[i].tile_id for i in range(0, len(sample_corpus), 5)]
    assert all(hits), hits


def test_reindex_changes_the_index_type_without_reembedding(local_build, tmp_path):
    """`vpr reindex`: another budget for the same descriptors; an IVF-PQ index gets the fewest probes that reach the
    recall target (the sweep is in the manifest)."""
    from vpr_node.core.index.faiss_index import NPROBE_RECALL_TARGET
    from vpr_node.core.indexing.reindex import rebuild_index
    src, m0 = local_build
    m = rebuild_index(src, tmp_path / "flat", "flat")
    assert m["index_type"] == "flat" and m["rebuilt_from"] == str(src) and m["build"] == m0["build"]
    assert sha(tmp_path / "flat" / "descriptors.npy") == sha(src / "descriptors.npy")
    m = rebuild_index(src, tmp_path / "ivf", "ivfpq", {"nlist": 8, "m": 8, "nbits": 4})
    sweep = m["nprobe_sweep"]
    assert m["index_params"]["nprobe"] == sweep[-1]["nprobe"]
    assert sweep[-1]["recall_at_10_vs_exact"] >= NPROBE_RECALL_TARGET or sweep[-1]["nprobe"] == 8
    assert all(s["recall_at_10_vs_exact"] < NPROBE_RECALL_TARGET for s in sweep[:-1])
    assert DescriptorIndex(tmp_path / "ivf").index.nprobe == m["index_params"]["nprobe"]
