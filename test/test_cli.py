"""Every `vpr` subcommand answers --help (argparse formats help strings with %, so one stray % in a
dataclass field's help breaks that command's help, as it once broke `vpr train --help`)."""
import argparse
import contextlib
import io

import pytest

from vpr_node.tools.cli import build_parser


def _subcommands():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices)


@pytest.mark.parametrize("command", _subcommands())
def test_every_subcommand_prints_its_help(command):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as stop:
        build_parser().parse_args([command, "--help"])
    assert stop.value.code == 0
    assert f"vpr {command}" in out.getvalue()
