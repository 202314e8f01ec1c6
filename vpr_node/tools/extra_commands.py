"""Subcommands that live in their own modules (each exposes register(subparsers))."""


def register(sub) -> None:
    from . import bench, bench_recall, compare_backbones, convert_tools, netvlad_tools, replay, soak
    bench.register(sub)
    bench_recall.register(sub)
    compare_backbones.register(sub)
    netvlad_tools.register(sub)
    replay.register(sub)
    replay.register_ros(sub)
    soak.register(sub)
    convert_tools.register(sub)
    from vpr_node.core.training import train
    train.register(sub)
