"""Subcommands that live in their own modules (each exposes register(subparsers))."""


def register(sub) -> None:
    from . import bench, bench_recall, convert_tools, netvlad_tools, replay
    bench.register(sub)
    bench_recall.register(sub)
    netvlad_tools.register(sub)
    replay.register(sub)
    convert_tools.register(sub)
    from vpr_node.core.training import train
    train.register(sub)
