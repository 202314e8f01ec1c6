"""autopilot/: accepted fixes reach a simulated PX4 or ArduPilot over MAVLink on loopback UDP (pymavlink on both
sides): the messages each autopilot fuses with their ids, units (degE7, 1-sigma metres, NED), frames, timestamps and
reset counters; the EKF origin read or set; TIMESYNC both ways; every refusal typed and counted (stale, bad
covariance, no heartbeat, no origin, jump); a link that drops and comes back; the encodings pinned byte for byte."""
import math
import socket
import time

import numpy as np
import pytest

from vpr_node.core.autopilot import encode, units
from vpr_node.core.autopilot.fixes import AutopilotFix, JumpGate
from vpr_node.core.autopilot.link import parse_connection
from vpr_node.core.autopilot.output import AutopilotConfig, AutopilotOutput
from vpr_node.core.autopilot.sim_peer import SimulatedAutopilot
from vpr_node.core.errors import ConfigurationError
from vpr_node.core.io.recorder import FlightDataRecorder, read_records
from vpr_node.core.maps.geo import metres_per_degree

LAT, LON = 60.4512345, 22.2654321
COV = np.array([[4.0, 1.0], [1.0, 2.0]])  # m^2: eigenvalues 1.586 and 4.414


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout=15.0, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return False


def fix(dn=0.0, de=0.0, age_s=0.05, cov=COV, heading=123.4, confidence=0.93, trouble=False):
    m_lat, m_lon = metres_per_degree(LAT)
    return AutopilotFix(time.time_ns() - int(age_s * 1e9), LAT + dn / m_lat, LON + de / m_lon, np.asarray(cov),
                        heading, 1.5, confidence, trouble)


@pytest.fixture
def connected():
    """(peer, output) of a kind once the output has heard the peer's heartbeat; closed after the test."""
    made = []

    def make(kind, origin=None, recorder=None, **cfg):
        port = free_port()
        peer = SimulatedAutopilot(kind, port=port, origin=origin).__enter__()
        out = AutopilotOutput(AutopilotConfig(autopilot=kind, connection=f"udpout:127.0.0.1:{port}",
                                              heartbeat_timeout_s=cfg.pop("heartbeat_timeout_s", 2.0), **cfg),
                              recorder=recorder)
        made.append((peer, out))
        out.start()
        assert wait_for(lambda: out.link.heard), "the output never heard the simulated autopilot"
        return peer, out

    yield make
    for peer, out in made:
        out.stop()
        peer.close()


def test_units_are_converted_once_and_right():
    assert units.deg_e7(60.45123456) == 604512346 and units.deg_e7(-0.00000006) == -1  # rounded, not truncated
    assert units.horizontal_sigma_m(COV) == pytest.approx(math.sqrt(3 + math.sqrt(2)))  # the worst direction
    for bad in (np.array([[1.0, 0.0], [0.0, -1.0]]), np.array([[np.nan, 0], [0, 1.0]]), np.array([[1.0, 0.5], [0, 1]])):
        with pytest.raises(ValueError):
            units.horizontal_sigma_m(bad)
    assert units.cov_en_to_ne(np.array([[4.0, 1.0], [1.0, 2.0]])).tolist() == [[2.0, 1.0], [1.0, 4.0]]
    north, east = units.local_offset_m(LAT + 0.001, LON + 0.002, LAT, LON)
    m_lat, m_lon = metres_per_degree(LAT)
    assert (north, east) == pytest.approx((0.001 * m_lat, 0.002 * m_lon))
    assert units.yaw_quaternion_ned(90.0) == pytest.approx([math.sqrt(0.5), 0, 0, math.sqrt(0.5)])
    assert units.yaw_quaternion_enu(90.0) == pytest.approx((0.0, 1.0))  # heading east = ENU yaw 0
    assert units.quality_percent(0.934) == 93 and units.quality_percent(0.0) == 1 and \
        units.quality_percent(float("nan")) == 0
    x, y, qz, qw, cov = units.enu_pose(LAT + 0.001, LON, 0.0, 2.0, COV, LAT, LON)
    assert x == pytest.approx(0.0) and y == pytest.approx(0.001 * m_lat) and cov[0, 0] == 4.0  # ROS: m^2
    assert cov[5, 5] == pytest.approx(math.radians(2.0) ** 2) and cov[2, 2] == units.UNOBSERVED_VAR


