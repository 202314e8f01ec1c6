"""views/: image geometry shared by frames and tiles (north-up rotation, ground crops)."""
import cv2
import numpy as np

from vpr_node.core.views.geometry import crop_to_ground, rotate_to_north_up


def test_rotate_to_north_up_inverts_heading():
    rng = np.random.default_rng(1)
    base = cv2.resize(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8), (400, 400), interpolation=cv2.INTER_CUBIC)
    rotated = np.ascontiguousarray(np.rot90(base, 1))  # heading 90 deg: map appears turned left
    back = rotate_to_north_up(rotated, 90.0)
    assert np.abs(back.astype(int) - base.astype(int)).mean() < 2


def test_crop_to_ground_keeps_the_centre():
    img = np.zeros((720, 1280, 3), np.uint8)
    assert crop_to_ground(img, footprint_m=120.0, target_m=60.0).shape == (360, 360, 3)
    assert crop_to_ground(img, footprint_m=50.0, target_m=60.0).shape == (720, 720, 3)  # cannot zoom out


def test_a_view_set_renders_the_same_views_again_and_keeps_only_their_positions(sample_maps):
    from vpr_node.core.maps.sources import load_corner_table
    from vpr_node.core.views.queries import QuerySpec, ViewSet, synthesise_queries
    rasters, spec = load_corner_table(sample_maps), QuerySpec.benchmark(photometric="changed", camera=(320, 180))
    listed = list(synthesise_queries(rasters, 4, seed=9, spec=spec))
    views = ViewSet(rasters, 4, seed=9, spec=spec)
    assert len(views) == 4 and all(v.image is None for v in views.meta)
    assert [(v.lat, v.lon, v.yaw_deg) for v in views.meta] == [(q.lat, q.lon, q.yaw_deg) for q in listed]
    for _ in range(2):  # every pass renders the same pixels
        assert all(np.array_equal(v.image, q.image) for v, q in zip(views, listed, strict=True))
