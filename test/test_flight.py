"""The flight benchmark's parts: the composite map keeps the real imagery at its true coordinates, the flight
crosses it on every leg, the VIO prior drifts with distance and is reset by accepted fixes, and a flight over a
small index yields per-frame records whose totals add up."""
import json
import math

import numpy as np
import pytest

from vpr_node.core.benchmarks.flight import FlightConfig, FrameRenderer, VioDrift, fly, summarise_flight, trajectory
from vpr_node.core.maps.camera import CameraModel
from vpr_node.core.maps.composite import real_mask, write_composite_map
from vpr_node.core.maps.geo import haversine_m
from vpr_node.core.maps.sources import load_corner_table, load_maps


@pytest.fixture(scope="module")
def composite(sample_maps, tmp_path_factory):
    real = load_corner_table(sample_maps)
    path = tmp_path_factory.mktemp("composite") / "composite.tif"
    parts = write_composite_map(path, real, size_m=600.0, gsd_m=0.3, block_m=210.0, progress=False)
    return path, parts, real[0]


def test_the_real_imagery_keeps_its_coordinates_and_pixels(composite):
    path, parts, real = composite
    (part,) = parts
    g = real.geo
    assert abs(part.north - g.lat0) * 111_195 < 0.5 and abs(part.west - g.lon0) * 55_000 < 0.5  # within 2 px
    raster = load_maps(path)[0]
    assert abs(raster.geo.gsd_m - 0.3) < 0.01 and 590 < raster.geo.width * raster.geo.gsd_m < 610
    # the real raster's centre pixel, found on the composite by its coordinates
    lat, lon = (float(v) for v in g.pixel_to_latlon(g.width / 2, g.height / 2))
    x, y = (int(v) for v in raster.geo.latlon_to_pixel(lat, lon))
    assert np.allclose(raster.geo.pixel_to_latlon(*raster.geo.latlon_to_pixel(lat, lon)), (lat, lon), atol=1e-12)
    on_map, _ = raster.read_window(x - 8, y - 8, 16, None)
    original = real.read_rgb()[g.height // 2 - 8:g.height // 2 + 8, g.width // 2 - 8:g.width // 2 + 8]
    assert np.abs(on_map.astype(int) - original.astype(int)).mean() < 6
    assert real_mask(parts, lat, lon) and not real_mask(parts, part.north + 0.0005, lon)


def test_the_flight_is_as_long_as_asked_and_every_leg_crosses_the_centre():
    cfg = FlightConfig(map_km=3.0, path_km=10.0)
    centre = (60.4, 22.46)
    poses = trajectory(cfg, centre)
    assert abs(poses[-1].s_m - 10_000) <= cfg.spacing_m
    assert abs(len(poses) - 10_000 / cfg.spacing_m) <= 1
    d = haversine_m(centre[0], centre[1], [p.lat for p in poses], [p.lon for p in poses])
    r = cfg.star_radius_m()
    assert d.max() <= r + 1
    legs = np.array_split(d, 7)
    assert all(leg.min() < 0.25 * r for leg in legs)  # {7/3}: each edge passes 0.22 R from the centre
    assert all(cfg.altitude_m[0] <= p.altitude_m <= cfg.altitude_m[1] for p in poses)
    with pytest.raises(Exception, match="too small"):
        trajectory(FlightConfig(map_km=1.0, path_km=10.0), centre)


def test_the_vio_prior_drifts_with_distance_and_a_fix_resets_it():
    cfg = FlightConfig(drift_pct=2.0, walk_m=0.3, start_sigma_m=5.0)
    vio = VioDrift(cfg, 1)
    for _ in range(1000):
        vio.advance(5.0)
    assert vio.sigma_m == pytest.approx(math.sqrt(25 + 100 ** 2 + 0.09 * 5000))
    assert 40 < np.hypot(*vio.err) < 200  # the bias alone is 100 m
    vio.reset([1.0, -2.0], 3.0)
    assert vio.sigma_m == 3.0 and np.allclose(vio.err, [1.0, -2.0])


def test_a_flight_over_a_small_index_adds_up(composite, gem_strategy, gem_index_dir, tmp_path):
    from vpr_node.core.benchmarks.flight_report import format_markdown, plot_flight, plot_flight_map
    from vpr_node.core.retrieval.strategy import load_strategy
    from vpr_node.core.verification.confidence import FEATURES, Calibration
    from vpr_node.core.verification.verifier import Verifier

    path, parts, _ = composite
    cfg = FlightConfig(map_km=0.6, path_km=0.6, speed_mps=15.0, rate_hz=1.0, altitude_m=(45.0, 55.0),
                       drift_pct=5.0)
    camera = CameraModel.from_hfov(86.0, 480, 270)
    strategy = load_strategy("efficientnet_lite0_gem", index_dir=str(gem_index_dir),
                             backbone_options={"input_size": 160})
    verifier = Verifier.for_index(gem_index_dir)
    n = len(FEATURES)  # accept every fix (weights 0, bias +30): what a reset does is under test, not the model
    verifier.calibration = Calibration([0.0] * n, 30.0, [0.0] * n, [1.0] * n, threshold=0.5)
    renderer = FrameRenderer(load_maps(path)[0], camera, cfg)
    real_rows = np.arange(len(strategy.index))  # the whole test index lies on the real raster
    poses = trajectory(cfg, ((parts[0].north + parts[0].south) / 2, (parts[0].west + parts[0].east) / 2))
    assert np.array_equal(renderer.render(poses[3]), renderer.render(poses[3]))  # frames are the same every run
    recs = fly("all", strategy, verifier, renderer, poses, real_rows, parts, camera, cfg, progress=False)
    assert len(recs) == len(poses) and all(len(r["dist_m"]) == cfg.k for r in recs)
    accepted = [i for i, r in enumerate(recs) if r["verification"]["accepted"]]
    assert accepted, [r["verification"]["reason"] for r in recs]
    for i in accepted:  # the next frame's prior starts from the fix: its error is the fix's plus one step of drift
        if i + 1 < len(recs):
            step = cfg.drift_pct / 100 * cfg.spacing_m + 4 * cfg.walk_m * math.sqrt(cfg.spacing_m)
            assert abs(recs[i + 1]["vio_error_m"] - recs[i]["verification"]["fix_error_m"]) <= step * 1.5 + 0.01
    s = summarise_flight(recs, cfg)
    assert s["frames"] == len(poses) and s["accepted_fixes"] == len(accepted)
    real = [r for r in recs if r["real"]]
    assert s["real_frames"] == len(real) and all("small_dist_m" in r for r in real)
    assert s["recall_at_1"] == round(float(np.mean([r["dist_m"][0] <= 25 for r in recs])), 4)
    assert 0 <= s["share_fixed"] <= 1
    assert plot_flight({"all": recs}, tmp_path / "flight.png").stat().st_size > 10_000
    assert plot_flight_map(path, poses, recs, parts, tmp_path / "map.png").stat().st_size > 10_000
    assert format_markdown({"all": s}).count("\n") == 2


def test_the_flight_bag_holds_every_frame_with_its_truth_and_priors(composite, tmp_path):
    """`bench-flight --bag`: what `vpr replay-ros BAG --verify --autopilot ...` replays through the nodes."""
    from vpr_node.core.benchmarks.flight import write_flight_bag
    from vpr_node.core.io.bags import read_camera_bag, read_prior_samples
    from vpr_node.core.priors.messages import PriorInputs

    path, _, _ = composite
    cfg = FlightConfig(map_km=0.6, path_km=0.6, speed_mps=15.0, rate_hz=1.0, heading_sigma_deg=3.0)
    poses = trajectory(cfg, tuple(json.loads(path.with_suffix(".json").read_text())["centre"]))
    camera = CameraModel.from_hfov(86.0, 320, 180)
    renderer = FrameRenderer(load_maps(path)[0], camera, cfg)
    bag = write_flight_bag(renderer, poses, cfg, tmp_path / "flight_bag", progress=False)
    frames = list(read_camera_bag(bag))
    assert len(frames) == len(poses) > 30
    assert [f.stamp_ns - frames[0].stamp_ns for f in frames[:3]] == [0, 10**9, 2 * 10**9]  # rate_hz
    assert all(f.lat == p.lat and f.lon == p.lon for f, p in zip(frames, poses, strict=True))
    first = frames[0].decode()
    assert first.shape == (180, 320, 3)  # JPEG: close to the render, not equal
    assert np.abs(first.astype(int) - renderer.render(poses[0]).astype(int)).mean() < 8
    samples = read_prior_samples(bag, PriorInputs())
    headings = [v[0] for k, _, v in samples if k == "heading"]
    altitudes = [v[0] for k, _, v in samples if k == "altitude"]
    assert len(headings) == len(altitudes) == len(poses) and not any(k == "position" for k, _, _ in samples)
    err = [((h - p.yaw_deg + 180) % 360) - 180 for h, p in zip(headings, poses, strict=True)]
    assert np.std(err) < 3 * cfg.heading_sigma_deg
