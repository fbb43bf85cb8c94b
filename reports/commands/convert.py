"""``gru-equiv convert``: the conversion-path audit (``reports.conversions``), as a table or JSON.

    gru-equiv convert [--paths ID ...] [--sources all | NAME ...] [--dtypes float32 float64] [--seed N] [--json]
    gru-equiv convert --list

By default each available path runs its first (one-layer) source configuration in its first dtype;
``--sources all`` runs every configuration each path takes, in every dtype it keeps.
"""

from __future__ import annotations

import json
import sys

from ..selection import UsageError, seed
from . import progress_printer

DTYPE_CHOICES = ("float32", "float64")


def add_parser(commands) -> None:
    import adapters.paths

    parser = commands.add_parser("convert", help="audit conversion paths (exporters, converters, ports): does the "
                                                 "converted GRU compute what the source computes?")
    parser.add_argument("--paths", nargs="+", metavar="ID", help=f"subset of: {', '.join(adapters.paths.REGISTRY)}")
    parser.add_argument("--sources", nargs="+", metavar="NAME", default=["default"],
                        help="'default' (each path's first source configuration), 'all', or configuration names "
                             "(see --list)")
    parser.add_argument("--dtypes", nargs="+", metavar="DTYPE", choices=DTYPE_CHOICES,
                        help="only these dtypes (default: each path's first; with --sources all, every dtype it keeps)")
    parser.add_argument("--seed", type=seed, default=0, help="seed of the probe (0 to 4294967295)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--list", action="store_true", help="list the paths, their status and source configurations")
    parser.add_argument("--strict", action="store_true", help="exit 1 unless every cell that ran is exact or refused")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.set_defaults(run=run)


def _list_paths() -> int:
    import adapters.paths

    for path_id, path in adapters.paths.status().items():
        if isinstance(path, adapters.paths.PathUnavailable):
            print(f"{path_id}: unavailable: {path.reason}")
            continue
        print(f"{path_id}: {path.title} (source: {path.source}; dtypes: {', '.join(path.dtypes())})")
        for name in path.source_configs():
            print(f"    {name}")
    return 0


def run(args) -> int:
    import adapters.paths

    from ..conversions import run_conversions, summary_table
    from ..matrix import Case

    if args.list:
        return _list_paths()
    unknown = [p for p in args.paths or () if p not in adapters.paths.REGISTRY]
    if unknown:
        raise UsageError(f"unknown conversion path(s) {unknown}; valid: {', '.join(adapters.paths.REGISTRY)}")
    sources = args.sources[0] if args.sources in (["default"], ["all"]) else args.sources
    try:
        # Contained: a converter that crashes the interpreter is a failed cell; this process imports no
        # framework, so the worker that runs the cells pays each import once, as this process would.
        rows = run_conversions(args.paths, sources, args.dtypes, Case(seed=args.seed),
                               progress_printer(args.json or args.quiet), contained=True)
    except ValueError as error:  # a selection no path takes: found before any cell runs
        raise UsageError(str(error)) from None
    if args.json:
        json.dump([row.to_json() for row in rows], sys.stdout, indent=2)
        print()
    else:
        print(summary_table(rows))
        for row in rows:
            if row.verdict not in ("exact", "unavailable"):
                print()
                print(row.describe())
    bad = [row for row in rows if row.verdict not in ("exact", "refused", "unavailable")]
    return 1 if bad and args.strict else 0
