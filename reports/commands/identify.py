"""``gru-equiv identify``: the identification of each configuration of one framework, in words or JSON."""

from __future__ import annotations

import json
import sys

from ..matrix import ConfigResult, UnavailableFramework
from ..selection import run_selection
from . import add_selection_arguments


def add_parser(commands) -> None:
    import adapters

    parser = commands.add_parser("identify", help="identify the formula of each configuration of one framework")
    parser.add_argument("--framework", required=True, metavar="NAME", help=f"one of: {', '.join(adapters.REGISTRY)}")
    add_selection_arguments(parser, frameworks=False)
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(run=run)


def run(args) -> int:
    rows = run_selection([args.framework], args.config, args.dtypes, args.seed, contained=True)
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
