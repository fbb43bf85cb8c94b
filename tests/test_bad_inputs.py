"""Garbage in, a clear error out: every public function of ``reference`` and the torch adapter refuse
bad input with an error raised from this project's code whose message names the argument and the
fix, never a traceback from deep inside NumPy or torch, and never a silently wrong, NaN or empty
answer. Legal inputs in unusual forms (lists, other byte orders, NumPy bools) still give the right answer.

Each table row is ``(id, call, error type(s), message fragment)``. Framework tensors are imitated
by ``TensorLike`` (what ``reference`` recognises them by) so the reference rows run without torch;
the adapter rows need torch and skip without it.
"""

from __future__ import annotations

import re
import traceback
from pathlib import Path

import numpy as np
import pytest

from reference import (
    Convention, GRUParams, compare_forward, flip_update_weighting, fold_recurrent_biases, gru, gru_stack, layouts,
    merge_directions, random_layers, sigmoid, tolerance_for,
)
from reference.compare import difference
from reference.params import check_layers, layer_input_size

from .conftest import adapter_or_skip, module_or_skip

PROJECT = Path(__file__).resolve().parents[1]
OUR_CODE = tuple(str(PROJECT / package) + "/" for package in ("reference", "adapters", "reports"))

AFTER = Convention("z_on_previous", "after")
BEFORE = Convention("z_on_previous", "before")
I, H, B, T = 2, 3, 2, 4
P = GRUParams.random(I, H, seed=1)
P32 = P.astype(np.float32)
LAYERS = [[P]]
X = np.random.default_rng(0).normal(size=(B, T, I))


class TensorLike:
    """Quacks like a torch tensor or Parameter (``detach``, ``requires_grad``, ``numpy``) without torch; like
    a Parameter that requires grad, it cannot be read by ``np.asarray``."""

    requires_grad = True

    def __init__(self, array):
        self._array = np.asarray(array)

    def detach(self):
        return self

    def numpy(self):
        return self._array

    def __array__(self, dtype=None, copy=None):
        raise RuntimeError("Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead.")


def assert_refused(call, errors, fragment):
    """``call`` raises one of ``errors`` whose message matches ``fragment``, from this project's code."""
    with pytest.raises(errors) as info:
        call()
    message = str(info.value)
    assert re.search(fragment, message), f"message {message!r} does not match {fragment!r}"
    origin = traceback.extract_tb(info.tb)[-1]
    assert origin.filename.startswith(OUR_CODE), (
        f"raised from {origin.filename}:{origin.lineno}, not from this project's code: {message}"
    )
    return message


def _table(rows):
    return pytest.mark.parametrize("call,errors,fragment", [row[1:] for row in rows], ids=[row[0] for row in rows])


def _params_arrays(input_size=I, hidden_size=H, dtype=np.float64):
    return {name: np.zeros(array.shape[:0] + tuple(
        {"W": (input_size, hidden_size), "U": (hidden_size, hidden_size)}.get(name[0], (hidden_size,))), dtype)
        for name, array in P.arrays()}


def _constant(value):
    return lambda a: value


def _nan_above(threshold):
    return lambda a: np.where(a > threshold, np.nan, 1.0 / (1.0 + np.exp(-a)))


def _out_style_wrong_shape(a, out=None):
    return np.zeros(a.shape[1:], a.dtype)


def _raises(a):
    raise KeyError("no such gate")


BIG = np.full((1, 3, I), 1e300)  # finite in float64, beyond float32's range

# ---------------------------------------------------------------- item 5: degenerate sizes, dtype, gate_activation

