"""``reference.gru_grad`` / ``gru_stack_grad``: analytic BPTT checked against central finite differences
(every convention x masked/reverse/stacked), a hypothesis property over shapes, an independent autodiff
oracle (torch autograd on a GRU written out in torch ops, not this project's code), and the exact
gradient map of ``flip_update_weighting``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference import Convention, GRUParams, flip_update_weighting, gru, gru_stack, random_layers
from reference.backward import gru_grad, gru_stack_grad
from reference.params import FIELDS

CONVENTIONS = Convention.all()
# Fourth-order central differences at step 1e-3: truncation ~h^4 = 1e-12 and rounding ~eps * |loss| / h
# ~ 1e-12, so even a gradient of 1e-4 is checked to 1e-8 relative; the issue asks for 1e-7.
FD_STEP = 1e-3
FD_RTOL = 1e-7


def _loss(params, x, h0, convention, mask, reverse, G, K):
    outputs, h_last = gru(x, params, convention, h0=h0, mask=mask, reverse=reverse)
    return float((outputs * G).sum() + (h_last * K).sum())


def _numeric(f, array):
    grad = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        values = []
        for offset in (2, 1, -1, -2):
            moved = array.copy()
            moved[index] += offset * FD_STEP
            values.append(f(moved))
        grad[index] = (-values[0] + 8 * values[1] - 8 * values[2] + values[3]) / (12 * FD_STEP)
    return grad


# The differences themselves are accurate to ~1e-12 absolute, so a gradient array smaller than 1e-4 is
# judged relative to 1e-4 (an absolute check at 1e-11): tiny gradients from near-saturated gates
# (hypothesis finds them) would otherwise measure the finite-difference noise, not the analytic gradient.
GRADIENT_FLOOR = 1e-4


def _relative_error(analytic, numeric) -> float:
    return float(np.abs(analytic - numeric).max() / max(np.abs(numeric).max(), GRADIENT_FLOOR))


def _case(seed, batch=2, time=4, input_size=3, hidden=3, masked=False):
    rng = np.random.default_rng(seed)
    params = GRUParams.random(input_size, hidden, seed=seed)
    x = rng.normal(size=(batch, time, input_size))
    h0 = rng.uniform(-0.8, 0.8, size=(batch, hidden))
    mask = None
    if masked:
        lengths = np.array([time, max(1, time // 2), 1][:batch] + [time] * max(0, batch - 3))
        mask = np.arange(time)[None, :] < lengths[:, None]
    G = rng.normal(size=(batch, time, hidden))
    K = rng.normal(size=(batch, hidden))
    return params, x, h0, mask, G, K


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("masked", [False, True], ids=["full", "masked"])
@pytest.mark.parametrize("convention", CONVENTIONS, ids=lambda c: c.id)
def test_every_gradient_matches_central_differences(convention, masked, reverse):
    params, x, h0, mask, G, K = _case(1, masked=masked)
    grads = gru_grad(x, params, convention, h0=h0, mask=mask, reverse=reverse, d_outputs=G, d_h_last=K)
    failures = []
    for name in FIELDS:
        numeric = _numeric(lambda a, n=name: _loss(params.replace(**{n: a}), x, h0, convention, mask, reverse, G, K),
                           getattr(params, name))
        error = _relative_error(getattr(grads.params, name), numeric)
        if error > FD_RTOL:
            failures.append(f"{name}: relative error {error:.2e}")
    for name, value, analytic in (("x", x, grads.x), ("h0", h0, grads.h0)):
        f = (lambda a: _loss(params, a, h0, convention, mask, reverse, G, K)) if name == "x" else \
            (lambda a: _loss(params, x, a, convention, mask, reverse, G, K))
        error = _relative_error(analytic, _numeric(f, value))
        if error > FD_RTOL:
            failures.append(f"{name}: relative error {error:.2e}")
    assert not failures, f"{convention.id} masked={masked} reverse={reverse}: " + "; ".join(failures)


STACK_CASES = [(merge, "zero") for merge in ("concat", "sum", "ave", "mul")] + [("concat", "carry"), ("sum", "previous_output")]


@pytest.mark.parametrize("merge,masked_output", STACK_CASES)
@pytest.mark.parametrize("convention", [CONVENTIONS[0], CONVENTIONS[3]], ids=lambda c: c.id)
def test_stacked_bidirectional_gradients_match_central_differences(convention, merge, masked_output):
    rng = np.random.default_rng(5)
    layers = random_layers(3, 2, num_layers=2, bidirectional=True, seed=4, merge=merge)
    x = rng.normal(size=(2, 3, 3))
    h0 = rng.uniform(-0.8, 0.8, size=(4, 2, 2))
    mask = np.array([[True, True, True], [True, False, False]])
    outputs, _ = gru_stack(x, layers, convention, h0=h0, mask=mask, merge=merge, masked_output=masked_output)
    G, K = rng.normal(size=outputs.shape), rng.normal(size=(4, 2, 2))

    def loss(stack=layers, inputs=x, state=h0):
        o, h = gru_stack(inputs, stack, convention, h0=state, mask=mask, merge=merge, masked_output=masked_output)
        return float((o * G).sum() + (h * K).sum())

    grads = gru_stack_grad(x, layers, convention, h0=h0, mask=mask, merge=merge, masked_output=masked_output,
                           d_outputs=G, d_h_last=K)
    failures = []
    for l in range(2):
        for d in range(2):
            # One field of each role (input/recurrent weight, input/recurrent bias) and of each gate;
            # every field is checked one direction at a time above.
            for name in ("W_z", "U_r", "b_h", "c_h", "U_h"):
                def with_value(a, l=l, d=d, name=name):
                    stack = [list(layer) for layer in layers]
                    stack[l][d] = layers[l][d].replace(**{name: a})
                    return loss(stack)

                error = _relative_error(getattr(grads.layers[l][d], name), _numeric(with_value, getattr(layers[l][d], name)))
                if error > FD_RTOL:
                    failures.append(f"layers[{l}][{d}].{name}: {error:.2e}")
    for name, value, analytic, f in (("x", x, grads.x, lambda a: loss(inputs=a)), ("h0", h0, grads.h0, lambda a: loss(state=a))):
        error = _relative_error(analytic, _numeric(f, value))
        if error > FD_RTOL:
            failures.append(f"{name}: {error:.2e}")
    assert not failures, "; ".join(failures)


@settings(max_examples=20, deadline=None)
@given(batch=st.integers(1, 3), time=st.integers(1, 4), input_size=st.integers(1, 3), hidden=st.integers(1, 3),
       convention=st.sampled_from(CONVENTIONS), reverse=st.booleans(), seed=st.integers(0, 2**16))
def test_gradients_match_finite_differences_for_any_shape(batch, time, input_size, hidden, convention, reverse, seed):
    params, x, h0, _, G, K = _case(seed, batch, time, input_size, hidden)
    grads = gru_grad(x, params, convention, h0=h0, reverse=reverse, d_outputs=G, d_h_last=K)
    for name in ("W_h", "U_z", "c_h", "b_r"):
        numeric = _numeric(lambda a, n=name: _loss(params.replace(**{n: a}), x, h0, convention, None, reverse, G, K),
                           getattr(params, name))
        assert _relative_error(getattr(grads.params, name), numeric) <= FD_RTOL, name
    assert _relative_error(grads.h0, _numeric(lambda a: _loss(params, x, a, convention, None, reverse, G, K), h0)) <= FD_RTOL


def test_the_gradient_of_a_convention_transform_maps_exactly():
    """z_on_candidate with p equals z_on_previous with flip(p), so its gradient is the flipped one's, with the
    update gate's entries negated (the chain rule through the negation)."""
    params, x, h0, mask, G, K = _case(3, masked=True)
    for reset in ("before", "after"):
        candidate = gru_grad(x, params, Convention("z_on_candidate", reset), h0=h0, mask=mask, d_outputs=G, d_h_last=K)
        previous = gru_grad(x, flip_update_weighting(params), Convention("z_on_previous", reset), h0=h0, mask=mask,
                            d_outputs=G, d_h_last=K)
        for name in FIELDS:
            expected = -getattr(previous.params, name) if name.endswith("_z") else getattr(previous.params, name)
            np.testing.assert_allclose(getattr(candidate.params, name), expected, rtol=1e-12, atol=1e-14, err_msg=name)
        np.testing.assert_allclose(candidate.x, previous.x, rtol=1e-12, atol=1e-14)


