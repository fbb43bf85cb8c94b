"""``identify`` enforces its contract on the user's forward, answers formula and precision separately,
and names a GRU with fewer than six biases as a structure rather than a mystery.

The implementations here are written by hand in NumPy (d2l's from-scratch GRU, a float32 port
asked for float64), not with ``reference``, so the checks cannot pass by sharing a bug.
"""

from __future__ import annotations

import numpy as np
import pytest

from reference import Convention, GRUParams, gru
from reference.identify import identify

I, H = 3, 4
PREVIOUS_AFTER = Convention("z_on_previous", "after")
PREVIOUS_BEFORE = Convention("z_on_previous", "before")


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def d2l_scratch_gru(params: GRUParams, x, h0):
    """d2l.ai's "GRU from scratch" (chapter "Gated Recurrent Units"): one bias per gate, reset before
    the recurrent matmul, z on the previous state. It only has b_*: the c_* it is handed go unused."""
    state, outputs = h0, []
    for t in range(x.shape[1]):
        X = x[:, t]
        Z = _sigmoid(X @ params.W_z + state @ params.U_z + params.b_z)
        R = _sigmoid(X @ params.W_r + state @ params.U_r + params.b_r)
        H_tilde = np.tanh(X @ params.W_h + (R * state) @ params.U_h + params.b_h)
        state = Z * state + (1 - Z) * H_tilde
        outputs.append(state)
    return np.stack(outputs, axis=1), state


def test_d2l_scratch_gru_is_named_as_absent_recurrent_biases_with_the_exact_fold():
    result = identify(d2l_scratch_gru, input_size=I, hidden_size=H)
    assert result.matched is None and result.diagnosis, result.describe()
    top = result.diagnosis[0]
    assert top.convention == PREVIOUS_BEFORE, result.describe()
    assert [m.name for m in top.mistakes] == ["recurrent biases c_z, c_r, c_h absent"], result.describe()
    assert "exact only under reset-before" in top.mistakes[0].fix and "fold c_z into b_z" in top.mistakes[0].fix


def test_d2l_scratch_gru_handed_folded_biases_matches_exactly():
    """Folding every c_* into b_* is exact under reset-before: the same implementation then matches."""
    def folded(params, x, h0):
        return d2l_scratch_gru(params.replace(b_z=params.b_z + params.c_z, b_r=params.b_r + params.c_r,
                                              b_h=params.b_h + params.c_h), x, h0)

    result = identify(folded, input_size=I, hidden_size=H)
    assert result.matched == PREVIOUS_BEFORE, result.describe()


@pytest.mark.parametrize("absent", [("c_z",), ("c_r",), ("c_z", "c_r"), ("c_r", "c_h")])
def test_any_subset_of_absent_recurrent_biases_is_named(absent):
    def forward(params, x, h0):
        zeroed = params.replace(**{name: np.zeros(H) for name in absent})
        return _torchless_reset_after(zeroed, x, h0)

    result = identify(forward, input_size=I, hidden_size=H)
    names = [m.name for m in result.diagnosis[0].mistakes]
    assert names == [f"recurrent bias{'es' if len(absent) > 1 else ''} {', '.join(absent)} absent"], result.describe()


def _torchless_reset_after(params: GRUParams, x, h0):
    """PyTorch's formula written out by hand: z on previous, reset after."""
    state, outputs = h0, []
    for t in range(x.shape[1]):
        X = x[:, t]
        z = _sigmoid(X @ params.W_z + params.b_z + state @ params.U_z + params.c_z)
        r = _sigmoid(X @ params.W_r + params.b_r + state @ params.U_r + params.c_r)
        n = np.tanh(X @ params.W_h + params.b_h + r * (state @ params.U_h + params.c_h))
        state = z * state + (1 - z) * n
        outputs.append(state)
    return np.stack(outputs, axis=1), state


# ---------------------------------------------------------------- precision is its own verdict


def test_float64_requested_but_float32_computed_is_the_formula_at_lower_precision():
    def float32_port(params, x, h0):
        outputs, h_last = _torchless_reset_after(params.astype(np.float32), x.astype(np.float32), h0.astype(np.float32))
        return outputs.astype(np.float64), h_last.astype(np.float64)

    result = identify(float32_port, input_size=I, hidden_size=H, dtype=np.float64)
    assert result.matched == PREVIOUS_AFTER, result.describe()
    assert result.precision.lower_than_requested and result.precision.computed == "float32", result.describe()
    assert 1e-9 < result.precision.error < 1e-5
    assert "computed at lower precision than requested: float32 where float64 was asked" in result.describe()
    assert result.margin >= 100 and not result.diagnosis


def test_full_precision_says_so():
    result = identify(_torchless_reset_after, input_size=I, hidden_size=H, dtype=np.float64)
    assert result.matched == PREVIOUS_AFTER and not result.precision.lower_than_requested, result.describe()
    assert result.precision.computed == "float64" and result.precision.error < 1e-13


