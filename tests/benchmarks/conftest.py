"""Benchmarks (pytest-benchmark): not part of the default test run; ``make bench`` runs them.

At the end of a timed run this prints the ratios that the README reports, measured side by side
in the same session on min times: the reference forward / torch ``nn.GRU``, / Keras and / its bare
GEMMs (the floor its element-wise work sits on), torch / the same GEMMs, the reference backward /
torch autograd, the time per step at growing sequence lengths (linear time means a constant) and
the backward's peak memory per step; with the thread counts they ran under (the same for NumPy's
BLAS and torch: ``GRU_BENCH_THREADS``, default 1, see ``same_thread_counts``). The same numbers are
saved with the run under ``.benchmarks/`` (key ``gru_equivalence``; each reference benchmark's
``extra_info`` carries its ratios).
"""

from __future__ import annotations

import ctypes
import os
from collections import defaultdict
from dataclasses import dataclass

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


THREADS_VARIABLE = "GRU_BENCH_THREADS"


@pytest.fixture(scope="session", autouse=True)
def same_thread_counts():
    """NumPy's BLAS and torch run with the same number of threads, ``GRU_BENCH_THREADS`` (default 1).

    One each by default because two thread pools (NumPy's OpenBLAS, torch's) disturb each other on a
    small machine. Measured on the 2-core development machine, forward and backward benchmarks in one
    session: with 2 + 2 threads torch ``nn.GRU`` float32 at batch 32 x 128 x 256 took 1430 ms (min of
    rounds; 45 ms when run alone) and the session 159 s; with 1 + 1 threads 69 ms and 61 s. (Idle worker
    threads that busy-wait for the next call would explain it; that mechanism is not verified here.)
    Set ``GRU_BENCH_THREADS=2`` (or more) to compare multi-threaded; the summary prints the counts used.
    """
    value = os.environ.get(THREADS_VARIABLE, "1")
    if not value.isdigit() or int(value) < 1:
        raise pytest.UsageError(f"{THREADS_VARIABLE}={value!r}: give a whole number of threads >= 1, e.g. {THREADS_VARIABLE}=2")
    wanted = int(value)
    _set_blas_threads(wanted)
    try:
        import torch

        torch.set_num_threads(wanted)
    except ImportError:
        pass
    yield wanted


def thread_counts() -> dict[str, object]:
    """The thread counts the timings ran under: threadpoolctl when installed; else NumPy's OpenBLAS asked
    directly through ctypes (Linux: the library is found in /proc/self/maps); else ``unknown``."""
    counts: dict[str, object] = {"numpy_blas": "unknown"}
    try:
        import threadpoolctl

        blas = [pool for pool in threadpoolctl.threadpool_info() if pool.get("user_api") == "blas"]
        if blas:
            counts["numpy_blas"] = blas[0]["num_threads"]
    except ImportError:
        get = _openblas_function("get_num_threads")
        counts["numpy_blas"] = int(get()) if get is not None else "unknown"
    try:
        import torch

        counts["torch"] = torch.get_num_threads()
    except ImportError:
        counts["torch"] = "not installed"
    return counts


def _set_blas_threads(count: int) -> None:
    try:
        import threadpoolctl

        threadpoolctl.threadpool_limits(count, user_api="blas")
        return
    except ImportError:
        pass
    setter = _openblas_function("set_num_threads")
    if setter is not None:
        setter(ctypes.c_int(count))


def _openblas_function(name: str):
    """``openblas_<name>`` from the OpenBLAS NumPy loaded (scipy-openblas wheels prefix and suffix it), or None."""
    try:
        with open("/proc/self/maps") as maps:
            libraries = sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and ".so" in line})
    except OSError:
        return None
    for library in libraries:
        try:
            handle = ctypes.CDLL(library)
        except OSError:
            continue
        for symbol in (f"scipy_openblas_{name}64_", f"openblas_{name}64_", f"openblas_{name}"):
            function = getattr(handle, symbol, None)
            if function is not None:
                return function
    return None


@dataclass(frozen=True)
class Ratio:
    group: str
    label: str
    mine: str
    other: str
    ratio: float
    mine_ms: float
    other_ms: float

    def line(self) -> str:
        return (f"{self.group}: {self.label} = {self.ratio:.2f} "
                f"({self.mine_ms:.1f} ms vs {self.other_ms:.1f} ms)")


