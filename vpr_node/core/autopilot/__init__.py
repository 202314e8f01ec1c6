"""The fix reaches the autopilot: accepted verified fixes as the MAVLink messages PX4 and ArduPilot fuse (PX4:
GLOBAL_POSITION_SENSOR, an auxiliary global position; ArduPilot: ODOMETRY as external navigation in local NED about
the EKF origin, or GPS_INPUT on request), the unit conversions written once (units.py), the checks a fix must pass
before it is sent (fixes.py), the link (link.py: pymavlink, heartbeats, reconnects, the EKF origin, time sync) and
the engine the vpr_mavlink node runs (output.py). Plain Python; `sim_peer.py` is a simulated autopilot on the
network (tests, demo) that decodes what it receives. docs/autopilot.md says how each autopilot is configured."""
