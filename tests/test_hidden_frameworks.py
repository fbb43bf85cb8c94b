"""``gru-equiv`` with a framework missing: it says which and why, runs the rest, and never calls a
missing framework's rows passed. Frameworks are hidden by ``tests/hide_frameworks/sitecustomize.py``
(on ``PYTHONPATH``, it makes their import fail as if they were not installed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HIDER = ROOT / "tests" / "hide_frameworks"


def _gru_equiv(hidden: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HIDER), str(ROOT)]), "GRU_EQUIV_HIDE": hidden}
    return subprocess.run([sys.executable, "-m", "reports.cli", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600)


def test_the_hider_really_hides():
    env = {**os.environ, "PYTHONPATH": str(HIDER), "GRU_EQUIV_HIDE": "json"}
    completed = subprocess.run([sys.executable, "-c", "import json"], capture_output=True, text=True, env=env)
    assert completed.returncode != 0 and "hidden by GRU_EQUIV_HIDE" in completed.stderr, completed.stderr


@pytest.mark.parametrize("hidden,present,config", [
    ("torch", "keras", "GRU(reset_after=False)"),
    ("tensorflow", "torch", "nn.GRUCell"),
])
def test_check_reports_the_hidden_framework_unavailable_and_runs_the_other(hidden, present, config):
    gone = "torch" if hidden == "torch" else "keras"
    completed = _gru_equiv(hidden, "check", "--frameworks", gone, present, "--config", config, "--dtypes", "float64",
                           "--json")
    assert completed.returncode == 0, completed.stderr
    rows = json.loads(completed.stdout)
    (missing,) = [r for r in rows if r["framework"] == gone]
    assert "unavailable" in missing and hidden in missing["unavailable"], missing
    (row,) = [r for r in rows if r["framework"] == present]
    assert row["matched"] == row["claimed"] and row["error"] is None, row
    assert "Traceback" not in completed.stderr


def test_with_both_hidden_list_works_and_an_empty_selection_is_an_error():
    listing = _gru_equiv("torch,tensorflow", "list")
    assert listing.returncode == 0, listing.stderr
    assert "torch: unavailable" in listing.stdout and "keras: unavailable" in listing.stdout, listing.stdout
    completed = _gru_equiv("torch,tensorflow", "check", "--frameworks", "torch", "keras")
    assert completed.returncode == 2, completed.stdout + completed.stderr
    assert completed.stderr.startswith("gru-equiv: the selection ran no configuration (torch: ")
    assert completed.stderr.count("\n") == 1 and "Traceback" not in completed.stderr
