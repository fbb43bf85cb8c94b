"""The tf-legacy adapter: the TF1 GRUCell, tf.raw_ops.GRUBlockCell and Keras 2 (tf_keras).

Exact round trips, the TF1 layout block by block, loud refusals, where the TF1 names lead today,
Keras 2's hard sigmoid and v1 defaults measured against Keras 3's, float64 really float64, padding
semantics, and the documentation claims checked against what runs.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from reference import Convention, fold_recurrent_biases, gru_stack, random_layers
from reference.activations import keras2_hard_sigmoid
from reports.matrix import compare_configuration

from .conftest import adapter_or_skip

BEFORE = Convention("z_on_previous", "before")
AFTER = Convention("z_on_previous", "after")
DTYPES = [np.float32, np.float64]
TF1_STEPS = "tf.compat.v1.nn.rnn_cell.GRUCell"
DYNAMIC = "tf.compat.v1.nn.dynamic_rnn(GRUCell)"
DYNAMIC_MASKED = "tf.compat.v1.nn.dynamic_rnn(GRUCell) + sequence_length"
BLOCK = "tf.raw_ops.GRUBlockCell"
K2_GRU = "tf_keras.layers.GRU"
V1_GRU = "tf.compat.v1.keras.layers.GRU"


@pytest.fixture(scope="module")
def adapter():
    return adapter_or_skip("tf-legacy")


@pytest.fixture(scope="module")
def tfl(adapter):
    from adapters import tf_legacy

    return tf_legacy


def _layers_for(config, input_size=3, hidden_size=4, dtype=np.float64, seed=0):
    """Random parameters with zeros where ``config`` holds no bias."""
    layers = random_layers(input_size, hidden_size, num_layers=config.num_layers,
                           bidirectional=config.bidirectional, seed=seed, dtype=dtype)
    return config.holdable(layers)


def _probe(config, batch=3, time_steps=5, input_size=3, hidden_size=4, dtype=np.float64, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, time_steps, input_size)).astype(dtype)
    h0 = rng.uniform(-0.8, 0.8, size=(config.num_layers * config.directions, batch, hidden_size)).astype(dtype)
    mask = None
    if config.masked:
        lengths = np.array([time_steps, 2, 1][:batch])
        mask = np.arange(time_steps)[None, :] < lengths[:, None]
    return x, h0, mask


def _max_error(observed, layers, config, x, h0, mask, convention, **options):
    outputs, h_last = gru_stack(x, layers, convention, h0=h0, mask=mask, merge=config.merge,
                                masked_output=config.masked_output, reverse=config.reverse,
                                **{**dict(config.reference_options), **options})
    error = float(np.abs(observed.h_last - h_last).max())
    if observed.outputs is not None:
        error = max(error, float(np.abs(observed.outputs - outputs).max()))
    return error


# ----------------------------------------------------------------- building and extracting


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_build_then_extract_is_bit_exact_for_every_configuration(adapter, dtype):
    for config in adapter.configurations():
        layers = _layers_for(config, dtype=np.float64)
        extracted = adapter.extract(adapter.build(config, layers, dtype))
        assert len(extracted) == config.num_layers, (config.label, len(extracted))
        for index, (wanted, got) in enumerate(zip(layers, extracted, strict=True)):
            for direction, (p, q) in enumerate(zip(wanted, got, strict=True)):
                where = p.astype(dtype).first_difference(q)
                assert where is None, f"{config.label} [{np.dtype(dtype).name}] layer {index} direction {direction}: {where}"


def test_the_tf1_layout_puts_each_gate_block_where_the_cell_reads_it(tfl):
    (params,), = random_layers(3, 4, seed=5)
    params = params.replace(c_z=np.zeros(4), c_r=np.zeros(4), c_h=np.zeros(4))
    packed = tfl.to_tf1(params)
    shapes = {key: value.shape for key, value in packed.items()}
    assert shapes == {"gate_kernel": (7, 8), "gate_bias": (8,), "candidate_kernel": (7, 4), "candidate_bias": (4,)}, shapes
    # legacy_cells.py:604-610: concat([x, h]) @ gates/kernel, split r then u
    assert np.array_equal(packed["gate_kernel"][:3, :4], params.W_r) and np.array_equal(packed["gate_kernel"][:3, 4:], params.W_z)
    assert np.array_equal(packed["gate_kernel"][3:, :4], params.U_r) and np.array_equal(packed["gate_kernel"][3:, 4:], params.U_z)
    assert np.array_equal(packed["gate_bias"], np.concatenate([params.b_r, params.b_z]))
    assert np.array_equal(packed["candidate_kernel"], np.concatenate([params.W_h, params.U_h]))
    back = tfl.from_tf1(packed["gate_kernel"], packed["gate_bias"], packed["candidate_kernel"], packed["candidate_bias"])
    assert back.first_difference(params) is None, back.first_difference(params)
    with pytest.raises(ValueError, match=r"gates/bias has shape \(7,\); .* must be \(8,\)"):
        tfl.from_tf1(packed["gate_kernel"], packed["gate_bias"][:7], packed["candidate_kernel"], packed["candidate_bias"])


def test_a_users_tf1_cell_starts_with_gate_bias_one_and_computes_reset_before(adapter, tfl):
    import tensorflow as tf

    with tfl._quiet():
        cell = tfl.legacy_cells.GRUCell(4, dtype="float64")
        cell(tf.zeros((1, 3), tf.float64), tf.zeros((1, 4), tf.float64))  # builds it, default initialisers
    config = adapter.describe(cell)
    assert config.name == TF1_STEPS and config.claimed == BEFORE, config
    (params,), = adapter.extract(cell)
    # legacy_cells.py:574-582: the gate bias starts at 1.0, the candidate bias at 0
    assert np.all(params.b_r == 1.0) and np.all(params.b_z == 1.0), (params.b_r, params.b_z)
    assert np.all(params.b_h == 0.0) and not any(np.any(getattr(params, c)) for c in ("c_z", "c_r", "c_h")), params.b_h
    x, h0, _ = _probe(config, input_size=3, hidden_size=4)
    before = cell.get_weights()
    observed = adapter.run(cell, x, h0)
    assert all(np.array_equal(a, b) for a, b in zip(before, cell.get_weights())), "run changed the cell's weights"
    errors = {c.id: _max_error(observed, [[params]], config, x, h0, None, c) for c in (BEFORE, AFTER)}
    assert errors[BEFORE.id] < 1e-12 and errors[AFTER.id] > 1e-3, errors


def test_a_users_multirnncell_runs_through_dynamic_rnn(adapter, tfl):
    import tensorflow as tf

    with tfl._quiet():
        cells = [tfl.legacy_cells.GRUCell(4, dtype="float64") for _ in range(2)]
        stack = tfl.legacy_cells.MultiRNNCell(cells)
        tf.compat.v1.nn.dynamic_rnn(stack, tf.zeros((1, 2, 3), tf.float64), dtype=tf.float64)
    config = adapter.describe(stack)
    assert config.num_layers == 2 and config.option("runner") == "dynamic_rnn", config
    layers = adapter.extract(stack)
    x, h0, _ = _probe(config)
    error = _max_error(adapter.run(stack, x, h0), layers, config, x, h0, None, BEFORE)
    assert error < 1e-12, error


# ----------------------------------------------------------------- refusals


@pytest.mark.parametrize("name", [TF1_STEPS, BLOCK, f"{V1_GRU}"])
def test_single_bias_rows_refuse_recurrent_biases_which_fold_exactly(adapter, name):
    config = adapter.configuration(name)
    layers = random_layers(3, 4, seed=2)  # every c_* non-zero
    with pytest.raises(ValueError, match="c_z, c_r, c_h.*fold_recurrent_biases"):
        adapter.build(config, layers, np.float64)
    folded = [[fold_recurrent_biases(layers[0][0], BEFORE)]]
    x, h0, _ = _probe(config)
    observed = adapter.run(adapter.build(config, folded, np.float32 if name == BLOCK else np.float64),
                           x.astype(np.float32) if name == BLOCK else x, h0)
    outputs, h_last = gru_stack(x, layers, BEFORE, h0=h0, **dict(config.reference_options))  # the unfolded model
    error = max(np.abs(observed.outputs - outputs).max(), np.abs(observed.h_last - h_last).max())
    assert error < (1e-5 if name == BLOCK else 1e-12), f"{name}: folded biases differ by {error:.3g}"


def test_build_refuses_the_wrong_structure_dtype_and_absent_biases(adapter):
    for name in (DYNAMIC, K2_GRU):
        config = adapter.configuration(name)
        with pytest.raises(ValueError, match=r"needs 1 layer\(s\) x 1 direction\(s\), the parameters have 2 x 1"):
            adapter.build(config, _layers_for(adapter.configuration("[tf_keras.layers.GRU, GRU]")), np.float32)
        with pytest.raises(ValueError, match="dtype float16 is not supported"):
            adapter.build(config, _layers_for(config), np.float16)
    with pytest.raises(ValueError, match="non-zero biases, which use_bias=False cannot hold"):
        adapter.build(adapter.configuration(f"{K2_GRU}(use_bias=False)"), random_layers(3, 4), np.float32)
    with pytest.raises(ValueError, match="recurrent biases c_z, c_r, c_h are non-zero"):
        adapter.build(adapter.configuration(f"{K2_GRU}(reset_after=False)"), random_layers(3, 4), np.float32)
    with pytest.raises(ValueError, match="tf-legacy has no configuration 'GRU'"):
        adapter.configuration("GRU")


@pytest.mark.parametrize("name", [TF1_STEPS, DYNAMIC_MASKED, BLOCK, f"{K2_GRU} + mask"])
def test_run_rejects_bad_inputs_with_the_fix(adapter, name):
    config = adapter.configuration(name)
    layer = adapter.build(config, _layers_for(config, dtype=np.float32), np.float32)
    with pytest.raises(TypeError, match="x has dtype float64 but the layer computes in float32.*astype"):
        adapter.run(layer, np.zeros((1, 3, 3)))
    with pytest.raises(ValueError, match=r"x has 5 features per step"):
        adapter.run(layer, np.zeros((1, 3, 5), np.float32))
    with pytest.raises(ValueError, match=r"h0 has shape \(2, 1, 4\)"):
        adapter.run(layer, np.zeros((1, 3, 3), np.float32), np.zeros((2, 1, 4), np.float32))
    if config.masked:
        with pytest.raises(ValueError, match=r"mask row 0 is \[1, 0, 1\].*right padding"):
            adapter.run(layer, np.zeros((1, 3, 3), np.float32), mask=np.array([[True, False, True]]))
    else:
        with pytest.raises(ValueError, match="no notion of padding"):
            adapter.run(layer, np.zeros((1, 3, 3), np.float32), mask=np.ones((1, 3), bool))


def test_objects_of_other_frameworks_and_other_activations_are_refused(adapter, tfl):
    import keras
    import tf_keras

    with pytest.raises(TypeError, match="not a tf-legacy object: got keras.src.layers.rnn.gru.GRU"):
        adapter.describe(keras.layers.GRU(4))
    relu = tf_keras.layers.GRU(4, activation="relu", return_state=True)
    relu.build((None, None, 3))
    with pytest.raises(ValueError, match="candidate activation 'relu' does not compute tanh"):
        adapter.extract(relu)
    tanh_gates = tf_keras.layers.GRU(4, recurrent_activation="tanh", return_state=True)
    tanh_gates.build((None, None, 3))
    with pytest.raises(ValueError, match="recurrent_activation 'tanh' computes neither sigmoid nor Keras 2's hard_sigmoid"):
        adapter.describe(tanh_gates)
    unbuilt = tf_keras.layers.GRU(4, return_state=True)
    with pytest.raises(ValueError, match="is not built"):
        adapter.run(unbuilt, np.zeros((1, 2, 3), np.float32))


# ----------------------------------------------------------------- GRUBlockCell


def test_gru_block_cell_runs_float32_on_cpu_and_tensorflow_refuses_float64(adapter):
    import tensorflow as tf

    config = adapter.configuration(BLOCK)
    layers = _layers_for(config)
    x, h0, _ = _probe(config)
    observed = adapter.run(adapter.build(config, layers, np.float32), x.astype(np.float32), h0.astype(np.float32))
    error = _max_error(observed, layers, config, x, h0, None, BEFORE)
    assert observed.outputs.dtype == np.float32 and error < 1e-6, (observed.outputs.dtype, error)
    # the TF1 cell and the fused op compute one function from one layout
    cell_run = adapter.run(adapter.build(adapter.configuration(TF1_STEPS), layers, np.float32), x.astype(np.float32),
                           h0.astype(np.float32))
    assert np.abs(cell_run.outputs - observed.outputs).max() < 1e-6
    with pytest.raises(TypeError, match=r"GRUBlockCell cannot compute in float64;.*'T' of double is not in the list "
                                        r"of allowed values: float.*rnn_ops.cc:25-26"):
        adapter.run(adapter.build(config, layers, np.float64), x, h0)
    # the op's own registration, independent of this adapter
    with pytest.raises(tf.errors.InvalidArgumentError, match="allowed values: float"):
        tf.raw_ops.GRUBlockCell(x=np.zeros((1, 1)), h_prev=np.zeros((1, 1)), w_ru=np.zeros((2, 2)),
                                w_c=np.zeros((2, 1)), b_ru=np.zeros(2), b_c=np.zeros(1))


# ----------------------------------------------------------------- where the TF1 names lead


def test_tf1_grucell_name_is_unavailable_under_keras3_without_the_legacy_switch(adapter, monkeypatch):
    """A fresh loader of the public name's kind, read with the switch off: the answer does not depend on whether
    an earlier test in this process ran with TF_USE_LEGACY_KERAS set (a loader reads it when first used)."""
    import tensorflow as tf
    from tensorflow.python.util.lazy_loader import KerasLazyLoader

    monkeypatch.delenv("TF_USE_LEGACY_KERAS", raising=False)
    rnn_cell = KerasLazyLoader({}, mode="v1", submodule="__internal__.legacy.rnn_cell", name="rnn_cell")
    with pytest.raises(AttributeError, match="`GRUCell` is not available with Keras 3"):
        rnn_cell.GRUCell  # noqa: B018
    assert isinstance(tf.compat.v1.nn.rnn_cell, KerasLazyLoader), "the public name is such a loader"


def test_with_tf_use_legacy_keras_the_tf1_names_are_the_classes_measured_here(adapter, tfl, monkeypatch):
    """The public names are KerasLazyLoaders (tensorflow/_api/v2/compat/v1/__init__.py:697, :724-728) that read
    TF_USE_LEGACY_KERAS when first used; fresh loaders of the same kind show where they lead with it set
    (a fresh process with the variable set would show the same, at the cost of importing TensorFlow again)."""
    import tensorflow as tf
    from tensorflow.python.util.lazy_loader import KerasLazyLoader

    public = tf.compat.v1.nn.rnn_cell
    assert isinstance(public, KerasLazyLoader) and public._tfll_submodule == "__internal__.legacy.rnn_cell", public
    monkeypatch.setenv("TF_USE_LEGACY_KERAS", "1")
    rnn_cell = KerasLazyLoader({}, mode="v1", submodule="__internal__.legacy.rnn_cell", name="rnn_cell")
    keras_v1 = KerasLazyLoader({}, mode="v1")
    found = {
        "rnn_cell.GRUCell": rnn_cell.GRUCell is tfl.legacy_cells.GRUCell,
        "rnn_cell.MultiRNNCell": rnn_cell.MultiRNNCell is tfl.legacy_cells.MultiRNNCell,
        "keras.layers.GRU": keras_v1.layers.GRU is tfl.keras2_gru_v1.GRU,
        "keras.layers.GRUCell": keras_v1.layers.GRUCell is tfl.keras2_gru_v1.GRUCell,
    }
    assert all(found.values()), found


# ----------------------------------------------------------------- Keras 2 specifics


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_keras2_hard_sigmoid_is_reproduced_bit_for_bit(tfl, dtype):
    import tensorflow as tf
    import tf_keras

    grid = np.concatenate([np.linspace(-6, 6, 241), [-2.5, 2.5, -2.5000001, 2.4999999, 1e-8]]).astype(dtype)
    expected = tf_keras.activations.hard_sigmoid(tf.constant(grid)).numpy()
    got = keras2_hard_sigmoid(grid.copy())
    assert got.dtype == np.dtype(dtype) and np.array_equal(got, expected), np.abs(got - expected).max()
    buffer = grid.copy()
    assert keras2_hard_sigmoid(buffer, out=buffer) is buffer and np.array_equal(buffer, expected)


def test_keras2_and_keras3_hard_sigmoids_differ(tfl):
    import keras

    at_one = float(np.asarray(keras.activations.hard_sigmoid(np.array([1.0], np.float32)))[0])
    assert keras2_hard_sigmoid(np.array([1.0]))[0] == pytest.approx(0.7) and at_one == pytest.approx(1 / 6 + 0.5), at_one


def test_default_activations_and_reset_placement_differ_from_keras3(tfl):
    import keras
    import tf_keras

    v1 = tfl.keras2_gru_v1.GRU(4)
    v2 = tf_keras.layers.GRU(4)
    k3 = keras.layers.GRU(4)
    found = {
        "tf.compat.v1.keras GRU": (v1.reset_after, v1.recurrent_activation.__name__),
        "tf_keras GRU": (v2.reset_after, v2.recurrent_activation.__name__),
        "keras 3 GRU": (k3.cell.reset_after, k3.cell.recurrent_activation.__name__),
    }
    assert found == {"tf.compat.v1.keras GRU": (False, "hard_sigmoid"), "tf_keras GRU": (True, "sigmoid"),
                     "keras 3 GRU": (True, "sigmoid")}, found


@pytest.mark.parametrize("name", [V1_GRU, f"{V1_GRU} + mask", "tf.compat.v1.keras.layers.RNN(GRUCell)"])
def test_v1_default_rows_need_the_hard_sigmoid_to_match(adapter, tfl, name):
    config = adapter.configuration(name)
    assert dict(config.reference_options) == {"gate_activation": keras2_hard_sigmoid}, config.reference_options
    layers = _layers_for(config)
    x, h0, mask = _probe(config)
    observed = adapter.run(adapter.build(config, layers, np.float64), x, h0, mask)
    with_hard = _max_error(observed, layers, config, x, h0, mask, BEFORE)
    with_sigmoid = _max_error(observed, layers, config, x, h0, mask, BEFORE, gate_activation=tfl.sigmoid)
    assert with_hard < 1e-12 and with_sigmoid > 1e-2, (with_hard, with_sigmoid)


def test_a_users_v1_gru_is_described_with_its_hard_sigmoid(adapter, tfl):
    layer = tfl.keras2_gru_v1.GRU(4, return_sequences=True, return_state=True, dtype="float64")
    layer(np.zeros((1, 2, 3)))
    config = adapter.describe(layer)
    assert config.claimed == BEFORE and not config.separate_recurrent_bias, config
    assert dict(config.reference_options).get("gate_activation") is keras2_hard_sigmoid, config.reference_options
    layers = adapter.extract(layer)
    x, h0, _ = _probe(config)
    error = _max_error(adapter.run(layer, x, h0), layers, config, x, h0, None, BEFORE)
    assert error < 1e-12, error


def test_tf_keras_gru_docstring_contradicts_its_default_and_the_code_follows_the_argument(adapter, tfl):
    doc = " ".join(tfl.keras2_gru.GRU.__doc__.split())
    assert "The default one is based on [v3](https://arxiv.org/abs/1406.1078v3) and has reset gate applied to hidden " \
           "state before matrix multiplication" in doc
    assert inspect.signature(tfl.keras2_gru.GRU.__init__).parameters["reset_after"].default is True
    result = compare_configuration(adapter, adapter.configuration(K2_GRU), np.float64)
    assert result.matched == AFTER, result.explain()


def test_the_tf1_cell_equals_keras2_gru_cell_only_with_reset_after_false(adapter, tfl):
    """Its deprecation warning says "equivalent as tf.keras.layers.GRUCell"; the default GRUCell is reset-after."""
    config = adapter.configuration(TF1_STEPS)
    layers = _layers_for(config)
    x, h0, _ = _probe(config)
    tf1 = adapter.run(adapter.build(config, layers, np.float64), x, h0)
    errors = {}
    for reset_after in (True, False):
        keras2 = adapter.configuration(f"{K2_GRU}(reset_after=False)" if not reset_after else K2_GRU)
        run = adapter.run(adapter.build(keras2, layers, np.float64), x, h0)
        errors[reset_after] = float(np.abs(run.outputs - tf1.outputs).max())
    assert errors[False] < 1e-12 and errors[True] > 1e-2, errors


# ----------------------------------------------------------------- precision and padding


@pytest.mark.parametrize("name", [TF1_STEPS, "tf.compat.v1.nn.bidirectional_dynamic_rnn(GRUCell, GRUCell) + sequence_length",
                                  K2_GRU, f"{K2_GRU}(reset_after=False) + mask", V1_GRU])
def test_float64_rows_compute_in_float64(adapter, name):
    config = adapter.configuration(name)
    layers = _layers_for(config)
    x, h0, mask = _probe(config)
    observed = adapter.run(adapter.build(config, layers, np.float64), x, h0, mask)
    error = _max_error(observed, layers, config, x, h0, mask, config.claimed)
    assert observed.h_last.dtype == np.float64 and error < 1e-13, f"{name}: {observed.h_last.dtype}, error {error:.3g}"


def test_dynamic_rnn_outputs_zeros_at_padding_and_keeps_the_last_valid_state(adapter):
    config = adapter.configuration(DYNAMIC_MASKED)
    layers = _layers_for(config)
    x, h0, mask = _probe(config)
    observed = adapter.run(adapter.build(config, layers, np.float64), x, h0, mask)
    lengths = mask.sum(axis=1)
    assert np.all(observed.outputs[~mask] == 0.0), observed.outputs[~mask]
    for row, length in enumerate(lengths):
        assert np.array_equal(observed.h_last[0, row], observed.outputs[row, length - 1]), row
    unpadded = adapter.run(adapter.build(config, layers, np.float64), x[1:2, :2], h0[:, 1:2])
    drift = np.abs(unpadded.h_last[0, 0] - observed.h_last[0, 1]).max()
    assert drift < 1e-14, f"padding changed the state by {drift:.3g}"


def test_keras2_masked_steps_repeat_the_previous_output_and_backwards_padding_reads_zero(adapter):
    forward = adapter.configuration(f"{K2_GRU} + mask")
    layers = _layers_for(forward)
    x, h0, mask = _probe(forward)
    observed = adapter.run(adapter.build(forward, layers, np.float64), x, h0, mask)
    assert np.array_equal(observed.outputs[1, 2:], np.repeat(observed.outputs[1, 1:2], 3, axis=0))
    backward = adapter.configuration(f"{K2_GRU}(go_backwards=True) + mask")
    observed = adapter.run(adapter.build(backward, layers, np.float64), x, h0, mask)
    # processed first, the trailing padding outputs zeros while the state carries h0 into the first real step
    assert np.all(observed.outputs[2, 1:] == 0.0) and np.all(observed.outputs[1, 2:] == 0.0), observed.outputs[2]
    error = _max_error(observed, layers, backward, x, h0, mask, AFTER)
    assert error < 1e-12, error