SIZES = [
    ("GRUParams hidden 0", lambda: GRUParams(**_params_arrays(hidden_size=0)), ValueError, r"W_z has shape \(2, 0\), so hidden_size is 0"),
    ("GRUParams input 0", lambda: GRUParams(**_params_arrays(input_size=0)), ValueError, r"W_z has shape \(0, 3\), so input_size is 0"),
    ("GRUParams.zeros hidden 0", lambda: GRUParams.zeros(I, 0), ValueError, "hidden_size must be a positive integer, got 0"),
    ("GRUParams.zeros input 0", lambda: GRUParams.zeros(0, H), ValueError, "input_size must be a positive integer, got 0"),
    ("GRUParams.random bool size", lambda: GRUParams.random(True, H), TypeError, "input_size must be a positive integer, got bool True"),
    ("GRUParams.random float size", lambda: GRUParams.random(I, 3.0), TypeError, "hidden_size must be a positive integer, got float 3.0"),
    ("GRUParams.random str size", lambda: GRUParams.random(I, "3"), TypeError, "hidden_size must be a positive integer, got str '3'"),
    ("GRUParams.random negative", lambda: GRUParams.random(-2, H), ValueError, "input_size must be a positive integer, got -2"),
    ("GRUParams.random seed", lambda: GRUParams.random(I, H, seed=-1), ValueError, "seed must be a non-negative integer, got int -1"),
    ("GRUParams.random scale", lambda: GRUParams.random(I, H, scale=-0.5), ValueError, "scale must be a finite positive number"),
    ("GRUParams.random scale nan", lambda: GRUParams.random(I, H, scale=float("nan")), ValueError, "scale must be a finite positive number"),
    ("GRUParams.random scale 0", lambda: GRUParams.random(I, H, scale=0), ValueError, "GRUParams.zeros gives all-zero"),
    ("GRUParams.random bias str", lambda: GRUParams.random(I, H, bias="no"), TypeError, "bias must be True or False, got str 'no'"),
    ("from_torch hidden 0", lambda: layouts.from_torch(np.zeros((0, I)), np.zeros((0, 0))), ValueError, r"weight_hh of shape \(0, 0\) gives hidden_size 0"),
    ("from_torch input 0", lambda: layouts.from_torch(np.zeros((9, 0)), np.zeros((9, 3))), ValueError, r"weight_ih of shape \(9, 0\) gives input_size 0"),
    ("from_keras hidden 0", lambda: layouts.from_keras(np.zeros((I, 0)), np.zeros((0, 0))), ValueError, r"recurrent_kernel of shape \(0, 0\) gives hidden_size 0"),
    ("from_keras input 0", lambda: layouts.from_keras(np.zeros((0, 9)), np.zeros((3, 9))), ValueError, r"kernel of shape \(0, 9\) gives input_size 0"),
    ("from_onnx hidden 0", lambda: layouts.from_onnx(np.zeros((1, 0, I)), np.zeros((1, 0, 0))), ValueError, r"R of shape \(1, 0, 0\) gives hidden_size 0"),
    ("from_onnx input 0", lambda: layouts.from_onnx(np.zeros((1, 9, 0)), np.zeros((1, 9, 3))), ValueError, r"W of shape \(1, 9, 0\) gives input_size 0"),
    ("random_layers num_layers 0", lambda: random_layers(I, H, num_layers=0), ValueError, "num_layers must be a positive integer, got 0"),
    ("random_layers num_layers -1", lambda: random_layers(I, H, num_layers=-1), ValueError, "num_layers must be a positive integer, got -1"),
    ("random_layers num_layers float", lambda: random_layers(I, H, num_layers=2.0), TypeError, "num_layers must be a positive integer, got float 2.0"),
    ("random_layers num_layers bool", lambda: random_layers(I, H, num_layers=True), TypeError, "num_layers must be a positive integer, got bool True"),
    ("random_layers bool size", lambda: random_layers(I, False), TypeError, "hidden_size must be a positive integer, got bool False"),
    ("random_layers float size", lambda: random_layers(2.5, H), TypeError, "input_size must be a positive integer, got float 2.5"),
    ("random_layers hidden 0", lambda: random_layers(I, 0), ValueError, "hidden_size must be a positive integer, got 0"),
    ("random_layers merge", lambda: random_layers(I, H, 2, True, merge="max"), ValueError, "unknown merge mode 'max'; valid: concat, sum, ave, mul"),
    ("random_layers merge None", lambda: random_layers(I, H, merge=None), ValueError, "unknown merge mode None"),
    ("random_layers bidirectional str", lambda: random_layers(I, H, bidirectional="yes"), TypeError, "bidirectional must be True or False"),
    ("random_layers dtype", lambda: random_layers(I, H, dtype=np.float16), ValueError, "dtype must be float32 or float64, got float16"),
    ("layer_input_size merge", lambda: layer_input_size(I, H, 1, 2, "max"), ValueError, "unknown merge mode 'max'"),
    ("gru dtype float16", lambda: gru(X, P, AFTER, dtype=np.float16), ValueError, "dtype must be float32 or float64, got float16"),
    ("gru dtype int", lambda: gru(X, P, AFTER, dtype=int), ValueError, "dtype must be float32 or float64, got int"),
    ("gru dtype complex", lambda: gru(X, P, AFTER, dtype=np.complex128), ValueError, "dtype must be float32 or float64, got complex128"),
    ("gru dtype longdouble", lambda: gru(X, P, AFTER, dtype=np.longdouble), ValueError, "dtype must be float32 or float64"),
    ("gru dtype str", lambda: gru(X, P, AFTER, dtype="bogus"), TypeError, "dtype must be float32 or float64, got 'bogus', which is not a NumPy dtype"),
    ("gru dtype None", lambda: gru(X, P, AFTER, dtype=None), TypeError, "dtype must be float32 or float64, got None"),
    ("gru dtype bool", lambda: gru(X, P, AFTER, dtype=True), TypeError, "dtype must be float32 or float64, got True"),
    ("gru_stack dtype float16", lambda: gru_stack(X, LAYERS, AFTER, dtype="float16"), ValueError, "dtype must be float32 or float64, got 'float16'"),
    ("gru_stack dtype int32", lambda: gru_stack(X, LAYERS, AFTER, dtype=np.int32), ValueError, "dtype must be float32 or float64, got int32"),
    ("GRUParams.astype float16", lambda: P.astype(np.float16), ValueError, "dtype must be float32 or float64, got float16"),
    ("GRUParams.random dtype", lambda: GRUParams.random(I, H, dtype="int64"), ValueError, "dtype must be float32 or float64, got 'int64'"),
    ("gate_activation scalar", lambda: gru(X, P, AFTER, gate_activation=_constant(0.5)), TypeError, r"gate_activation returned float 0.5 for a float64 array of shape \(2, 3\)"),
    ("gate_activation reduces", lambda: gru(X, P, AFTER, gate_activation=lambda a: a.mean(axis=0)), ValueError, r"gate_activation returned shape \(3,\) for a float64 array of shape \(2, 3\); it must act element-wise"),
    ("gate_activation other dtype", lambda: gru(X, P, AFTER, gate_activation=lambda a: sigmoid(a).astype(np.float32)), TypeError, "gate_activation returned dtype float32"),
    ("gate_activation bool", lambda: gru(X, P, AFTER, gate_activation=lambda a: a > 0), TypeError, "gate_activation returned dtype bool"),
    ("gate_activation list", lambda: gru(X, P, AFTER, gate_activation=lambda a: a.tolist()), TypeError, "gate_activation returned a list of length 2"),
    ("gate_activation None", lambda: gru(X, P, AFTER, gate_activation=_constant(None)), TypeError, "gate_activation returned None"),
    ("gate_activation NaN", lambda: gru(X, P, AFTER, gate_activation=lambda a: a * np.nan), ValueError, "gate_activation returned non-finite values"),
    ("gate_activation NaN later", lambda: gru(np.concatenate([X, np.full((B, 1, I), 60.0)], axis=1), P, AFTER, gate_activation=_nan_above(8.0)), ValueError, "gate_activation returned NaN or inf for some pre-activation"),
    ("gate_activation out= wrong shape", lambda: gru(X, P, AFTER, gate_activation=_out_style_wrong_shape), ValueError, r"gate_activation returned shape \(3,\)"),
    ("gate_activation raises", lambda: gru(X, P, AFTER, gate_activation=_raises), TypeError, "gate_activation raised KeyError: 'no such gate' when called on a float64 array"),
    ("gate_activation not callable", lambda: gru(X, P, AFTER, gate_activation="sigmoid"), TypeError, "gate_activation must be callable"),
    ("gate_activation in a stack", lambda: gru_stack(X, LAYERS, AFTER, gate_activation=_constant(0.5)), TypeError, "gate_activation returned float 0.5"),
    ("float32 overflow", lambda: gru(BIG, P, AFTER, dtype=np.float32), ValueError, "input projection x @ W \\+ b overflowed float32.*dtype=np.float64"),
]


