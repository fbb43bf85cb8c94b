"""``gru-equiv report``: the HTML page, its JSON and Markdown, and the table on stdout."""

from __future__ import annotations

from ..ecosystem import build_ecosystem, render_ecosystem_text
from ..selection import output_directory, run_selection
from ..table import render_table
from . import add_selection_arguments, progress_printer


def add_parser(commands) -> None:
    parser = commands.add_parser("report", help="write the HTML, JSON and Markdown difference report")
    parser.add_argument("--out", default="gru-report", help="output folder (default: gru-report)")
    add_selection_arguments(parser, configs=False)
    parser.add_argument("--quiet", action="store_true")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ..html import write_report

    out = output_directory(args.out, "--out")  # before the matrix: a bad place costs no work
    rows = run_selection(args.frameworks, None, args.dtypes, args.seed, progress_printer(args.quiet))
    html_path, json_path = write_report(rows, out)
    print(render_ecosystem_text(build_ecosystem(rows)))
    print()
    print(render_table(rows))
    print()
    print(f"report written: {html_path.resolve()}\n          data: {json_path.resolve()}\n"
          f"       summary: {(out / 'report.md').resolve()}")
    return 0
