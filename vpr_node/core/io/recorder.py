"""Flight-data recorder: append-only JSON lines, flushed on every record, size-bounded rotation.

Each record is written with one write() of a complete line and flushed to the OS, so a kill -9 loses
at most the record in flight; `fsync=True` also survives power loss (slower). Files rotate at
`max_bytes` into <path>.1 ... <path>.<backups>.

Each process starts a new file: the first recorder a process opens on a path rotates what an earlier process left
there to <path>.1 (a node that crashed and was respawned leaves its file whole and readable), and its first record
says which process this file is (`c2.vpr.recorder_open`: pid, host, start time). Reopening the same path in the same
process (a lifecycle cleanup -> configure) keeps appending.
"""
from __future__ import annotations

import json
import os
import pathlib
import socket
import threading
import time

OPEN_KIND = "c2.vpr.recorder_open"
_OPENED_BY_THIS_PROCESS: set[pathlib.Path] = set()
_OPENED_LOCK = threading.Lock()


class FlightDataRecorder:
    def __init__(self, path, max_bytes: int = 16 << 20, backups: int = 4, fsync: bool = False):
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes, self.backups, self.fsync = int(max_bytes), int(backups), fsync
        self._lock = threading.Lock()
        with _OPENED_LOCK:
            first_open = self.path.resolve() not in _OPENED_BY_THIS_PROCESS
            _OPENED_BY_THIS_PROCESS.add(self.path.resolve())
            if first_open and self.path.exists() and self.path.stat().st_size > 0:
                self._shift_backups()  # an earlier process's file (a crash, a restart) becomes <path>.1
        self._f = open(self.path, "ab", buffering=0)
        self.records_written = 0
        if first_open:
            self.record(OPEN_KIND, pid=os.getpid(), host=socket.gethostname())

    def record(self, kind: str, **fields) -> None:
        rec = {"t": time.time(), "kind": kind, **fields}
        line = (json.dumps(rec, default=str, separators=(",", ":")) + "\n").encode()
        with self._lock:
            if self._f is None:
                return
            if self._f.tell() + len(line) > self.max_bytes and self._f.tell() > 0:
                self._rotate()
            self._f.write(line)
            if self.fsync:
                os.fsync(self._f.fileno())
            self.records_written += 1

    def _rotate(self) -> None:
        self._f.close()
        self._shift_backups()
        self._f = open(self.path, "ab", buffering=0)

    def _shift_backups(self) -> None:
        for i in range(self.backups - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                src.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.backups > 0:
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()

    def close(self) -> None:
        with self._lock:
            if self._f is not None:
                self._f.close()
                self._f = None


def read_records(path, include_rotated: bool = True) -> list[dict]:
    """All records, oldest first; a torn last line (crash mid-write) is skipped."""
    path = pathlib.Path(path)
    files = []
    if include_rotated:
        rotated = sorted(
            path.parent.glob(path.name + ".*"), key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0
        )
        files += [p for p in rotated if p.suffix[1:].isdigit()]
    if path.exists():
        files.append(path)
    out = []
    for p in files:
        for line in p.read_bytes().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out
