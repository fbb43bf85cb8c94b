"""Layout conversions: gate order and orientation as each specification defines them, exact round
trips, refusals where a layout cannot hold a parameter, and agreement with ONNX's own reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference import Convention, GRUParams, fold_recurrent_biases, gru_stack, layouts

from .conftest import module_or_skip


def _labelled(input_size=2, hidden_size=3) -> GRUParams:
    """Each gate's arrays filled with a constant naming gate and role, so a misplaced block shows."""
    value = {"z": 1.0, "r": 2.0, "h": 3.0}
    role = {"W": 0.0, "U": 0.1, "b": 0.2, "c": 0.3}
    arrays = {}
    for name, array in GRUParams.zeros(input_size, hidden_size).arrays():
        arrays[name] = np.full(array.shape, value[name[-1]] + role[name[0]])
    return GRUParams(**arrays)


def test_torch_layout_rows_are_r_z_n_and_transposed():
    packed = layouts.to_torch(_labelled())
    assert packed["weight_ih"].shape == (9, 2) and packed["weight_hh"].shape == (9, 3)
    np.testing.assert_array_equal(packed["weight_ih"][:, 0], [2.0] * 3 + [1.0] * 3 + [3.0] * 3)
    np.testing.assert_array_equal(packed["bias_hh"], [2.3] * 3 + [1.3] * 3 + [3.3] * 3)
    W = np.arange(6.0).reshape(3, 2)  # distinct (input, unit) entries: a missing transpose would show
    p = GRUParams.random(3, 2).replace(W_r=W)
    assert layouts.to_torch(p)["weight_ih"][:2, :].tolist() == W.T.tolist()


def test_keras_layout_columns_are_z_r_h():
    kernel, recurrent, bias = layouts.to_keras(_labelled(), reset_after=True)
    assert kernel.shape == (2, 9) and recurrent.shape == (3, 9) and bias.shape == (2, 9)
    np.testing.assert_array_equal(kernel[0], [1.0] * 3 + [2.0] * 3 + [3.0] * 3)
    np.testing.assert_array_equal(bias[1], [1.3] * 3 + [2.3] * 3 + [3.3] * 3)
    W = np.arange(6.0).reshape(3, 2)
    p = GRUParams.random(3, 2).replace(W_z=W)
    np.testing.assert_array_equal(layouts.to_keras(p)[0][:, :2], W)


def test_onnx_layout_rows_are_z_r_h_and_bias_is_input_then_recurrent():
    packed = layouts.to_onnx([_labelled(), _labelled()])
    assert packed["W"].shape == (2, 9, 2) and packed["R"].shape == (2, 9, 3) and packed["B"].shape == (2, 18)
    np.testing.assert_array_equal(packed["W"][1, :, 0], [1.0] * 3 + [2.0] * 3 + [3.0] * 3)
    np.testing.assert_array_equal(packed["B"][0], [1.2] * 3 + [2.2] * 3 + [3.2] * 3 + [1.3] * 3 + [2.3] * 3 + [3.3] * 3)


shapes = st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(0, 2**16), st.sampled_from([np.float32, np.float64]))


@settings(max_examples=30, deadline=None)
@given(shapes)
def test_round_trips_are_bit_exact(shape):
    input_size, hidden_size, seed, dtype = shape
    p = GRUParams.random(input_size, hidden_size, seed=seed, dtype=dtype)
    assert layouts.from_torch(**layouts.to_torch(p)).identical(p)
    assert layouts.from_keras(*layouts.to_keras(p, reset_after=True), reset_after=True).identical(p)
    assert layouts.from_onnx(**layouts.to_onnx([p])).identical(p)
    q = GRUParams.random(input_size, hidden_size, seed=seed + 1, dtype=dtype)
    packed = layouts.to_onnx([p, q])
    assert layouts.from_onnx(**packed, direction=1).identical(q)
    no_recurrent_bias = p.replace(**{f"c_{g}": np.zeros(hidden_size, dtype) for g in "zrh"})
    assert layouts.from_keras(*layouts.to_keras(no_recurrent_bias, reset_after=False), reset_after=False).identical(
        no_recurrent_bias
    )
    no_bias = GRUParams.random(input_size, hidden_size, seed=seed, dtype=dtype, bias=False)
    assert layouts.from_torch(**layouts.to_torch(no_bias, bias=False)).identical(no_bias)
    assert layouts.from_keras(*layouts.to_keras(no_bias, use_bias=False)).identical(no_bias)


