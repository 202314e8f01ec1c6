"""Subcommands that live in their own modules (each exposes register(subparsers))."""


def register(sub) -> None:
    from . import bench_recall
    bench_recall.register(sub)
