"""pytest integration: ``pytest --gru-report=PATH`` writes the HTML/JSON report of the comparisons
that the test session made.

Tests hand their ``reports.matrix.ConfigResult`` to the ``gru_comparisons`` fixture; at the end
of the session the collected results (plus every unavailable framework) are written to PATH.
Enable it in another project with ``-p reports.pytest_plugin``.

PATH is checked when pytest starts (``reports.selection.output_directory``): a file, a path under
a file, an unwritable place or ``''`` is one line at the start and at the end of the session, the
tests still run and pytest still prints its summary, and the session exits with status 2.
"""

from __future__ import annotations

import pytest

import adapters

from .matrix import ConfigResult, UnavailableFramework
from .selection import UsageError, output_directory

_RESULTS = pytest.StashKey[list]()
_PATH_ERROR = pytest.StashKey[str]()
EXIT_BAD_REPORT_PATH = 2


def pytest_addoption(parser):
    parser.addoption("--gru-report", metavar="PATH", default=None,
                     help="write the HTML and JSON GRU difference report of this session's comparisons to PATH")


def pytest_configure(config):
    config.stash[_RESULTS] = []
    path = config.getoption("--gru-report")
    if path is not None:
        try:
            output_directory(path, "--gru-report")
        except UsageError as error:
            config.stash[_PATH_ERROR] = f"gru-equiv: {error}"


def pytest_report_header(config):
    return config.stash.get(_PATH_ERROR, None)


@pytest.fixture(scope="session")
def gru_comparisons(request) -> list[ConfigResult]:
    """Append each ConfigResult a test computes; ``--gru-report`` renders them at the end."""
    return request.config.stash[_RESULTS]


def pytest_sessionfinish(session, exitstatus):
    path = session.config.getoption("--gru-report")
    if path is None:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    problem = session.config.stash.get(_PATH_ERROR, None)
    if problem:
        if reporter:
            reporter.write_sep("-", problem, red=True)
        session.exitstatus = EXIT_BAD_REPORT_PATH
        return
    from .html import write_report

    rows = list(session.config.stash[_RESULTS])
    rows += [UnavailableFramework(name, status.reason) for name, status in adapters.status().items()
             if isinstance(status, adapters.AdapterUnavailable)]
    html_path, _ = write_report(rows, path)
    if reporter:
        reporter.write_sep("-", f"GRU report of {len(rows)} comparison(s) written: {html_path.resolve()}")
