"""The committed baseline: what each framework configuration computed when it was last recorded,
so CI notices a framework that changes its formula, or drifts numerically, after an upgrade.

``gru-equiv baseline --update`` records the current run into ``reports/baseline.json``;
``gru-equiv baseline --check`` (and ``tests/test_baseline.py``) compare the current run with it:

- a configuration whose matched convention changed fails, naming the old and the new formula;
- a matched error that grew beyond ``ERROR_GROWTH_FACTOR`` times its baseline fails (baselines
  below ``DRIFT_FLOOR[dtype]`` count as that floor: rounding noise is not drift);
- a different framework version with the same convention and errors in bounds passes, with a note;
- a row that failed to run (a contained crash) is recorded as such: it passes while it still fails,
  and fails when it starts to run or another row starts to fail;
- an entry that no longer corresponds to any configuration that ran (its framework available) fails,
  and so does a configuration that ran without an entry, unless ``allow_new``;
- a baseline that covers nothing that ran fails: it never prints "passed" for zero comparisons;
- conversion cells are kept per device class (``adapters.base.device_class``: OpenVINO's default precision
  is bf16 on a CPU with native bf16, f32 elsewhere): a cell is compared with the entry of its own class; one
  recorded only on another class is listed as not checked, and ``--update`` keeps the other classes' entries.

``load`` refuses, before any matrix runs, a file that is missing, a directory, not UTF-8, not
JSON (truncated), holds NaN or Infinity, or does not match ``baseline.schema.json`` (no entries,
a missing key, a negative error, a duplicate entry): ``BaselineError`` names the file and the problem.

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

from adapters.base import device_class
from reference import Convention

BASELINE_PATH = Path(__file__).with_name("baseline.json")
SCHEMA_PATH = Path(__file__).with_name("baseline.schema.json")
# Matched errors are rounding noise (1e-7 in float32, 1e-16 in float64); a BLAS or compiler
# change can move them several-fold, a formula or precision change moves them by orders of magnitude.
ERROR_GROWTH_FACTOR = 10.0
# The smallest baseline error the growth factor is applied to, per dtype: 16 machine epsilons *of that
# dtype*. A matched error is the largest |difference| over outputs of magnitude <= 1 after a 7-step
# recurrence; each step adds a few rounding errors of the computed dtype, so a correct row lands at
# 1-10 eps and can move between those when only the summation order changes (another BLAS, another
# CPU). Below 16 eps a recorded error says nothing about drift, so it is raised to this floor:
#   float32: 16 * 2**-23 = 1.9e-6, so growth is tolerated up to 10 x max(baseline, 1.9e-6) >= 1.9e-5;
#   float64: 16 * 2**-52 = 3.6e-15, so up to 10 x max(baseline, 3.6e-15) >= 3.6e-14.
# A float64 row computed in float32 (1e-7) or a formula change (1e-1) is far beyond either.
DRIFT_FLOOR = {"float32": 16 * float(np.finfo(np.float32).eps), "float64": 16 * float(np.finfo(np.float64).eps)}


class BaselineError(ValueError):
    """The baseline file cannot be used; the message names the file and the problem."""


def _key(row: dict) -> tuple[str, str, str]:
    return row["framework"], row.get("config") or "", row.get("dtype") or ""


def record(rows: list[dict], conversions: list[dict] | None = None, kept: list[dict] | None = None,
           kept_conversions: list[dict] | None = None) -> dict:
    """The baseline of ``rows`` (``check --json`` dicts) and, when given, of the conversion-path cells
    (``ConversionResult.to_json()`` dicts; see ``record_conversions``), plus the entries ``keep_unavailable``
    and ``keep_other_devices`` kept from the previous baseline."""
    try:
        version = metadata.version("gru-equivalence")
    except metadata.PackageNotFoundError:
        version = "unknown"
    entries = []
    for row in rows:
        if "unavailable" in row:
            continue
        matched = row.get("matched")
        entry = {
            "framework": row["framework"],
            "config": row["config"],
            "dtype": row["dtype"],
            "versions": row["versions"],
            "matched": matched,
            "matched_error": row["errors"][matched] if matched else None,
            "errors": row.get("errors") or {},
            "margin": row.get("margin"),
        }
        if row.get("error"):
            entry["error"] = row["error"]
        if row.get("gradients"):  # recorded with --gradients: the verdict and which groups differ
            gradients = row["gradients"]
            entry["gradients"] = {"passed": gradients["passed"], "failing": gradients["failing"],
                                  "verdict": gradients["verdict"]}
        entries.append(entry)
    return {
        "tool_version": version,
        "recorded_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                    "numpy": np.__version__},
        "error_growth_factor": ERROR_GROWTH_FACTOR,
        "entries": sorted(entries + list(kept or []), key=_key),
        **({"conversions": sorted(record_conversions(conversions) + list(kept_conversions or []), key=_conversion_key)}
           if conversions is not None else {}),
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
    compared: int = 0
    not_checked: list[str] = field(default_factory=list)  # unavailable frameworks: never counted as passed
    gradients_not_checked: int = 0  # recorded gradient verdicts this run did not compare (no --gradients)

    @property
    def passed(self) -> bool:
        return not self.failures

    def describe(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        lines = [f"baseline check: {verdict} ({self.compared} row(s) compared)"]
        if self.not_checked:
            lines.append(f"  NOT CHECKED here (unavailable, so neither passed nor failed): {'; '.join(self.not_checked)}")
        lines += [f"  FAIL: {f}" for f in self.failures]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _gradient_change(old: dict, row: dict) -> str | None:
    """What changed in the gradient verdict, when both the record and this run compared gradients."""
    before, now = old.get("gradients"), row.get("gradients")
    if not before or not now:
        return None
    if before["passed"] == now["passed"] and sorted(before["failing"]) == sorted(now["failing"]):
        return None
    return f"the gradient verdict changed from '{before['verdict']}' to '{now['verdict']}'"


def keep_unavailable(previous: dict | None, rows: list[dict]) -> list[dict]:
    """The entries of ``previous`` whose framework is unavailable in ``rows`` (a GPU's rows, recorded on a
    machine that has one): ``baseline --update`` keeps them instead of dropping what it cannot measure."""
    if not previous:
        return []
    unavailable = {row["framework"] for row in rows if "unavailable" in row}
    return [entry for entry in previous.get("entries", []) if entry["framework"] in unavailable]


def _failed_to_run(error: str) -> str:
    """The stable part of a run failure (its first line: a crash's signal, not its log)."""
    return error.splitlines()[0] if error else ""


def check(baseline: dict, rows: list[dict], allow_new: bool = False) -> BaselineCheck:
    result = BaselineCheck()
    recorded = {_key(e): e for e in baseline["entries"]}
    factor = baseline.get("error_growth_factor", ERROR_GROWTH_FACTOR)
    ran_frameworks = {row["framework"] for row in rows if "unavailable" not in row}
    unavailable = {row["framework"] for row in rows if "unavailable" in row}
    seen = set()
    compared = 0
    for row in rows:
        if "unavailable" in row:
            result.not_checked.append(f"{row['framework']} ({row['unavailable']})")
            result.notes.append(f"{row['framework']} is unavailable here ({row['unavailable']}); its baseline is not checked")
            continue
        key = _key(row)
        seen.add(key)
        label = f"{row['framework']} {row['config']} [{row['dtype']}]"
        old = recorded.get(key)
        if old is None:
            message = f"{label} is not in the baseline (new configuration); run `gru-equiv baseline --update`"
            (result.notes if allow_new else result.failures).append(
                message if allow_new else message + " (or pass --allow-new)")
            continue
        compared += 1
        if row.get("error") or old.get("error"):
            if not old.get("error"):
                result.failures.append(f"{label} failed to run: {row['error']}")
            elif not row.get("error"):
                result.failures.append(
                    f"{label} runs now (matched {row['matched'] or 'no convention'}); the baseline recorded that it "
                    f"failed to run: {_failed_to_run(old['error'])}; run `gru-equiv baseline --update`")
            else:
                result.notes.append(f"{label} still fails to run, as recorded: {_failed_to_run(row['error'])}")
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
            floor = DRIFT_FLOOR[row["dtype"]]
            allowed = factor * max(old["matched_error"], floor)
            current = row["errors"][row["matched"]]
            if current > allowed:
                result.failures.append(
                    f"{label}: the error against {row['matched']} grew from {old['matched_error']:.3g} to "
                    f"{current:.3g}, beyond {factor:g} x the baseline (allowed {allowed:.3g})"
                    + (f" ({versions})" if versions else "")
                )
                continue
        gradient_change = _gradient_change(old, row)
        if gradient_change:
            result.failures.append(f"{label}: {gradient_change}" + (f" ({versions})" if versions else ""))
            continue
        if "gradients" in old and "gradients" not in row:
            result.gradients_not_checked += 1
        if versions:
            result.notes.append(f"{label}: {versions}; same convention, errors within bounds")
    for key in sorted(set(recorded) - seen):
        label = f"{key[0]} {key[1]} [{key[2]}]"
        if key[0] in ran_frameworks:
            result.failures.append(
                f"{label} is in the baseline but no such configuration ran: renamed or removed? "
                f"run `gru-equiv baseline --update`")
        elif key[0] not in unavailable:
            result.notes.append(f"{label} is in the baseline but its framework was not selected")
    result.compared = compared
    if result.gradients_not_checked:
        result.notes.append(f"{result.gradients_not_checked} recorded gradient verdict(s) not checked: this run "
                            f"compared no gradients (pass --gradients)")
    if compared == 0:
        result.failures.append(
            f"the baseline covers nothing that ran: none of its {len(recorded)} entries matches a configuration of "
            f"this run ({len(rows)} row(s)); nothing was compared")
    return result


def _reject_constant(name: str):
    raise ValueError(f"the non-finite number {name} (JSON has no NaN or Infinity; errors are finite and >= 0)")


def load(path: str | Path | None = None) -> dict:
    """The baseline at ``path``, validated; ``BaselineError`` names the file and what is wrong."""
    from jsonschema import Draft202012Validator

    path = Path(BASELINE_PATH if path is None else path)
    where = f"baseline {path}"
    if str(path).strip() in ("", "."):
        raise BaselineError("--path is empty; give the baseline file, e.g. reports/baseline.json")
    if path.is_dir():
        raise BaselineError(f"{where} is a directory; give the baseline file, e.g. {path / 'baseline.json'}")
    if not path.exists():
        raise BaselineError(f"no {where}; record one with `gru-equiv baseline --update`")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as error:
        raise BaselineError(f"{where} cannot be read ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise BaselineError(f"{where} is not UTF-8 text (byte {error.start}: {error.reason}); "
                            f"re-record it with `gru-equiv baseline --update`") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise BaselineError(f"{where} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}); "
                            f"truncated? re-record it with `gru-equiv baseline --update`") from None
    except ValueError as error:
        raise BaselineError(f"{where} holds {error}") from None
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    problems = sorted(Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.absolute_path))
    if problems:
        first = problems[0]
        at = "/".join(str(p) for p in first.absolute_path) or "the top level"
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise BaselineError(f"{where} does not match {SCHEMA_PATH.name} at {at}: {first.message}{more}")
    keys = [_key(entry) for entry in data["entries"]]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        framework, config, dtype = duplicates[0]
        raise BaselineError(f"{where} has more than one entry for {framework} {config} [{dtype}]")
    for entry in data["entries"]:
        if entry["matched"] is not None and entry["matched_error"] != entry["errors"].get(entry["matched"]):
            raise BaselineError(f"{where}: {entry['framework']} {entry['config']} [{entry['dtype']}] has matched_error "
                                f"{entry['matched_error']} but errors[{entry['matched']!r}] is "
                                f"{entry['errors'].get(entry['matched'])}")
    return data


