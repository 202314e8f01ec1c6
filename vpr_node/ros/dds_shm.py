"""Orphaned Fast DDS shared-memory segments: find and remove them when a node starts.

Each Fast DDS participant maps a segment `/dev/shm/fastdds_<id>` (64 MiB with the package's large-frames
profile, config/fastdds_large_frames.xml) and holds an exclusive `flock` on `fastdds_<id>_el` while it lives.
A process that dies without a DDS shutdown (`kill -9`, OOM, a crash that the launch file respawns) leaves
the segment behind; tmpfs counts it as RAM, so a respawn loop on an onboard computer would eat memory at
64 MiB a restart. Fast DDS reclaims its port segments (`fastdds_port<N>`) itself but not participant
segments. The rule is the one of `fastdds shm clean`: a segment whose lock file nobody holds is orphaned.
Segments younger than `min_age_s` are left alone (a participant that is still between creating its segment
and locking it).
"""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path

SHM_DIR = Path("/dev/shm")
PREFIX = "fastdds_"


@dataclass(frozen=True)
class Cleaned:
    segments: tuple[str, ...]
    bytes_freed: int


def lock_is_free(lock_file: Path) -> bool:
    try:
        fd = os.open(lock_file, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def orphaned_segments(shm_dir: Path = SHM_DIR, min_age_s: float = 2.0) -> list[Path]:
    """Participant segments in shm_dir whose `_el` lock no process holds (port segments excluded)."""
    if not shm_dir.is_dir():
        return []
    now = time.time()
    found = []
    for seg in sorted(shm_dir.glob(PREFIX + "*")):
        name = seg.name
        if name.endswith("_el") or name.startswith(PREFIX + "port"):
            continue
        lock = seg.with_name(name + "_el")
        try:
            age = now - lock.stat().st_mtime
        except OSError:
            continue  # no lock file: not a segment this rule knows
        if age >= min_age_s and lock_is_free(lock):
            found.append(seg)
    return found


def segments_mapped_by(pid: int) -> list[Path]:
    """The participant segments a process has mapped (its own and its peers'), from /proc/<pid>/maps."""
    lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    paths = {Path(line.split()[-1]) for line in lines if f"/{SHM_DIR.name}/{PREFIX}" in line}
    return sorted(p for p in paths if not p.name.startswith(PREFIX + "port") and not p.name.endswith("_el"))


def remove_orphaned_segments(shm_dir: Path = SHM_DIR, min_age_s: float = 2.0) -> Cleaned:
    """Remove each orphaned segment with its lock file (and its named mutex, if any)."""
    removed, freed = [], 0
    for seg in orphaned_segments(shm_dir, min_age_s):
        try:
            size = seg.stat().st_size
            seg.unlink()
        except OSError:
            continue  # another process cleaned it first
        freed += size
        removed.append(seg.name)
        for extra in (seg.with_name(seg.name + "_el"), shm_dir / f"sem.{seg.name}_mutex"):
            try:
                extra.unlink()
            except OSError:
                pass
    return Cleaned(tuple(removed), freed)


def uses_fast_dds() -> bool:
    return os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") in ("rmw_fastrtps_cpp",
                                                                      "rmw_fastrtps_dynamic_cpp")


def clean_at_start() -> Cleaned:
    """What a node runs before rclpy.init: the orphans of earlier processes (never its own segment)."""
    return remove_orphaned_segments() if uses_fast_dds() else Cleaned((), 0)


def report(log, cleaned: Cleaned) -> None:
    """One structured line when something was removed (the node's logger: console, /rosout, recorder)."""
    if cleaned.segments:
        log.info("c2.vpr.dds_shm_cleaned", "removed shared-memory segments of dead DDS participants",
                 segments=len(cleaned.segments), mib_freed=round(cleaned.bytes_freed / 2**20, 1))
