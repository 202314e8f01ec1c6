"""Image decoding (the cv_bridge replacement), preprocessing and the newest-frame-wins queue."""
import subprocess
import sys

import cv2
import numpy as np
import pytest

from vpr_node.core.backbones.preprocess import BackbonePreprocessor
from vpr_node.core.errors import VprPreprocessError
from vpr_node.core.io import image_codec
from vpr_node.core.retrieval.frame_queue import FrameQueue
from vpr_node.core.views.geometry import rotate_to_north_up


def test_core_imports_without_rclpy():
    code = ("import sys; import vpr_node.core.retrieval.strategy, vpr_node.core.retrieval.engine, "
            "vpr_node.core.index.folder, vpr_node.core.evaluation.recall, vpr_node.core.io.image_codec, "
            "vpr_node.core.mission.prepare, vpr_node.core.benchmarks.recall, vpr_node.ros.params; "
            "assert 'rclpy' not in sys.modules, 'core imported rclpy'")
    subprocess.run([sys.executable, "-c", code], check=True)


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


def test_preprocessor_shape_crop_and_normalisation():
    pre = BackbonePreprocessor(size=(480, 480))
    img = np.full((720, 1280, 3), 128, np.uint8)
    img[:, :280] = 0  # outside the centred square: must be cropped away
    x = pre(img)
    assert x.shape == (1, 3, 480, 480) and pre.input_shape() == (480, 480)
    expected = (128 / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    assert np.allclose(x[0, :, 240, 0].numpy(), expected, atol=1e-3)


def test_preprocessor_rejects_bad_arrays():
    pre = BackbonePreprocessor(size=(64, 64))
    for bad in (np.zeros((4, 4, 3), np.uint8), np.zeros((64, 64), np.uint8), np.zeros((64, 64, 3), np.float32)):
        with pytest.raises(VprPreprocessError):
            pre(bad)
    with pytest.raises(VprPreprocessError):
        image_codec.decode_compressed("jpeg", b"not an image")


def test_rotate_to_north_up_inverts_heading():
    rng = np.random.default_rng(1)
    base = cv2.resize(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8), (400, 400), interpolation=cv2.INTER_CUBIC)
    rotated = np.ascontiguousarray(np.rot90(base, 1))  # heading 90 deg: map appears turned left
    back = rotate_to_north_up(rotated, 90.0)
    assert np.abs(back.astype(int) - base.astype(int)).mean() < 2


def test_frame_queue_newest_wins_and_counts_drops():
    q = FrameQueue(depth=2)
    assert q.put(1) and q.put(2)
    assert not q.put(3)  # 1 dropped
    assert q.put(4) is False  # 2 dropped
    item, dropped = q.get(timeout=0.1)
    assert (item, dropped) == (3, 2)
    assert q.get(timeout=0.1) == (4, 0)
    assert q.get(timeout=0.01) == (None, 0)
    q.put(5)
    assert q.close() == 1 and q.dropped_total == 3
