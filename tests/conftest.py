"""Pins numerics and prints the framework versions in the pytest header."""

from __future__ import annotations

import platform

import numpy as np
import pytest

import adapters


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
