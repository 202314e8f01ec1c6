"""io/: camera image codecs (raw encodings, Bayer, JPEG/PNG; fuzzed: a typed error or a valid image, never a crash),
rosbag2 query bags, the flight-data recorder (rotation, kill -9), structured logs."""
import io
import json
import os
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpr_node.core.errors import VprPreprocessError
from vpr_node.core.io import image_codec
from vpr_node.core.io.bags import read_camera_bag, write_query_bag
from vpr_node.core.io.logs import StructuredLogger
from vpr_node.core.io.recorder import OPEN_KIND, FlightDataRecorder, read_records


@pytest.fixture
def rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (37, 53, 3), dtype=np.uint8)


@pytest.mark.parametrize("enc", ["rgb8", "bgr8"])
def test_raw_colour_roundtrip(rgb, enc):
    data, step = image_codec.encode_raw(rgb, enc)
    assert np.array_equal(image_codec.decode_raw(enc, 53, 37, step, data), rgb)


def test_padded_rows_and_mono(rgb):
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    padded = np.zeros((37, 64), np.uint8)
    padded[:, :53] = gray
    out = image_codec.decode_raw("mono8", 53, 37, 64, padded.tobytes())
    assert out.shape == (37, 53, 3) and np.array_equal(out[..., 0], gray)


def test_mono16_big_and_little_endian():
    img = (np.arange(20 * 10, dtype=np.uint16).reshape(10, 20) * 300)
    le = image_codec.decode_raw("mono16", 20, 10, 40, img.astype("<u2").tobytes(), False)
    be = image_codec.decode_raw("mono16", 20, 10, 40, img.astype(">u2").tobytes(), True)
    assert np.array_equal(le, be) and np.array_equal(le[..., 0], (img >> 8).astype(np.uint8))


def test_bayer_rggb_demosaics_to_colour():
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[...] = (200, 40, 10)
    bayer = np.zeros((8, 8), np.uint8)
    bayer[0::2, 0::2] = 200  # R
    bayer[0::2, 1::2] = 40  # G
    bayer[1::2, 0::2] = 40  # G
    bayer[1::2, 1::2] = 10  # B
    out = image_codec.decode_raw("bayer_rggb8", 8, 8, 8, bayer.tobytes())
    assert out[4, 4, 0] > out[4, 4, 1] > out[4, 4, 2]


def test_compressed_roundtrip_keeps_channel_order():
    yy, xx = np.mgrid[0:48, 0:64]
    rgb = np.stack([np.full_like(xx, 220), xx * 2, yy], -1).astype(np.uint8)  # red-dominant gradient
    out = image_codec.decode_compressed("jpeg", image_codec.encode_jpeg(rgb, 95))
    assert out.shape == rgb.shape and np.abs(out.astype(int) - rgb).mean() < 4
    png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
    assert np.array_equal(image_codec.decode_compressed("png", png), rgb)


@pytest.mark.parametrize("kwargs,match", [
    (dict(encoding="yuv422", width=4, height=4, step=8, data=b"\0" * 32), "unsupported image encoding"),
    (dict(encoding="rgb8", width=0, height=4, step=0, data=b""), "zero size"),
    (dict(encoding="rgb8", width=4, height=4, step=8, data=b"\0" * 64), "step 8 is smaller"),
    (dict(encoding="rgb8", width=4, height=4, step=12, data=b"\0" * 20), "needs 48"),
    (dict(encoding="rgb8", width=100000, height=100000, step=300000, data=b""), "pixel limit"),
])
def test_bad_raw_frames_raise_typed_errors(kwargs, match):
    with pytest.raises(VprPreprocessError, match=match):
        image_codec.decode_raw(**kwargs)


@pytest.mark.parametrize("data", [b"", b"\xff\xd8\xff garbage", bytes(range(256)) * 4])
def test_corrupt_compressed_raises(data):
    with pytest.raises(VprPreprocessError):
        image_codec.decode_compressed("jpeg", data)


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


