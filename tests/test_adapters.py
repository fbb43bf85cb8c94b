"""Porting weights into real framework layers and back: exact, non-mutating, and loud on bad input."""

from __future__ import annotations

import numpy as np
import pytest

from reference import Convention, GRUParams, compare_forward, gru_stack, random_layers

from .conftest import adapter_or_skip

DTYPES = [np.float32, np.float64]


def _identical_stacks(a, b) -> str | None:
    for index, (layer_a, layer_b) in enumerate(zip(a, b, strict=True)):
        for direction, (p, q) in enumerate(zip(layer_a, layer_b, strict=True)):
            where = p.first_difference(q)
            if where:
                return f"layer {index} direction {direction}: {where}"
    return None


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_torch_to_keras_to_torch_round_trip_is_bit_exact(dtype):
    torch_adapter, keras_adapter = adapter_or_skip("torch"), adapter_or_skip("keras")
    import torch

    torch.manual_seed(0)
    source = torch.nn.GRU(4, 5, num_layers=2, bidirectional=True, dtype={np.float32: torch.float32, np.float64: torch.float64}[dtype])
    with torch.no_grad():
        for parameter in source.parameters():
            parameter.normal_()  # dense, distinct values in every gate, biases included
    canonical = torch_adapter.extract(source)
    keras_stack = keras_adapter.build(keras_adapter.configuration("[Bidirectional(GRU), Bidirectional(GRU)]"), canonical, dtype)
    back = keras_adapter.extract(keras_stack)
    assert _identical_stacks(canonical, back) is None, _identical_stacks(canonical, back)
    torch_again = torch_adapter.build(torch_adapter.configuration("nn.GRU(num_layers=2, bidirectional=True)"), back, dtype)
    for name, tensor in source.state_dict().items():
        assert torch.equal(tensor, torch_again.state_dict()[name]), name


def test_torch_weights_refused_by_a_single_bias_keras_layer():
    torch_adapter, keras_adapter = adapter_or_skip("torch"), adapter_or_skip("keras")
    import torch

    canonical = torch_adapter.extract(torch.nn.GRU(3, 4))
    with pytest.raises(ValueError, match="reset_after=False layout has a single bias.*no slot"):
        keras_adapter.build(keras_adapter.configuration("GRU(reset_after=False)"), canonical, np.float32)


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_build_refuses_parameters_of_the_wrong_structure(framework):
    adapter = adapter_or_skip(framework)
    config = next(c for c in adapter.configurations() if c.num_layers == 1 and not c.bidirectional)
    with pytest.raises(ValueError, match="needs 1 layer\\(s\\) x 1 direction\\(s\\), the parameters have 2 x 1"):
        adapter.build(config, random_layers(3, 4, num_layers=2), np.float32)
    with pytest.raises(ValueError, match="dtype float16 is not supported"):
        adapter.build(config, random_layers(3, 4), np.float16)


def _check_user_model(adapter, layer, x, h0=None, mask=None):
    """What a user does with their own trained layer: describe, extract, run, compare."""
    config = adapter.describe(layer)
    layers = adapter.extract(layer)
    observed = adapter.run(layer, x, h0, mask)
    differences = {}
    for convention in Convention.all():
        outputs, h_last = gru_stack(x, layers, convention, h0=h0, mask=mask, merge=config.merge,
                                    masked_output=config.masked_output, reverse=config.reverse)
        differences[convention] = compare_forward(observed.outputs, observed.h_last, outputs, h_last, x.dtype)
    return config, [c for c, d in differences.items() if d.passed]


