"""``gru-equiv baseline --update | --check``: record the current run, or compare it with the record."""

from __future__ import annotations

from .. import baseline
from ..conversions import conversions_for_matrix
from ..matrix import DTYPES, Case, run_matrix
from ..selection import UsageError, output_file
from . import add_jobs_argument, progress_printer


def add_parser(commands) -> None:
    parser = commands.add_parser("baseline", help="record or check the committed baseline (reports/baseline.json)")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--update", action="store_true", help="record the current run as the baseline")
    action.add_argument("--check", action="store_true", help="compare the current run with the baseline; exit 1 on a change")
    parser.add_argument("--path", default=None, help="baseline file (default: reports/baseline.json)")
    parser.add_argument("--allow-new", action="store_true",
                        help="configurations that ran but have no entry are notes, not failures (a new framework)")
    parser.add_argument("--gradients", action="store_true",
                        help="also record / check each configuration's gradient verdict (slower)")
    parser.add_argument("--quiet", action="store_true")
    add_jobs_argument(parser)
    parser.set_defaults(run=run)


def _measure(args) -> list[dict]:
    results = run_matrix(None, DTYPES, Case(seed=0), None, progress_printer(args.quiet),
                         gradients=args.gradients, jobs=args.jobs, contained=True)
    return [row.to_json() for row in results]


def run(args) -> int:
    path = baseline.BASELINE_PATH if args.path is None else args.path
    if args.update:
        target = output_file(path, "--path")
        try:
            previous = baseline.load(target) if target.exists() else None
        except baseline.BaselineError:
            previous = None  # a broken file is replaced, not merged
        rows = _measure(args)
        conversions = [row.to_json() for row in conversions_for_matrix(rows, progress_printer(args.quiet), contained=True)]
        kept = baseline.keep_unavailable(previous, rows)
        kept_conversions = baseline.keep_other_devices(previous, conversions)
        written = baseline.save(baseline.record(rows, conversions, kept, kept_conversions), target)
        print(f"baseline written: {written}"
              + (f" (kept {len(kept)} entries of frameworks unavailable here)" if kept else "")
              + (f" (kept {len(kept_conversions)} conversion cells recorded on other device classes)"
                 if kept_conversions else ""))
        return 0
    try:
        recorded = baseline.load(path)  # a broken file is refused before the matrix runs
    except baseline.BaselineError as error:
        raise UsageError(str(error)) from None
    rows = _measure(args)
    result = baseline.check(recorded, rows, allow_new=args.allow_new)
    # The conversion paths whose source configuration the matrix covered (reports/conversions.py).
    conversions = [row.to_json() for row in conversions_for_matrix(rows, progress_printer(args.quiet), contained=True)]
    covered = {(row["framework"], row["config"]) for row in rows if "unavailable" not in row and row.get("config")}
    converted = baseline.check_conversions(recorded, conversions, covered, allow_new=args.allow_new)
    result.failures += converted.failures
    result.notes += converted.notes
    result.not_checked += converted.not_checked
    result.notes.insert(0, f"{converted.compared} conversion-path cell(s) compared")
    print(result.describe())
    return 0 if result.passed else 1