def test_padded_steps_pass_the_state_gradient_through_and_add_no_parameter_gradient():
    params, x, h0, _, G, K = _case(2, batch=1, time=3)
    mask = np.array([[True, False, False]])
    masked = gru_grad(x, params, CONVENTIONS[1], h0=h0, mask=mask, d_outputs=G, d_h_last=K)
    # Equivalent: only the first step is real; the padded outputs are the carried state h_1.
    carried = G[:, 0] + G[:, 1] + G[:, 2] + K
    single = gru_grad(x[:, :1], params, CONVENTIONS[1], h0=h0, d_h_last=carried)
    for name in FIELDS:
        np.testing.assert_allclose(getattr(masked.params, name), getattr(single.params, name), rtol=1e-12, atol=1e-15)
    assert np.all(masked.x[:, 1:] == 0)


@pytest.mark.parametrize("convention", CONVENTIONS, ids=lambda c: c.id)
def test_an_independent_autodiff_oracle_agrees(convention):
    """torch autograd on the GRU written in torch ops (not this project's code), for every convention."""
    torch = pytest.importorskip("torch", reason="torch is not installed")
    params, x, h0, mask, G, K = _case(7, batch=3, time=5, input_size=4, hidden=3, masked=True)
    t = {name: torch.tensor(getattr(params, name), requires_grad=True) for name in FIELDS}
    xt, ht = torch.tensor(x, requires_grad=True), torch.tensor(h0, requires_grad=True)
    state, outputs = ht, []
    for step in range(x.shape[1]):
        xs = xt[:, step]
        z = torch.sigmoid(xs @ t["W_z"] + t["b_z"] + state @ t["U_z"] + t["c_z"])
        r = torch.sigmoid(xs @ t["W_r"] + t["b_r"] + state @ t["U_r"] + t["c_r"])
        if convention.reset == "after":
            cand = torch.tanh(xs @ t["W_h"] + t["b_h"] + r * (state @ t["U_h"] + t["c_h"]))
        else:
            cand = torch.tanh(xs @ t["W_h"] + t["b_h"] + (r * state) @ t["U_h"] + t["c_h"])
        new = z * state + (1 - z) * cand if convention.update == "z_on_previous" else (1 - z) * state + z * cand
        real = torch.tensor(mask[:, step, None])
        state = torch.where(real, new, state)
        outputs.append(state)
    loss = (torch.stack(outputs, 1) * torch.tensor(G)).sum() + (state * torch.tensor(K)).sum()
    loss.backward()
    grads = gru_grad(x, params, convention, h0=h0, mask=mask, d_outputs=G, d_h_last=K)
    for name in FIELDS:
        np.testing.assert_allclose(getattr(grads.params, name), t[name].grad.numpy(), rtol=1e-11, atol=1e-13, err_msg=name)
    np.testing.assert_allclose(grads.x, xt.grad.numpy(), rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(grads.h0, ht.grad.numpy(), rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("kwargs,error,fragment", [
    (dict(), ValueError, "give d_outputs and/or d_h_last"),
    (dict(d_h_last=np.zeros((2, 4))), ValueError, r"d_h_last has shape \(2, 4\); expected \(2, 3\)"),
    (dict(d_outputs=np.zeros((2, 4, 3), dtype=int)), TypeError, "d_outputs has dtype int64"),
    (dict(d_h_last=np.full((2, 3), np.nan)), ValueError, "d_h_last contains a non-finite value"),
    (dict(d_h_last=np.zeros((2, 3)), dtype=np.float16), ValueError, "dtype must be float32 or float64"),
    (dict(d_h_last=np.zeros((2, 3)), gate_activation=np.tanh), ValueError, "has no derivative"),
])
def test_bad_gradient_arguments_are_named(kwargs, error, fragment):
    params, x, h0, _, _, _ = _case(0)
    with pytest.raises(error, match=fragment):
        gru_grad(x, params, CONVENTIONS[0], h0=h0, **kwargs)
