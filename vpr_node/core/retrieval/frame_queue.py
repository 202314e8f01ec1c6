"""A received frame, and the bounded newest-frame-wins queue between the subscription callback and the thread that
works on it (the inference engine; the verifier's). Light: no model imports, so the verifier node needs no torch."""
from __future__ import annotations

import collections
import dataclasses
import threading
import time
import uuid
from typing import Callable

import numpy as np


@dataclasses.dataclass
class Frame:
    """One received frame; `decode` runs on the worker thread (keeps the subscriber callback cheap)."""

    decode: Callable[[], np.ndarray]
    frame_id: str = ""
    stamp_ns: int = 0
    received_ns: int = dataclasses.field(default_factory=time.monotonic_ns)
    uuid: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))


class FrameQueue:
    """put() never blocks: when full, the oldest frame is dropped and counted. get() blocks."""

    def __init__(self, depth: int = 1):
        if depth < 1:
            raise ValueError("queue depth must be >= 1")
        self._items = collections.deque()
        self._depth = depth
        self._cond = threading.Condition()
        self._closed = False
        self.dropped_total = 0
        self._dropped_since_take = 0

    def put(self, item) -> bool:
        """Enqueue; returns False if an older frame had to be dropped to make room."""
        with self._cond:
            if self._closed:
                self.dropped_total += 1
                self._dropped_since_take += 1
                return False
            dropped = False
            while len(self._items) >= self._depth:
                self._items.popleft()
                self.dropped_total += 1
                self._dropped_since_take += 1
                dropped = True
            self._items.append(item)
            self._cond.notify()
            return not dropped

    def get(self, timeout: float | None = None):
        """Next frame, or None on timeout/close. Also returns drops since the last get()."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            if not self._items:
                return None, 0
            item = self._items.popleft()
            dropped, self._dropped_since_take = self._dropped_since_take, 0
            return item, dropped

    def close(self) -> int:
        """Stop accepting frames, wake the consumer; returns the number of frames discarded."""
        with self._cond:
            self._closed = True
            n = len(self._items)
            self.dropped_total += n
            self._items.clear()
            self._cond.notify_all()
            return n

    def reopen(self) -> None:
        with self._cond:
            self._closed = False

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