def test_the_encodings_are_pinned_byte_for_byte():
    from pymavlink.dialects.v20 import ardupilotmega as dialect
    mav = dialect.MAVLink(None, srcSystem=1, srcComponent=191)
    f = AutopilotFix(1_700_000_000_000_000_000, LAT, LON, COV, 123.4, 1.5, 0.93)
    golden = {
        "gps": (encode.global_position_sensor(mav, f, 1_700_000_000_050_000, 50_000, 1),
                "fd2800000001bf28010050031f18240a060050c3000059200824716f450d0000c07f0000c07fd57606400000c07f010000"
                "02c42b"),
        "origin": (encode.set_gps_global_origin(mav, 1, 60.45, 22.26, 12.0),
                   "fd0d00000001bf30000020f00724409b440de02e00000152c3"),
        "heartbeat": (encode.heartbeat(mav), "fd0900000001bf000000000000001208000403aec6"),
        "gps_input": (encode.gps_input(mav, f, 1_700_000_000_000_000, 1_700_000_000.0),
                      "fd3e00000001bfe8000000401e18240a060050b2110f59200824716f450d00000000d576064000000000000000000000"
                      "00000000000000000000d576064000000000b900f00800034b7c"),
    }
    for name, (msg, hexes) in golden.items():
        mav.seq = 0
        assert msg.pack(mav).hex() == hexes, name
    odo = encode.odometry_ned(mav, f, (60.45, 22.26, 12.0), 1_700_000_000_000_000, 3, 10.0)
    mav.seq = 0
    assert odo.pack(mav).hex().startswith("fde900000001bf4b010000401e18240a06003445094365f29443")


def test_px4_receives_global_position_sensor_in_its_units(connected, tmp_path):
    rec = FlightDataRecorder(tmp_path / "fdr.jsonl")
    peer, out = connected("px4", recorder=rec)
    outcomes = [out.submit(fix(dn=i * 3.0)) for i in range(5)] + [out.submit(fix(dn=15.0, trouble=True))]
    assert [o.sent for o in outcomes] == ["GLOBAL_POSITION_SENSOR"] * 6
    assert wait_for(lambda: len(peer.messages("GLOBAL_POSITION_SENSOR")) == 6)
    got = peer.arrivals("GLOBAL_POSITION_SENSOR")
    m_lat, _ = metres_per_degree(LAT)
    for i, ((arrived_ns, m), o) in enumerate(zip(got, outcomes, strict=True)):
        assert m.get_srcSystem() == 1 and m.get_srcComponent() == 191 and m.target_system == 1
        assert m.source == 2 and m.id == 0  # GLOBAL_POSITION_SRC_VISION, sensor 0
        assert m.lat == units.deg_e7(LAT + i * 3.0 / m_lat) and m.lon == units.deg_e7(LON)
        assert m.eph == pytest.approx(units.horizontal_sigma_m(COV), rel=1e-6)  # 1-sigma metres, not m^2
        assert math.isnan(m.epv) and math.isnan(m.alt) and math.isnan(m.alt_ellipsoid)  # a map fix has no height
        assert m.processing_time == o.processing_us and 50_000 <= m.processing_time < 1_000_000  # exposure -> send
        assert abs(m.time_usec * 1000 - arrived_ns) < 10**9  # the transmission time (companion clock)
        assert m.flags == (1 if i == 5 else 0)  # UNHEALTHY when the verifier reports trouble
    beat = peer.messages("HEARTBEAT")[0]
    assert beat.type == 18 and beat.autopilot == 8 and beat.get_srcComponent() == 191  # onboard controller
    assert wait_for(lambda: peer.timesync_rtt_ns is not None and out.link.timesync.synced)  # both directions
    offset = out.link.timesync.offset_ns()
    assert abs(offset - (peer.clock_ns() - time.monotonic_ns())) < 50_000_000  # its clock, not ours
    snap = out.snapshot()
    assert snap["sent.GLOBAL_POSITION_SENSOR"] == 6 and snap["autopilot_heard"] == "px4"
    rec.close()
    assert [r["message"] for r in read_records(tmp_path / "fdr.jsonl") if r["kind"] == "c2.vpr.autopilot_sent"] == \
        ["GLOBAL_POSITION_SENSOR"] * 6


