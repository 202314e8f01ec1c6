"""NetVLAD-VGG16 baseline: acceptance criteria AC-1..AC-11, converter and PCA-whitening."""
import copy
import io
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vpr_node.core.backbones import create_backbone
from vpr_node.core.backbones.convert import convert_checkpoint, fit_pca
from vpr_node.core.backbones.netvlad import (
    NetVladVgg16,
    convert_nanne_checkpoint,
    make_nanne_layout_checkpoint,
    pool_alignment,
)
from vpr_node.core.backbones.normalise import DescriptorNormaliser
from vpr_node.core.backbones.weights import Provenance
from vpr_node.core.errors import ConfigurationError
from vpr_node.core.io.logs import StructuredLogger
from vpr_node.core.io.recorder import FlightDataRecorder, read_records
from vpr_node.core.retrieval.engine import Frame, VprEngine
from vpr_node.core.retrieval.runtimes import Runtime, create_runtime
from vpr_node.core.retrieval.strategy import RetrievalStrategy, VprStrategy, load_strategy

pytestmark = pytest.mark.slow  # VGG16 (149 M parameters) is built and run on the CPU in most tests


@pytest.fixture(scope="module")
def nanne_ckpt(tmp_path_factory):
    return make_nanne_layout_checkpoint(tmp_path_factory.mktemp("nanne") / "checkpoint.pth.tar", wpca_dim=4096)


