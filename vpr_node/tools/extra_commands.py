"""Hook for subcommands that live in their own modules (conversion, training, replay, bench)."""


def register(sub) -> None:
    pass
