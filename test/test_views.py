"""views/: image geometry shared by frames and tiles (north-up rotation, ground crops)."""
import cv2
import numpy as np
import pytest

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


@pytest.mark.parametrize("photometric", ["changed", "resurveyed"])
def test_a_view_set_renders_the_same_views_again_and_keeps_only_their_positions(sample_maps, photometric):
    from vpr_node.core.maps.sources import load_corner_table
    from vpr_node.core.views.queries import QuerySpec, ViewSet, synthesise_queries
    rasters, spec = load_corner_table(sample_maps), QuerySpec.benchmark(photometric=photometric, camera=(320, 180))
    listed = list(synthesise_queries(rasters, 4, seed=9, spec=spec))
    views = ViewSet(rasters, 4, seed=9, spec=spec)
    assert len(views) == 4 and all(v.image is None for v in views.meta)
    assert [(v.lat, v.lon, v.yaw_deg) for v in views.meta] == [(q.lat, q.lon, q.yaw_deg) for q in listed]
    for _ in range(2):  # every pass renders the same pixels
        assert all(np.array_equal(v.image, q.image) for v, q in zip(views, listed, strict=True))


def test_views_rendered_from_a_window_equal_views_from_the_whole_map(sample_maps, tmp_path):
    """Query synthesis reads only the window a view sees (a 100 km2 orthophoto is never read whole): the pixels
    are those of rendering from the whole image, for a PNG map and for a GeoTIFF one."""
    from vpr_node.core.maps.composite import write_composite_map
    from vpr_node.core.maps.sources import load_corner_table, load_maps
    from vpr_node.core.views.queries import render_from_raster, render_view

    png = load_corner_table(sample_maps)[0]
    tif_path = tmp_path / "map.tif"
    write_composite_map(tif_path, [png], size_m=400.0, gsd_m=0.3, block_m=200.0, progress=False)
    rng = np.random.default_rng(4)
    for raster in (png, load_maps(tif_path)[0]):
        whole = raster.read_rgb()
        for _ in range(5):
            side_px, tilt = float(rng.uniform(80, 200)), float(rng.uniform(0, 15))
            cx, cy = (float(rng.uniform(300, 400)) for _ in range(2))
            yaw, tilt_dir = float(rng.uniform(0, 360)), float(rng.uniform(0, 360))
            a = render_from_raster(raster, cx, cy, yaw, side_px, (320, 180), tilt, tilt_dir)
            b = render_view(whole, cx, cy, yaw, side_px, (320, 180), tilt, tilt_dir)
            assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # sub-pixel rounding of the shifted origin


def test_a_tilted_view_foreshortens_the_ground_as_a_pinhole_camera_does():
    """A camera tilted t off nadir sees the ground under its centre compressed by cos(t) along the tilt (what the
    verifier's anisotropy evidence measures on a real oblique frame), its far edge wider than its near one, its
    centre on the point it looks at; the footprint radius covers every corner for any tilt direction."""
    import math

    from vpr_node.core.verification.evidence import anisotropy
    from vpr_node.core.views.queries import footprint_radius_px, tilt_limit_deg, view_corners

    cam = (1024, 768)
    frame = np.float32([[0, 0], [1024, 0], [1024, 768], [0, 768]])
    for tilt in (0.0, 15.0, 30.0):
        radius = footprint_radius_px(300.0, cam, tilt, 60.0)
        for tilt_dir in (0.0, 45.0, 200.0):
            corners = view_corners(500.0, 400.0, 30.0, 300.0, cam, tilt, tilt_dir, 60.0)
            h = cv2.getPerspectiveTransform(frame, corners)  # frame -> map
            assert abs(anisotropy(h, cam) - math.log(1 / math.cos(math.radians(tilt)))) < 2e-3
            assert np.allclose(cv2.perspectiveTransform(np.float32([[[512, 384]]]), h)[0, 0], (500, 400), atol=1e-2)
            assert np.linalg.norm(corners - (500, 400), axis=1).max() <= radius
    leaning = view_corners(0.0, 0.0, 0.0, 300.0, cam, 30.0, 0.0, 60.0)
    top, bottom = leaning[[0, 1]], leaning[[3, 2]]
    assert np.linalg.norm(top[1] - top[0]) > 1.5 * np.linalg.norm(bottom[1] - bottom[0])  # leaning forward
    assert 34.0 < tilt_limit_deg(cam, 60.0) < 34.5
    try:
        view_corners(0.0, 0.0, 0.0, 300.0, cam, 70.0, 0.0, 60.0)
    except ValueError as exc:
        assert "horizon" in str(exc)
    else:
        raise AssertionError("a view that sees the horizon must be refused")
