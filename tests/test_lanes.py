"""The matrix in lanes (``reports.matrix.run_matrix(jobs=...)``), the worker pool under it, JAX's
compilation cache, and what must cross a process boundary (a diagnosis names catalogued mistakes)."""

from __future__ import annotations

import pickle
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from adapters import compilation_cache, isolation
from reference.identify import Diagnosis
from reference.mistakes import BY_NAME, CATALOGUE
from reports import matrix

from .conftest import adapter_or_skip

# onnxruntime stands for the frameworks measured in this process (IN_PROCESS, set so in the test), onnx-reference
# runs in a lane's worker or, when this process is free first, here: either way the rows must be the ones one
# process measures.
LANE_CONFIGS = ["GRU", "GRU(linear_before_reset=1)", "GRU(clip=0.75)"]


def _json(rows):
    return [row.to_json() for row in rows]


ONNX_FRAMEWORKS = ["onnxruntime", "onnx-reference"]
BOTH_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@pytest.fixture
def measured_alone():
    """The two ONNX frameworks' rows measured in this process alone: what every way of sharing them out must give."""
    adapter_or_skip("onnxruntime")
    adapter_or_skip("onnx-reference")
    return matrix.run_matrix(ONNX_FRAMEWORKS, BOTH_DTYPES, configs=LANE_CONFIGS, jobs=1)


def _spy_on_this_process(monkeypatch) -> list[str]:
    """The frameworks ``_measure_lane`` measures in this process from now on (filled as it runs)."""
    here, real_measure = [], matrix._measure_lane

    def measured_here(names, *args, **kwargs):
        here.extend(names)
        return real_measure(names, *args, **kwargs)

    monkeypatch.setattr(matrix, "_measure_lane", measured_here)
    return here


def test_two_lanes_measure_the_same_rows_as_one_process_each_framework_once(monkeypatch, measured_alone):
    sent, real_call = [], isolation.call

    def spy(target, *args, **kwargs):
        if target == "reports.matrix:_lane_in_worker":
            sent.append(args[0])
        return real_call(target, *args, **kwargs)

    monkeypatch.setattr(isolation, "call", spy)
    here = _spy_on_this_process(monkeypatch)
    monkeypatch.setattr(matrix, "IN_PROCESS", ("onnxruntime",))
    laned = matrix.run_matrix(ONNX_FRAMEWORKS, BOTH_DTYPES, configs=LANE_CONFIGS, jobs=2)
    assert _json(laned) == _json(measured_alone)
    assert [row.framework for row in laned] == [row.framework for row in measured_alone], "registry order is kept"
    in_workers = [name for names in sent for name in names]
    assert "onnxruntime" in here and "onnxruntime" not in in_workers, "IN_PROCESS frameworks are measured here"
    assert sorted(here + in_workers) == sorted(ONNX_FRAMEWORKS), (here, in_workers)


def test_a_configuration_name_is_unknown_only_if_no_lane_has_it():
    adapter_or_skip("onnxruntime")
    adapter_or_skip("onnx-reference")
    only_onnxruntime = "GRU(activations=['Softsign', 'Softplus'])"
    rows = matrix.run_matrix(["onnxruntime", "onnx-reference"], (np.dtype(np.float32),), configs=[only_onnxruntime],
                             jobs=2)
    assert [(row.framework, row.config.name) for row in rows] == [("onnxruntime", only_onnxruntime)]
    with pytest.raises(ValueError, match=r"unknown configuration\(s\) \['GRU\(nothing\)'\]"):
        matrix.run_matrix(["onnxruntime", "onnx-reference"], (np.dtype(np.float32),), configs=["GRU", "GRU(nothing)"],
                          jobs=2)


def test_a_lane_whose_worker_dies_reports_its_framework_with_the_reason(monkeypatch):
    def crash(target, *args, **kwargs):
        raise isolation.WorkerCrashed(target, "was killed by signal SIGSEGV (11)", "")

    monkeypatch.setattr(isolation, "call", crash)
    shared = matrix._SharedFrameworks(["flax", "paddle"], matrix.DTYPES, matrix.DEFAULT_CASE, None, False)
    shared.in_worker(1)
    assert shared.pending == []
    for name in ("flax", "paddle"):
        (row,), unknown = shared.measured[name]
        assert isinstance(row, matrix.UnavailableFramework) and row.framework == name
        assert row.reason == "the worker process measuring it was killed by signal SIGSEGV (11)"


def test_a_contained_matrix_measures_the_same_rows_with_nothing_measured_here(monkeypatch, measured_alone):
    """``contained=True`` (the gru-equiv commands) moves this process's share into the CONTAINED_ENV worker."""
    here = _spy_on_this_process(monkeypatch)
    for jobs, in_process in ((1, ()), (2, ("onnxruntime",))):
        monkeypatch.setattr(matrix, "IN_PROCESS", in_process)
        contained = matrix.run_matrix(ONNX_FRAMEWORKS, BOTH_DTYPES, configs=LANE_CONFIGS, jobs=jobs, contained=True)
        assert _json(contained) == _json(measured_alone), f"jobs={jobs}"
    assert here == [], f"measured in this process although contained: {here}"


