"""The CI guard cannot pass vacuously, and every output place is checked before any work.

A broken baseline file, a bad ``--out``/``--path``/``--gru-report`` are each one line naming the
file and the problem, exit status 2, and no matrix run (a spy on ``run_matrix`` proves it).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reports import baseline
from reports.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_matrix(monkeypatch):
    """Fails the test if any command gets as far as running the matrix."""
    import reports.commands.baseline as baseline_command
    import reports.selection as selection

    def refuse(*args, **kwargs):
        raise AssertionError("the matrix ran, but the bad argument should have stopped the command first")

    monkeypatch.setattr(baseline_command, "run_matrix", refuse)
    monkeypatch.setattr(selection, "run_matrix", refuse)


def _valid() -> dict:
    return baseline.load()


def _entry(data: dict) -> dict:
    return next(e for e in data["entries"] if not e.get("error"))


def _write(tmp_path, content) -> Path:
    path = tmp_path / "baseline.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def _tampered(change) -> dict:
    data = copy.deepcopy(_valid())
    change(data)
    return data


BROKEN_BASELINES = {
    "truncated": (lambda: json.dumps(_valid())[:500], "is not valid JSON (line 1"),
    "empty file": (lambda: "", "is not valid JSON"),
    "not UTF-8": (lambda: json.dumps(_valid()).encode("utf-16"), "is not UTF-8 text"),
    "not an object": (lambda: "[]", "does not match baseline.schema.json at the top level: [] is not of type 'object'"),
    "no entries": (lambda: _tampered(lambda d: d.update(entries=[])), "at entries: [] should be non-empty"),
    "missing key": (lambda: _tampered(lambda d: _entry(d).pop("matched")), "'matched' is a required property"),
    "negative error": (lambda: _tampered(lambda d: _entry(d)["errors"].update({"z_on_previous+reset_after": -1.0})),
                       "-1.0 is less than the minimum of 0"),
    "NaN error": (lambda: json.dumps(_tampered(lambda d: _entry(d).update(matched_error=float("nan")))),
                  "holds the non-finite number NaN"),
    "Infinity error": (lambda: json.dumps(_tampered(lambda d: _entry(d)["errors"].update(
        {"z_on_candidate+reset_after": float("inf")}))), "holds the non-finite number Infinity"),
    "unknown convention": (lambda: _tampered(lambda d: _entry(d).update(matched="z_on_both")), "'z_on_both' is not one of"),
    "bad dtype": (lambda: _tampered(lambda d: _entry(d).update(dtype="float16")), "'float16' is not one of"),
    "duplicate entry": (lambda: _tampered(lambda d: d["entries"].append(copy.deepcopy(_entry(d)))),
                        "has more than one entry for"),
    "inconsistent matched error": (lambda: _tampered(lambda d: _entry(d).update(matched_error=0.5)),
                                   "has matched_error 0.5 but errors["),
}


@pytest.mark.parametrize("problem", BROKEN_BASELINES)
def test_a_broken_baseline_is_refused_before_the_matrix_runs(problem, tmp_path, capsys, no_matrix):
    content, message = BROKEN_BASELINES[problem]
    path = _write(tmp_path, content())
    with pytest.raises(SystemExit) as info:
        main(["baseline", "--check", "--path", str(path), "--quiet"])
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert err.startswith(f"gru-equiv: baseline {path}") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err, err


def test_a_directory_or_a_missing_file_is_refused(tmp_path, capsys, no_matrix):
    for path, message in ((tmp_path, "is a directory"), (tmp_path / "none.json", "no baseline")):
        with pytest.raises(SystemExit) as info:
            main(["baseline", "--check", "--path", str(path)])
        err = capsys.readouterr().err
        assert info.value.code == 2 and message in err and str(path) in err, err


def test_the_committed_baseline_is_valid_and_covers_every_framework_configuration():
    data = baseline.load()  # the schema, no duplicates, consistent errors
    frameworks = {e["framework"] for e in data["entries"]}
    assert {"torch", "keras"} <= frameworks, frameworks


def _run_rows(framework="torch"):
    data = _valid()
    return [{**e, "claimed": e["matched"]} for e in data["entries"] if e["framework"] == framework], data


def test_a_baseline_that_covers_nothing_never_passes():
    rows, data = _run_rows()
    renamed = [{**row, "config": row["config"] + " (renamed)"} for row in rows]
    result = baseline.check({**data, "entries": [e for e in data["entries"] if e["framework"] == "torch"]}, renamed,
                            allow_new=True)
    assert not result.passed
    assert any("the baseline covers nothing that ran" in f for f in result.failures), result.describe()
    assert any("is in the baseline but no such configuration ran" in f for f in result.failures), result.describe()
    assert "passed" not in result.describe().splitlines()[0]


def test_a_stale_entry_and_an_unrecorded_configuration_each_fail(tmp_path):
    rows, data = _run_rows()
    result = baseline.check(data, rows[1:])
    assert [f for f in result.failures if "no such configuration ran" in f and rows[0]["config"] in f], result.describe()
    extra = {**rows[0], "config": "nn.GRU(brand_new=True)"}
    result = baseline.check(data, rows + [extra])
    assert [f for f in result.failures if "nn.GRU(brand_new=True)" in f and "--allow-new" in f], result.describe()
    assert baseline.check(data, rows + [extra], allow_new=True).passed


def test_a_recorded_crash_passes_while_it_crashes_and_fails_when_it_changes():
    rows, data = _run_rows()
    crashed = {**rows[0], "error": "WorkerCrashed: killed by signal SIGSEGV (11)\nlog...", "matched": None}
    entry = {**{k: v for k, v in crashed.items() if k != "claimed"}, "matched_error": None}
    recorded = {**data, "entries": [entry] + [e for e in data["entries"] if _key(e) != _key(entry)]}
    assert baseline.check(recorded, [crashed] + rows[1:]).passed
    fixed = baseline.check(recorded, rows)
    assert [f for f in fixed.failures if "runs now" in f and "SIGSEGV" in f], fixed.describe()
    broke = baseline.check(data, [crashed] + rows[1:])
    assert [f for f in broke.failures if "failed to run: WorkerCrashed" in f], broke.describe()


def _key(entry):
    return entry["framework"], entry["config"], entry["dtype"]


# ----------------------------------------------------------------- output places


def _bad_places(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    places = {
        "a file": (str(a_file), "is a file, not a directory"),
        "under a file": (str(a_file / "sub"), "which is a file"),
        "empty": ("", "is empty"),
        "unwritable": ("/proc/gru-equiv-report", "cannot create it"),
    }
    return places


@pytest.mark.parametrize("place", ["a file", "under a file", "empty", "unwritable"])
def test_report_out_is_checked_before_any_work(place, tmp_path, capsys, no_matrix):
    value, message = _bad_places(tmp_path)[place]
    with pytest.raises(SystemExit) as info:
        main(["report", "--out", value, "--quiet"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and message in err and err.startswith("gru-equiv: --out"), err
    assert err.count("\n") == 1, err


@pytest.mark.parametrize("place", ["a directory", "under a file", "empty", "unwritable"])
def test_baseline_update_path_is_checked_before_any_work(place, tmp_path, capsys, no_matrix):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    value, message = {
        "a directory": (str(tmp_path), "is a directory"),
        "under a file": (str(a_file / "baseline.json"), "which is a file"),
        "empty": ("", "is empty"),
        "unwritable": ("/proc/gru-equiv/baseline.json", "cannot"),
    }[place]
    with pytest.raises(SystemExit) as info:
        main(["baseline", "--update", "--path", value, "--quiet"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and message in err and err.startswith("gru-equiv: --path"), err


def test_pytest_gru_report_to_a_bad_place_is_one_line_exit_2_and_the_summary_still_prints(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    test_file = tmp_path / "test_trivial.py"
    test_file.write_text("def test_one():\n    assert 1 + 1 == 2\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "reports.pytest_plugin", f"--gru-report={a_file}", str(test_file),
         "-p", "no:cacheprovider", "--rootdir", str(tmp_path), "-c", os.devnull],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )
    out = completed.stdout + completed.stderr
    assert completed.returncode == 2, out
    assert "1 passed" in out, out
    assert "gru-equiv: --gru-report" in out and "is a file, not a directory" in out, out
    assert "Traceback" not in out, out
    assert a_file.read_text() == "x"
