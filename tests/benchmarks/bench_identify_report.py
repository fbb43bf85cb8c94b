"""Identification of one configuration, and the whole report."""

from __future__ import annotations

import numpy as np

from reports.html import write_report
from reports.matrix import compare_configuration, run_matrix

from ..conftest import adapter_or_skip


def bench_identify_one_configuration(benchmark):
    adapter = adapter_or_skip("torch")
    config = adapter.configuration("nn.GRU(num_layers=2, bidirectional=True)")
    benchmark.group = "identify"
    result = benchmark(compare_configuration, adapter, config, np.float32)
    assert result.matched == config.claimed


def bench_whole_report(benchmark, tmp_path):
    benchmark.group = "report"
    html_path, json_path = benchmark.pedantic(
        lambda: write_report(run_matrix(), tmp_path / "report"), rounds=1, iterations=1)
    assert html_path.exists() and json_path.exists()
