"""The paddle adapter: exact round trips, loud refusals, padding semantics measured, and crashes of
paddle itself contained and reported with their signal.

Paddle runs only in the adapter's isolated worker: nothing here imports it into the test process.
"""

from __future__ import annotations

import importlib.util
import pickle
import signal
import sys
import time

import numpy as np
import pytest

import adapters
from adapters import isolation
from reference import Convention, gru, gru_stack, layouts, random_layers
from reports.matrix import run_matrix

from .conftest import ISOLATED_BACKENDS, adapter_or_skip

pytestmark = pytest.mark.xdist_group(ISOLATED_BACKENDS)

DOCUMENTED = Convention("z_on_previous", "after")
DTYPES = [np.float32, np.float64]


@pytest.fixture(scope="module")
def paddle_adapter():
    return adapter_or_skip("paddle")


@pytest.fixture(scope="module")
def worker_env(paddle_adapter):
    from adapters.paddle_gru import WORKER_ENV

    return WORKER_ENV


def _layers_for(config, input_size=3, hidden_size=4, dtype=np.float64, seed=0):
    """Random parameters with zeros where ``config`` holds no bias."""
    layers = random_layers(input_size, hidden_size, num_layers=config.num_layers,
                           bidirectional=config.bidirectional, seed=seed, dtype=dtype)
    return config.holdable(layers)


def _probe(config, batch=3, time_steps=5, input_size=3, hidden_size=4, dtype=np.float64, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, time_steps, input_size)).astype(dtype)
    h0 = rng.uniform(-0.8, 0.8, size=(config.num_layers * config.directions, batch, hidden_size)).astype(dtype)
    return x, h0


# ----------------------------------------------------------------- availability


def test_the_adapter_is_unavailable_with_a_reason_when_paddle_is_missing(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "paddle" else real_find_spec(name, *a))
    monkeypatch.delitem(sys.modules, "adapters.paddle_gru", raising=False)
    loaded = adapters._load.__wrapped__("paddle")  # uncached: the session's own answer stays as it was
    assert isinstance(loaded, adapters.AdapterUnavailable)
    assert loaded.reason.startswith("paddlepaddle is not installed"), loaded.reason
    assert "pip install paddlepaddle" in loaded.reason


def test_this_process_never_imports_paddle(paddle_adapter):
    paddle_adapter.versions()
    paddle_adapter.configurations()
    assert "paddle" not in sys.modules


# ----------------------------------------------------------------- building, extracting, describing


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_build_then_extract_is_bit_exact_for_every_configuration(paddle_adapter, dtype):
    for config in paddle_adapter.configurations():
        layers = _layers_for(config, dtype=dtype)
        layer = paddle_adapter.build(config, layers, dtype)
        back = paddle_adapter.extract(layer)
        for index, (ours, theirs) in enumerate(zip(layers, back, strict=True)):
            for direction, (p, q) in enumerate(zip(ours, theirs, strict=True)):
                assert p.identical(q), f"{config.label} layers[{index}][{direction}]: {p.first_difference(q)}"
        assert paddle_adapter.describe(layer) == config
        assert back[0][0] is not layer.layers[0][0], "extract must return copies"


def test_paddle_holds_the_weights_under_its_own_names_in_the_pytorch_layout(paddle_adapter, worker_env):
    """Read back from paddle's own ``weight_ih_l{k}{_reverse}`` attributes, not from our description."""
    config = paddle_adapter.configuration("nn.GRU(num_layers=2, direction='bidirect')")
    layers = _layers_for(config, dtype=np.float32)
    held = isolation.call("adapters.paddle_gru_worker:parameters_by_name",
                          paddle_adapter.build(config, layers, np.float32).worker_spec(), env=worker_env)
    for index, layer in enumerate(layers):
        for direction, params in enumerate(layer):
            for name, array in layouts.to_torch(params).items():
                key = f"{name}_l{index}{'_reverse' if direction else ''}"
                np.testing.assert_array_equal(held[key], array, err_msg=key)


def test_finding_nn_gru_misnames_its_parameters_when_a_bias_attr_is_false(paddle_adapter, worker_env):
    """paddle 3.3.1, rnn.py:1611-1619: the names skip the frozen bias, the parameters do not."""
    config = paddle_adapter.configuration("nn.GRU(bias_ih_attr=False)")
    (params,), = _layers_for(config)
    held = isolation.call("adapters.paddle_gru_worker:parameters_by_name",
                          paddle_adapter.build(config, [[params]], np.float64).worker_spec(), env=worker_env)
    assert sorted(held) == ["bias_hh_l0", "weight_hh_l0", "weight_ih_l0"]
    assert np.any(layouts.to_torch(params)["bias_hh"] != 0)
    np.testing.assert_array_equal(held["bias_hh_l0"], 0.0, err_msg="bias_hh_l0 is not the frozen zero bias_ih any more: "
                                  "paddle fixed the names; update adapters/paddle_gru.py's docstring")


