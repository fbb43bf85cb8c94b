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

import adapters

pytest_plugins = ["reports.pytest_plugin", "pytester"]


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


@pytest.fixture(scope="session")
def check_json():
    """One run of ``gru-equiv check --json`` over the whole matrix (in-process: the same code as the
    console script, whose installation ``test_cli`` checks separately, without a second framework import)."""
    from reports.cli import main

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["check", "--json"]) == 0
    return json.loads(stdout.getvalue())
