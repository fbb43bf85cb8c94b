"""``gru-equiv baseline --update | --check``: record the current run, or compare it with the record."""

from __future__ import annotations

from .. import baseline
from ..matrix import DTYPES, Case, run_matrix
from ..selection import UsageError, output_file
from . import progress_printer


def add_parser(commands) -> None:
    parser = commands.add_parser("baseline", help="record or check the committed baseline (reports/baseline.json)")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--update", action="store_true", help="record the current run as the baseline")
    action.add_argument("--check", action="store_true", help="compare the current run with the baseline; exit 1 on a change")
    parser.add_argument("--path", default=None, help="baseline file (default: reports/baseline.json)")
    parser.add_argument("--allow-new", action="store_true",
                        help="configurations that ran but have no entry are notes, not failures (a new framework)")
    parser.add_argument("--quiet", action="store_true")
    parser.set_defaults(run=run)


def run(args) -> int:
    path = baseline.BASELINE_PATH if args.path is None else args.path
    if args.update:
        target = output_file(path, "--path")
        rows = [row.to_json() for row in run_matrix(None, DTYPES, Case(seed=0), None, progress_printer(args.quiet))]
        print(f"baseline written: {baseline.save(baseline.record(rows), target)}")
        return 0
    try:
        recorded = baseline.load(path)  # a broken file is refused before the matrix runs
    except baseline.BaselineError as error:
        raise UsageError(str(error)) from None
    rows = [row.to_json() for row in run_matrix(None, DTYPES, Case(seed=0), None, progress_printer(args.quiet))]
    result = baseline.check(recorded, rows, allow_new=args.allow_new)
    print(result.describe())
    return 0 if result.passed else 1
