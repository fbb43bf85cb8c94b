"""``gru-equiv list``: every adapter, its versions and configurations, or why it is unavailable."""

from __future__ import annotations


def add_parser(commands) -> None:
    parser = commands.add_parser("list", help="list adapters and their configurations")
    parser.set_defaults(run=run)


def run(args) -> int:
    import adapters

    for name, adapter in adapters.status().items():
        if isinstance(adapter, adapters.AdapterUnavailable):
            print(f"{name}: unavailable ({adapter.reason})")
            continue
        versions = ", ".join(f"{k} {v}" for k, v in adapter.versions().items())
        print(f"{name} ({versions}):")
        for config in adapter.configurations():
            print(f"  {config.name!r:55} claims {config.claimed.id}")
    return 0
