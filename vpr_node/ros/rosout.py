"""The structured log lines of the nodes, forwarded to rosout (and the console) at their level.

rclpy pins one severity per call site ("Logger severity cannot be changed between calls", a ValueError), so one call
site shared by all levels forwards the first level it sees and raises on every other: each level has its own call
below. (The vpr_verifier forwarded through a shared call site until 2026-12-07, so its warnings and errors reached
only the recorder.)"""
from __future__ import annotations


def rosout_sink(node):
    """A StructuredLogger sink (level, line) writing to `node`'s rclpy logger."""

    def sink(level: str, line: str) -> None:
        rl = node.get_logger()
        if level == "ERROR":
            rl.error(line)
        elif level == "WARN":
            rl.warning(line)
        elif level == "INFO":
            rl.info(line)
        elif level == "DEBUG":
            rl.debug(line)
        else:
            rl.fatal(line)

    return sink