@_table(SIZES)
def test_degenerate_sizes_dtypes_and_activations_are_refused(call, errors, fragment):
    assert_refused(call, errors, fragment)


# ---------------------------------------------------------------- item 6: type errors name the argument

ONE_LAYER_HINT = r"wrap it as \[\[params\]\]"
NOT_ONE_PARAMS = [
    ("dict", {"weight_ih_l0": np.zeros((9, 2))}, TypeError, "is a dict; expected a reference.GRUParams"),
    ("None", None, TypeError, "is None; expected a reference.GRUParams"),
    ("a stack", [[P]], TypeError, r"is a list of length 1 \(a stack or a list of directions\?\); expected one GRUParams.*layers\[0\]\[0\]"),
    ("tensor", TensorLike(np.zeros(3)), TypeError, r"is a torch TensorLike; pass a NumPy array instead: .*\.detach\(\)\.cpu\(\)\.numpy\(\)"),
    ("array", np.zeros((3, 3)), TypeError, r"is a float64 array of shape \(3, 3\); expected a reference.GRUParams"),
    ("str", "params", TypeError, "is str 'params'; expected a reference.GRUParams"),
    ("int", 3, TypeError, "is int 3; expected a reference.GRUParams"),
]
PARAMS_TAKERS = [
    ("to_torch", lambda value: layouts.to_torch(value), "params"),
    ("to_keras", lambda value: layouts.to_keras(value), "params"),
    ("to_onnx", lambda value: layouts.to_onnx([value]), r"directions\[0\]"),
    ("flip_update_weighting", lambda value: flip_update_weighting(value), "params"),
    ("fold_recurrent_biases", lambda value: fold_recurrent_biases(value, BEFORE), "params"),
    ("gru", lambda value: gru(X, value, AFTER), "params"),
    ("GRUParams.identical", lambda value: P.identical(value), "other"),
    ("GRUParams.first_difference", lambda value: P.first_difference(value), "other"),
]
PARAMS_ROWS = [
    (f"{function} <- {label}", (lambda call=call, value=value: call(value)), error, f"^{name} {fragment}")
    for function, call, name in PARAMS_TAKERS
    for label, value, error, fragment in NOT_ONE_PARAMS
]

NOT_A_STACK = [
    ("bare GRUParams", P, TypeError, "layers is a single GRUParams.*" + ONE_LAYER_HINT),
    ("flat list", [P], TypeError, r"layers\[0\] is a GRUParams, not a list of directions.*\[\[params\]\]"),
    ("flat pair", [P, P], TypeError, r"layers\[0\] is a GRUParams, not a list of directions"),
    ("None", None, TypeError, "layers is None; expected a non-empty list of layers"),
    ("dict", {"l0": P}, TypeError, "layers is a dict; expected a non-empty list of layers"),
    ("str", "layers", TypeError, "layers is str 'layers'"),
    ("int", 1, TypeError, "layers is int 1"),
    ("tensor", TensorLike(np.zeros(3)), TypeError, r"layers is a torch TensorLike.*\.detach\(\)"),
    ("empty", [], ValueError, "layers is empty"),
    ("empty layer", [[]], ValueError, "layer 0 has 0 directions; expected 1 or 2"),
    ("three directions", [[P, P, P]], ValueError, "layer 0 has 3 directions; expected 1 or 2"),
    ("ragged directions", [[P], [P, P]], ValueError, "layer 1 has 2 directions, layer 0 has 1"),
    ("None inside", [[None]], TypeError, r"layers\[0\]\[0\] is None, expected GRUParams"),
    ("str inside", [["P"]], TypeError, r"layers\[0\]\[0\] is str 'P', expected GRUParams"),
    ("str layer", ["P"], TypeError, r"layers\[0\] is str 'P'; expected a list of GRUParams per direction"),
    ("array inside", [[np.zeros(3)]], TypeError, r"layers\[0\]\[0\] is a float64 array of shape \(3,\), expected GRUParams"),
    ("sizes", [[P], [GRUParams.random(5, H)]], ValueError, r"layers\[1\]\[0\] has input_size=5.*expected input_size=3"),
]
STACK_ROWS = [
    (f"{function} <- {label}", (lambda call=call, value=value: call(value)), error, fragment)
    for function, call in (("gru_stack", lambda value: gru_stack(X, value, AFTER)), ("check_layers", check_layers))
    for label, value, error, fragment in NOT_A_STACK
]

NOT_AN_ARRAY = [
    ("None", None, TypeError, "{name} is None; expected a float32 or float64 NumPy array"),
    ("str", "0.5", TypeError, "{name} is str '0.5'; expected a float32 or float64 NumPy array"),
    ("dict", {"a": np.zeros(3)}, TypeError, r"{name} is a dict \(keys 'a'\); expected one float32 or float64 array"),
    ("GRUParams", P, TypeError, "{name} is a GRUParams; expected an array"),
    ("tensor", TensorLike(np.zeros((B, T, I))), TypeError, r"{name} is a torch TensorLike; pass a NumPy array instead: {name}\.detach\(\)\.cpu\(\)\.numpy\(\)"),
    ("ragged", [[[0.0, 1.0], [0.0]]], ValueError, "{name} is a ragged nested sequence"),
    ("object", np.array([[[1.0, "a"]]], dtype=object), TypeError, "{name} has dtype object"),
    ("int", np.zeros((B, T, I), np.int64), TypeError, r"{name} has dtype int64; .*float32 or float64 \(convert with .astype"),
    ("bool", np.zeros((B, T, I), bool), TypeError, "{name} has dtype bool; .*floating point"),
    ("python int", 3, TypeError, "{name} has dtype int64"),
    ("float16", np.zeros((B, T, I), np.float16), TypeError, "{name} has dtype float16, which is not supported; supported dtypes are float32 and float64"),
    ("complex", np.zeros((B, T, I), complex), TypeError, "{name} has dtype complex128; complex values are not supported"),
    ("masked array", np.ma.masked_array(np.zeros((B, T, I)), mask=True), TypeError, r"{name} is a NumPy masked array; pass {name}\.filled"),
]


