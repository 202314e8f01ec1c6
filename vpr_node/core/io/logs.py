"""Structured logging: one JSON object per line on stdout, optionally forwarded to another sink (rosout)."""
from __future__ import annotations

import json
import sys
import threading
import time
from typing import Callable

LEVELS = {"DEBUG": 10, "INFO": 20, "WARN": 30, "ERROR": 40, "FATAL": 50}


class StructuredLogger:
    def __init__(self, name: str = "vpr", level: str = "INFO", stream=None,
                 sink: Callable[[str, str], None] | None = None):
        self.name, self.level = name, LEVELS[level.upper()]
        self.stream = sys.stdout if stream is None else stream  # stream=False: sink only
        self.sink = sink
        self._lock = threading.Lock()

    def event(self, level: str, kind: str, msg: str = "", **fields) -> dict:
        level = level.upper()
        rec = {"t": round(time.time(), 6), "level": level, "logger": self.name, "kind": kind, "msg": msg, **fields}
        if LEVELS[level] < self.level:
            return rec
        line = json.dumps(rec, default=str, separators=(",", ":"))
        with self._lock:
            try:
                if not self.stream:
                    raise ValueError
                self.stream.write(line + "\n")
                self.stream.flush()
            except (ValueError, OSError):
                pass
        if self.sink is not None:
            try:
                self.sink(level, line)
            except Exception:  # noqa: BLE001 - a broken sink must never take the pipeline down
                pass
        return rec

    def debug(self, kind, msg="", **f):
        return self.event("DEBUG", kind, msg, **f)

    def info(self, kind, msg="", **f):
        return self.event("INFO", kind, msg, **f)

    def warn(self, kind, msg="", **f):
        return self.event("WARN", kind, msg, **f)

    def error(self, kind, msg="", **f):
        return self.event("ERROR", kind, msg, **f)
