"""priors/: heading from ENU/NED orientations, malformed samples, stamp matching and waiting, each prior applied to a
frame, evaluation with priors."""
import math

import numpy as np
import pytest

from vpr_node.core.errors import VprPriorError
from vpr_node.core.index.loaded import DescriptorIndex
from vpr_node.core.maps.camera import CameraModel
from vpr_node.core.priors.apply import PriorApplier, PriorConfig
from vpr_node.core.priors.noise import PriorNoise
from vpr_node.core.priors.samples import (
    ALTITUDE,
    HEADING,
    POSITION,
    PriorBuffer,
    heading_from_yaw,
    yaw_from_quaternion,
)
from vpr_node.core.views.geometry import rotate_to_north_up


def quat_yaw(yaw):
    return 0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)


@pytest.mark.parametrize("heading", [0.0, 30.0, 90.0, 200.0, 359.0])
def test_heading_from_enu_and_ned_orientations(heading):
    enu_yaw = math.radians(90.0 - heading)  # REP 103: counter-clockwise from east
    ned_yaw = math.radians(heading)  # NED: clockwise from north
    assert heading_from_yaw(yaw_from_quaternion(*quat_yaw(enu_yaw)), "enu") == pytest.approx(heading % 360, abs=1e-6)
    assert heading_from_yaw(yaw_from_quaternion(*quat_yaw(ned_yaw)), "ned") == pytest.approx(heading % 360, abs=1e-6)


@pytest.mark.parametrize("q", [(float("nan"), 0, 0, 1), (0, 0, 0, 0), (0, 0, float("inf"), 1)])
def test_malformed_quaternions_are_typed_errors(q):
    with pytest.raises(VprPriorError) as e:
        yaw_from_quaternion(*q)
    assert e.value.kind == "c2.vpr.prior_error" and e.value.context["prior"] == "heading"


def test_buffer_matches_by_stamp_and_reports_why_not():
    b = PriorBuffer(max_skew_s=0.2)
    assert b.nearest(HEADING, 10**9) == (None, "absent")
    b.add(HEADING, 1_000_000_000, 45.0)
    b.add(HEADING, 2_000_000_000, 50.0)
    s, st = b.nearest(HEADING, 1_900_000_000)
    assert st == "ok" and s.value == (50.0,)
    assert b.nearest(HEADING, 1_500_000_000) == (None, "stale")
    b.add_error(HEADING, 3_000_000_000)
    assert b.nearest(HEADING, 3_050_000_000) == (None, "error")


def test_a_frame_waits_briefly_for_the_samples_of_its_own_instant(index, sample_queries):
    """Found by replaying a bag through the node: the player publishes a frame, then the heading, altitude and
    position samples of the same stamp. A frame taken at once was matched to the previous instant's samples
    (heading stale, position from the previous place); it now waits up to sync_timeout_s for them."""
    import threading
    import time
    b = PriorBuffer()
    t0 = 5_000_000_000
    b.add(HEADING, t0 - 250_000_000, 10.0)  # the previous frame's sample
    later = threading.Timer(0.03, lambda: b.add(HEADING, t0, 90.0))
    later.start()
    start = time.monotonic()
    assert b.wait_until_covered([HEADING], t0, timeout_s=1.0)
    assert time.monotonic() - start < 0.5
    assert b.nearest(HEADING, t0)[0].value == (90.0,)
    assert not b.wait_until_covered([HEADING, ALTITUDE], t0, timeout_s=0.05)  # no altitude ever: gives up
    applier = PriorApplier(PriorConfig(heading=True, sync_timeout_s=0.2), index, b)
    threading.Timer(0.03, lambda: b.add(HEADING, t0 + 10**9, 180.0)).start()
    _, _, state = applier.apply(sample_queries[0].image, t0 + 10**9)
    assert state.heading == "ok" and state.heading_deg == 180.0


@pytest.fixture(scope="module")
def index(gem_index_dir):
    return DescriptorIndex(gem_index_dir)


