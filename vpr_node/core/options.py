"""The one way settings are declared: dataclass fields that carry their own help, and optionally a check and a
parser. Build, mission, adaptation and training settings become `vpr` command-line flags from these fields
(tools/common.py: add_dataclass_options); node parameters become ROS parameters (ros/params.py)."""
from __future__ import annotations

import dataclasses
from typing import Callable


def option(default=dataclasses.MISSING, help: str = "", factory=dataclasses.MISSING,  # noqa: A002
           check: Callable | None = None, parse: Callable | None = None):
    """A dataclass field with its help text. check(value) -> None when valid, else why not (used where values
    arrive from outside: ROS parameters); parse(raw) -> value (e.g. a JSON string -> dict), may raise ValueError."""
    return dataclasses.field(default=default, default_factory=factory,
                             metadata={"help": help, "check": check, "parse": parse})


def help_of(field: dataclasses.Field) -> str:
    return field.metadata.get("help", "")