def test_recorder_rotates_by_size(tmp_path):
    rec = FlightDataRecorder(tmp_path / "f.jsonl", max_bytes=2000, backups=2)
    for i in range(200):
        rec.record("c2.vpr.embed_query", i=i, pad="x" * 40)
    rec.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["f.jsonl", "f.jsonl.1", "f.jsonl.2"]
    assert all(p.stat().st_size <= 2000 for p in tmp_path.iterdir())
    got = [r["i"] for r in read_records(tmp_path / "f.jsonl") if r["kind"] != OPEN_KIND]
    assert got == sorted(got) and got[-1] == 199  # oldest rotated out, order kept


def test_recorder_survives_kill_9(tmp_path):
    path = tmp_path / "crash.jsonl"
    code = (
        "import sys, time; from vpr_node.core.io.recorder import FlightDataRecorder as R; r = R(sys.argv[1]);\n"
        "i = 0\nwhile True:\n    r.record('c2.vpr.embed_query', i=i); i += 1\n"
        "    if i == 500: print('ready', flush=True)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE)
    assert p.stdout.readline().strip() == b"ready"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    opened, *recs = read_records(path)
    assert opened["kind"] == OPEN_KIND and opened["pid"] == p.pid
    assert len(recs) >= 500 and [r["i"] for r in recs] == list(range(len(recs)))


def test_a_new_process_starts_a_new_recorder_file_and_the_old_one_stays_readable(tmp_path):
    path = tmp_path / "fdr.jsonl"
    code = ("import sys; from vpr_node.core.io.recorder import FlightDataRecorder as R; r = R(sys.argv[1]);\n"
            "[r.record('c2.vpr.embed_query', run=int(sys.argv[2]), i=i) for i in range(3)]\n"
            "r.close(); R(sys.argv[1]).record('c2.vpr.embed_query', run=int(sys.argv[2]), i=3)\n")  # reopened
    for run in (1, 2):
        subprocess.run([sys.executable, "-c", code, str(path), str(run)], check=True)
    first, second = read_records(path.with_name("fdr.jsonl.1"), include_rotated=False), read_records(path, False)
    for run, recs in ((1, first), (2, second)):  # one file per process, each opened by one recorder_open record
        assert [r["kind"] for r in recs] == [OPEN_KIND] + ["c2.vpr.embed_query"] * 4
        assert [r["run"] for r in recs[1:]] == [run] * 4 and [r["i"] for r in recs[1:]] == [0, 1, 2, 3]
    assert first[0]["pid"] != second[0]["pid"]
    assert [r.get("run") for r in read_records(path)] == [None, 1, 1, 1, 1, None, 2, 2, 2, 2]  # oldest first


def test_structured_log_levels_and_sink():
    seen, stream = [], io.StringIO()
    log = StructuredLogger(level="INFO", stream=stream, sink=lambda lvl, line: seen.append(lvl))
    log.debug("c2.vpr.result", distances=[0.1])
    log.info("c2.vpr.ready", strategy="x", descriptor_dim=3)
    log.error("c2.vpr.backbone_error", "boom")
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert [x["kind"] for x in lines] == ["c2.vpr.ready", "c2.vpr.backbone_error"] and seen == ["INFO", "ERROR"]
    assert lines[0]["descriptor_dim"] == 3


@pytest.mark.parametrize("storage,compressed", [("mcap", False), ("sqlite3", True)])
def test_query_bag_roundtrip(sample_queries, tmp_path, storage, compressed):
    bag = write_query_bag(sample_queries[:3], tmp_path / "flight", rate_hz=3.0, storage=storage, compressed=compressed)
    frames = list(read_camera_bag(bag))
    assert len(frames) == 3
    assert frames[1].stamp_ns - frames[0].stamp_ns == pytest.approx(1e9 / 3, abs=2)
    for f, q in zip(frames, sample_queries[:3], strict=True):
        assert (f.lat, f.lon) == (pytest.approx(q.lat), pytest.approx(q.lon))
        img = f.decode()
        assert img.shape == q.image.shape
        assert np.abs(img.astype(int) - q.image).mean() < (6 if compressed else 1e-9)