def test_ardupilot_gets_its_origin_set_and_odometry_about_it(connected):
    peer, out = connected("ardupilot", origin=None, origin_lat=LAT, origin_lon=LON, origin_alt=12.5,
                          origin_wait_s=0.5, camera_yaw_offset_deg=10.0)
    assert out.submit(fix()).reason in ("no_origin", "")  # no origin yet: nothing in a frame nobody agreed on
    assert wait_for(lambda: out.link.origin is not None)
    sets = peer.messages("SET_GPS_GLOBAL_ORIGIN")
    assert len(sets) == 1 and (sets[0].latitude, sets[0].longitude, sets[0].altitude) == \
        (units.deg_e7(LAT), units.deg_e7(LON), 12500)  # degE7 and millimetres
    o = out.submit(fix(dn=30.0, de=-40.0, heading=100.0))
    assert o.sent == "ODOMETRY"
    assert wait_for(lambda: peer.messages("ODOMETRY"))
    m = peer.messages("ODOMETRY")[-1]
    assert (m.frame_id, m.child_frame_id, m.estimator_type) == (20, 12, 2)  # LOCAL_FRD, BODY_FRD, VISION
    assert (m.x, m.y) == pytest.approx((30.0, -40.0), abs=0.01)  # NED: north first
    assert m.q == pytest.approx(units.yaw_quaternion_ned(90.0), abs=1e-6)  # 100 deg camera - 10 deg mounting
    assert all(math.isnan(v) for v in (m.vx, m.vy, m.vz)) and math.isnan(m.velocity_covariance[0])
    assert m.pose_covariance[0] == pytest.approx(2.0) and m.pose_covariance[6] == pytest.approx(4.0)  # NN, EE m^2
    assert m.quality == 93 and m.reset_counter == 0


def test_ardupilot_uses_the_origin_it_already_has(connected):
    peer, out = connected("ardupilot", origin=(LAT + 0.01, LON, 30.0), origin_lat=LAT, origin_lon=LON,
                          origin_wait_s=5.0)
    assert wait_for(lambda: out.link.origin is not None)
    assert out.origin[0] == pytest.approx(LAT + 0.01) and not peer.messages("SET_GPS_GLOBAL_ORIGIN")
    out.submit(fix())
    assert wait_for(lambda: peer.messages("ODOMETRY"))
    m_lat, _ = metres_per_degree(LAT + 0.01)
    assert peer.messages("ODOMETRY")[-1].x == pytest.approx(-0.01 * m_lat, abs=0.05)


def test_a_jump_is_held_until_confirmed_then_sent_as_a_reset(connected):
    peer, out = connected("ardupilot", origin=(LAT, LON, 0.0), jump_confirmations=2)
    assert wait_for(lambda: out.link.origin is not None)
    assert out.submit(fix()).sent == "ODOMETRY"
    assert out.submit(fix(de=400.0)).reason == "jump"  # one wrong-looking fix: held, not sent
    assert out.submit(fix(de=2.0)).sent == "ODOMETRY"  # back where it was: the outlier is forgotten
    assert out.submit(fix(de=400.0)).reason == "jump"
    o = out.submit(fix(de=402.0))  # a second fix agrees at the new place: a reset
    assert o.sent == "ODOMETRY" and o.reason == "reset"
    assert wait_for(lambda: len(peer.messages("ODOMETRY")) == 3)
    assert [m.reset_counter for m in peer.messages("ODOMETRY")] == [0, 0, 1]
    assert out.snapshot()["rejected.jump"] == 2 and out.snapshot()["resets"] == 1
    gate = JumpGate(50.0, 30.0, 2)  # the gate grows with the time between fixes
    a = fix()
    b = fix(de=200.0)
    b.stamp_ns = a.stamp_ns + 10 * 10**9  # 10 s at 30 m/s: 350 m allowed
    assert gate.offer(a) == "" and gate.offer(b) == ""


