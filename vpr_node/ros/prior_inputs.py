"""Prior message classes for the node's subscriptions (the conversion itself is core/prior_messages.py)."""
from __future__ import annotations

import importlib

from vpr_node.core.priors.messages import MESSAGE_TYPES


def message_class(kind: str, type_name: str):
    """The rclpy message class of a prior kind's configured type, e.g. (heading, imu) -> sensor_msgs.msg.Imu."""
    pkg, _, name = MESSAGE_TYPES[kind][type_name].split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)