def test_heading_prior_rotates_north_up_with_the_mounting_offset(index, sample_queries):
    img = sample_queries[0].image
    a = PriorApplier(PriorConfig(heading=True, camera_yaw_offset_deg=10.0), index)
    a.buffer.add(HEADING, 5, 80.0)
    out, allowed, state = a.apply(img, 5)
    assert state.heading == "ok" and state.heading_deg == 90.0 and allowed is None
    assert np.array_equal(out, rotate_to_north_up(img, 90.0))


def test_altitude_prior_crops_to_the_tile_ground_size(index, sample_queries):
    img = sample_queries[0].image  # 480x270 frames
    cam = CameraModel.from_hfov(86.0, 480, 270)
    a = PriorApplier(PriorConfig(altitude=True, camera=cam), index)
    alt = cam.altitude_for_footprint(120.0)  # twice the index's 60 m tiles
    a.buffer.add(ALTITUDE, 7, alt)
    out, _, state = a.apply(img, 7)
    assert state.altitude == "ok" and state.tile_scale_m == 60.0
    assert out.shape[:2] == (135, 135)
    no_cam = PriorApplier(PriorConfig(altitude=True), index)
    no_cam.buffer.add(ALTITUDE, 7, alt)
    assert no_cam.apply(img, 7)[2].altitude == "unusable"


def test_position_prior_restricts_the_search_or_falls_back(index, gem_index_dir, sample_queries):
    from vpr_node.core.retrieval.strategy import load_strategy
    s = load_strategy("efficientnet_lite0_gem", backbone_options={"input_size": 160}, index_dir=str(gem_index_dir))
    q = sample_queries[0]
    a = PriorApplier(PriorConfig(position=True, position_k_sigma=2.0), index)
    a.buffer.add(POSITION, 1, q.lat, q.lon, 30.0)
    _, allowed, state = a.apply(q.image, 1)
    assert state.position == "ok" and 0 < len(allowed) < len(index)
    lat, lon = index.tile_array("lat")[allowed], index.tile_array("lon")[allowed]
    from vpr_node.core.maps.geo import haversine_m
    assert haversine_m(q.lat, q.lon, lat, lon).max() <= 60.0 + 1e-6  # max(50 m floor, 2 sigma)
    cands = s.retrieve_topk(s.embed_query(q.image), 5, allowed)
    row = {r.tile_id: i for i, r in enumerate(index.records)}
    assert {row[c.tile.name] for c in cands} <= set(allowed.tolist())
    a.buffer.add(POSITION, 2, q.lat + 1.0, q.lon, 30.0)  # 111 km away: nothing near it
    _, allowed, state = a.apply(q.image, 2)
    assert state.position == "outside_map" and allowed is None
    a.buffer.add(POSITION, 3, q.lat, q.lon, 5000.0)
    assert a.apply(q.image, 3)[2].position == "uncertain"


def test_evaluate_with_an_exact_heading_prior_equals_the_heading_known_path(gem_index_dir, sample_queries):
    from vpr_node.core.evaluation.recall import evaluate
    from vpr_node.core.retrieval.strategy import load_strategy
    s = load_strategy("efficientnet_lite0_gem", backbone_options={"input_size": 160}, index_dir=str(gem_index_dir))
    known = evaluate(s, sample_queries, k=5, heading_known=True, progress=False)
    prior = evaluate(s, sample_queries, k=5, progress=False, priors=PriorNoise(heading=True, heading_sigma_deg=0.0))
    assert prior.recall == known.recall
    assert prior.extra["priors"]["states"]["heading:ok"] == len(sample_queries)


# --- plausibility gates: property-based over every prior message type ---------------------------------------------
from types import SimpleNamespace as NS  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from vpr_node.core.priors.messages import PriorInputs  # noqa: E402

ANY_FLOAT = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-1e3, 1e3), st.just(0.0))
NOW = 1_700_000_000_000_000_000


