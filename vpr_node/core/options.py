"""Config dataclass fields that carry their own command-line help (tools/common.py builds the options)."""
from __future__ import annotations

import dataclasses


def option(default=dataclasses.MISSING, help: str = "", factory=dataclasses.MISSING):  # noqa: A002
    """A dataclass field with its help text: `vpr` subcommands turn such fields into --options."""
    return dataclasses.field(default=default, default_factory=factory, metadata={"help": help})
