"""xfeat_netvlad: XFeat's packaged dense descriptors + a vocabulary fitted on the map, built and exported like every
backbone (build-index fits the vocabulary into the index folder; ONNX Runtime reproduces PyTorch)."""
import json

import numpy as np
import pytest

from vpr_node.core.backbones import create_backbone
from vpr_node.core.errors import ConfigurationError

SMALL = {"input_size": 160, "num_clusters": 16}


def test_build_index_fits_the_vocabulary_and_finds_each_tile(sample_corpus, tmp_path):
    from vpr_node.core.indexing.index_build import CORPUS_FITTED_WEIGHTS, build_index_for
    from vpr_node.core.indexing.settings import BuildSettings
    from vpr_node.core.retrieval.strategy import load_strategy

    out = tmp_path / "index"
    build_index_for("xfeat_netvlad", sample_corpus, out, BuildSettings(rotations=1), backbone_options=SMALL,
                    progress=False, log=lambda *_: None)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["weights_file"] == CORPUS_FITTED_WEIGHTS and (out / CORPUS_FITTED_WEIGHTS).is_file()
    s = load_strategy("xfeat_netvlad", index_dir=str(out), backbone_options=SMALL)
    assert s.descriptor_dim == 64 * 16 and s.backbone.provenance.trained
    for i in range(0, len(sample_corpus), max(1, len(sample_corpus) // 5)):
        top = s.retrieve_topk(s.embed_query(sample_corpus.image(i)), 1)
        assert top[0].tile.name == sample_corpus.records[i].tile_id


def test_exposure_and_contrast_do_not_change_the_descriptor(sample_corpus):
    """XFeat instance-normalises the grey image: another exposure of the same ground gives the same descriptor."""
    m = create_backbone("xfeat_netvlad", require_weights=False, **SMALL)
    img = sample_corpus.image(0)
    darker = np.clip(img.astype(np.float32) * 0.6 + 20, 0, 255).astype(np.uint8)
    a, b = (m(m.preprocessor(x)).detach().numpy()[0] for x in (img, darker))
    assert float(a @ b) > 0.99


def test_onnxruntime_reproduces_pytorch(sample_queries):
    from vpr_node.core.retrieval.runtimes import create_runtime

    m = create_backbone("xfeat_netvlad", require_weights=False, **SMALL)
    ort = create_runtime("onnxruntime", m)
    assert ort.parity_max_abs_diff < 1e-4
    x = m.preprocessor([q.image for q in sample_queries[:2]])
    assert np.allclose(ort.forward(x), create_runtime("pytorch", m).forward(x), atol=1e-4)


def test_a_size_xfeat_cannot_take_is_refused_with_the_rule():
    with pytest.raises(ConfigurationError, match="multiple of 32"):
        create_backbone("xfeat_netvlad", require_weights=False, input_size=200)