@pytest.fixture(scope="module")
def converted(nanne_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("conv") / "net_vlad_4096.pt"
    info = convert_checkpoint("net_vlad", nanne_ckpt, out, "test checkpoint in Nanne layout", "n/a")
    return out, info


@pytest.fixture(scope="module")
def image(sample_queries):
    return sample_queries[0].image


@pytest.fixture(scope="module")
def model_4096(converted):
    return create_backbone("net_vlad", weights=str(converted[0]))


def test_architecture_and_preprocessor(model_4096, image):
    assert isinstance(model_4096.encoder[-1], torch.nn.Conv2d) and model_4096.encoder[-1].out_channels == 512
    assert model_4096.pool.num_clusters == 64 and model_4096.pool.conv.bias is None  # vladv2=False
    assert model_4096.pca.in_features == 32768 and model_4096.pca.out_features == 4096
    pre = model_4096.preprocessor
    assert pre.input_shape() == (480, 480)
    x = pre(image)
    assert x.shape == (1, 3, 480, 480) and x.dtype == torch.float32
    assert pre.describe()["mean"] == [0.485, 0.456, 0.406] and pre.describe()["std"] == [0.229, 0.224, 0.225]


def _nanne_forward(state, x):
    """Nanne/pytorch-NetVlad's forward, written out from its raw state_dict (vladv2=False)."""
    enc = NetVladVgg16(32768).encoder
    enc.load_state_dict({k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")})
    f = F.normalize(enc(x), p=2, dim=1)
    n, c = f.shape[:2]
    a = F.softmax(F.conv2d(f, state["pool.conv.weight"]).view(n, 64, -1), dim=1)
    xf = f.view(n, c, -1)
    vlad = torch.zeros(n, 64, c)
    for k in range(64):
        r = xf - state["pool.centroids"][k].view(1, c, 1)
        vlad[:, k] = (r * a[:, k:k + 1]).sum(-1)
    vlad = F.normalize(F.normalize(vlad, p=2, dim=2).view(n, -1), p=2, dim=1)
    out = F.conv2d(vlad.view(n, -1, 1, 1), state["WPCA.0.weight"], state["WPCA.0.bias"]).flatten(1)
    return F.normalize(out, p=2, dim=1)


@torch.inference_mode()
def test_converter_reproduces_nanne_forward(nanne_ckpt, model_4096, image):
    state = torch.load(nanne_ckpt, weights_only=False)["state_dict"]
    x = model_4096.preprocessor(image)
    ref = _nanne_forward(state, x)
    ours = model_4096(x)
    assert ours.shape == (1, 4096)
    assert torch.allclose(ours, ref, atol=2e-5), float((ours - ref).abs().max())


def test_converter_rejects_other_layouts(nanne_ckpt):
    state = torch.load(nanne_ckpt, weights_only=False)["state_dict"]
    with pytest.raises(ConfigurationError, match="unexpected key"):
        convert_nanne_checkpoint({**state, "classifier.weight": torch.zeros(1)})
    bad = dict(state)
    bad["WPCA.0.weight"] = torch.zeros(4096, 1000, 1, 1)
    with pytest.raises(ConfigurationError, match="expected \\(D, 32768, 1, 1\\)"):
        convert_nanne_checkpoint(bad)


def test_scaffold_checkpoint_is_detected_and_reported(converted, nanne_ckpt, tmp_path):
    out, info = converted
    assert info["trained"] is False
    prov = Provenance.read(out)
    assert prov.trained is False and "untrained pool" in prov.notes and len(prov.sha256) == 64
    # a pool whose assignment conv points along its centroids (how NetVLAD is initialised and trained)
    ck = torch.load(nanne_ckpt, weights_only=False)
    sd = ck["state_dict"]
    sd["pool.conv.weight"] = (F.normalize(sd["pool.centroids"], dim=1) * 30).view(64, 512, 1, 1)
    torch.save(ck, tmp_path / "aligned.pth.tar")
    assert pool_alignment(convert_nanne_checkpoint(ck)) > 0.99
    assert convert_checkpoint("net_vlad", tmp_path / "aligned.pth.tar", tmp_path / "ok.pt", "x", "y")["trained"] is True


def test_normalisation_order_exactly_once_each(model_4096, image, monkeypatch):
    calls = []
    intra, l2 = DescriptorNormaliser.intra_cluster_normalise, DescriptorNormaliser.l2_normalise

    def spy_intra(v):
        calls.append("intra")
        out = intra(v)
        norms = out.norm(dim=2)
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-4)  # each cluster block unit-norm
        return out

    def spy_l2(v):
        calls.append("l2")
        return l2(v)

    monkeypatch.setattr(DescriptorNormaliser, "intra_cluster_normalise", staticmethod(spy_intra))
    monkeypatch.setattr(DescriptorNormaliser, "l2_normalise", staticmethod(spy_l2))
    rt = create_runtime("pytorch", model_4096)
    RetrievalStrategy(model_4096, rt).embed_query(image)
    assert calls == ["intra", "l2"]


def test_deterministic_and_protocol(converted, image):
    s = load_strategy("net_vlad", weights=str(converted[0]))
    outs = [s.embed_query(image) for _ in range(3)]  # AC-4: bit-exact across 3 calls
    assert outs[0].shape == (4096,) and all(np.array_equal(outs[0], o) for o in outs[1:])
    assert abs(float(np.linalg.norm(outs[0])) - 1.0) <= 1e-3
    assert isinstance(s, VprStrategy) and s.descriptor_dim == 4096  # AC-1: the protocol's members ...
    assert outs[0].dtype == np.float32 and s.embed_query(image).shape == (s.descriptor_dim,)  # ... and what they do


def test_fp16_output_is_float16_unit_norm_deterministic(model_4096):
    # PyTorch has no fast half-precision convolutions on CPU (VGG16 at 224 px takes ~70 s there; see
    # BENCHMARKS.md), so FP16 is exercised on a small input through the same runtime path.
    rt = create_runtime("pytorch", copy.deepcopy(model_4096), precision="fp16")
    x = torch.randn(1, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    outs = [rt.forward(x) for _ in range(3)]
    assert outs[0].dtype == np.float16 and outs[0].shape == (1, 4096)
    assert abs(float(np.linalg.norm(outs[0].astype(np.float32))) - 1.0) <= 1e-3
    assert all(np.array_equal(outs[0], o) for o in outs[1:])


def test_descriptor_dim_is_per_instance(converted, tmp_path, sample_corpus):
    a = create_backbone("net_vlad", weights=str(converted[0]))
    pca = fit_pca(converted[0], sample_corpus.root, tmp_path / "nv512.pt", dim=512, n_images=12, progress=False)
    b = create_backbone("net_vlad", weights=str(pca), descriptor_dim=512)
    assert (a.descriptor_dim, b.descriptor_dim) == (4096, 512)  # AC-6
    assert a.label == b.label == "net_vlad"
    assert "PCA-whitened 512-D" in Provenance.read(pca).notes


def test_output_shape_mismatch_at_load(nanne_ckpt, tmp_path):
    small = make_nanne_layout_checkpoint(tmp_path / "c2048.pth.tar", wpca_dim=2048)
    convert_checkpoint("net_vlad", small, tmp_path / "nv2048.pt", "x", "y")
    with pytest.raises(ConfigurationError) as e:  # AC-7
        load_strategy("net_vlad", weights=str(tmp_path / "nv2048.pt"), backbone_options={"descriptor_dim": 4096})
    assert str(e.value) == "engine output shape mismatch: expected (1, 4096), got (1, 2048)"


def test_requires_pytorch_runtime(converted):
    with pytest.raises(ConfigurationError) as e:  # AC-11
        load_strategy("net_vlad", weights=str(converted[0]), installed_runtimes=frozenset({"onnxruntime"}))
    assert "NetVLAD requires BUILD_PYTORCH_RUNTIME=ON; this binary has BUILD_PYTORCH_RUNTIME=OFF" in str(e.value)
    with pytest.raises(ConfigurationError, match="runs only on runtime"):
        load_strategy("net_vlad", weights=str(converted[0]), runtime="onnxruntime")
    out = subprocess.run(
        [sys.executable, "-c",
         "from vpr_node.core.retrieval.runtimes import installed_runtimes as i; print(sorted(i()))"],
        env={**__import__("os").environ, "VPR_DISABLE_RUNTIMES": "pytorch"},
        capture_output=True,
        text=True,
    )
    assert "pytorch" not in out.stdout


@pytest.fixture(scope="module")
def netvlad_index(converted, sample_corpus, tmp_path_factory):
    from vpr_node.core.indexing.index_build import build_index
    from vpr_node.core.indexing.settings import BuildSettings
    small = copy.copy(sample_corpus)
    small.records = sample_corpus.records[:12]
    s = load_strategy("net_vlad", weights=str(converted[0]))
    out = tmp_path_factory.mktemp("nv_index")
    build_index(s, small, out, BuildSettings(rotations=1, batch_size=4), progress=False)
    from vpr_node.core.index.loaded import DescriptorIndex
    assert len(DescriptorIndex(out)) == 12 and len(sample_corpus) > 12  # the copy's subset, not the whole corpus
    return out


def test_retrieve_topk_contract(converted, netvlad_index, image):
    s = load_strategy("net_vlad", weights=str(converted[0]), index_dir=str(netvlad_index))
    cands = s.retrieve_topk(s.embed_query(image), 5)  # AC-5
    assert len(cands) == 5 and [c.distance for c in cands] == sorted(c.distance for c in cands)
    assert {c.backbone_label for c in cands} == {"net_vlad"} and {c.descriptor_dim for c in cands} == {4096}


class _Exploding(Runtime):
    name = "pytorch"

    def forward(self, batch):
        raise RuntimeError("out of memory")


def test_forward_failure_is_typed_logged_recorded(model_4096, netvlad_index, image, tmp_path):
    from vpr_node.core.index.loaded import DescriptorIndex
    stream = io.StringIO()
    rec = FlightDataRecorder(tmp_path / "fdr.jsonl")
    eng = VprEngine(RetrievalStrategy(model_4096, _Exploding(), DescriptorIndex(netvlad_index)), lambda r: None,
                    logger=StructuredLogger(stream=stream), recorder=rec)
    assert eng.process(Frame(decode=lambda: image)) is None  # AC-8
    line = json.loads(stream.getvalue().splitlines()[0])
    assert line["level"] == "ERROR" and line["error"] == "VprBackboneError" and "net_vlad" in line["msg"]
    assert [r["kind"] for r in read_records(tmp_path / "fdr.jsonl")][1:] == ["c2.vpr.backbone_error"]
    assert eng.snapshot()["errors"] == {"c2.vpr.backbone_error": 1}


@pytest.mark.process
def test_node_wires_net_vlad_and_logs_ready(converted, netvlad_index, tmp_path, image):
    """AC-10 + scaffold WARN, through the real node process."""
    from conftest import Running, node_params, send_frame
    r = Running(tmp_path, node_params(netvlad_index, tmp_path, backbone="net_vlad", weights=str(converted[0]),
                                  backbone_options="{}"))
    try:
        assert r.client.transition("configure"), r.node.log_text()[-2000:]
        log = r.node.log_text()
        ready = [json.loads(x) for x in log.splitlines() if '"c2.vpr.ready"' in x][0]
        assert ready["level"] == "INFO" and ready["strategy"] == "net_vlad" and ready["descriptor_dim"] == 4096
        assert '"kind":"c2.vpr.untrained_weights"' in log and '"level":"WARN"' in log
        assert r.client.transition("activate")
        r.client.wait_subscribed(10)
        res = send_frame(r.client, image, 321)
        assert res is not None and res.backbone_label == "net_vlad" and res.descriptor_dim == 4096
    finally:
        r.close()


def test_kmeans_centroid_init_for_net_vlad(sample_corpus, tmp_path):
    """`vpr init-vlad --backbone net_vlad`: centroids by k-means over conv5_3 features of corpus tiles."""
    out = tmp_path / "nv_init.pt"
    proc = subprocess.run([sys.executable, "-m", "vpr_node.tools.cli", "init-vlad", "--backbone", "net_vlad",
                           "--corpus", str(sample_corpus.root), "--out", str(out), "--images", "4"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    state = torch.load(out)
    assert pool_alignment(state) > 0.99  # assignment conv = alpha * centroid directions (paper init)
    prov = Provenance.read(out)
    assert "k-means (64 clusters)" in prov.source and prov.trained is False  # random VGG encoder here
    m = create_backbone("net_vlad", weights=str(out), descriptor_dim=32768)
    assert m.descriptor_dim == 32768 and m.pca is None