COMPARISONS = (
    ("bench_reference_forward", "bench_torch_gru", "reference / torch nn.GRU"),
    ("bench_reference_forward", "bench_keras_gru", "reference / Keras GRU"),
    ("bench_reference_forward", "bench_gemm_floor", "reference / its bare GEMMs"),
    ("bench_torch_gru", "bench_gemm_floor", "torch nn.GRU / the same GEMMs"),
    ("bench_reference_backward", "bench_torch_autograd",
     "reference gru_grad (forward with tape + backward) / torch autograd (forward + backward)"),
)
PER_STEP_PREFIXES = ("bench_reference_steps_", "bench_reference_backward_steps_")


def _min_times(benchmarks) -> dict[str, dict[str, float]]:
    """``{group: {name without parameters: min seconds}}`` over the benchmarks that were timed."""
    groups: dict[str, dict[str, float]] = defaultdict(dict)
    for bench in benchmarks:
        stats = getattr(bench, "stats", None)
        if stats is not None and getattr(stats, "rounds", 0):
            groups[bench.group][bench.name.split("[")[0]] = stats.min
    return groups


def ratios(benchmarks) -> list[Ratio]:
    """Every comparison whose two sides ran in this session, per group (shape and dtype), on min times."""
    found = []
    for group, by_name in sorted(_min_times(benchmarks).items()):
        for mine, other, label in COMPARISONS:
            if mine in by_name and other in by_name:
                found.append(Ratio(group, label, mine, other, by_name[mine] / by_name[other],
                                   by_name[mine] * 1e3, by_name[other] * 1e3))
    return found


def per_step(benchmarks) -> dict[str, dict[int, float]]:
    """``{group: {steps: microseconds per step}}``: linear time means a constant."""
    found = {}
    for group, by_name in sorted(_min_times(benchmarks).items()):
        for prefix in PER_STEP_PREFIXES:
            steps = {int(n.rsplit("_", 1)[1]): s / int(n.rsplit("_", 1)[1]) * 1e6
                     for n, s in by_name.items() if n.startswith(prefix)}
            if steps:
                found[group] = dict(sorted(steps.items()))
    return found


def memory_lines(benchmarks) -> list[str]:
    lines = []
    for bench in benchmarks:
        info = getattr(bench, "extra_info", {}).get("peak_per_step")
        if info:
            by_steps = sorted(info.items(), key=lambda kv: int(kv[0]))
            per = ", ".join(f"{t} steps: peak {v['peak_mb']:.1f} MB = {v['peak_over_stored']:.2f} x stored activations"
                            for t, v in by_steps)
            lines.append(f"{bench.group}: {per}; grows by {by_steps[-1][1]['states_per_step']:.2f} "
                         f"(batch x hidden) states a step (5 of them the stored activations)")
    return lines


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """Save the side-by-side ratios with the run (``.benchmarks/``), next to pytest-benchmark's own numbers."""
    found = ratios(benchmarks)
    output_json["gru_equivalence"] = {
        "threads": thread_counts(),
        "ratios": [vars(r) for r in found],
        "us_per_step": {group: {str(t): v for t, v in steps.items()} for group, steps in per_step(benchmarks).items()},
    }
    for entry in output_json.get("benchmarks", []):
        mine = entry["name"].split("[")[0]
        for r in found:
            if r.group == entry.get("group") and r.mine == mine:
                entry.setdefault("extra_info", {})[f"ratio to {r.other}"] = round(r.ratio, 4)


def pytest_terminal_summary(terminalreporter, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or session.disabled:
        return
    lines = [r.line() for r in ratios(session.benchmarks)]
    for group, steps in per_step(session.benchmarks).items():
        lines.append(f"{group}: " + ", ".join(f"{t} steps: {us:.1f} us/step" for t, us in steps.items()))
    lines += memory_lines(session.benchmarks)
    if lines:
        threads = thread_counts()
        terminalreporter.write_sep("-", "gru-equivalence ratios (min times, same session)")
        terminalreporter.write_line(f"threads: NumPy BLAS {threads['numpy_blas']}, torch {threads['torch']}")
        for line in lines:
            terminalreporter.write_line(line)
