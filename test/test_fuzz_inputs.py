"""Fuzzed frames (hypothesis): whatever the bytes and header fields, decoding yields an RGB image or a
VprPreprocessError — never another exception — and the engine keeps serving afterwards."""
import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vpr_node.core.errors import VprPreprocessError
from vpr_node.core.io import image_codec
from vpr_node.core.io.logs import StructuredLogger
from vpr_node.core.retrieval.engine import Frame, VprEngine

ENCODINGS = st.sampled_from(list(image_codec.SUPPORTED_ENCODINGS) + ["yuv422", "", "RGB8", "32FC1", "bayer_rggb16"])


@settings(max_examples=300, deadline=None)
@given(encoding=ENCODINGS, width=st.integers(-5, 300), height=st.integers(-5, 300), step=st.integers(-10, 1200),
       data=st.binary(max_size=5000), big=st.booleans())
def test_raw_decoder_total(encoding, width, height, step, data, big):
    try:
        img = image_codec.decode_raw(encoding, width, height, step, data, big)
    except VprPreprocessError:
        return
    assert img.dtype == np.uint8 and img.shape == (height, width, 3)


@settings(max_examples=200, deadline=None)
@given(fmt=st.sampled_from(["jpeg", "png", "", "rgb8; jpeg compressed bgr8"]), data=st.binary(max_size=4000))
def test_compressed_decoder_total(fmt, data):
    try:
        img = image_codec.decode_compressed(fmt, data)
    except VprPreprocessError:
        return
    assert img.ndim == 3 and img.shape[2] == 3


@settings(max_examples=150, deadline=None)
@given(data=st.binary(min_size=100, max_size=3000), cut=st.integers(10, 3000))
def test_truncated_and_bitflipped_jpeg(data, cut):
    good = image_codec.encode_jpeg(np.full((32, 48, 3), 120, np.uint8))
    mangled = good[:cut] + data[: max(0, len(good) - cut)]
    try:
        img = image_codec.decode_compressed("jpeg", mangled)
    except VprPreprocessError:
        return
    assert img.ndim == 3


@pytest.fixture(scope="module")
def engine(gem_index_dir):
    from vpr_node.core.retrieval.strategy import load_strategy
    s = load_strategy("efficientnet_lite0_gem", index_dir=str(gem_index_dir), backbone_options={"input_size": 160})
    return VprEngine(s, lambda r: None, top_k=3, logger=StructuredLogger(stream=io.StringIO()))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(h=st.integers(0, 40), w=st.integers(0, 40), fill=st.integers(0, 255))
def test_engine_survives_odd_sizes(engine, sample_queries, h, w, fill):
    before = engine.snapshot()
    res = engine.process(Frame(decode=lambda: np.full((h, w, 3), fill, np.uint8)))
    after = engine.snapshot()
    if res is None:
        assert after["errors_total"] == before["errors_total"] + 1
    else:
        assert len(res.candidates) == 3
    assert engine.process(Frame(decode=lambda: sample_queries[0].image)) is not None  # still serving
