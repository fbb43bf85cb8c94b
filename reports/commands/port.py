"""``gru-equiv port PATH --to {torch,keras,onnx} --out PATH [--inputs FILE.npy] [--report DIR] [--name NAME]
[--dtype float32|float64] [--force] [--json]``."""

from __future__ import annotations

import json
import sys

from ..selection import UsageError, output_directory


def add_parser(commands) -> None:
    parser = commands.add_parser("port", help="write a file's GRU in another framework's format, verified by loading it back")
    parser.add_argument("path", help="the source model file (as for inspect)")
    parser.add_argument("--to", required=True, choices=("torch", "keras", "onnx"), help="the target framework")
    parser.add_argument("--out", required=True, help="the file to write (.safetensors/.pt, .keras, .onnx)")
    parser.add_argument("--inputs", help="a .npy of your inputs (batch, time, input_size) to verify on as well")
    parser.add_argument("--report", metavar="DIR", help="also write DIR/port.html")
    parser.add_argument("--name", help="the GRU to port when the file holds several (as `inspect` lists them)")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    parser.add_argument("--dtype", choices=("float32", "float64"),
                        help="write in this precision (default: the source's; onnxruntime runs float32 GRUs only)")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(run=run)


def run(args) -> int:
    from adapters.formats import FormatError

    from ..port import PortRefused, port_file, write_report

    report = output_directory(args.report, "--report") if args.report is not None else None
    try:
        result = port_file(args.path, args.to, args.out, inputs=args.inputs, force=args.force, name=args.name,
                           dtype=args.dtype)
    except (FormatError, PortRefused) as error:
        raise UsageError(str(error)) from None
    if args.json:
        json.dump(result.to_json(), sys.stdout, indent=2)
        print()
    else:
        print(result.describe())
    if report is not None:
        print(f"report: {write_report(result, report)}", file=sys.stderr)
    return 0 if result.passed else 1