def test_build_refuses_parameters_of_the_wrong_structure_and_dtype(paddle_adapter):
    config = paddle_adapter.configuration("nn.GRU")
    with pytest.raises(ValueError, match="needs 1 layer\\(s\\) x 1 direction\\(s\\), the parameters have 2 x 1"):
        paddle_adapter.build(config, random_layers(3, 4, num_layers=2), np.float32)
    with pytest.raises(ValueError, match="dtype float16 is not supported; use float32 or float64"):
        paddle_adapter.build(config, random_layers(3, 4), np.float16)


@pytest.mark.parametrize("name,refused", [
    ("nn.GRU(bias_ih_attr=False)", "b_z, b_r, b_h"),
    ("nn.GRU(bias_hh_attr=False)", "c_z, c_r, c_h"),
    ("nn.GRU(bias_ih_attr=False, bias_hh_attr=False)", "b_z, b_r, b_h, c_z, c_r, c_h"),
    ("nn.RNN(GRUCell(bias_hh_attr=False))", "c_z, c_r, c_h"),
])
def test_build_names_the_biases_a_configuration_cannot_hold(paddle_adapter, name, refused):
    config = paddle_adapter.configuration(name)
    with pytest.raises(ValueError, match=f"layers\\[0\\]\\[0\\] has non-zero biases {refused}, which paddle:"):
        paddle_adapter.build(config, random_layers(3, 4), np.float32)
    assert paddle_adapter.build(config, _layers_for(config), np.float64).config is config  # zero there: accepted


def test_each_configuration_names_the_biases_it_holds(paddle_adapter):
    holds = {c.name: c.bias_fields for c in paddle_adapter.configurations()}
    assert holds["nn.GRU"] == ("b_z", "b_r", "b_h", "c_z", "c_r", "c_h")
    assert holds["nn.GRU(bias_ih_attr=False)"] == ("c_z", "c_r", "c_h")
    assert holds["nn.GRU(bias_hh_attr=False)"] == ("b_z", "b_r", "b_h")
    assert holds["nn.GRU(bias_ih_attr=False, bias_hh_attr=False)"] == ()
    assert holds["nn.RNN(GRUCell(bias_ih_attr=False))"] == ("c_z", "c_r", "c_h")


def test_a_paddle_object_or_anything_else_is_refused_with_the_way_out(paddle_adapter):
    # A stand-in with paddle's module name: a real paddle object would import paddle here.
    users_layer = type("GRU", (), {"__module__": "paddle.nn.layer.rnn"})()
    for method in (paddle_adapter.extract, paddle_adapter.describe):
        with pytest.raises(TypeError, match="got a paddle GRU object.*isolated worker.*reference.layouts.from_torch"):
            method(users_layer)
    with pytest.raises(TypeError, match="got a paddle GRU object"):
        paddle_adapter.run(users_layer, np.zeros((1, 2, 3), np.float32))
    with pytest.raises(TypeError, match="expected a PaddleGRU from adapters.get\\('paddle'\\).build, got list"):
        paddle_adapter.extract([])


# ----------------------------------------------------------------- running


@pytest.fixture(scope="module")
def basic(paddle_adapter):
    config = paddle_adapter.configuration("nn.GRU")
    return paddle_adapter.build(config, _layers_for(config, dtype=np.float32), np.float32)


