"""The committed baseline: what each framework configuration computed when it was last recorded,
so CI notices a framework that changes its formula, or drifts numerically, after an upgrade.

``gru-equiv baseline --update`` records the current run into ``reports/baseline.json``;
``gru-equiv baseline --check`` (and ``tests/test_baseline.py``) compare the current run with it:

- a configuration whose matched convention changed fails, naming the old and the new formula;
- a matched error that grew beyond ``ERROR_GROWTH_FACTOR`` times its baseline fails (baselines
  below ``ROUNDING_FLOOR_EPS`` machine epsilons count as that floor: rounding noise is not drift);
- a different framework version with the same convention and errors in bounds passes, with a note.

Rows are the ``to_json()`` dicts that ``gru-equiv check --json`` prints.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from reference import Convention

BASELINE_PATH = Path(__file__).with_name("baseline.json")
# Matched errors are rounding noise (1e-7 in float32, 1e-16 in float64); a BLAS or compiler
# change can move them several-fold, a formula or precision change moves them by orders of magnitude.
ERROR_GROWTH_FACTOR = 10.0
ROUNDING_FLOOR_EPS = 16


def _key(row: dict) -> tuple[str, str, str]:
    return row["framework"], row.get("config") or "", row.get("dtype") or ""


def record(rows: list[dict]) -> dict:
    try:
        version = metadata.version("gru-equivalence")
    except metadata.PackageNotFoundError:
        version = "unknown"
    entries = []
    for row in rows:
        if "unavailable" in row or row.get("error"):
            continue
        matched = row["matched"]
        entries.append({
            "framework": row["framework"],
            "config": row["config"],
            "dtype": row["dtype"],
            "versions": row["versions"],
            "matched": matched,
            "matched_error": row["errors"][matched] if matched else None,
            "errors": row["errors"],
            "margin": row.get("margin"),
        })
    return {
        "tool_version": version,
        "recorded_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                    "numpy": np.__version__},
        "error_growth_factor": ERROR_GROWTH_FACTOR,
        "entries": sorted(entries, key=_key),
    }


def _formula(convention_id: str | None) -> str:
    if convention_id is None:
        return "no convention"
    convention = Convention.from_id(convention_id)
    return f"{convention.id} ({'; '.join(convention.equations[2:])})"


@dataclass
class BaselineCheck:
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def describe(self) -> str:
        lines = [f"baseline check: {'passed' if self.passed else 'FAILED'}"]
        lines += [f"  FAIL: {f}" for f in self.failures]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def check(baseline: dict, rows: list[dict]) -> BaselineCheck:
    result = BaselineCheck()
    recorded = {_key(e): e for e in baseline["entries"]}
    factor = baseline.get("error_growth_factor", ERROR_GROWTH_FACTOR)
    seen = set()
    for row in rows:
        if "unavailable" in row:
            result.notes.append(f"{row['framework']} is unavailable here ({row['unavailable']}); its baseline is not checked")
            seen.update(k for k in recorded if k[0] == row["framework"])
            continue
        key = _key(row)
        seen.add(key)
        label = f"{row['framework']} {row['config']} [{row['dtype']}]"
        if row.get("error"):
            result.failures.append(f"{label} failed to run: {row['error']}")
            continue
        old = recorded.get(key)
        if old is None:
            result.notes.append(f"{label} is not in the baseline (new configuration); run `gru-equiv baseline --update`")
            continue
        versions = ", ".join(f"{k} {old['versions'].get(k, '?')} -> {v}" for k, v in row["versions"].items()
                             if old["versions"].get(k) != v)
        if row["matched"] != old["matched"]:
            result.failures.append(
                f"{label}: the formula changed from {_formula(old['matched'])} to {_formula(row['matched'])}"
                + (f" ({versions})" if versions else " (same framework versions)")
            )
            continue
        if row["matched"] is not None:
            floor = ROUNDING_FLOOR_EPS * float(np.finfo(np.dtype(row["dtype"])).eps)
            allowed = factor * max(old["matched_error"], floor)
            current = row["errors"][row["matched"]]
            if current > allowed:
                result.failures.append(
                    f"{label}: the error against {row['matched']} grew from {old['matched_error']:.3g} to "
                    f"{current:.3g}, beyond {factor:g} x the baseline (allowed {allowed:.3g})"
                    + (f" ({versions})" if versions else "")
                )
                continue
        if versions:
            result.notes.append(f"{label}: {versions}; same convention, errors within bounds")
    for key in sorted(set(recorded) - seen):
        result.notes.append(f"{key[0]} {key[1]} [{key[2]}] is in the baseline but was not run")
    return result


def load(path: str | Path | None = None) -> dict:
    path = Path(path or BASELINE_PATH)
    if not path.exists():
        raise FileNotFoundError(f"no baseline at {path}; record one with `gru-equiv baseline --update`")
    return json.loads(path.read_text(encoding="utf-8"))


def save(baseline: dict, path: str | Path | None = None) -> Path:
    path = Path(path or BASELINE_PATH)
    path.write_text(json.dumps(baseline, indent=2) + "\n", encoding="utf-8")
    return path
