"""Pins numerics and prints the framework versions in the pytest header."""

from __future__ import annotations

import contextlib
import io
import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from adapters import compilation_cache

compilation_cache.enable()  # as the CLI does, before any test imports JAX: compiled programs are reused across runs

import adapters  # noqa: E402

pytest_plugins = ["reports.pytest_plugin", "pytester", "tests.xdist_exit"]


def pytest_report_header(config):
    lines = [f"gru-equivalence: python {platform.python_version()}, numpy {np.__version__}"]
    for name, adapter in adapters.status().items():
        if isinstance(adapter, adapters.AdapterUnavailable):
            lines.append(f"  {name}: unavailable ({adapter.reason})")
        else:
            lines.append(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in adapter.versions().items()))
    return lines


@pytest.fixture(scope="session", autouse=True)
def _pinned_numerics():
    # Loading an adapter pins its framework's numerics (TF32 off); do it before any test runs.
    adapters.status()


def adapter_or_skip(name: str) -> adapters.Adapter:
    try:
        return adapters.get(name)
    except adapters.AdapterUnavailable as unavailable:
        pytest.skip(unavailable.reason)


def module_or_skip(name: str):
    """Import ``name`` for a test, or skip it saying why. Any ImportError skips (a framework that is
    absent, hidden, or broken on import), not only the ModuleNotFoundError of pytest's default."""
    return pytest.importorskip(name, reason=f"{name} is not installed or cannot be imported", exc_type=ImportError)


def run_console_script(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the installed ``gru-equiv`` the way a user does (a fresh process)."""
    executable = shutil.which("gru-equiv", path=str(Path(sys.executable).parent))
    command = [executable] if executable else [sys.executable, "-m", "reports.cli"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout)


# The xdist group of the tests that call the keras-torch, keras-jax and paddle workers: one pytest worker
# runs them all, so each of those framework processes is started (seconds of imports) once, not per worker.
ISOLATED_BACKENDS = "isolated-backends"

_MEASURED: dict = {}
_MATRIX_MEASURED: list = []


def _measure_the_matrix_in_lanes() -> None:
    """Fill the memo with the whole default matrix at once, measured as ``gru-equiv check`` measures it:
    in lanes (``reports.matrix.run_matrix``, ``default_jobs()``), the frameworks outside IN_PROCESS in a
    worker process while this one measures its own. A row the lanes could not give (a framework whose lane
    worker died) is measured here when a test asks for it."""
    from reports import matrix

    if _MATRIX_MEASURED:
        return
    _MATRIX_MEASURED.append(True)
    for row in matrix.run_matrix(None, matrix.DTYPES, matrix.DEFAULT_CASE, jobs=matrix.default_jobs()):
        if isinstance(row, matrix.ConfigResult):
            _MEASURED.setdefault((row.framework, row.config.name, row.dtype.name, row.case), row)


def measured(adapter: adapters.Adapter, config, dtype, case=None):
    """``reports.matrix.compare_configuration``, once per session for each registered adapter's
    configuration, dtype and probe: the framework templates and the ``check --json`` run share one
    measurement instead of running the matrix twice; the default probe's matrix is measured in lanes on
    first use. A configuration that failed is its row with ``error`` set, as ``check`` reports it. Fake
    adapters (not the registry's) are never cached."""
    from reports import matrix

    case = case or matrix.DEFAULT_CASE
    if adapters.status().get(adapter.name) is not adapter:
        return _ORIGINAL_COMPARE(adapter, config, dtype, case)
    key = (adapter.name, config.name, np.dtype(dtype).name, case)
    if key not in _MEASURED and case == matrix.DEFAULT_CASE:
        _measure_the_matrix_in_lanes()
    if key not in _MEASURED:
        _MEASURED[key] = _ORIGINAL_COMPARE(adapter, config, dtype, case)
    return _MEASURED[key]


def render_from_the_memo(patch: pytest.MonkeyPatch) -> None:
    """Make a gru-equiv command run in this process take its rows from ``measured``: every row is computed here
    (the commands' contained lanes would measure again in a worker process, which the memo does not reach)."""
    from reports import matrix

    patch.setattr(matrix, "compare_configuration", measured)
    patch.setattr(matrix, "_measure_contained", lambda frameworks, arguments, progress: matrix._measure_lane(
        frameworks, *arguments[:3], progress, arguments[3]))


def _original_compare():
    from reports import matrix

    return matrix.compare_configuration


_ORIGINAL_COMPARE = _original_compare()


@pytest.fixture(scope="session")
def check_json():
    """One run of ``gru-equiv check --json`` over the whole matrix (in-process: the same code as the
    console script, whose installation ``test_cli`` checks separately, without a second framework import),
    sharing its measurements with the framework templates (``measured``: the matrix measured in lanes once)."""
    from reports.cli import main

    _measure_the_matrix_in_lanes()
    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(stdout):
        render_from_the_memo(patch)
        # --jobs 1: this process renders every row from the memo (worker processes would measure again).
        assert main(["check", "--json", "--jobs", "1"]) == 0
    return json.loads(stdout.getvalue())