def test_single_bias_layout_refuses_recurrent_biases_and_explains_the_fold():
    p = GRUParams.random(2, 3, seed=1)
    with pytest.raises(ValueError, match="c_z, c_r, c_h are non-zero.*fold_recurrent_biases"):
        layouts.to_keras(p, reset_after=False)
    folded = fold_recurrent_biases(p, "z_on_previous+reset_before")
    kernel, recurrent, bias = layouts.to_keras(folded, reset_after=False)
    np.testing.assert_array_equal(bias[:3], p.b_z + p.c_z)
    with pytest.raises(ValueError, match="cannot be folded"):
        fold_recurrent_biases(p, "z_on_previous+reset_after")


def test_bias_free_layouts_refuse_nonzero_biases():
    p = GRUParams.random(2, 3, seed=1)
    with pytest.raises(ValueError, match="non-zero biases.*bias=False"):
        layouts.to_torch(p, bias=False)
    with pytest.raises(ValueError, match="use_bias=False"):
        layouts.to_keras(p, use_bias=False)


@pytest.mark.parametrize("call,message", [
    (lambda: layouts.from_torch(np.zeros((9, 2)), np.zeros((6, 3))), "weight_hh has shape \\(6, 3\\)"),
    (lambda: layouts.from_torch(np.zeros((6, 2)), np.zeros((9, 3))), "weight_ih has 6 rows.*expected 3 \\* hidden_size = 9"),
    (lambda: layouts.from_torch(np.zeros((9, 2)), np.zeros((9, 3)), np.zeros(9)), "give both bias_ih and bias_hh"),
    (lambda: layouts.from_keras(np.zeros((2, 9)), np.zeros((3, 9)), np.zeros(9), reset_after=True),
     "bias has shape \\(9,\\); reset_after=True expects \\(2, 9\\) \\(that is the reset_after=False layout\\)"),
    (lambda: layouts.from_keras(np.zeros((2, 8)), np.zeros((3, 9))), "kernel \\(columns\\) has 8 rows"),
    (lambda: layouts.from_onnx(np.zeros((1, 9, 2)), np.zeros((1, 9, 3)), direction=1), "direction 1 is out of range"),
    (lambda: layouts.from_onnx(np.zeros((1, 9, 2)), np.zeros((1, 9, 3)), np.zeros((1, 9))), "B has shape \\(1, 9\\), expected \\(1, 18\\)"),
    (lambda: layouts.from_torch(np.zeros((9, 2), np.int64), np.zeros((9, 3))), "weight_ih has dtype int64"),
])
def test_layout_errors_name_the_tensor_and_shape(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


# ---------------------------------------------------------------- ONNX's own reference implementation


def _run_onnx_gru(packed, x_time_major, h0, linear_before_reset, direction):
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    directions, hidden = packed["R"].shape[0], packed["R"].shape[2]
    node = helper.make_node(
        "GRU", ["X", "W", "R", "B", "", "initial_h"], ["Y", "Y_h"],
        hidden_size=hidden, linear_before_reset=linear_before_reset, direction=direction,
    )
    inputs = [helper.make_tensor_value_info(n, TensorProto.DOUBLE, None) for n in ("X", "W", "R", "B", "initial_h")]
    outputs = [helper.make_tensor_value_info(n, TensorProto.DOUBLE, None) for n in ("Y", "Y_h")]
    model = helper.make_model(helper.make_graph([node], "gru", inputs, outputs))
    return ReferenceEvaluator(model).run(None, {"X": x_time_major, "initial_h": h0, **packed})


@pytest.mark.parametrize("linear_before_reset,reset", [(0, "before"), (1, "after")])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_reference_agrees_with_onnx_reference_evaluator(linear_before_reset, reset, direction):
    """ONNX's GRU (z on previous; linear_before_reset=1 is reset after) against ours, via to_onnx."""
    module_or_skip("onnx")  # the independent ONNX check needs onnx; the layout tests above do not
    rng = np.random.default_rng(3)
    directions = 2 if direction == "bidirectional" else 1
    params = [GRUParams.random(3, 4, seed=20 + d) for d in range(directions)]
    x = rng.normal(size=(2, 5, 3))
    h0 = rng.uniform(-0.5, 0.5, size=(directions, 2, 4))
    Y, Y_h = _run_onnx_gru(layouts.to_onnx(params), x.transpose(1, 0, 2).copy(), h0, linear_before_reset, direction)
    convention = Convention("z_on_previous", reset)
    outputs, h_last = gru_stack(x, [params], convention, h0=h0, reverse=direction == "reverse")
    # Y is [time, directions, batch, hidden]; ours concatenates directions on the feature axis.
    ours = outputs.reshape(2, 5, directions, 4).transpose(1, 2, 0, 3)
    np.testing.assert_allclose(Y, ours, rtol=0, atol=1e-13)
    np.testing.assert_allclose(Y_h, h_last, rtol=0, atol=1e-13)
    other = Convention("z_on_previous", "after" if reset == "before" else "before")
    assert np.abs(gru_stack(x, [params], other, h0=h0, reverse=direction == "reverse")[0] - outputs).max() > 1e-2