def _bfloat16_rows():
    try:
        import ml_dtypes  # ships with JAX and TensorFlow; NumPy has no bfloat16 of its own
    except ImportError:
        return []
    return [("bfloat16", np.zeros((B, T, I), ml_dtypes.bfloat16), TypeError,
             "{name} has dtype bfloat16, which is not supported; supported dtypes are float32 and float64")]


ARRAY_TAKERS = [
    ("gru x", "x", lambda value: gru(value, P, AFTER)),
    ("gru_stack x", "x", lambda value: gru_stack(value, LAYERS, AFTER)),
    ("gru h0", "h0", lambda value: gru(X, P, AFTER, h0=value)),
    ("gru_stack h0", "h0", lambda value: gru_stack(X, LAYERS, AFTER, h0=value)),
    ("from_torch weight_ih", "weight_ih", lambda value: layouts.from_torch(value, np.zeros((9, 3)))),
    ("from_torch weight_hh", "weight_hh", lambda value: layouts.from_torch(np.zeros((9, 2)), value)),
    ("from_torch bias_ih", "bias_ih", lambda value: layouts.from_torch(np.zeros((9, 2)), np.zeros((9, 3)), value, np.zeros(9))),
    ("from_keras kernel", "kernel", lambda value: layouts.from_keras(value, np.zeros((3, 9)))),
    ("from_keras recurrent_kernel", "recurrent_kernel", lambda value: layouts.from_keras(np.zeros((2, 9)), value)),
    ("from_keras bias", "bias", lambda value: layouts.from_keras(np.zeros((2, 9)), np.zeros((3, 9)), value)),
    ("from_onnx W", "W", lambda value: layouts.from_onnx(value, np.zeros((1, 9, 3)))),
    ("from_onnx R", "R", lambda value: layouts.from_onnx(np.zeros((1, 9, 2)), value)),
    ("from_onnx B", "B", lambda value: layouts.from_onnx(np.zeros((1, 9, 2)), np.zeros((1, 9, 3)), value)),
    ("GRUParams W_z", "W_z", lambda value: GRUParams(**{**dict(P.arrays()), "W_z": value})),
    ("GRUParams c_h", "c_h", lambda value: P.replace(c_h=value)),
    ("merge_directions", "forward", lambda value: merge_directions(value, np.zeros((B, T, H)), "sum")),
    ("compare_forward actual", "actual_h_last", lambda value: compare_forward(None, value, None, np.zeros((1, B, H)), np.float64)),
    ("compare_forward expected", "expected_h_last", lambda value: compare_forward(None, np.zeros((1, B, H)), None, value, np.float64)),
]
OPTIONAL_ARRAYS = ("h0", "bias_ih", "bias", "B")
ARRAY_ROWS = [
    (f"{function} <- {label}", (lambda call=call, value=value: call(value)), error, fragment.format(name=re.escape(name)))
    for function, name, call in ARRAY_TAKERS
    for label, value, error, fragment in NOT_AN_ARRAY + _bfloat16_rows()
    # A framework may compute in float16: the actual side of a comparison takes any float width.
    if not (function == "compare_forward actual" and label in ("float16", "bfloat16"))
    # None is the documented default of an optional argument (no h0, no bias).
    and not (label == "None" and name in OPTIONAL_ARRAYS)
]