def test_a_contained_matrix_survives_a_framework_that_segfaults_and_finds_caller_registered_adapters(monkeypatch):
    """A forward pass that kills its process (tests/crashing_path.py) costs that framework's rows only: one
    unavailable row saying how the worker died; the adapter registered by this test reaches the worker too."""
    import adapters

    monkeypatch.setitem(adapters.REGISTRY, "segfaulting", "tests.crashing_path:SEGFAULTING_ADAPTER")
    monkeypatch.setitem(adapters.REGISTRY, "honest", "tests.crashing_path:HONEST_ADAPTER")
    adapters._load.cache_clear()
    try:
        rows = matrix.run_matrix(["segfaulting", "honest"], (np.dtype(np.float32),), jobs=1, contained=True)
    finally:
        adapters._load.cache_clear()
    crashed, *honest = rows
    assert isinstance(crashed, matrix.UnavailableFramework) and crashed.framework == "segfaulting", crashed
    assert crashed.reason == "the worker process measuring it was killed by signal SIGSEGV (11)", crashed.reason
    assert honest and all(row.framework == "honest" and row.matched == row.claimed for row in honest), honest


def test_the_shared_queue_starts_with_the_slowest_frameworks():
    shared = matrix._SharedFrameworks(["haiku", "onnx-reference", "paddle", "keras-jax", "flax", "keras-torch"],
                                      matrix.DTYPES, matrix.DEFAULT_CASE, None, False)
    assert shared.pending == ["keras-torch", "keras-jax", "flax", "paddle", "onnx-reference", "haiku"]


def calls_from_a_worker(env: dict) -> tuple[int, int]:
    """This worker's pid, and the pid that answers its own call for ``env``."""
    import os

    return os.getpid(), isolation.call("os:getpid", env=env)


@pytest.mark.parametrize("inner, hosted", [
    ({"GRU_EQUIV_TEST": "host", "GRU_EQUIV_TEST_2": "yes"}, True),  # the very environment it was started with
    ({"GRU_EQUIV_TEST": "host"}, True),  # part of it
    ({"GRU_EQUIV_TEST": "another"}, False),  # a variable set otherwise
    ({}, False),  # isolated only to contain a crash: always its own process
], ids=["same", "subset", "different", "empty"])
def test_a_worker_runs_calls_for_its_own_environment_itself(inner, hosted):
    outer = {"GRU_EQUIV_TEST": "host", "GRU_EQUIV_TEST_2": "yes"}
    worker_pid, answered_by = isolation.call(f"{__name__}:calls_from_a_worker", inner, env=outer)
    assert (answered_by == worker_pid) == hosted, (worker_pid, answered_by, inner)


def register_exit_marker(path: str) -> int:
    """Register an ``atexit`` hook in this worker that writes ``path``; returns the worker's pid."""
    import atexit
    import os

    atexit.register(Path(path).write_text, "the worker's atexit hooks ran")
    return os.getpid()


def test_a_worker_runs_its_exit_hooks_and_ends_cleanly_when_its_input_closes(tmp_path):
    marker = tmp_path / "marker"
    env = {"GRU_EQUIV_TEST": "exit hooks"}
    isolation.call(f"{__name__}:register_exit_marker", str(marker), env=env)
    with isolation._LOCK:
        worker = isolation._WORKERS.pop(tuple(sorted(env.items())))
    worker.close()
    assert worker.process.returncode == 0
    assert marker.read_text() == "the worker's atexit hooks ran"


def test_exiting_without_teardown_keeps_the_status_the_output_and_the_exit_hooks(tmp_path):
    import subprocess

    marker = tmp_path / "marker"
    program = (f"import atexit, pathlib, sys; from adapters.isolation import exit_without_teardown; "
               f"atexit.register(pathlib.Path({str(marker)!r}).write_text, 'ran'); "
               f"print('to stdout', end=''); print('to stderr', end='', file=sys.stderr); exit_without_teardown(3)")
    completed = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120,
                               cwd=Path(__file__).resolve().parent.parent)
    assert (completed.returncode, completed.stdout, completed.stderr) == (3, "to stdout", "to stderr"), completed
    assert marker.read_text() == "ran"


def test_this_process_hosts_nothing_and_a_bad_record_hosts_nothing(monkeypatch):
    assert not isolation.hosts({"GRU_EQUIV_TEST": "host"})
    monkeypatch.setenv(isolation._HOSTED, "not json")
    assert not isolation.hosts({"GRU_EQUIV_TEST": "host"})
    monkeypatch.setenv(isolation._HOSTED, '{"GRU_EQUIV_TEST": "host"}')
    assert isolation.hosts({"GRU_EQUIV_TEST": "host"}) and not isolation.hosts({})