def test_run_refuses_bad_input_naming_the_value_and_the_fix(paddle_adapter, basic):
    x = np.zeros((2, 3, 3), np.float32)
    with pytest.raises(TypeError, match="x has dtype float64 but the layer computes in float32; pass x.astype\\(np.float32\\)"):
        paddle_adapter.run(basic, x.astype(np.float64))
    with pytest.raises(ValueError, match="x has shape \\(2, 3, 5\\); expected \\(batch, time, input_size=3\\)"):
        paddle_adapter.run(basic, np.zeros((2, 3, 5), np.float32))
    with pytest.raises(ValueError, match="x contains a non-finite value \\(nan at index \\(0, 1, 2\\)\\)"):
        bad = x.copy()
        bad[0, 1, 2] = np.nan
        paddle_adapter.run(basic, bad)
    with pytest.raises(ValueError, match="h0 has shape \\(2, 2, 4\\), expected \\(1, 2, 4\\)"):
        paddle_adapter.run(basic, x, np.zeros((2, 2, 4), np.float32))
    with pytest.raises(TypeError, match="h0 has dtype float64 but the layer computes in float32"):
        paddle_adapter.run(basic, x, np.zeros((1, 2, 4)))
    with pytest.raises(ValueError, match="mask has shape \\(2, 2\\); expected \\(batch, time\\) = \\(2, 3\\)"):
        paddle_adapter.run(basic, x, mask=np.ones((2, 2), bool))
    with pytest.raises(ValueError, match="mask row 1 is \\[1, 0, 1\\].*right padding"):
        paddle_adapter.run(basic, x, mask=np.array([[1, 1, 1], [1, 0, 1]], bool))


def test_the_cell_refuses_a_mask(paddle_adapter):
    config = paddle_adapter.configuration("nn.GRUCell")
    cell = paddle_adapter.build(config, _layers_for(config), np.float64)
    with pytest.raises(ValueError, match="nn.GRUCell has no notion of padding; run it without a mask"):
        paddle_adapter.run(cell, np.zeros((1, 2, 3)), mask=np.ones((1, 2), bool))


def test_run_leaves_the_callers_arrays_and_description_untouched(paddle_adapter):
    config = paddle_adapter.configuration("nn.GRU(num_layers=2, direction='bidirect') + sequence_length")
    layers = _layers_for(config)
    x, h0 = _probe(config)
    mask = np.arange(5)[None, :] < np.array([5, 2, 1])[:, None]
    before = [x.copy(), h0.copy(), mask.copy()]
    layer = paddle_adapter.build(config, layers, np.float64)
    paddle_adapter.run(layer, x, h0, mask)
    for original, now in zip(before, (x, h0, mask)):
        np.testing.assert_array_equal(original, now)
    back = paddle_adapter.extract(layer)
    assert all(p.identical(q) for ours, theirs in zip(layers, back) for p, q in zip(ours, theirs))


