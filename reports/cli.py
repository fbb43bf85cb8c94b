"""``gru-equiv``: the command-line entry point.

    gru-equiv check [--json] [--frameworks torch keras] [--config NAME] [--dtypes float32 float64] [--seed N]
    gru-equiv identify --framework NAME [--config NAME ...] [--dtypes ...] [--json]
    gru-equiv report [--out DIR] [--frameworks ...] [--dtypes ...] [--seed N]
    gru-equiv baseline (--update | --check) [--path FILE]
    gru-equiv list
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

import adapters
from reference import Convention

from .matrix import DTYPES, Case, ConfigResult, UnavailableFramework, run_matrix


def _format_error(value: float | None) -> str:
    return "-" if value is None else f"{value:.2e}"


def render_table(rows: list[ConfigResult | UnavailableFramework]) -> str:
    header = ("framework configuration", "dtype", "documentation claims", "matched", "error of match", "nearest other convention", "margin")
    lines = []
    for row in rows:
        if isinstance(row, UnavailableFramework):
            lines.append((row.framework, "-", "-", "unavailable", "-", row.reason, "-"))
            continue
        if row.error:
            lines.append((row.config.label, row.dtype.name, row.claimed.id, "ERROR", "-", row.error, "-"))
            continue
        matched = row.matched
        best, best_diff = row.ranked()[0]
        other, other_diff = row.nearest_other
        identification = row.identification
        if matched:
            verdict = matched.id
        elif identification.ambiguous:
            verdict = "ambiguous: " + " / ".join(c.id for c in identification.candidates)
        elif identification.diagnosis:
            verdict = f"none; diagnosis: {identification.diagnosis[0].name}"
        else:
            verdict = f"none (closest {best.id})"
        if matched and matched != row.claimed:
            verdict += "  <- differs from the documentation"
        lines.append((
            row.config.label, row.dtype.name, row.claimed.id, verdict,
            _format_error(best_diff.max_abs), f"{_format_error(other_diff.max_abs)} ({other.id})",
            f"{identification.margin:.3g}x",
        ))
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    return "\n".join(out)


def _parse_dtypes(names: list[str]) -> tuple[np.dtype, ...]:
    valid = {d.name: d for d in DTYPES}
    for name in names:
        if name not in valid:
            raise SystemExit(f"gru-equiv: unknown dtype {name!r}; valid: {', '.join(valid)}")
    return tuple(valid[n] for n in names)


def _command_check(args) -> int:
    for name in args.frameworks or []:
        if name not in adapters.REGISTRY:
            raise SystemExit(f"gru-equiv: unknown framework {name!r}; valid: {', '.join(adapters.REGISTRY)}")
    progress = None if args.json or args.quiet else (lambda label: print(f"  running {label}", file=sys.stderr))
    try:
        rows = run_matrix(args.frameworks, _parse_dtypes(args.dtypes), Case(seed=args.seed), args.config, progress)
    except ValueError as error:
        raise SystemExit(f"gru-equiv: {error}") from None
    if args.json:
        json.dump([row.to_json() for row in rows], sys.stdout, indent=2)
        print()
    else:
        print(render_table(rows))
        print()
        print("Conventions:")
        for convention in Convention.all():
            print(f"  {convention.id}:")
            for equation in convention.equations:
                print(f"      {equation}")
    failed = [r for r in rows if isinstance(r, ConfigResult) and (r.error or r.matched != r.claimed)]
    return 1 if failed and args.strict else 0


def _command_identify(args) -> int:
    if args.framework not in adapters.REGISTRY:
        raise SystemExit(f"gru-equiv: unknown framework {args.framework!r}; valid: {', '.join(adapters.REGISTRY)}")
    try:
        rows = run_matrix([args.framework], _parse_dtypes(args.dtypes), Case(seed=args.seed), args.config)
    except ValueError as error:
        raise SystemExit(f"gru-equiv: {error}") from None
    if args.json:
        payload = []
        for row in rows:
            entry = row.to_json()
            if isinstance(row, ConfigResult) and row.identification:
                entry["identification"] = row.identification.to_json()
            payload.append(entry)
        json.dump(payload, sys.stdout, indent=2)
        print()
        return 0
    for row in rows:
        if isinstance(row, UnavailableFramework):
            print(f"{row.framework}: unavailable ({row.reason})")
            continue
        print(f"== {row.config.label} [{row.dtype.name}] (documentation claims {row.claimed.id})")
        print(row.error if row.error else row.identification.describe())
        print()
    return 0


def _command_report(args) -> int:
    from .html import write_report

    for name in args.frameworks or []:
        if name not in adapters.REGISTRY:
            raise SystemExit(f"gru-equiv: unknown framework {name!r}; valid: {', '.join(adapters.REGISTRY)}")
    progress = None if args.quiet else (lambda label: print(f"  running {label}", file=sys.stderr))
    rows = run_matrix(args.frameworks, _parse_dtypes(args.dtypes), Case(seed=args.seed), None, progress)
    html_path, json_path = write_report(rows, args.out)
    print(render_table(rows))
    print()
    print(f"report written: {html_path.resolve()}\n          data: {json_path.resolve()}")
    return 0


def _command_baseline(args) -> int:
    from . import baseline

    progress = None if args.quiet else (lambda label: print(f"  running {label}", file=sys.stderr))
    rows = [row.to_json() for row in run_matrix(None, DTYPES, Case(seed=0), None, progress)]
    if args.update:
        path = baseline.save(baseline.record(rows), args.path)
        print(f"baseline written: {path}")
        return 0
    try:
        recorded = baseline.load(args.path)
    except FileNotFoundError as error:
        raise SystemExit(f"gru-equiv: {error}") from None
    result = baseline.check(recorded, rows)
    print(result.describe())
    return 0 if result.passed else 1


def _command_list(args) -> int:
    for name, adapter in adapters.status().items():
        if isinstance(adapter, adapters.AdapterUnavailable):
            print(f"{name}: unavailable ({adapter.reason})")
            continue
        versions = ", ".join(f"{k} {v}" for k, v in adapter.versions().items())
        print(f"{name} ({versions}):")
        for config in adapter.configurations():
            print(f"  {config.name!r:55} claims {config.claimed.id}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gru-equiv", description="Which GRU formula does each framework compute?")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="measure every framework configuration against the four conventions")
    check.add_argument("--json", action="store_true", help="print the results as JSON")
    check.add_argument("--frameworks", nargs="+", metavar="NAME", help=f"subset of: {', '.join(adapters.REGISTRY)}")
    check.add_argument("--config", nargs="+", metavar="NAME", help="only these configurations (see `gru-equiv list`)")
    check.add_argument("--dtypes", nargs="+", default=[d.name for d in DTYPES], metavar="DTYPE")
    check.add_argument("--seed", type=int, default=0, help="seed of the probe parameters and inputs")
    check.add_argument("--strict", action="store_true", help="exit 1 when a configuration does not match its documentation")
    check.add_argument("--quiet", action="store_true", help="no progress lines")
    check.set_defaults(run=_command_check)
    ident = commands.add_parser("identify", help="identify the formula of each configuration of one framework")
    ident.add_argument("--framework", required=True, metavar="NAME", help=f"one of: {', '.join(adapters.REGISTRY)}")
    ident.add_argument("--config", nargs="+", metavar="NAME", help="only these configurations (see `gru-equiv list`)")
    ident.add_argument("--dtypes", nargs="+", default=[d.name for d in DTYPES], metavar="DTYPE")
    ident.add_argument("--seed", type=int, default=0)
    ident.add_argument("--json", action="store_true")
    ident.set_defaults(run=_command_identify)
    report = commands.add_parser("report", help="write the HTML and JSON difference report")
    report.add_argument("--out", default="gru-report", help="output folder (default: gru-report)")
    report.add_argument("--frameworks", nargs="+", metavar="NAME")
    report.add_argument("--dtypes", nargs="+", default=[d.name for d in DTYPES], metavar="DTYPE")
    report.add_argument("--seed", type=int, default=0)
    report.add_argument("--quiet", action="store_true")
    report.set_defaults(run=_command_report)
    base = commands.add_parser("baseline", help="record or check the committed baseline (reports/baseline.json)")
    action = base.add_mutually_exclusive_group(required=True)
    action.add_argument("--update", action="store_true", help="record the current run as the baseline")
    action.add_argument("--check", action="store_true", help="compare the current run with the baseline; exit 1 on a change")
    base.add_argument("--path", default=None, help="baseline file (default: reports/baseline.json)")
    base.add_argument("--quiet", action="store_true")
    base.set_defaults(run=_command_baseline)
    listing = commands.add_parser("list", help="list adapters and their configurations")
    listing.set_defaults(run=_command_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
