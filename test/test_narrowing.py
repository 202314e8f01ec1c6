"""retrieval/narrowing.py: a deep candidate list narrowed by a second descriptor over the same tiles."""
import numpy as np

from vpr_node.core.backbones.identity import BackboneIdentity
from vpr_node.core.index.folder import write_index
from vpr_node.core.index.loaded import DescriptorIndex
from vpr_node.core.index.synthetic import grid_tiles
from vpr_node.core.retrieval.narrowing import narrow


def _index(path, x, tiles, label):
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    write_index(path, x, np.arange(len(x)), tiles, BackboneIdentity(label, x.shape[1], "0" * 64, {}))
    return DescriptorIndex(path)


def test_the_second_descriptor_lifts_the_true_tile_from_deep_in_the_list(tmp_path):
    """The first descriptor ranks the true tile 30th of 50; the second knows it. Narrowed to 10 it comes first,
    the ranks are renumbered, and every kept candidate came from the deep list."""
    rng = np.random.default_rng(0)
    n = 200
    tiles = grid_tiles(n, 60.0, 20.0)
    a, b = rng.normal(size=(n, 32)), rng.normal(size=(n, 16))
    first, second = _index(tmp_path / "a", a, tiles, "first"), _index(tmp_path / "b", b, tiles, "second")
    qa = rng.normal(size=32)
    deep = first.search(qa / np.linalg.norm(qa), 50)
    order = [c.tile.name for c in deep]
    truth = [t.tile_id for t in tiles].index(order[29])  # the true tile: 30th for the first descriptor
    qb = b[truth] / np.linalg.norm(b[truth])  # and exactly known to the second
    top = narrow(deep, second, qb, 10)
    assert top[0].tile.name == tiles[truth].tile_id
    assert [c.rank for c in top] == list(range(10))
    assert {c.tile.name for c in top} <= set(order)
    assert all(x.distance <= y.distance for x, y in zip(top, top[1:], strict=False))


def test_the_same_descriptor_keeps_the_order(tmp_path):
    rng = np.random.default_rng(1)
    tiles = grid_tiles(100, 60.0, 20.0)
    x = rng.normal(size=(100, 16))
    one, two = _index(tmp_path / "a", x, tiles, "one"), _index(tmp_path / "b", x, tiles, "two")
    q = x[5] + 0.5 * rng.normal(size=16)
    q = (q / np.linalg.norm(q)).astype(np.float32)
    deep = one.search(q, 30)
    assert [c.tile.name for c in narrow(deep, two, q, 10)] == [c.tile.name for c in deep[:10]]
    assert narrow([], two, q, 10) == []
