"""A plain rclpy node in its own context, spun on a background thread (the test/demo client and the
bag player are both one of these). Subclasses create their entities, then call start_spinning()."""
from __future__ import annotations

import threading
import time

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
