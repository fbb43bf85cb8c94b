"""``gru-equiv inspect PATH [--json] [--name NAME]``: the GRUs of a saved model file, confirmed numerically."""

from __future__ import annotations

import json
import sys

from ..selection import UsageError


def add_parser(commands) -> None:
    parser = commands.add_parser("inspect", help="find every GRU in a saved model file and confirm its formula")
    parser.add_argument("path", help=".pt/.pth/.bin, .safetensors, .keras, .h5/.weights.h5, .onnx or .npz")
    parser.add_argument("--name", help="only the GRU at this location (as listed)")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(run=run)


def run(args) -> int:
    from adapters.formats import FormatError

    from ..inspect import inspect_file

    try:
        result = inspect_file(args.path, args.name)
    except FormatError as error:
        raise UsageError(str(error)) from None
    if args.json:
        json.dump(result.to_json(), sys.stdout, indent=2)
        print()
    else:
        print(result.describe())
    return 0
