"""Benchmarks (pytest-benchmark): not part of the default test run; ``make bench`` runs them.

At the end of a timed run this prints the ratios that the README reports, measured side by side
in the same session: reference / torch and reference / Keras per shape, and the reference's time
per step at growing sequence lengths (linear time means a constant).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from reference import GRUParams

SHAPES = {
    # name: (batch, time, input, hidden)
    "batch32-128steps-256": (32, 128, 256, 256),
    "batch1-10000steps-128": (1, 10_000, 128, 128),
}


@pytest.fixture(scope="session")
def workload():
    """Same parameters and inputs for every implementation, per (shape, dtype)."""
    cache = {}

    def make(shape: str, dtype):
        key = (shape, np.dtype(dtype).name)
        if key not in cache:
            batch, time, input_size, hidden = SHAPES[shape]
            params = GRUParams.random(input_size, hidden, seed=1, dtype=dtype, scale=1.0 / np.sqrt(hidden))
            x = np.random.default_rng(2).normal(size=(batch, time, input_size)).astype(dtype)
            h0 = np.random.default_rng(3).uniform(-0.5, 0.5, size=(batch, hidden)).astype(dtype)
            cache[key] = (params, x, h0)
        return cache[key]

    return make


def pytest_terminal_summary(terminalreporter, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or session.disabled:
        return
    times = {}
    for bench in session.benchmarks:
        if bench.stats:
            times[(bench.group, bench.name.split("[")[0])] = bench.stats.min
    groups = defaultdict(dict)
    for (group, name), seconds in times.items():
        groups[group][name] = seconds
    lines = []
    comparisons = (
        ("bench_reference_forward", "bench_torch_gru", "reference / torch nn.GRU"),
        ("bench_reference_forward", "bench_keras_gru", "reference / Keras GRU"),
        ("bench_reference_forward", "bench_gemm_floor", "reference / its bare GEMMs"),
        ("bench_torch_gru", "bench_gemm_floor", "torch nn.GRU / the same GEMMs"),
        ("bench_reference_backward", "bench_torch_autograd", "reference backward / torch autograd (forward + backward)"),
    )
    for group, by_name in sorted(groups.items()):
        for mine, other, label in comparisons:
            if mine in by_name and other in by_name:
                lines.append(f"{group}: {label} = {by_name[mine] / by_name[other]:.2f} "
                             f"({by_name[mine] * 1e3:.1f} ms vs {by_name[other] * 1e3:.1f} ms)")
        for prefix in ("bench_reference_steps_", "bench_reference_backward_steps_"):
            steps = {int(n.rsplit("_", 1)[1]): s for n, s in by_name.items() if n.startswith(prefix)}
            if steps:
                per_step = ", ".join(f"{t} steps: {s / t * 1e6:.1f} us/step" for t, s in sorted(steps.items()))
                lines.append(f"{group}: {per_step}")
    if lines:
        terminalreporter.write_sep("-", "gru-equivalence ratios (min times, same session)")
        for line in lines:
            terminalreporter.write_line(line)