def test_the_background_lane_hosts_keras_jax_when_it_can_run():
    environment = matrix._lane_environment(1)
    assert environment["GRU_EQUIV_MATRIX_LANE"] == "1"
    try:
        from adapters.keras_backends import JAX_ADAPTER
    except ImportError:
        assert set(environment) == {"GRU_EQUIV_MATRIX_LANE"}
        return
    if JAX_ADAPTER.unavailable_reason() is None:
        assert environment.items() >= JAX_ADAPTER.env.items(), environment
    else:
        assert set(environment) == {"GRU_EQUIV_MATRIX_LANE"}


def wait_for(path: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if Path(path).exists():
            return True
        time.sleep(0.01)
    return False


def touch(path: str) -> None:
    Path(path).touch()


def test_workers_of_different_environments_serve_callers_at_the_same_time(tmp_path):
    """One worker waits for a file that only the other worker's call creates: serialised calls would
    leave the first waiting until its timeout and return False."""
    signal_file = tmp_path / "created by the second worker"
    waited = {}

    def first():
        waited["seen"] = isolation.call(f"{__name__}:wait_for", str(signal_file), 60.0,
                                        env={"GRU_EQUIV_TEST": "parallel callers, first"})

    thread = threading.Thread(target=first)
    thread.start()
    time.sleep(0.5)  # let the first call reach its worker (it holds only that worker)
    isolation.call(f"{__name__}:touch", str(signal_file), env={"GRU_EQUIV_TEST": "parallel callers, second"})
    thread.join(90)
    assert waited.get("seen") is True


def test_closing_tells_every_worker_to_exit_at_once_and_can_wait_for_them():
    envs = [{"GRU_EQUIV_TEST": f"shutdown {index}"} for index in range(2)]
    pids = [isolation.call("os:getpid", env=env) for env in envs]
    with isolation._LOCK:  # shutdown() closes every worker this way; the other tests' workers stay warm
        workers = [isolation._WORKERS.pop(tuple(sorted(env.items()))) for env in envs]
    assert len(set(pids)) == 2
    isolation.close_all(workers)
    assert [worker.process.returncode for worker in workers] == [0, 0]
    assert isolation.call("os:getpid", env=envs[0]) not in pids, "the next call starts a new worker"


def test_a_diagnosis_crosses_a_process_boundary_naming_the_same_mistakes():
    for mistake in CATALOGUE:
        assert pickle.loads(pickle.dumps(mistake)) is mistake
    diagnosis = Diagnosis(matrix.Convention("z_on_previous", "after"), (BY_NAME["mask ignored"],), 1e-7)
    again = pickle.loads(pickle.dumps(diagnosis))
    assert again.mistakes == diagnosis.mistakes and again.to_json() == diagnosis.to_json()


@pytest.fixture
def clean_cache_environment(monkeypatch):
    for name in ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
                 "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", compilation_cache.CACHE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delitem(sys.modules, "jax", raising=False)  # this process's JAX keeps its configuration
    return monkeypatch


def test_the_compilation_cache_goes_where_asked_and_the_users_own_setting_wins(clean_cache_environment, tmp_path):
    import os

    monkeypatch = clean_cache_environment
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compilation_cache.enable() == tmp_path / "gru-equiv" / "jax"
    assert os.environ["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "gru-equiv" / "jax")
    assert os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] == "0"

    monkeypatch.setenv(compilation_cache.CACHE_ENV, str(tmp_path / "chosen"))
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/the/users/own")
    assert compilation_cache.enable() == tmp_path / "chosen"
    assert os.environ["JAX_COMPILATION_CACHE_DIR"] == "/the/users/own"


@pytest.mark.parametrize("value", ["off", "OFF", "none", "0", ""])
def test_the_compilation_cache_can_be_turned_off(clean_cache_environment, value):
    import os

    clean_cache_environment.setenv(compilation_cache.CACHE_ENV, value)
    assert compilation_cache.enable() is None
    assert "JAX_COMPILATION_CACHE_DIR" not in os.environ


def test_an_xdist_worker_ends_at_once_yet_its_results_exit_status_and_exit_hooks_stand(pytester, monkeypatch):
    """``tests/xdist_exit.py`` ends each worker in its last hook: the controller still gets every outcome and
    the failing exit status, and the worker's ``atexit`` hooks still run, but before the interpreter's own
    shutdown, which would first join every non-daemon thread (a thread still waiting is alive in the hook)."""
    hooks = pytester.path / "worker-atexit"
    pytester.makepyfile(test_two=f"""
        import atexit, os, pathlib, threading

        def test_passes():
            waiting = threading.Thread(target=threading.Event().wait, args=(2.0,))  # non-daemon: shutdown joins it
            waiting.start()
            worker = os.environ["PYTEST_XDIST_WORKER"]
            atexit.register(lambda: pathlib.Path({str(hooks)!r}).write_text(f"{{worker}} {{waiting.is_alive()}}"))

        def test_fails():
            assert 1 == 2
    """)
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parent.parent))
    result = pytester.runpytest_subprocess("-n", "1", "-p", "tests.xdist_exit", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    assert result.ret == 1, result.stdout.str()
    assert hooks.read_text() == "gw0 True", "the worker went through the interpreter's shutdown"
