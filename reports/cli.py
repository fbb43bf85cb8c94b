"""``gru-equiv``: the command-line entry point; each command lives in ``reports.commands``.

    gru-equiv check [--json] [--frameworks torch keras] [--config NAME] [--dtypes float32 float64] [--seed N]
    gru-equiv identify --framework NAME [--config NAME ...] [--dtypes ...] [--json]
    gru-equiv report [--out DIR] [--frameworks ...] [--dtypes ...] [--seed N]
    gru-equiv baseline (--update | --check) [--path FILE] [--allow-new]
    gru-equiv list
    gru-equiv inspect PATH [--json] [--name NAME]
    gru-equiv port PATH --to {torch,keras,onnx} --out PATH [--inputs FILE.npy] [--report DIR] [--name NAME] [--dtype D] [--force]
    gru-equiv convert [--paths ID ...] [--sources all | NAME ...] [--dtypes ...] [--seed N] [--json] [--list]

A bad argument is one line on stderr, ``gru-equiv: ...``, and exit status 2, before any work.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

from .commands import baseline, check, identify, listing, report
from .commands import inspect as inspect_command, port as port_command
from .commands import convert as convert_command
from .selection import UsageError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gru-equiv", description="Which GRU formula does each framework compute?")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in (check, identify, report, baseline, listing, inspect_command, port_command, convert_command):
        command.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    from adapters import compilation_cache

    compilation_cache.enable()  # before any framework import: JAX reads it then (adapters/compilation_cache.py)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UsageError as error:
        parser.exit(2, f"gru-equiv: {error}\n")


def entry() -> NoReturn:
    """The ``gru-equiv`` command: ``main``, then an exit that skips the frameworks' teardown
    (``adapters.isolation.exit_without_teardown``: seconds after a report). Tests call ``main``."""
    from adapters.isolation import exit_without_teardown

    try:
        code = main()
    except SystemExit as stop:
        if not isinstance(stop.code, int):
            raise
        code = stop.code
    exit_without_teardown(code)


if __name__ == "__main__":
    entry()
