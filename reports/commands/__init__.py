"""One module per ``gru-equiv`` command; each defines ``add_parser(commands)`` and ``run(args)``.

``reports.cli`` only wires them up. Arguments are checked before any work (``reports.selection``);
a bad one raises ``UsageError``.
"""

from __future__ import annotations

import sys

from ..matrix import DTYPES, default_jobs
from ..selection import positive_integer, seed

COMMANDS = ("check", "identify", "report", "baseline", "list")


def progress_printer(quiet: bool):
    """Progress lines on stderr, so stdout stays the table or the JSON."""
    return None if quiet else (lambda label: print(f"  running {label}", file=sys.stderr))


def add_selection_arguments(parser, frameworks: bool = True, configs: bool = True) -> None:
    import adapters

    if frameworks:
        parser.add_argument("--frameworks", nargs="+", metavar="NAME", help=f"subset of: {', '.join(adapters.REGISTRY)}")
    if configs:
        parser.add_argument("--config", nargs="+", metavar="NAME", help="only these configurations (see `gru-equiv list`)")
    parser.add_argument("--dtypes", nargs="+", default=[d.name for d in DTYPES], metavar="DTYPE",
                        help=f"subset of: {', '.join(d.name for d in DTYPES)}")
    parser.add_argument("--seed", type=seed, default=0, help="seed of the probe parameters and inputs (0 to 4294967295)")


def add_jobs_argument(parser) -> None:
    parser.add_argument("--jobs", type=positive_integer, default=default_jobs(), metavar="N",
                        help="processes measuring the matrix at once (default: %(default)s here, one per core up to 2; "
                             "1 measures everything in this process)")