def _stamp(draw_ns):
    return NS(sec=draw_ns // 1_000_000_000, nanosec=draw_ns % 1_000_000_000)


STAMPS = st.integers(NOW - 10**10, NOW + 10**10)
QUATS = st.builds(lambda x, y, z, w: NS(x=x, y=y, z=z, w=w), ANY_FLOAT, ANY_FLOAT, ANY_FLOAT, ANY_FLOAT)
COVS9 = st.lists(ANY_FLOAT, min_size=9, max_size=9)
COVS36 = st.lists(ANY_FLOAT, min_size=36, max_size=36)


def _header(stamp):
    return NS(stamp=_stamp(stamp))


HEADING_MSGS = {
    "imu": st.builds(lambda s, q: NS(header=_header(s), orientation=q), STAMPS, QUATS),
    "odometry": st.builds(lambda s, q: NS(header=_header(s), pose=NS(pose=NS(orientation=q))), STAMPS, QUATS),
    "pose": st.builds(lambda s, q: NS(header=_header(s), pose=NS(orientation=q)), STAMPS, QUATS),
    "quaternion": st.builds(lambda s, q: NS(header=_header(s), quaternion=q), STAMPS, QUATS),
}
ALTITUDE_MSGS = {
    "range": st.builds(lambda s, r, lo, hi: NS(header=_header(s), range=r, min_range=lo, max_range=hi), STAMPS,
                       st.one_of(ANY_FLOAT, st.just(1e9)), ANY_FLOAT, st.one_of(ANY_FLOAT, st.just(0.0))),
    "odometry": st.builds(lambda s, z: NS(header=_header(s), pose=NS(pose=NS(position=NS(z=z)))), STAMPS, ANY_FLOAT),
    "navsatfix": st.builds(lambda s, a, st_: NS(header=_header(s), altitude=a, status=NS(status=st_)), STAMPS,
                           ANY_FLOAT, st.integers(-1, 2)),
}
POSITION_MSGS = {
    "navsatfix": st.builds(lambda s, lat, lon, c, t, st_: NS(header=_header(s), latitude=lat, longitude=lon,
                                                              position_covariance=c, position_covariance_type=t,
                                                              status=NS(status=st_)),
                           STAMPS, ANY_FLOAT, ANY_FLOAT, COVS9, st.integers(0, 3), st.integers(-1, 2)),
    "pose_cov": st.builds(lambda s, x, y, c: NS(header=_header(s), pose=NS(pose=NS(position=NS(x=x, y=y)),
                                                                        covariance=c)),
                          STAMPS, ANY_FLOAT, ANY_FLOAT, COVS36),
}


def _plausible(kind, inputs, stamp, values):
    assert stamp - NOW <= inputs.future_tolerance_s * 1e9
    if kind == "heading":
        assert 0.0 <= values[0] < 360.0
    elif kind == "altitude":
        assert inputs.altitude_min_m <= values[0] <= inputs.altitude_max_m
    else:
        lat, lon, sigma = values
        assert abs(lat) <= 90 and abs(lon) <= 180 and math.isfinite(sigma) and sigma >= 0


@pytest.mark.parametrize("kind,type_name,strategy",
                         [("heading", t, s) for t, s in HEADING_MSGS.items()]
                         + [("altitude", t, s) for t, s in ALTITUDE_MSGS.items()]
                         + [("position", t, s) for t, s in POSITION_MSGS.items()])
def test_every_prior_message_is_a_plausible_sample_or_a_typed_error(kind, type_name, strategy):
    inputs = PriorInputs(**{f"{kind}_type": type_name})

    @settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(strategy)
    def check(msg):
        try:
            stamp, *values = getattr(inputs, kind)(msg, NOW)
        except VprPriorError as exc:
            assert exc.context.get("prior") == kind
            return
        _plausible(kind, inputs, stamp, values)

    check()


def test_the_implausible_values_of_the_field_are_refused_with_their_reason():
    inputs = PriorInputs()
    h = _header(NOW)
    cases = [
        ("altitude", NS(header=h, range=1e9, min_range=0.2, max_range=0.0), "outside_envelope"),  # max_range unset
        ("altitude", NS(header=h, range=0.1, min_range=0.2, max_range=40.0), "below_min_range"),
        ("altitude", NS(header=h, range=41.0, min_range=0.2, max_range=40.0), "above_max_range"),
        ("heading", NS(header=h, orientation=NS(x=0.0, y=0.0, z=0.0, w=3.0)), "quaternion_not_unit"),
        ("position", NS(header=h, latitude=60.0, longitude=22.0, position_covariance=[1.0] * 9,
                        position_covariance_type=2, status=NS(status=-1)), "no_fix"),
        ("position", NS(header=h, latitude=60.0, longitude=22.0, position_covariance=[1, 0, 0, 0, -4, 0, 0, 0, 1],
                        position_covariance_type=3, status=NS(status=0)), "covariance_not_psd"),
        ("heading", NS(header=_header(NOW + 2 * 10**9), orientation=NS(x=0.0, y=0.0, z=0.0, w=1.0)), "future_stamp"),
    ]
    for kind, msg, reason in cases:
        with pytest.raises(VprPriorError) as err:
            getattr(PriorInputs(altitude_type="range") if kind == "altitude" else inputs, kind)(msg, NOW)
        assert err.value.context["reason"] == reason, (kind, reason, str(err.value))
    ok = inputs.altitude(NS(header=h, range=80.0, min_range=0.2, max_range=0.0), NOW)
    assert ok[1] == 80.0


def test_a_navsatfix_whose_status_is_left_unset_is_a_position():
    """sensor_msgs/NavSatFix defaults to STATUS_UNKNOWN (-2); VIO bridges leave it so. Only NO_FIX is refused."""
    from sensor_msgs.msg import NavSatFix, NavSatStatus
    msg = NavSatFix(latitude=60.0, longitude=22.0)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(NOW, 10**9)
    assert msg.status.status == NavSatStatus.STATUS_UNKNOWN
    assert PriorInputs().position(msg, NOW)[1:3] == (60.0, 22.0)
    msg.status.status = NavSatStatus.STATUS_NO_FIX
    with pytest.raises(VprPriorError, match="no fix"):
        PriorInputs().position(msg, NOW)


@settings(max_examples=60, deadline=None)
@given(lat0=st.floats(-70, 70), spread_m=st.sampled_from([50.0, 2_000.0, 12_000.0, 400_000.0]),
       radius_m=st.sampled_from([0.0, 30.0, 150.0, 1_000.0, 50_000.0]), seed=st.integers(0, 10_000))
def test_the_tile_grid_selects_the_tiles_the_distance_to_every_centre_selects(lat0, spread_m, radius_m, seed):
    """The position prior's selection (TileGrid) returns exactly the rows within the radius, in order, whatever the
    map's latitude and size and wherever the prior is (inside the map, at its edge, outside it)."""
    from vpr_node.core.maps.geo import haversine_m, metres_per_degree
    from vpr_node.core.priors.tile_grid import TileGrid
    rng = np.random.default_rng(seed)
    m_lat, m_lon = metres_per_degree(lat0)
    lat = lat0 + rng.uniform(0, spread_m, 3000) / m_lat
    lon = 20.0 + rng.uniform(0, spread_m, 3000) / m_lon
    grid = TileGrid(lat, lon)
    for _ in range(10):
        qlat = lat0 + rng.uniform(-0.2, 1.2) * spread_m / m_lat
        qlon = 20.0 + rng.uniform(-0.2, 1.2) * spread_m / m_lon
        want = np.flatnonzero(haversine_m(qlat, qlon, lat, lon) <= radius_m)
        assert np.array_equal(grid.within(qlat, qlon, radius_m), want)
    row = int(rng.integers(3000))  # a prior exactly on a tile centre finds it at radius 0
    assert row in grid.within(lat[row], lon[row], 0.0)
