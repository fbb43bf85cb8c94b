"""pytest integration: ``pytest --gru-report=PATH`` writes the HTML/JSON report of the comparisons
that the test session made.

Tests hand their ``reports.matrix.ConfigResult`` to the ``gru_comparisons`` fixture; at the end
of the session the collected results (plus every unavailable framework) are written to PATH.
Enable it in another project with ``-p reports.pytest_plugin``.
"""

from __future__ import annotations

import pytest

import adapters

from .matrix import ConfigResult, UnavailableFramework

_RESULTS = pytest.StashKey[list]()


def pytest_addoption(parser):
    parser.addoption("--gru-report", metavar="PATH", default=None,
                     help="write the HTML and JSON GRU difference report of this session's comparisons to PATH")


def pytest_configure(config):
    config.stash[_RESULTS] = []


@pytest.fixture(scope="session")
def gru_comparisons(request) -> list[ConfigResult]:
    """Append each ConfigResult a test computes; ``--gru-report`` renders them at the end."""
    return request.config.stash[_RESULTS]


def pytest_sessionfinish(session, exitstatus):
    path = session.config.getoption("--gru-report")
    if not path:
        return
    from .html import write_report

    rows = list(session.config.stash[_RESULTS])
    rows += [UnavailableFramework(name, status.reason) for name, status in adapters.status().items()
             if isinstance(status, adapters.AdapterUnavailable)]
    html_path, _ = write_report(rows, path)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter:
        reporter.write_sep("-", f"GRU report of {len(rows)} comparison(s) written: {html_path.resolve()}")
