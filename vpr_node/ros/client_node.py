"""A plain rclpy node in its own context, spun on a background thread (the test/demo client and the
bag player are both one of these). Subclasses create their entities, then call start_spinning()."""
from __future__ import annotations

import queue
import threading
import time
from typing import Callable

import rclpy
from rclpy.executors import SingleThreadedExecutor


def wait_wired(publisher, subscribers: int, subscriptions, timeout: float) -> bool:
    """Until the pipeline is wired both ways: `publisher` matched to at least `subscribers` subscriptions, and each
    of `subscriptions` matched to a publisher. False after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if publisher.get_subscription_count() >= subscribers and all(s.get_publisher_count() > 0
                                                                     for s in subscriptions):
            return True
        time.sleep(0.05)
    return False


def wait_diagnostics(arrays: queue.Queue, name: str, ready: Callable[[dict], bool] = lambda values: True,
                     timeout: float = 5.0) -> dict | None:
    """Key/values of the first status in the DiagnosticArray messages arriving on `arrays` whose name contains
    `name` and whose values satisfy `ready`; None after `timeout` seconds. The package's nodes report once a second
    on the steady clock (also under sim time)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            arr = arrays.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None
        for st in arr.status:
            if name in st.name:
                values = {kv.key: kv.value for kv in st.values}
                if ready(values):
                    return values


# /diagnostics status names of the package's frame readers: vpr_node, and the verifier
FRAME_READERS = ("visual place recognition", "geometric verification")


def wait_frames_matched(node, arrays: queue.Queue, topic: str, readers, timeout: float) -> bool:
    """Until each of `readers` (status names) reports, in its diagnostics' `image_publishers`, as many matched
    publishers of `topic` as `node` sees: discovery matches the two ends at different moments, and a best-effort
    reader that has not yet matched a writer drops what it sends although the writer already counts the reader."""
    deadline = time.monotonic() + timeout
    publishers = node.count_publishers(topic)
    return all(wait_diagnostics(arrays, name, lambda v: int(v.get("image_publishers", 0)) >= publishers,
                                max(0.0, deadline - time.monotonic())) is not None for name in readers)


class BackgroundNode:
    def __init__(self, name: str, domain_id: int | None = None):
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._running = True
        self._spin = threading.Thread(target=self._spin_loop, daemon=True)

    def start_spinning(self) -> None:
        self._spin.start()

    def _spin_loop(self) -> None:
        while self._running and self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - shutdown races
                break

    def close(self) -> None:
        self._running = False
        if self._spin.is_alive():
            self._spin.join(2)
        self.executor.shutdown()
        self.node.destroy_node()
        if self.context.ok():
            rclpy.shutdown(context=self.context)
