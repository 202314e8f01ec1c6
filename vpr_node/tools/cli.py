"""`vpr` command line: corpus, index, mission preparation, evaluation, training, replay, benchmarks.

Each module below adds its subcommands with `register(subparsers)`; this file only lists them."""
from __future__ import annotations

import argparse
import sys

from vpr_node.tools import (
    backbone_tools,
    bench,
    bench_flight,
    bench_memory,
    bench_real,
    bench_recall,
    bench_scale,
    compare_backbones,
    demo,
    index_tools,
    maps,
    prepare_mission,
    recorder_tool,
    replay,
    soak,
    train,
    verification,
)

COMMAND_MODULES = (maps, index_tools, prepare_mission, verification, backbone_tools, train, bench_recall,
                   bench_real, compare_backbones, bench, bench_memory, bench_scale, bench_flight, soak, replay,
                   recorder_tool, demo)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="vpr", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for module in COMMAND_MODULES:
        module.register(sub)
    return ap


def main(argv=None) -> int:
    from vpr_node.core.errors import VprError

    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except VprError as exc:  # misconfiguration and bad inputs: the message says what to fix, no traceback
        print(f"vpr {args.cmd}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
