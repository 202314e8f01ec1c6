"""Bytes in and out: camera image codecs, rosbag2 files, the flight-data recorder, structured logs, file
hashes, process memory readings."""
