"""The oracle itself: formulas against scalar arithmetic, masking, stacking, transforms, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference import (
    Convention, GRUParams, flip_update_weighting, fold_recurrent_biases, gru, gru_stack, random_layers,
)
from reference.forward import merge_directions

CONVENTIONS = Convention.all()
ids = lambda c: c.id  # noqa: E731


# ---------------------------------------------------------------- conventions


def test_there_are_exactly_four_conventions_with_distinct_ids():
    assert [c.id for c in CONVENTIONS] == [
        "z_on_previous+reset_before", "z_on_previous+reset_after",
        "z_on_candidate+reset_before", "z_on_candidate+reset_after",
    ]
    assert len(set(CONVENTIONS)) == 4  # hashable and distinct


@pytest.mark.parametrize("convention", CONVENTIONS, ids=ids)
def test_convention_id_round_trips_and_formula_names_both_axes(convention):
    assert Convention.from_id(convention.id) == convention
    formula = convention.formula()
    assert ("(r * h_prev) U_h" in formula) == (convention.reset == "before")
    assert ("z * h_prev + (1 - z) * h_cand" in formula) == (convention.update == "z_on_previous")


@pytest.mark.parametrize("kwargs,bad", [
    ({"update": "z_on_prev", "reset": "after"}, "z_on_prev"),
    ({"update": "z_on_previous", "reset": "middle"}, "middle"),
])
def test_unknown_convention_values_list_the_valid_ones(kwargs, bad):
    with pytest.raises(ValueError, match=bad) as info:
        Convention(**kwargs)
    assert "valid:" in str(info.value)
    with pytest.raises(ValueError, match="z_on_previous\\+reset_after"):
        Convention.from_id("pytorch")


# ---------------------------------------------------------------- formulas on scalars


def _sigmoid(a: float) -> float:
    return 1.0 / (1.0 + math.exp(-a))


def _scalar_gru(convention, p: GRUParams, xs, h0):
    """The GRU written out element by element with ``math``: an implementation independent of
    NumPy matmuls and of ``reference.equations``."""
    I, H = p.input_size, p.hidden_size
    h = list(h0)
    outputs = []
    get = lambda name: getattr(p, name).tolist()  # noqa: E731
    W = {g: get(f"W_{g}") for g in "zrh"}
    U = {g: get(f"U_{g}") for g in "zrh"}
    b = {g: get(f"b_{g}") for g in "zrh"}
    c = {g: get(f"c_{g}") for g in "zrh"}
    for x in xs:
        lin = lambda g, j: sum(x[i] * W[g][i][j] for i in range(I)) + b[g][j]  # noqa: E731
        rec = lambda g, vec, j: sum(vec[k] * U[g][k][j] for k in range(H))  # noqa: E731
        z = [_sigmoid(lin("z", j) + rec("z", h, j) + c["z"][j]) for j in range(H)]
        r = [_sigmoid(lin("r", j) + rec("r", h, j) + c["r"][j]) for j in range(H)]
        if convention.reset == "before":
            rh = [r[k] * h[k] for k in range(H)]
            cand = [math.tanh(lin("h", j) + rec("h", rh, j) + c["h"][j]) for j in range(H)]
        else:
            cand = [math.tanh(lin("h", j) + r[j] * (rec("h", h, j) + c["h"][j])) for j in range(H)]
        if convention.update == "z_on_previous":
            h = [z[j] * h[j] + (1 - z[j]) * cand[j] for j in range(H)]
        else:
            h = [(1 - z[j]) * h[j] + z[j] * cand[j] for j in range(H)]
        outputs.append(h)
    return outputs


@pytest.mark.parametrize("convention", CONVENTIONS, ids=ids)
def test_tiny_case_matches_scalar_arithmetic(convention):
    p = GRUParams.random(2, 3, seed=11)
    xs = [[0.5, -1.0], [1.5, 0.25], [-0.75, 0.8]]
    h0 = [0.3, -0.6, 0.1]
    expected = np.array(_scalar_gru(convention, p, xs, h0))
    outputs, h_last = gru(np.array([xs]), p, convention, h0=np.array([h0]))
    np.testing.assert_allclose(outputs[0], expected, rtol=0, atol=1e-14, err_msg=convention.id)
    np.testing.assert_array_equal(h_last[0], outputs[0, -1])


def test_conventions_give_different_numbers_on_a_dense_probe():
    p = GRUParams.random(3, 4, seed=2)
    x = np.random.default_rng(0).normal(size=(2, 5, 3))
    h0 = np.full((2, 4), 0.4)
    results = [gru(x, p, c, h0=h0)[0] for c in CONVENTIONS]
    for i in range(4):
        for j in range(i + 1, 4):
            gap = np.abs(results[i] - results[j]).max()
            assert gap > 1e-2, f"{CONVENTIONS[i].id} and {CONVENTIONS[j].id} differ by only {gap:.2e}"


def test_float64_is_the_default_and_float32_inputs_are_promoted():
    p = GRUParams.random(2, 3, seed=1, dtype=np.float32)
    x = np.ones((1, 2, 2), np.float32)
    outputs, h = gru(x, p, CONVENTIONS[0])
    assert outputs.dtype == np.float64 and h.dtype == np.float64
    assert gru(x, p, CONVENTIONS[0], dtype=np.float32)[0].dtype == np.float32


# ---------------------------------------------------------------- direction, masking, stacking


def test_reverse_equals_forward_on_time_flipped_input():
    p = GRUParams.random(3, 4, seed=3)
    x = np.random.default_rng(1).normal(size=(2, 6, 3))
    forward, h_forward = gru(x[:, ::-1], p, CONVENTIONS[1])
    backward, h_backward = gru(x, p, CONVENTIONS[1], reverse=True)
    np.testing.assert_array_equal(backward, forward[:, ::-1])
    np.testing.assert_array_equal(h_backward, h_forward)


def test_masked_steps_keep_the_state_and_right_padding_equals_truncation():
    p = GRUParams.random(3, 4, seed=4)
    x = np.random.default_rng(2).normal(size=(1, 6, 3))
    h0 = np.full((1, 4), -0.3)
    mask = np.array([[True] * 4 + [False] * 2])
    outputs, h_last = gru(x, p, CONVENTIONS[0], h0=h0, mask=mask)
    short, h_short = gru(x[:, :4], p, CONVENTIONS[0], h0=h0)
    np.testing.assert_array_equal(h_last, h_short)
    np.testing.assert_array_equal(outputs[:, :4], short)
    np.testing.assert_array_equal(outputs[:, 4], h_short)  # carry: the state is output at masked steps
    # Backwards, right padding is skipped first: the same as reversing the truncated sequence.
    rev, h_rev = gru(x, p, CONVENTIONS[0], h0=h0, mask=mask, reverse=True)
    rev_short, h_rev_short = gru(x[:, :4], p, CONVENTIONS[0], h0=h0, reverse=True)
    np.testing.assert_array_equal(h_rev, h_rev_short)
    np.testing.assert_array_equal(rev[:, :4], rev_short)


@pytest.mark.parametrize("masked_output,reverse,expected_tail", [
    ("zero", False, "zeros"), ("carry", False, "state"), ("previous_output", False, "state"),
    ("carry", True, "h0"), ("previous_output", True, "zeros"),
])
def test_masked_output_modes(masked_output, reverse, expected_tail):
    layers = random_layers(2, 3, seed=5)
    x = np.random.default_rng(3).normal(size=(1, 5, 2))
    h0 = np.full((1, 1, 3), 0.7)
    mask = np.array([[True, True, True, False, False]])
    outputs, h_last = gru_stack(x, layers, CONVENTIONS[1], h0=h0, mask=mask, masked_output=masked_output, reverse=reverse)
    tail = outputs[0, 3:]
    expected = {"zeros": np.zeros((2, 3)), "state": np.stack([outputs[0, 2]] * 2), "h0": np.full((2, 3), 0.7)}[expected_tail]
    np.testing.assert_array_equal(tail, expected)


def test_stack_feeds_each_layer_the_merged_outputs_of_the_one_below():
    layers = random_layers(3, 4, num_layers=2, bidirectional=True, seed=6)
    x = np.random.default_rng(4).normal(size=(2, 5, 3))
    h0 = np.random.default_rng(5).uniform(-0.5, 0.5, size=(4, 2, 4))
    outputs, h_last = gru_stack(x, layers, CONVENTIONS[1], h0=h0)
    f0, hf0 = gru(x, layers[0][0], CONVENTIONS[1], h0=h0[0])
    b0, hb0 = gru(x, layers[0][1], CONVENTIONS[1], h0=h0[1], reverse=True)
    middle = np.concatenate([f0, b0], axis=-1)
    f1, hf1 = gru(middle, layers[1][0], CONVENTIONS[1], h0=h0[2])
    b1, hb1 = gru(middle, layers[1][1], CONVENTIONS[1], h0=h0[3], reverse=True)
    np.testing.assert_array_equal(outputs, np.concatenate([f1, b1], axis=-1))
    np.testing.assert_array_equal(h_last, np.stack([hf0, hb0, hf1, hb1]))


@pytest.mark.parametrize("merge,expected", [("sum", 5.0), ("ave", 2.5), ("mul", 6.0)])
def test_merge_modes(merge, expected):
    assert merge_directions(np.array([2.0]), np.array([3.0]), merge)[0] == expected
    with pytest.raises(ValueError, match="unknown merge mode 'max'"):
        merge_directions(np.array([2.0]), np.array([3.0]), "max")


# ---------------------------------------------------------------- equivalence transforms


@pytest.mark.parametrize("reset", ["before", "after"])
def test_z_on_candidate_equals_z_on_previous_with_negated_update_gate(reset):
    p = GRUParams.random(3, 4, seed=7)
    x = np.random.default_rng(6).normal(size=(2, 8, 3))
    h0 = np.full((2, 4), 0.25)
    candidate, _ = gru(x, p, Convention("z_on_candidate", reset), h0=h0)
    previous, _ = gru(x, flip_update_weighting(p), Convention("z_on_previous", reset), h0=h0)
    # Identical in exact arithmetic; in float64 only the sigmoid's rounding differs.
    np.testing.assert_allclose(candidate, previous, rtol=0, atol=8 * np.finfo(np.float64).eps)
    assert flip_update_weighting(flip_update_weighting(p)).identical(p)


@pytest.mark.parametrize("update", ["z_on_previous", "z_on_candidate"])
def test_reset_before_recurrent_biases_fold_into_input_biases(update):
    convention = Convention(update, "before")
    p = GRUParams.random(3, 4, seed=8)
    folded = fold_recurrent_biases(p, convention)
    assert not np.any(folded.c_z) and not np.any(folded.c_r) and not np.any(folded.c_h)
    x = np.random.default_rng(7).normal(size=(2, 6, 3))
    h0 = np.full((2, 4), -0.2)
    np.testing.assert_allclose(gru(x, folded, convention, h0=h0)[0], gru(x, p, convention, h0=h0)[0],
                               rtol=0, atol=8 * np.finfo(np.float64).eps)


def test_reset_after_refuses_to_fold_a_nonzero_candidate_recurrent_bias():
    p = GRUParams.random(3, 4, seed=9)
    with pytest.raises(ValueError, match="c_h is non-zero.*reset gate"):
        fold_recurrent_biases(p, "z_on_previous+reset_after")
    # With c_h = 0 the gate biases still fold, and the function is unchanged.
    no_ch = p.replace(c_h=np.zeros(4))
    folded = fold_recurrent_biases(no_ch, "z_on_previous+reset_after")
    x = np.random.default_rng(8).normal(size=(1, 4, 3))
    np.testing.assert_allclose(gru(x, folded, CONVENTIONS[1])[0], gru(x, no_ch, CONVENTIONS[1])[0],
                               rtol=0, atol=8 * np.finfo(np.float64).eps)


@settings(max_examples=40, deadline=None)
@given(
    input_size=st.integers(1, 5), hidden_size=st.integers(1, 5), time=st.integers(1, 5),
    seed=st.integers(0, 2**16), reset=st.sampled_from(["before", "after"]),
)
def test_update_flip_property(input_size, hidden_size, time, seed, reset):
    p = GRUParams.random(input_size, hidden_size, seed=seed)
    x = np.random.default_rng(seed).normal(size=(2, time, input_size))
    a, _ = gru(x, p, Convention("z_on_candidate", reset))
    b, _ = gru(x, flip_update_weighting(p), Convention("z_on_previous", reset))
    np.testing.assert_allclose(a, b, rtol=0, atol=16 * np.finfo(np.float64).eps)


# ---------------------------------------------------------------- validation


def test_params_are_copied_and_read_only():
    source = np.zeros((2, 3))
    p = GRUParams.random(2, 3).replace(W_z=source)
    source[0, 0] = 5.0
    assert p.W_z[0, 0] == 0.0
    with pytest.raises(ValueError):
        p.W_z[0, 0] = 1.0


@pytest.mark.parametrize("field,value,message", [
    ("U_h", np.zeros((3, 4)), "U_h has shape \\(3, 4\\), expected \\(3, 3\\)"),
    ("b_r", np.zeros(4), "b_r has shape \\(4,\\), expected \\(3,\\)"),
    ("W_h", np.zeros((5, 3)), "W_h has shape \\(5, 3\\), expected \\(2, 3\\)"),
    ("c_z", np.array([0.0, np.nan, 0.0]), "c_z contains a non-finite value \\(nan at index \\(1,\\)\\)"),
    ("U_r", np.full((3, 3), np.inf), "U_r contains a non-finite value"),
])
def test_params_validation_names_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        GRUParams.random(2, 3).replace(**{field: value})


def test_params_reject_integer_and_mixed_dtypes():
    with pytest.raises(TypeError, match="W_z has dtype int64.*floating"):
        GRUParams.random(2, 3).replace(W_z=np.zeros((2, 3), np.int64))
    with pytest.raises(TypeError, match="share one dtype.*b_h=float32"):
        GRUParams.random(2, 3).replace(b_h=np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="hidden_size must be a positive integer"):
        GRUParams.random(2, 0)


@pytest.mark.parametrize("kwargs,error,message", [
    ({"x": np.zeros((2, 3))}, ValueError, "x has shape \\(2, 3\\); expected \\(batch, time, input_size\\)"),
    ({"x": np.zeros((1, 3, 5))}, ValueError, "x has input_size 5"),
    ({"x": np.zeros((1, 3, 2), np.int32)}, TypeError, "x has dtype int32"),
    ({"x": np.full((1, 3, 2), np.nan)}, ValueError, "x contains a non-finite value"),
    ({"h0": np.zeros((3,))}, ValueError, "h0 has shape \\(3,\\); expected \\(batch, hidden_size\\) = \\(1, 3\\)"),
    ({"mask": np.ones((1, 3))}, TypeError, "mask has dtype float64; expected bool"),
    ({"mask": np.ones((1, 4), bool)}, ValueError, "mask has shape \\(1, 4\\); expected"),
    ({"convention": "pytorch"}, ValueError, "unknown convention 'pytorch'"),
])
def test_forward_validation(kwargs, error, message):
    args = {"x": np.zeros((1, 3, 2)), "params": GRUParams.random(2, 3), "convention": CONVENTIONS[0], **kwargs}
    with pytest.raises(error, match=message):
        gru(**args)


def test_stack_validation_names_the_mismatched_layer():
    layers = random_layers(2, 3, num_layers=2, bidirectional=True)
    with pytest.raises(ValueError, match="layer 1 has 1 directions, layer 0 has 2"):
        gru_stack(np.zeros((1, 2, 2)), [layers[0], layers[1][:1]], CONVENTIONS[0])
    with pytest.raises(ValueError, match="layers\\[1\\]\\[0\\] has input_size=6.*expected input_size=3"):
        gru_stack(np.zeros((1, 2, 2)), layers, CONVENTIONS[0], merge="sum")
    with pytest.raises(ValueError, match="h0 has shape \\(2, 1, 3\\); expected .* = \\(4, 1, 3\\)"):
        gru_stack(np.zeros((1, 2, 2)), layers, CONVENTIONS[0], h0=np.zeros((2, 1, 3)))
    with pytest.raises(ValueError, match="unknown masked_output 'pad'"):
        gru_stack(np.zeros((1, 2, 2)), layers, CONVENTIONS[0], masked_output="pad")


def test_derive_keeps_shapes_and_dtype_and_stays_read_only():
    p = GRUParams.random(2, 3, seed=1)
    swapped = p.derive(W_z=p.W_r, W_r=p.W_z)
    assert np.array_equal(swapped.W_z, p.W_r) and not swapped.W_z.flags.writeable
    with pytest.raises(ValueError, match="derive: U_h must stay a float64 array of shape \\(3, 3\\)"):
        p.derive(U_h=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="derive: b_z must stay a float64"):
        p.derive(b_z=np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="unknown field\\(s\\) \\['W_q'\\]"):
        p.derive(W_q=p.W_z)