def test_a_users_torch_model_is_extracted_run_and_left_untouched():
    adapter = adapter_or_skip("torch")
    import torch

    torch.manual_seed(1)
    model = torch.nn.GRU(3, 4, num_layers=2, batch_first=False, bidirectional=True, dropout=0.5).double()
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = np.random.default_rng(0).normal(size=(2, 6, 3))
    h0 = np.random.default_rng(1).uniform(-1, 1, size=(4, 2, 4))
    config, matched = _check_user_model(adapter, model, x, h0)
    assert matched == [Convention("z_on_previous", "after")]
    assert config.num_layers == 2 and config.bidirectional
    assert not model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_a_users_keras_layer_is_extracted_run_and_left_untouched():
    adapter = adapter_or_skip("keras")
    import keras

    layer = keras.layers.GRU(4, reset_after=False, return_sequences=True, return_state=True, dtype="float64",
                             bias_initializer="random_normal")
    x = np.random.default_rng(0).normal(size=(2, 6, 3))
    layer(x)
    before = [w.copy() for w in layer.get_weights()]
    mask = np.array([[True] * 6, [True] * 3 + [False] * 3])
    config, matched = _check_user_model(adapter, layer, x, np.full((1, 2, 4), 0.5), mask)
    assert matched == [Convention("z_on_previous", "before")]
    assert all(np.array_equal(a, b) for a, b in zip(before, layer.get_weights()))


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_run_rejects_input_of_another_dtype_with_the_fix(framework):
    adapter = adapter_or_skip(framework)
    config = adapter.configurations()[0]
    layer = adapter.build(config, random_layers(3, 4, dtype=np.float32), np.float32)
    with pytest.raises(TypeError, match="x has dtype float64 but the layer computes in .*float32.*astype"):
        adapter.run(layer, np.zeros((1, 2, 3)))


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_run_rejects_masks_that_are_not_right_padded(framework):
    adapter = adapter_or_skip(framework)
    config = next(c for c in adapter.configurations() if c.masked)
    layer = adapter.build(config, random_layers(3, 4, num_layers=config.num_layers, bidirectional=config.bidirectional), np.float64)
    mask = np.array([[True, False, True]])
    with pytest.raises(ValueError, match="mask row 0 is \\[1, 0, 1\\].*right padding"):
        adapter.run(layer, np.zeros((1, 3, 3)), mask=mask)


def test_torch_refuses_a_model_in_training_mode_with_dropout():
    adapter = adapter_or_skip("torch")
    import torch

    model = torch.nn.GRU(3, 4, num_layers=2, dropout=0.3)
    with pytest.raises(ValueError, match="dropout=0.3 and is in training mode.*\\.eval\\(\\)"):
        adapter.run(model, np.zeros((2, 1, 3), np.float32))
    assert model.training  # left as the user had it


def test_torch_cell_refuses_a_mask_and_other_modules():
    adapter = adapter_or_skip("torch")
    import torch

    with pytest.raises(ValueError, match="GRUCell has no notion of padding"):
        adapter.run(torch.nn.GRUCell(3, 4), np.zeros((1, 2, 3), np.float32), mask=np.ones((1, 2), bool))
    with pytest.raises(TypeError, match="expected torch.nn.GRU or torch.nn.GRUCell, got LSTM"):
        adapter.extract(torch.nn.LSTM(3, 4))


def test_keras_refuses_non_gru_cells_and_other_activations():
    adapter = adapter_or_skip("keras")
    import keras

    with pytest.raises(TypeError, match="got Dense"):
        adapter.extract(keras.layers.Dense(3))
    with pytest.raises(TypeError, match="wraps a LSTMCell, not a GRUCell"):
        adapter.extract(keras.layers.RNN(keras.layers.LSTMCell(3)))
    layer = keras.layers.GRU(3, recurrent_activation="hard_sigmoid")
    layer.build((None, None, 2))
    with pytest.raises(ValueError, match="recurrent_activation='hard_sigmoid'"):
        adapter.extract(layer)


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_bias_free_configurations_refuse_biased_parameters(framework):
    adapter = adapter_or_skip(framework)
    config = next(c for c in adapter.configurations() if not c.bias)
    with pytest.raises(ValueError, match="non-zero biases"):
        adapter.build(config, random_layers(3, 4), np.float32)


def test_gru_params_from_a_framework_are_plain_float_arrays():
    adapter = adapter_or_skip("torch")
    import torch

    (params,), = adapter.extract(torch.nn.GRU(2, 3))
    assert isinstance(params, GRUParams) and params.dtype == np.float32 and params.W_z.shape == (2, 3)
