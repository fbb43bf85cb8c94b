"""A pytest plugin for this suite's xdist workers: end each worker as soon as its results are sent.

A worker holding TensorFlow, torch and JAX takes seconds of native teardown to exit, and xdist's
controller waits for it (up to its 10 s exit timeout, ``xdist/workermanage.py`` ``EXIT_TIMEOUT``)
before it prints the summary: measured here, the suite's last 10 s. ``workerfinished`` (results and
exit status) goes out in the worker's ``pytest_sessionfinish`` (``xdist/remote.py``), before any
``pytest_unconfigure``, so the worker's last hook may end it (``atexit`` hooks still run).
"""

from __future__ import annotations

import pytest

from adapters.isolation import exit_without_teardown


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    if hasattr(config, "workerinput"):  # an xdist worker; the controller and plain runs end normally
        exit_without_teardown(0)