def test_bad_input_is_refused_with_a_typed_reason(connected, tmp_path):
    rec = FlightDataRecorder(tmp_path / "fdr.jsonl")
    peer, out = connected("px4", recorder=rec, max_fix_age_s=1.0)
    cases = {"stale": fix(age_s=5.0), "bad_covariance": fix(cov=[[1.0, 0.0], [0.0, -1.0]]),
             "bad_position": fix(dn=float("nan"))}
    cases["bad_covariance"] = fix(cov=[[np.nan, 0.0], [0.0, 1.0]])
    assert {k: out.submit(f).reason for k, f in cases.items()} == {k: k for k in cases}
    assert out.submit(fix(cov=[[1.0, 0.0], [0.0, -1.0]])).reason == "bad_covariance"  # not positive definite
    snap = out.snapshot()
    assert snap["rejected.stale"] == 1 and snap["rejected.bad_covariance"] == 2 and snap["rejected.bad_position"] == 1
    rec.close()
    reasons = [r["reason"] for r in read_records(tmp_path / "fdr.jsonl") if r["kind"] == "c2.vpr.autopilot_rejected"]
    assert sorted(reasons) == ["bad_covariance", "bad_covariance", "bad_position", "stale"]
    assert not peer.messages("GLOBAL_POSITION_SENSOR")  # nothing bad reached the autopilot


def test_a_link_that_drops_and_comes_back(connected):
    peer, out = connected("px4", heartbeat_timeout_s=1.0)
    port = int(out.cfg.connection.rsplit(":", 1)[1])
    assert out.submit(fix()).sent
    peer.close()  # the autopilot falls silent
    assert wait_for(lambda: not out.link.heard and out.link.state == "lost")
    assert out.submit(fix()).reason == "no_heartbeat"
    with SimulatedAutopilot("px4", port=port) as again:  # and comes back on the same port
        assert wait_for(lambda: out.link.heard)
        assert out.submit(fix()).sent == "GLOBAL_POSITION_SENSOR"
        assert wait_for(lambda: again.messages("GLOBAL_POSITION_SENSOR"))
    snap = out.snapshot()
    assert snap["lost"] == 1 and snap["recovered"] == 1 and snap["rejected.no_heartbeat"] == 1


def test_gps_input_is_an_honest_opt_in(connected):
    peer, out = connected("ardupilot", ardupilot_message="gps_input")
    assert out.submit(fix()).sent == "GPS_INPUT"  # no local frame: no origin needed
    assert wait_for(lambda: peer.messages("GPS_INPUT"))
    m = peer.messages("GPS_INPUT")[0]
    eph = units.horizontal_sigma_m(COV)
    assert m.horiz_accuracy == pytest.approx(eph, rel=1e-6) and m.hdop == pytest.approx(eph, rel=1e-6)
    assert m.satellites_visible == 0 and m.fix_type == 3 and m.ignore_flags == 1 | 8 | 16 | 32 | 128
    assert (m.lat, m.lon) == (units.deg_e7(LAT), units.deg_e7(LON))


def test_connection_strings_autopilot_users_write():
    assert parse_connection("udpout:192.168.1.10:14540") == ("udpout:192.168.1.10:14540", None)
    assert parse_connection("udpin:0.0.0.0:14550")[0] == "udpin:0.0.0.0:14550"
    assert parse_connection("tcp:127.0.0.1:5760")[0] == "tcp:127.0.0.1:5760"
    assert parse_connection("/dev/ttyAMA0:921600") == ("/dev/ttyAMA0", 921600)
    for bad in ("14540", "udp:host", "/dev/ttyUSB0", "http://x:1"):
        with pytest.raises(ConfigurationError, match="udpout:HOST:PORT|BAUD"):
            parse_connection(bad)


def test_without_a_mavlink_connection_only_the_checks_run():
    out = AutopilotOutput(AutopilotConfig(autopilot="ardupilot", connection="", origin_lat=LAT, origin_lon=LON))
    out.start()
    assert out.submit(fix()).sent == "none" and out.submit(fix(age_s=9.0)).reason == "stale"
    out.stop()
