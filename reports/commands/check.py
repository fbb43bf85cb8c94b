"""``gru-equiv check``: every selected configuration against the four conventions, as a table or JSON."""

from __future__ import annotations

import json
import sys

from ..matrix import ConfigResult
from ..selection import run_selection
from ..table import render_conventions, render_table
from . import add_jobs_argument, add_selection_arguments, progress_printer


def add_parser(commands) -> None:
    parser = commands.add_parser("check", help="measure every framework configuration against the four conventions")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    add_selection_arguments(parser)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a configuration does not match its documentation "
                        "(with --gradients: also when its gradients differ from the reference)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument("--gradients", action="store_true",
                        help="also compare each configuration's gradients with the reference backward pass, under the "
                             "convention it was measured to compute (the documented one when none matched)")
    add_jobs_argument(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    progress = progress_printer(args.json or args.quiet)
    rows = run_selection(args.frameworks, args.config, args.dtypes, args.seed, progress,
                         gradients=args.gradients, jobs=args.jobs, contained=True)
    if args.json:
        json.dump([row.to_json() for row in rows], sys.stdout, indent=2)
        print()
    else:
        print(render_table(rows, gradients=args.gradients))
        print()
        print(render_conventions())
    results = [r for r in rows if isinstance(r, ConfigResult)]
    failed = [r for r in results if r.error or r.matched != r.claimed]
    failed += [r for r in results if r.gradients is not None and (r.gradients.passed is False or r.gradients.error)]
    return 1 if failed and args.strict else 0