def save(baseline: dict, path: str | Path | None = None) -> Path:
    path = Path(BASELINE_PATH if path is None else path)
    path.write_text(json.dumps(baseline, indent=2) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------- conversion paths (reports/conversions.py)


def _conversion_key(row: dict) -> tuple[str, str, str, str]:
    return row["path"], row["config"], row["dtype"], device_class(row["versions"])


def _cell(key: tuple[str, str, str, str]) -> tuple[str, str, str]:
    return key[:3]


def keep_other_devices(previous: dict | None, conversions: list[dict]) -> list[dict]:
    """The conversion entries of ``previous`` recorded on another device class than the one each cell ran on
    here: ``baseline --update`` on a CPU without bf16 keeps what a bf16 CPU recorded, and the reverse."""
    if not previous:
        return []
    ran = {_conversion_key(row) for row in conversions if row["verdict"] != "unavailable"}
    cells = {_cell(key) for key in ran}
    return [entry for entry in previous.get("conversions", [])
            if _cell(_conversion_key(entry)) in cells and _conversion_key(entry) not in ran]


def _first_line(text: str | None) -> str:
    return (text or "").splitlines()[0][:300] if text else ""


def record_conversions(rows: list[dict]) -> list[dict]:
    """One entry per conversion cell that ran (unavailable paths are not recorded): the tool's versions,
    the verdict, the convention the result computes, its error against the source, the names of the
    diagnosed mistakes and a one-line account of what the tool emitted."""
    entries = []
    for row in rows:
        if row["verdict"] == "unavailable":
            continue
        entries.append({
            "path": row["path"], "source": row["source"], "config": row["config"], "dtype": row["dtype"],
            "tool": row["tool"], "versions": row["versions"], "verdict": row["verdict"], "matched": row["matched"],
            "error_vs_source": row["error_vs_source"],
            "mistakes": [name for diagnosis in row.get("diagnosis", [])[:1] for name in diagnosis["mistakes"]],
            "emitted": row.get("emitted_summary") or "",
            **({"detail": _first_line(row["detail"])} if row["verdict"] in ("failed", "refused") else {}),
        })
    return sorted(entries, key=_conversion_key)


def check_conversions(baseline: dict, rows: list[dict], covered: set[tuple[str, str]] | None = None,
                      allow_new: bool = False) -> BaselineCheck:
    """Compare conversion cells (``ConversionResult.to_json()`` dicts) with the baseline's ``conversions``.

    Fails, naming the path, the tool, its versions and what changed: a verdict that changed (exact ->
    failed, exact -> mistake named, ...), a result that now computes another convention, an error against
    the source that grew beyond ``ERROR_GROWTH_FACTOR`` x max(recorded, ``DRIFT_FLOOR``), a cell that ran
    without an entry (unless ``allow_new``), and an entry of an available path whose source configuration
    was covered (``covered``: ``(source framework, configuration)`` pairs; None: all) but did not run.
    A changed account of what the tool emitted, or new versions with the same verdict, are notes.
    """
    result = BaselineCheck()
    recorded = {_conversion_key(entry): entry for entry in baseline.get("conversions", [])}
    factor = baseline.get("error_growth_factor", ERROR_GROWTH_FACTOR)
    unavailable = {row["path"] for row in rows if row["verdict"] == "unavailable"}
    ran = [row for row in rows if row["verdict"] != "unavailable"]
    for row in rows:
        if row["verdict"] == "unavailable":
            result.not_checked.append(f"conversion path {row['path']} ({row['detail']})")
    if ran and "conversions" not in baseline:
        result.failures.append("the baseline records no conversion paths; run `gru-equiv baseline --update`")
        return result
    seen = set()
    for row in ran:
        key = _conversion_key(row)
        seen.add(key)
        label = f"conversion path {row['path']} ({row['title']}) [{row['config']}, {row['dtype']}]"
        old = recorded.get(key)
        elsewhere = sorted(other[3] for other in recorded if _cell(other) == _cell(key) and other != key)
        if old is None and elsewhere:
            result.not_checked.append(f"{label}: recorded on {', '.join(elsewhere)} only, measured here on {key[3]} "
                                      f"({row['versions'].get('device', 'cpu')}); `gru-equiv baseline --update` on "
                                      "this machine records it beside them")
            continue
        if old is None:
            message = f"{label} is not in the baseline (new path or configuration); run `gru-equiv baseline --update`"
            (result.notes if allow_new else result.failures).append(message if allow_new else message + " (or pass --allow-new)")
            continue
        result.compared += 1
        changed = ", ".join(f"{k} {old['versions'].get(k, '?')} -> {v}" for k, v in row["versions"].items()
                            if old["versions"].get(k) != v)
        versions = changed or "same versions: " + ", ".join(f"{k} {v}" for k, v in row["versions"].items())
        if row["verdict"] != old["verdict"]:
            result.failures.append(f"{label}: the verdict changed from {old['verdict']!r} to {row['verdict']!r} "
                                   f"({versions}): {_first_line(row['detail'])}")
            continue
        if row["matched"] != old["matched"]:
            result.failures.append(f"{label}: the converted GRU now computes {_formula(row['matched'])}, it computed "
                                   f"{_formula(old['matched'])} ({versions})")
            continue
        mistakes = [name for diagnosis in row.get("diagnosis", [])[:1] for name in diagnosis["mistakes"]]
        if mistakes != old.get("mistakes", []):
            result.failures.append(f"{label}: the diagnosed mistakes changed from {old.get('mistakes')} to {mistakes} "
                                   f"({versions})")
            continue
        current, before = row["error_vs_source"], old["error_vs_source"]
        if current is not None and before is not None and row["verdict"] in ("exact", "precision only"):
            allowed = factor * max(before, DRIFT_FLOOR[row["dtype"]])
            if current > allowed:
                result.failures.append(f"{label}: the error against the source grew from {before:.3g} to {current:.3g}, "
                                       f"beyond {factor:g} x the baseline (allowed {allowed:.3g}) ({versions})")
                continue
        if row["verdict"] == "failed" and _first_line(row["detail"]) != old.get("detail"):
            result.notes.append(f"{label} still fails, with another message: {_first_line(row['detail'])}")
        if (row.get("emitted_summary") or "") != old.get("emitted", ""):
            result.notes.append(f"{label}: the tool now emits {row.get('emitted_summary')!r} (recorded: "
                                f"{old.get('emitted')!r}); same verdict")
        if changed:
            result.notes.append(f"{label}: {changed}; same verdict ({row['verdict']})")
    ran_paths = {row["path"] for row in ran}
    ran_cells = {_cell(key) for key in seen}
    for key in sorted(set(recorded) - seen):
        entry = recorded[key]
        label = f"conversion path {key[0]} [{key[1]}, {key[2]}]"
        if _cell(key) in ran_cells:
            continue  # recorded on another device class as well; this one ran on its own class here
        selected = covered is None or (entry.get("source"), key[1]) in covered
        if key[0] in unavailable:
            continue
        if selected and (key[0] in ran_paths or covered is not None):
            result.failures.append(f"{label} is in the baseline but did not run: renamed or removed? "
                                   f"run `gru-equiv baseline --update`")
        else:
            result.notes.append(f"{label} is in the baseline but its source configuration was not selected")
    return result