VALUES = [
    ("x NaN", lambda: gru(np.full((B, T, I), np.nan), P, AFTER), ValueError, r"x contains a non-finite value \(nan at index \(0, 0, 0\)\)"),
    ("x inf", lambda: gru_stack(np.full((B, T, I), np.inf), LAYERS, AFTER), ValueError, "x contains a non-finite value"),
    ("x rank 2", lambda: gru(np.zeros((T, I)), P, AFTER), ValueError, r"x has shape \(4, 2\); expected \(batch, time, input_size\)"),
    ("x rank 4", lambda: gru(np.zeros((1, B, T, I)), P, AFTER), ValueError, r"expected \(batch, time, input_size\)"),
    ("x features", lambda: gru(np.zeros((B, T, I + 1)), P, AFTER), ValueError, "x has input_size 3 .* but the parameters expect 2"),
    ("x no time", lambda: gru(np.zeros((B, 0, I)), P, AFTER), ValueError, "at least one sequence .* of one timestep"),
    ("x no batch", lambda: gru_stack(np.zeros((0, T, I)), LAYERS, AFTER), ValueError, "at least one sequence .* of one timestep"),
    ("h0 NaN", lambda: gru(X, P, AFTER, h0=np.full((B, H), np.nan)), ValueError, "h0 contains a non-finite value"),
    ("h0 stack shape to gru", lambda: gru(X, P, AFTER, h0=np.zeros((1, B, H))), ValueError, r"h0 has shape \(1, 2, 3\); expected \(batch, hidden_size\) = \(2, 3\)"),
    ("h0 gru shape to stack", lambda: gru_stack(X, LAYERS, AFTER, h0=np.zeros((B, H))), ValueError, r"h0 has shape \(2, 3\); expected \(num_layers \* directions, batch, hidden_size\) = \(1, 2, 3\)"),
    ("h0 float16", lambda: gru(X, P, AFTER, h0=np.zeros((B, H), np.float16)), TypeError, "h0 has dtype float16, which is not supported"),
    ("mask int", lambda: gru(X, P, AFTER, mask=np.ones((B, T), int)), TypeError, r"mask has dtype int64; expected bool \(True = real step"),
    ("mask float", lambda: gru_stack(X, LAYERS, AFTER, mask=np.ones((B, T))), TypeError, "mask has dtype float64; expected bool"),
    ("mask rank 1", lambda: gru(X, P, AFTER, mask=np.ones(T, bool)), ValueError, r"mask has shape \(4,\); expected \(batch, time\) = \(2, 4\)"),
    ("mask rank 3", lambda: gru(X, P, AFTER, mask=np.ones((B, T, 1), bool)), ValueError, r"mask has shape \(2, 4, 1\); expected \(batch, time\)"),
    ("mask str", lambda: gru(X, P, AFTER, mask="all"), TypeError, "mask is str 'all'; expected a \\(batch, time\\) bool array"),
    ("mask tensor", lambda: gru(X, P, AFTER, mask=TensorLike(np.ones((B, T), bool))), TypeError, r"mask is a torch TensorLike; .*mask\.detach\(\)"),
    ("mask ragged", lambda: gru(X, P, AFTER, mask=[[True, False], [True]]), ValueError, "mask cannot be read as a .* bool array"),
    ("convention None", lambda: gru(X, P, None), TypeError, "expected a Convention or one of its ids"),
    ("convention unknown", lambda: gru_stack(X, LAYERS, "pytorch"), ValueError, "unknown convention 'pytorch'"),
    ("convention params", lambda: gru(X, P, P), TypeError, r"expected a Convention or one of its ids .*got GRUParams\(input_size=2"),
    ("reverse str", lambda: gru(X, P, AFTER, reverse="yes"), TypeError, "reverse must be True or False, got str 'yes'"),
    ("reverse stack int", lambda: gru_stack(X, LAYERS, AFTER, reverse=1), TypeError, "reverse must be True or False, got int 1"),
    ("merge unknown", lambda: gru_stack(X, LAYERS, AFTER, merge="max"), ValueError, "unknown merge mode 'max'"),
    ("merge list", lambda: gru_stack(X, LAYERS, AFTER, merge=["sum"]), ValueError, r"unknown merge mode \['sum'\]"),
    ("masked_output list", lambda: gru_stack(X, LAYERS, AFTER, masked_output=["zero"]), ValueError, r"unknown masked_output \['zero'\]"),
    ("merge_directions shapes", lambda: merge_directions(np.zeros((B, T, H)), np.zeros((B, T, H + 1)), "sum"), ValueError, r"forward has shape \(2, 4, 3\) but backward has shape \(2, 4, 4\)"),
    ("merge_directions merge", lambda: merge_directions(np.zeros((B, T, H)), np.zeros((B, T, H)), "max"), ValueError, "unknown merge mode 'max'"),
    ("params NaN", lambda: P.replace(U_r=np.full((H, H), np.inf)), ValueError, "U_r contains a non-finite value"),
    ("params mixed dtype", lambda: P.replace(b_h=np.zeros(H, np.float32)), TypeError, "share one dtype.*b_h=float32"),
    ("params missing field", lambda: P.replace(W_q=np.zeros((I, H))), TypeError, r"replace: unknown field\(s\) \['W_q'\]"),
    ("params unknown field", lambda: P.replace(W_q=np.zeros((I, H))), TypeError, r"replace: unknown field\(s\) \['W_q'\]"),
    ("params W_z rank", lambda: P.replace(W_z=np.zeros(H)), ValueError, r"W_z has shape \(3,\), expected \(input_size, hidden_size\)"),
    ("without_biases flag", lambda: P.without_biases(recurrent_only="c"), TypeError, "recurrent_only must be True or False"),
    ("from_torch mixed dtypes", lambda: layouts.from_torch(np.zeros((9, 2), np.float32), np.zeros((9, 3))), TypeError, "weight_ih is float32, weight_hh is float64"),
    ("from_torch bias shape", lambda: layouts.from_torch(np.zeros((9, 2)), np.zeros((9, 3)), np.zeros(6), np.zeros(9)), ValueError, r"bias_ih has shape \(6,\), expected \(9,\)"),
    ("from_torch NaN", lambda: layouts.from_torch(np.full((9, 2), np.nan), np.zeros((9, 3))), ValueError, "weight_ih contains a non-finite value"),
    ("from_keras reset_after str", lambda: layouts.from_keras(np.zeros((2, 9)), np.zeros((3, 9)), reset_after="yes"), TypeError, "reset_after must be True or False"),
    ("from_keras mixed dtypes", lambda: layouts.from_keras(np.zeros((2, 9)), np.zeros((3, 9), np.float32)), TypeError, "kernel is float64, recurrent_kernel is float32"),
    ("from_onnx direction str", lambda: layouts.from_onnx(np.zeros((2, 9, 2)), np.zeros((2, 9, 3)), direction="1"), TypeError, "direction must be an integer index"),
    ("from_onnx direction bool", lambda: layouts.from_onnx(np.zeros((2, 9, 2)), np.zeros((2, 9, 3)), direction=True), TypeError, "direction must be an integer index"),
    ("from_onnx direction -1", lambda: layouts.from_onnx(np.zeros((1, 9, 2)), np.zeros((1, 9, 3)), direction=-1), ValueError, "direction -1 is out of range"),
    ("to_torch bias str", lambda: layouts.to_torch(P, bias="no"), TypeError, "bias must be True or False"),
    ("to_keras flags", lambda: layouts.to_keras(P, reset_after=None), TypeError, "reset_after must be True or False, got None"),
    ("to_onnx None", lambda: layouts.to_onnx(None), TypeError, "directions is None; expected a reference.GRUParams"),
    ("to_onnx three", lambda: layouts.to_onnx([P, P, P]), ValueError, "an ONNX GRU node has 1 or 2 directions, got 3"),
    ("to_onnx mismatched", lambda: layouts.to_onnx([P, P32]), ValueError, "the two directions of one ONNX GRU node must have the same sizes and dtype"),
    ("tolerance_for str", lambda: tolerance_for("bogus"), TypeError, "dtype='bogus' is not a NumPy dtype"),
    ("tolerance_for None", lambda: tolerance_for(None), TypeError, "dtype=None is not a NumPy dtype"),
    ("tolerance_for float16", lambda: tolerance_for(np.float16), ValueError, "no tolerance is defined for dtype float16"),
    ("compare empty", lambda: compare_forward(None, np.zeros((1, 0, H)), None, np.zeros((1, 0, H)), np.float32), ValueError, r"h_last is empty \(shape \(1, 0, 3\)\): there is nothing to compare"),
    ("compare shapes", lambda: compare_forward(None, np.zeros((1, B, H)), None, np.zeros((2, B, H)), np.float32), ValueError, "actual shape .* differs from expected shape"),
    ("compare expected missing", lambda: compare_forward(np.zeros((B, T, H)), np.zeros((1, B, H)), None, np.zeros((1, B, H)), np.float32), TypeError, "expected_outputs is None"),
    ("compare expected NaN", lambda: compare_forward(None, np.zeros((1, B, H)), None, np.full((1, B, H), np.nan), np.float32), ValueError, "expected_h_last contains a non-finite value"),
    ("compare dtype", lambda: compare_forward(None, np.zeros((1, B, H)), None, np.zeros((1, B, H)), "bogus"), TypeError, "is not a NumPy dtype"),
    ("difference rtol", lambda: difference("h", np.zeros(3), np.zeros(3), ("unit",), -1.0, 0.0), ValueError, "rtol must be a finite number >= 0, got float -1.0"),
    ("difference atol NaN", lambda: difference("h", np.zeros(3), np.zeros(3), ("unit",), 0.0, float("nan")), ValueError, "atol must be a finite number >= 0"),
    ("difference axes", lambda: difference("h", np.zeros(3), np.zeros(3), "unit", 0.0, 0.0), TypeError, "axes must be a tuple of axis names"),
]


