"""``gru-equiv report``: the HTML page, its JSON and Markdown, and the table on stdout."""

from __future__ import annotations

from ..ecosystem import build_ecosystem, render_ecosystem_text
from ..selection import output_directory, run_selection
from ..table import render_table
from . import add_jobs_argument, add_selection_arguments, progress_printer


def add_parser(commands) -> None:
    parser = commands.add_parser("report", help="write the HTML, JSON and Markdown difference report")
    parser.add_argument("--out", default="gru-report", help="output folder (default: gru-report)")
    add_selection_arguments(parser, configs=False)
    parser.add_argument("--gradients", action="store_true",
                        help="also compare every configuration's gradients with the reference backward pass (slower: "
                             "JAX compiles a gradient program per configuration)")
    parser.add_argument("--quiet", action="store_true")
    add_jobs_argument(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    from ..html import write_report

    out = output_directory(args.out, "--out")  # before the matrix: a bad place costs no work
    progress = progress_printer(args.quiet)
    # The conversion paths whose source configurations the matrix covers, one configuration per path, audited
    # in the contained lane's worker once its share of the matrix is measured, while the other lane finishes;
    # a converter's segfault is a failed cell, not the end of the report (reports.conversions, contained=True).
    from ..conversions import conversions_for_frameworks
    from ..matrix import Case

    conversions = []

    def audit_conversions():
        conversions.extend(conversions_for_frameworks(args.frameworks, progress, Case(seed=args.seed), contained=True))

    rows = run_selection(args.frameworks, None, args.dtypes, args.seed, progress,
                         gradients=args.gradients, jobs=args.jobs, alongside=audit_conversions, contained=True)
    html_path, json_path = write_report(rows, out, conversions=conversions)
    print(render_ecosystem_text(build_ecosystem(rows)))
    print()
    print(render_table(rows, gradients=args.gradients))
    print()
    print(f"report written: {html_path.resolve()}\n          data: {json_path.resolve()}\n"
          f"       summary: {(out / 'report.md').resolve()}")
    return 0
