"""A DDS participant killed with SIGKILL leaves its 64 MiB Fast DDS shared-memory segment in /dev/shm; the next
node to start removes it (and nothing a live participant holds)."""
import fcntl
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from vpr_node.ros import dds_shm

PARTICIPANT = textwrap.dedent("""
    import sys, time, rclpy
    from std_msgs.msg import String
    rclpy.init()
    node = rclpy.create_node("shm_probe")
    node.create_publisher(String, "shm_probe", 10)
    print("up", flush=True)
    time.sleep(600)
""")




def test_only_segments_whose_lock_nobody_holds_are_removed(tmp_path):
    for name in ("fastdds_dead", "fastdds_alive", "fastdds_port7400"):
        (tmp_path / name).write_bytes(b"\0" * 4096)
        (tmp_path / f"{name}_el").touch()
    (tmp_path / "sem.fastdds_dead_mutex").touch()
    old = time.time() - 60
    for p in tmp_path.iterdir():
        os.utime(p, (old, old))
    holder = os.open(tmp_path / "fastdds_alive_el", os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)  # what a live participant does
    try:
        cleaned = dds_shm.remove_orphaned_segments(tmp_path)
    finally:
        os.close(holder)
    assert cleaned.segments == ("fastdds_dead",) and cleaned.bytes_freed == 4096
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "fastdds_alive", "fastdds_alive_el", "fastdds_port7400", "fastdds_port7400_el"]  # ports: Fast DDS's own


def test_a_fresh_segment_is_left_alone(tmp_path):
    (tmp_path / "fastdds_new").touch()
    (tmp_path / "fastdds_new_el").touch()  # created now: its participant may not have locked it yet
    assert dds_shm.orphaned_segments(tmp_path) == []


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="no /dev/shm")
def test_the_segment_of_a_killed_participant_is_found_and_removed():
    proc = subprocess.Popen([sys.executable, "-c", PARTICIPANT], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "up"
        mapped = set(dds_shm.segments_mapped_by(proc.pid))
        assert mapped, "the participant mapped no Fast DDS segment"
        assert not set(dds_shm.orphaned_segments(min_age_s=0)) & mapped  # alive: its lock is held
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    own = set(dds_shm.orphaned_segments(min_age_s=0)) & mapped
    assert own, "the killed participant's segment should be orphaned"
    cleaned = dds_shm.remove_orphaned_segments(min_age_s=0)
    assert {p.name for p in own} <= set(cleaned.segments)
    assert not any(p.exists() for p in own)