def test_a_wrong_port_at_lower_precision_is_still_diagnosed():
    def swapped_float32(params, x, h0):
        swapped = params.replace(W_z=params.W_r, W_r=params.W_z, U_z=params.U_r, U_r=params.U_z, b_z=params.b_r,
                                 b_r=params.b_z, c_z=params.c_r, c_r=params.c_z)
        outputs, h_last = _torchless_reset_after(swapped.astype(np.float32), x.astype(np.float32), h0.astype(np.float32))
        return outputs, h_last

    result = identify(swapped_float32, input_size=I, hidden_size=H, dtype=np.float64)
    assert result.matched is None and result.diagnosis[0].name == "all gate blocks: z<->r", result.describe()
    assert result.precision.computed == "float32"


# ---------------------------------------------------------------- the forward's contract


def test_a_forward_that_writes_into_its_inputs_cannot_change_the_verdict():
    def vandal(params, x, h0):
        outputs, h_last = _torchless_reset_after(params, x, h0)
        x[...] = 0.0
        h0[...] = 0.0
        return outputs, h_last

    assert identify(vandal, input_size=I, hidden_size=H).matched == PREVIOUS_AFTER


def test_tensors_and_lists_are_accepted():
    torch = pytest.importorskip("torch", reason="torch is not installed")

    def as_tensors(params, x, h0):
        outputs, h_last = _torchless_reset_after(params, x, h0)
        return torch.tensor(outputs, requires_grad=True) * 1.0, h_last.tolist()

    assert identify(as_tensors, input_size=I, hidden_size=H).matched == PREVIOUS_AFTER


def _returning(value):
    return lambda params, x, h0: value


BAD_RESULTS = [
    (_returning(None), TypeError, "forward returned NoneType None; expected a pair"),
    (_returning(np.zeros((4, H))), TypeError, "expected a pair"),
    (_returning((None, None, None)), TypeError, "expected a pair"),
    (_returning({"outputs": 1}), TypeError, "expected a pair"),
    (_returning((None, np.zeros((4, H + 1)))), ValueError, r"h_last of shape \(4, 5\).*expected shape \(4, 4\)"),
    (_returning((np.zeros((4, 5, H)), np.zeros((4, H)))), ValueError, r"outputs of shape \(4, 5, 4\).*expected shape \(4, 6, 4\)"),
    (_returning((None, np.full((4, H), np.nan))), ValueError, "non-finite h_last"),
    (_returning((None, np.zeros((4, H), dtype=np.int64))), TypeError, "h_last as .* dtype int64"),
    (_returning((None, [[0.0] * H, [0.0]])), ValueError, "h_last as a list of length 2, which is not an array"),
    (_returning((None, "h")), TypeError, "h_last as str"),
]


@pytest.mark.parametrize("forward,error,fragment", BAD_RESULTS, ids=[f[2][:30] for f in BAD_RESULTS])
def test_what_forward_returns_is_checked_with_the_value_named(forward, error, fragment):
    with pytest.raises(error, match=fragment):
        identify(forward, input_size=I, hidden_size=H)


def test_a_forward_that_raises_is_reported_with_the_call():
    def broken(params, x, h0):
        raise KeyError("weight_ih_l0")

    with pytest.raises(RuntimeError, match=r"forward raised KeyError: 'weight_ih_l0' when called with params \(input_size=3"):
        identify(broken, input_size=I, hidden_size=H)


@pytest.mark.parametrize("kwargs,fragment", [
    (dict(input_size=0), "input_size must be a positive integer, got 0"),
    (dict(input_size=-2), "input_size must be a positive integer, got -2"),
    (dict(hidden_size=2.5), "hidden_size must be a positive integer, got 2.5"),
    (dict(hidden_size=True), "hidden_size must be a positive integer, got True"),
    (dict(hidden_size="4"), "hidden_size must be a positive integer, got '4'"),
    (dict(seed=-1), r"seed must be an integer in \[0, 2\*\*32\)"),
    (dict(dtype=np.float16), "dtype must be float32 or float64"),
    (dict(dtype="bogus"), "dtype must be float32 or float64"),
    (dict(max_mistakes=5), "max_mistakes must be 0, 1 or 2"),
    (dict(expected="z_first"), "unknown convention 'z_first'"),
    (dict(probe="probe"), "probe must be a reference.identify.Probe"),
])
def test_bad_arguments_are_named(kwargs, fragment):
    arguments = {"input_size": I, "hidden_size": H, **kwargs}
    with pytest.raises((ValueError, TypeError), match=fragment):
        identify(_torchless_reset_after, **arguments)


def test_forward_must_be_callable():
    with pytest.raises(TypeError, match="forward must be callable"):
        identify("gru", input_size=I, hidden_size=H)


def test_reference_agrees_with_the_hand_written_formula():
    """The hand-written PyTorch formula above is the reference's z_on_previous+reset_after."""
    params = GRUParams.random(I, H, seed=3)
    x = np.random.default_rng(1).normal(size=(2, 5, I))
    h0 = np.random.default_rng(2).normal(size=(2, H))
    expected = gru(x, params, PREVIOUS_AFTER, h0=h0)
    actual = _torchless_reset_after(params, x, h0)
    np.testing.assert_allclose(actual[0], expected[0], rtol=1e-13, atol=1e-13)