@_table(PARAMS_ROWS + STACK_ROWS + ARRAY_ROWS + VALUES)
def test_bad_arguments_are_named_with_the_fix(call, errors, fragment):
    assert_refused(call, errors, fragment)


def test_refusals_leave_the_callers_arrays_untouched():
    x, h0 = X.copy(), np.zeros((B, H))
    before = x.copy()
    assert_refused(lambda: gru(x, P, AFTER, h0=h0, mask=np.ones((B, T), int)), TypeError, "mask has dtype int64")
    assert np.array_equal(x, before) and not h0.any()


# ---------------------------------------------------------------- legal inputs still give the right answer


def test_lists_other_byte_orders_and_numpy_flags_give_the_same_answer():
    expected = gru(X, P, AFTER, h0=np.full((B, H), 0.25), reverse=True)
    as_lists = gru(X.tolist(), P, AFTER.id, h0=np.full((B, H), 0.25).tolist(), reverse=np.True_)
    big_endian = gru(X.astype(">f8"), P, AFTER, h0=np.full((B, H), 0.25).astype(">f8"), reverse=True, dtype=">f8")
    strided = gru(np.repeat(X, 2, axis=2)[:, :, ::2], P, AFTER, h0=np.full((B, H), 0.25), reverse=True)
    for outputs, h_last in (as_lists, big_endian, strided):
        assert np.array_equal(outputs, expected[0]) and np.array_equal(h_last, expected[1])


def test_sizes_from_numpy_integers_and_string_dtypes_are_legal():
    layers = random_layers(np.int64(I), np.int32(H), num_layers=np.int64(2), bidirectional=np.bool_(True), dtype="float32")
    assert [[p.dtype for p in layer] for layer in layers] == [[np.float32] * 2] * 2
    assert layers[1][0].input_size == 2 * H
    params = GRUParams.random(np.int64(I), H, seed=np.uint8(7), scale=np.float32(0.25))
    assert params.identical(GRUParams.random(I, H, seed=7, scale=0.25))