def test_without_h0_paddle_starts_from_zeros(paddle_adapter):
    config = paddle_adapter.configuration("nn.RNN(GRUCell, is_reverse=True)")
    layers = _layers_for(config)
    x, _ = _probe(config)
    observed = paddle_adapter.run(paddle_adapter.build(config, layers, np.float64), x)
    outputs, h_last = gru_stack(x, layers, DOCUMENTED, reverse=True)
    np.testing.assert_allclose(observed.outputs, outputs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(observed.h_last, h_last, rtol=0, atol=1e-12)


def test_fused_gru_outputs_exact_zeros_at_padding_and_the_last_valid_state(paddle_adapter):
    config = paddle_adapter.configuration("nn.GRU(num_layers=2, direction='bidirect') + sequence_length")
    layers = _layers_for(config)
    x, h0 = _probe(config)
    mask = np.arange(5)[None, :] < np.array([5, 2, 1])[:, None]
    observed = paddle_adapter.run(paddle_adapter.build(config, layers, np.float64), x, h0, mask)
    assert np.all(observed.outputs[~mask] == 0.0), "padded outputs are not exactly zero"
    for row, length in enumerate((5, 2, 1)):  # each sequence alone, cut to its length
        _, h_alone = gru_stack(x[row:row + 1, :length], layers, DOCUMENTED, h0=h0[:, row:row + 1])
        np.testing.assert_allclose(observed.h_last[:, row], h_alone[:, 0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name,reverse", [("nn.RNN(GRUCell)", False), ("nn.RNN(GRUCell, is_reverse=True)", True)])
def test_rnn_of_a_cell_outputs_the_step_on_padding_from_the_carried_state(paddle_adapter, name, reverse):
    """Why no masked RNN(GRUCell) configuration: its padded outputs fit no ``masked_output`` mode."""
    config = paddle_adapter.configuration(name)
    layers = _layers_for(config)
    (params,), = layers
    x, h0 = _probe(config)
    lengths = np.array([5, 2, 1])
    mask = np.arange(5)[None, :] < lengths[:, None]
    observed = paddle_adapter.run(paddle_adapter.build(config, layers, np.float64), x, h0, mask)
    _, carried = gru(x, params, DOCUMENTED, h0=h0[0], mask=mask, reverse=reverse)
    np.testing.assert_allclose(observed.h_last[0], carried, rtol=0, atol=1e-12)  # the state skips padding
    for row, length in enumerate(lengths):
        for t in range(length, 5):
            # Reversed, padding comes first and meets h0; forward, it meets the last valid state.
            state = h0[0, row] if reverse else carried[row]
            step, _ = gru(x[row:row + 1, t:t + 1], params, DOCUMENTED, h0=state[None])
            np.testing.assert_allclose(observed.outputs[row, t], step[0, 0], rtol=0, atol=1e-12,
                                       err_msg=f"row {row} step {t}")
            assert not np.allclose(observed.outputs[row, t], 0.0) and not np.allclose(observed.outputs[row, t], state)


# ----------------------------------------------------------------- containment


def test_a_crash_in_a_paddle_child_is_reported_with_its_signal_and_the_worker_stays(paddle_adapter, worker_env, basic):
    worker_pid = isolation.call("os:getpid", env=worker_env)
    with pytest.raises(isolation.WorkerCrashed, match="planted: the worker process was killed by signal SIGABRT \\(6\\)"):
        isolation.call("adapters.paddle_gru_worker:run_contained", "adapters.paddle_gru_worker:crash_with", "SIGABRT",
                       label="planted", env=worker_env)
    observed = paddle_adapter.run(basic, np.zeros((1, 2, 3), np.float32))
    assert observed.h_last.shape == (1, 1, 4)
    assert isolation.call("os:getpid", env=worker_env) == worker_pid, "the warm worker was lost"


def test_a_crash_of_the_worker_itself_is_reported_and_the_next_call_gets_a_new_one():
    env = {"GRU_EQUIV_TEST": "planted worker crash"}  # its own worker: paddle's stays warm
    first_pid = isolation.call("os:getpid", env=env)
    with pytest.raises(isolation.WorkerCrashed, match="os:abort: the worker process was killed by signal SIGABRT \\(6\\)"):
        isolation.call("os:abort", env=env)
    assert isolation.call("os:getpid", env=env) != first_pid


def test_finding_nn_gru_without_a_bias_segfaults_and_the_matrix_goes_on(paddle_adapter):
    if paddle_adapter.versions()["paddlepaddle"] != "3.3.1":
        pytest.skip("the segfault was measured with paddlepaddle 3.3.1")
    crashed, after = run_matrix(["paddle"], dtypes=(np.dtype(np.float32),),
                                configs=["nn.GRU(bias_ih_attr=False)", "nn.RNN(GRUCell(bias_ih_attr=False))"])
    assert crashed.error.startswith("WorkerCrashed: paddle nn.GRU(bias_ih_attr=False): the worker process was "
                                    "killed by signal SIGSEGV (11)"), crashed.error
    assert "phi::RnnKernel<float, phi::CPUContext>" in crashed.error  # paddle's own crash report, condensed
    # The finding is the headline; the row keeps paddle's report for the evidence.
    assert ("failure", "failed to run: WorkerCrashed: paddle nn.GRU(bias_ih_attr=False): the worker process was "
                       "killed by signal SIGSEGV (11)") in crashed.findings(), crashed.findings()
    assert after.error is None and after.matched == DOCUMENTED


class _Unrebuildable(Exception):
    """Pickles, but cannot be rebuilt from its message alone (as WorkerCrashed could not)."""

    def __init__(self, count: int, unit: str):
        super().__init__(f"{count} {unit}")


def raise_unrebuildable() -> None:
    raise _Unrebuildable(3, "apples")


def test_worker_errors_whose_exception_cannot_be_rebuilt_still_reach_the_caller():
    crashed = isolation.WorkerCrashed("target", "was killed by signal SIGSEGV (11)", "tail")
    again = pickle.loads(pickle.dumps(crashed))
    assert (again.target, again.status, again.output, str(again)) == (crashed.target, crashed.status, crashed.output, str(crashed))
    with pytest.raises(RuntimeError, match="_Unrebuildable: 3 apples"):
        isolation.call(f"{__name__}:raise_unrebuildable", env={"GRU_EQUIV_TEST": "unrebuildable error"})


def test_a_worker_started_ahead_and_never_called_is_not_waited_for_at_shutdown():
    env = {"GRU_EQUIV_TEST": "preload then shutdown", "GLOG_minloglevel": "2"}
    isolation.start(env, preload=("adapters.paddle_gru_worker",))  # seconds of import ahead
    worker = isolation._WORKERS.pop(tuple(sorted(env.items())))
    started = time.monotonic()
    worker.close()
    assert time.monotonic() - started < 1.0
    assert worker.process.returncode == -signal.SIGKILL
