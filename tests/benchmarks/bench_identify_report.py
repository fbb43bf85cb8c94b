"""Identification of one configuration, and the whole report."""

from __future__ import annotations

import numpy as np
import pytest

from reports.html import write_report
from reports.matrix import compare_configuration, run_matrix

from ..conftest import adapter_or_skip


def bench_identify_one_configuration(benchmark):
    adapter = adapter_or_skip("torch")
    config = adapter.configuration("nn.GRU(num_layers=2, bidirectional=True)")
    benchmark.group = "identify"
    result = benchmark(compare_configuration, adapter, config, np.float32)
    assert result.matched == config.claimed


@pytest.mark.parametrize("jobs", [1, 2], ids=["one process", "two lanes"])
def bench_matrix_of_every_framework(benchmark, tmp_path, jobs):
    """The framework matrix and its page, in one process and in two lanes side by side (``--jobs``; JAX's
    compilation cache as the tests set it: warm after the first run on a machine)."""
    benchmark.group = "matrix"
    html_path, json_path = benchmark.pedantic(
        lambda: write_report(run_matrix(jobs=jobs), tmp_path / "report"), rounds=1, iterations=1)
    assert html_path.exists() and json_path.exists()


def bench_whole_conversion_audit(benchmark):
    """Every conversion path's default cell, uncached (issue 10's target: < 60 s on 2 cores after set-up)."""
    from reports.conversions import run_conversions

    benchmark.group = "report"
    rows = benchmark.pedantic(lambda: run_conversions(cache=False), rounds=1, iterations=1)
    assert rows and all(row.verdict for row in rows)
    benchmark.extra_info["cells"] = len(rows)
    benchmark.extra_info["verdicts"] = {verdict: sum(r.verdict == verdict for r in rows) for verdict in {r.verdict for r in rows}}


def bench_report_with_every_framework_and_the_conversion_paths(benchmark, tmp_path):
    """What `make report` runs after set-up: the matrix, the conversion paths, the page (issue 9's target: < 30 s)."""
    from reports.cli import main

    benchmark.group = "report"
    code = benchmark.pedantic(lambda: main(["report", "--out", str(tmp_path / "full"), "--quiet"]), rounds=1, iterations=1)
    assert code == 0
