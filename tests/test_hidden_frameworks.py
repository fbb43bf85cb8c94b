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
    # One error line, after the progress lines of the worker that tried each framework.
    *progress, error = completed.stderr.splitlines()
    assert error.startswith("gru-equiv: the selection ran no configuration (torch: "), completed.stderr
    assert all(line.startswith("  running ") for line in progress), completed.stderr
    assert "Traceback" not in completed.stderr


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """A torch state_dict, written while torch is present (the commands then run with a framework hidden)."""
    torch = pytest.importorskip("torch", reason="torch is needed to write the torch file", exc_type=ImportError)
    folder = tmp_path_factory.mktemp("saved")
    torch.save(torch.nn.GRU(3, 4).state_dict(), folder / "model.pt")
    return folder


@pytest.mark.parametrize("hidden,args,says", [
    ("torch", ["inspect", "{folder}/model.pt"], "the torch format is unavailable: torch is not installed"),
    ("tensorflow", ["port", "{folder}/model.pt", "--to", "keras", "--out", "{folder}/out.keras"],
     "--to keras writes a file that is verified by loading it in keras, which cannot be imported here"),
])
def test_inspect_and_port_with_the_files_framework_hidden_are_one_line_exit_2(saved_models, hidden, args, says):
    completed = _gru_equiv(hidden, *(a.format(folder=saved_models) for a in args))
    assert completed.returncode == 2, completed.stdout + completed.stderr
    assert completed.stderr.startswith("gru-equiv: ") and says in completed.stderr, completed.stderr
    assert completed.stderr.count("\n") == 1 and "Traceback" not in completed.stderr
    assert not list(saved_models.glob("out.*")), "nothing is written when the port is refused"


def test_convert_with_both_hidden_lists_their_paths_unavailable_with_the_reason():
    completed = _gru_equiv("torch,tensorflow", "convert", "--paths", "torch-onnx-script", "keras-tf2onnx", "--json")
    assert completed.returncode == 0, completed.stderr
    rows = {row["path"]: row for row in json.loads(completed.stdout)}
    assert rows["torch-onnx-script"]["verdict"] == "unavailable" and "torch" in rows["torch-onnx-script"]["detail"]
    assert rows["keras-tf2onnx"]["verdict"] == "unavailable" and "tensorflow" in rows["keras-tf2onnx"]["detail"]
    assert "Traceback" not in completed.stderr