def test_from_layouts_accept_lists_and_round_trip():
    packed = layouts.to_torch(P)
    back = layouts.from_torch(*(packed[name].tolist() for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")))
    assert back.identical(P)
    assert layouts.from_onnx(**layouts.to_onnx(P), direction=np.int64(0)).identical(P)


def test_a_custom_gate_activation_that_is_element_wise_is_used():
    logistic = lambda a: 1.0 / (1.0 + np.exp(-a))  # noqa: E731 (no out= parameter: wrapped)
    expected = gru(X, P, BEFORE)
    for activation in (logistic, sigmoid):
        outputs, h_last = gru(X, P, BEFORE, gate_activation=activation)
        np.testing.assert_allclose(outputs, expected[0], rtol=0, atol=1e-15)
    hard = lambda a: np.clip(0.2 * a + 0.5, 0.0, 1.0)  # noqa: E731 (a real alternative: Keras 2's hard sigmoid)
    outputs, _ = gru(X.astype(np.float32), P32, AFTER, dtype=np.float32, gate_activation=hard)
    assert outputs.dtype == np.float32 and np.isfinite(outputs).all()
    assert np.abs(outputs - expected[0]).max() > 1e-3  # the activation really replaced the sigmoid


def test_float32_inputs_computed_in_float64_and_saturating_inputs_stay_legal():
    outputs, _ = gru(X.astype(np.float32), P, AFTER)
    assert outputs.dtype == np.float64
    saturated, _ = gru(np.full((1, 3, I), 1e30), P, AFTER)  # huge but representable: gates saturate, no overflow
    assert np.isfinite(saturated).all()


def test_nan_in_what_a_framework_returned_is_a_mismatch_not_an_error():
    actual = np.zeros((1, B, H))
    actual[0, 1, 2] = np.nan
    result = compare_forward(None, actual, None, np.zeros((1, B, H)), np.float32)
    assert not result.passed and result.h_last.mismatched == 1 and result.h_last.max_abs == np.inf
    half = compare_forward(None, np.full((1, B, H), 0.5, np.float16), None, np.full((1, B, H), 0.5), np.float32)
    assert half.passed


# ---------------------------------------------------------------- item 7: the torch adapter


@pytest.fixture(scope="module")
def torch_adapter():
    return adapter_or_skip("torch")


@pytest.fixture(scope="module")
def torch():
    return module_or_skip("torch")


def _torch_rows(torch):
    nn = torch.nn
    gru2 = nn.GRU(I, H, num_layers=2, batch_first=True).double().eval()
    bi = nn.GRU(I, H, bidirectional=True, batch_first=False).double()
    cell = nn.GRUCell(I, H).double()
    f32 = nn.GRU(I, H, batch_first=True)
    x = np.zeros((B, T, I))
    right_padded = np.array([[True] * T, [True, True, False, False]])
    return [
        ("x rank 2", gru2, dict(x=np.zeros((T, I))), ValueError, r"x has shape \(4, 2\); expected \(batch, time, input_size\) = \(batch, time, 2\)"),
        ("x rank 4", gru2, dict(x=np.zeros((1, B, T, I))), ValueError, "expected \\(batch, time, input_size\\)"),
        ("x features", gru2, dict(x=np.zeros((B, T, I + 1))), ValueError, "x has 3 features .* module's input_size is 2"),
        ("x no time", gru2, dict(x=np.zeros((B, 0, I))), ValueError, "at least one sequence .* of one timestep"),
        ("x no batch", cell, dict(x=np.zeros((0, T, I))), ValueError, "at least one sequence"),
        ("x float32 for float64", gru2, dict(x=x.astype(np.float32)), TypeError, r"x has dtype float32 but the layer computes in torch.float64; pass x.astype\(np.float64\)"),
        ("x float64 for float32", f32, dict(x=x), TypeError, "x has dtype float64 but the layer computes in torch.float32"),
        ("x int", gru2, dict(x=np.zeros((B, T, I), int)), TypeError, "x has dtype int64"),
        ("x float16", f32, dict(x=np.zeros((B, T, I), np.float16)), TypeError, "x has dtype float16, which is not supported"),
        ("x NaN", gru2, dict(x=np.full((B, T, I), np.nan)), ValueError, "x contains a non-finite value"),
        ("x inf", cell, dict(x=np.full((B, T, I), -np.inf)), ValueError, "x contains a non-finite value"),
        ("x tensor", gru2, dict(x=torch.zeros(B, T, I, dtype=torch.float64)), TypeError, r"x is a torch Tensor; .*x\.detach\(\)\.cpu\(\)\.numpy\(\)"),
        ("x parameter", gru2, dict(x=nn.Parameter(torch.zeros(B, T, I, dtype=torch.float64))), TypeError, "x is a torch Parameter"),
        ("x None", gru2, dict(x=None), TypeError, "x is None"),
        ("x ragged", gru2, dict(x=[[[0.0, 0.0]], [[0.0]]]), ValueError, "x is a ragged nested sequence"),
        ("h0 one slot for two layers", gru2, dict(x=x, h0=np.zeros((1, B, H))), ValueError, r"h0 has shape \(1, 2, 3\); expected \(num_layers \* directions, batch, hidden_size\) = \(2, 2, 3\)"),
        ("h0 rank 2", bi, dict(x=x, h0=np.zeros((B, H))), ValueError, r"expected \(num_layers \* directions, batch, hidden_size\) = \(2, 2, 3\)"),
        ("h0 batch", gru2, dict(x=x, h0=np.zeros((2, B + 1, H))), ValueError, r"h0 has shape \(2, 3, 3\)"),
        ("h0 dtype", gru2, dict(x=x, h0=np.zeros((2, B, H), np.float32)), TypeError, r"h0 has dtype float32 but the layer computes in torch.float64; pass h0.astype\(np.float64\)"),
        ("h0 int", gru2, dict(x=x, h0=np.zeros((2, B, H), int)), TypeError, "h0 has dtype int64"),
        ("h0 NaN", gru2, dict(x=x, h0=np.full((2, B, H), np.nan)), ValueError, "h0 contains a non-finite value"),
        ("h0 tensor", gru2, dict(x=x, h0=torch.zeros(2, B, H, dtype=torch.float64)), TypeError, "h0 is a torch Tensor"),
        ("cell h0 rank 2", cell, dict(x=x, h0=np.zeros((B, H))), ValueError, r"expected \(1, batch, hidden_size\): a GRUCell has one state slot = \(1, 2, 3\)"),
        ("cell h0 two slots", cell, dict(x=x, h0=np.zeros((2, B, H))), ValueError, "a GRUCell has one state slot"),
        ("cell mask", cell, dict(x=x, mask=right_padded), ValueError, "nn.GRUCell has no notion of padding"),
        ("mask int", gru2, dict(x=x, mask=right_padded.astype(int)), TypeError, r"mask has dtype int64; expected bool .*mask.astype\(bool\)"),
        ("mask shape", gru2, dict(x=x, mask=right_padded[:, :3]), ValueError, r"mask has shape \(2, 3\); expected \(batch, time\) = \(2, 4\)"),
        ("mask rank 1", bi, dict(x=x, mask=np.ones(T, bool)), ValueError, r"mask has shape \(4,\)"),
        ("mask left padded", gru2, dict(x=x, mask=right_padded[:, ::-1]), ValueError, r"mask row 1 is \[0, 0, 1, 1\].*right padding"),
        ("mask empty row", gru2, dict(x=x, mask=np.array([[True] * T, [False] * T])), ValueError, "mask row 1 has no valid step"),
        ("mask tensor", gru2, dict(x=x, mask=torch.ones(B, T, dtype=torch.bool)), TypeError, "mask is a torch tensor"),
        ("mask str", gru2, dict(x=x, mask="none"), TypeError, "mask is str 'none'"),
    ]


def test_torch_run_validates_its_inputs_before_torch_sees_them(torch_adapter, torch):
    for label, module, arguments, errors, fragment in _torch_rows(torch):
        before = {name: tensor.clone() for name, tensor in module.state_dict().items()}
        try:
            assert_refused(lambda: torch_adapter.run(module, **arguments), errors, fragment)
        except AssertionError as failure:
            raise AssertionError(f"{label}: {failure}") from None
        assert all(torch.equal(before[name], tensor) for name, tensor in module.state_dict().items()), label


@pytest.mark.parametrize("module_name", ["LSTM", "RNN", "Linear", "LSTMCell", "Sequential"])
@pytest.mark.parametrize("method", ["run", "extract", "describe"])
def test_torch_adapter_refuses_modules_that_are_not_a_gru_naming_the_class(torch_adapter, torch, method, module_name):
    nn = torch.nn
    module = {
        "LSTM": lambda: nn.LSTM(I, H), "RNN": lambda: nn.RNN(I, H), "Linear": lambda: nn.Linear(I, H),
        "LSTMCell": lambda: nn.LSTMCell(I, H), "Sequential": lambda: nn.Sequential(nn.GRU(I, H)),
    }[module_name]()
    arguments = (module, np.zeros((B, T, I), np.float32)) if method == "run" else (module,)
    fragment = f"expected torch.nn.GRU or torch.nn.GRUCell, got {module_name} \\(torch.nn.modules"
    message = assert_refused(lambda: getattr(torch_adapter, method)(*arguments), TypeError, fragment)
    if module_name == "Sequential":
        assert "it contains a GRU at '0': pass that submodule" in message


@pytest.mark.parametrize("method", ["run", "extract", "describe"])
def test_torch_adapter_refuses_what_is_not_a_module(torch_adapter, method):
    arguments = ("nn.GRU", np.zeros((B, T, I))) if method == "run" else (None,)
    assert_refused(lambda: getattr(torch_adapter, method)(*arguments), TypeError,
                   "expected a torch.nn.GRU or torch.nn.GRUCell module, got (str 'nn.GRU'|None)")


def test_torch_adapter_refuses_half_precision_modules_and_leaves_them_alone(torch_adapter, torch):
    module = torch.nn.GRU(I, H).half()
    for call in (lambda: torch_adapter.extract(module), lambda: torch_adapter.run(module, np.zeros((B, T, I), np.float16))):
        assert_refused(call, TypeError, r"the GRU's parameters are torch.float16; supported dtypes are torch.float32 "
                                        r"and torch.float64: run a copy converted with copy.deepcopy\(module\).float\(\)")
    assert next(module.parameters()).dtype == torch.float16


def test_torch_extract_names_the_modules_own_tensor_when_it_holds_nan(torch_adapter, torch):
    module = torch.nn.GRU(I, H, num_layers=2)
    with torch.no_grad():
        module.weight_hh_l1[0, 0] = float("nan")
    assert_refused(lambda: torch_adapter.extract(module), ValueError,
                   r"GRU \(weight_ih_l1, weight_hh_l1, bias_ih_l1, bias_hh_l1\): weight_hh contains a non-finite value")


def test_torch_build_refuses_bad_configs_stacks_and_dtypes(torch_adapter):
    config = torch_adapter.configuration("nn.GRU(batch_first=True)")
    keras_like = config.__class__(framework="keras", name="GRU(reset_after=True)", claimed=AFTER)
    rows = [
        (lambda: torch_adapter.build("nn.GRU(batch_first=True)", LAYERS, np.float32), TypeError,
         r"config is str 'nn.GRU\(batch_first=True\)'; expected a LayerConfig: adapters.get\('torch'\).configuration\(name\)"),
        (lambda: torch_adapter.build(keras_like, LAYERS, np.float32), ValueError,
         r"config keras:GRU\(reset_after=True\) is a keras configuration; this adapter builds torch ones"),
        (lambda: torch_adapter.build(config, P, np.float32), TypeError, "layers is a single GRUParams.*" + ONE_LAYER_HINT),
        (lambda: torch_adapter.build(config, [P], np.float32), TypeError, r"layers\[0\] is a GRUParams, not a list"),
        (lambda: torch_adapter.build(config, None, np.float32), TypeError, "layers is None"),
        (lambda: torch_adapter.build(config, LAYERS, np.float16), ValueError, "dtype float16 is not supported"),
        (lambda: torch_adapter.build(config, LAYERS, "bogus"), TypeError, "dtype must be float32 or float64, got 'bogus'"),
        (lambda: torch_adapter.build(torch_adapter.configuration("nn.GRU(bias=False)"), LAYERS, np.float64), ValueError,
         "non-zero biases, which a bias=False layout cannot hold"),
    ]
    for call, errors, fragment in rows:
        assert_refused(call, errors, fragment)


def test_every_torch_configuration_cites_the_installed_docstring_and_states_layout_and_biases(torch_adapter, torch):
    configs = torch_adapter.configurations()
    for config in configs:
        assert config.claim_source.startswith("torch/nn/modules/rnn.py:"), config.name
        assert config.biases == (("b_z", "b_r", "b_h", "c_z", "c_r", "c_h") if config.bias else ()), config.name
        assert "rows r|z|n" in config.layout and ("no biases (bias=False)" in config.layout) != config.bias, config.name
    cell = torch_adapter.describe(torch.nn.GRUCell(I, H, bias=False))
    assert cell.biases == () and cell.bias_fields == () and "nn.GRUCell docstring" in cell.claim_source
    if not torch.__version__.startswith("2.13."):
        pytest.skip(f"the line numbers cited are those of torch 2.13; torch {torch.__version__} is installed")
    source = (Path(torch.__file__).parent / "nn" / "modules" / "rnn.py").read_text().splitlines()
    for config in (configs[0], configs[-1]):
        cited, _, quoted = config.claim_source.partition(" (torch 2.13.0), ")
        first, last = (int(n) for n in cited.rsplit(":", 1)[1].split("-"))
        lines = [line.strip().rstrip("\\").strip() for line in source[first - 1 : last]]
        assert lines == [part.strip() for part in quoted.split("docstring: ", 1)[1].split("; ")], config.name


def test_torch_legal_inputs_in_other_forms_give_the_reference_answer(torch_adapter, torch):
    torch.manual_seed(0)
    module = torch.nn.GRU(I, H, num_layers=2, batch_first=False).double()
    layers = torch_adapter.extract(module)
    h0 = np.full((2, B, H), 0.1)
    mask = np.array([[True] * T, [True, True, True, False]])
    observed = torch_adapter.run(module, X.tolist(), h0.tolist(), mask.tolist())
    outputs, h_last = gru_stack(X, layers, AFTER, h0=h0, mask=mask, masked_output="zero")
    np.testing.assert_allclose(observed.outputs, outputs, rtol=0, atol=1e-13)
    np.testing.assert_allclose(observed.h_last, h_last, rtol=0, atol=1e-13)
