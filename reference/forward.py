"""The forward pass: one direction (``gru``), then stacks and directions built on it (``gru_stack``).

Masking semantics (the adapters map each framework's padding behaviour onto these):

- a step whose mask is False leaves the state unchanged: ``h_t = h_prev``;
- the output at such a step is, by ``masked_output``:
  ``"carry"``: the carried state;
  ``"previous_output"``: the previous step's output, zeros before the first real step in
  processing order (Keras' default: it repeats its last output, which starts at zeros, while
  the *state* starts at ``h0``); equal to ``"carry"`` wherever a real step came before;
  ``"zero"``: zeros (PyTorch's ``pad_packed_sequence``, Keras' ``Bidirectional``);
- ``h_last`` is therefore the state after the last unmasked step.

Direction: ``reverse=True`` consumes ``x[:, T-1]`` first; ``outputs[:, t]`` is always the state
after consuming ``x[:, t]``, so outputs stay aligned with the input in both directions (as in
PyTorch and ONNX). With right-padded masks the reverse pass carries ``h0`` through the padding
and then reads each sequence backwards from its own last valid step.
"""

from __future__ import annotations

import inspect
import weakref
import math
import numbers

import numpy as np

from .conventions import Convention, as_convention
from .equations import BLEND, candidate_reset_after, candidate_reset_before, gates, sigmoid, sigmoid_overflow_unchecked
from .params import (
    MERGE_MODES, GRUParams, Layers, check_dtype, check_flag, check_float_array, check_layers, check_params,
    describe_value,
)

MASKED_OUTPUTS = ("carry", "previous_output", "zero")


def _check_inputs(x, input_size: int, hidden_size: int, h0, mask, h0_shape_name: str, h0_leading=()):
    x = check_float_array("x", x)
    if x.ndim != 3:
        raise ValueError(f"x has shape {x.shape}; expected (batch, time, input_size)")
    batch, time, features = x.shape
    if features != input_size:
        raise ValueError(f"x has input_size {features} (shape {x.shape}) but the parameters expect {input_size}")
    if time == 0 or batch == 0:
        raise ValueError(f"x has shape {x.shape}: at least one sequence (batch >= 1) of one timestep is needed")
    expected_h0 = (*h0_leading, batch, hidden_size)
    if h0 is not None:
        h0 = check_float_array("h0", h0)
        if h0.shape != expected_h0:
            raise ValueError(f"h0 has shape {h0.shape}; expected {h0_shape_name} = {expected_h0}")
    if mask is not None:
        mask = _as_mask(mask)
        if mask.dtype != np.bool_:
            raise TypeError(f"mask has dtype {mask.dtype}; expected bool (True = real step, False = padding)")
        if mask.shape != (batch, time):
            raise ValueError(f"mask has shape {mask.shape}; expected (batch, time) = {(batch, time)}")
    return x, h0, mask


def _as_mask(mask) -> np.ndarray:
    """The mask as an array; what cannot be one is named (its dtype and shape are checked by the caller)."""
    if isinstance(mask, (str, bytes, dict)) or isinstance(mask, GRUParams):
        raise TypeError(f"mask is {describe_value(mask)}; expected a (batch, time) bool array "
                        f"(True = real step, False = padding)")
    if hasattr(mask, "detach") and hasattr(mask, "requires_grad"):
        raise TypeError(f"mask is a torch {type(mask).__name__}; pass a NumPy array: mask.detach().cpu().numpy()")
    try:
        return np.asarray(mask)
    except (ValueError, TypeError) as error:
        raise ValueError(f"mask cannot be read as a (batch, time) bool array ({error}); a ragged list?") from None


class _Recurrence:
    """The sequential part of one direction: recurrent weights packed for one matmul a step, and
    every per-step buffer allocated once.

    Why the buffers look as they do (measured: NumPy's per-call cost, not arithmetic, dominates at
    ``(batch, hidden)`` sizes; a ufunc on a contiguous array skips the strided iterator and runs about
    twice as fast as on a column slice): z and r are computed together over the adjacent z|r columns
    (``gates``), the biases are broadcast once to contiguous ``(batch, ...)`` arrays, and the input
    biases are added here, a step at a time, instead of in a pass over the whole ``x @ W`` (the gate
    biases b and c fold into one addition).
    """

    def __init__(self, p: GRUParams, convention: Convention, batch: int, dtype, activation,
                 candidate_activation=np.tanh):
        hidden = p.hidden_size
        # The sigmoid without its own errstate: every caller of step runs it under np.errstate(over="ignore").
        activation = sigmoid_overflow_unchecked if activation is sigmoid else activation
        self.hidden, self.activation, self.candidate_activation = hidden, activation, candidate_activation
        self.after = convention.reset == "after"
        # Reset-after projects h_prev for all three gates at once; reset-before needs r first for h.
        # Column-major: OpenBLAS multiplies (batch, H) by it markedly faster than by a row-major copy.
        self.U = np.asfortranarray(np.concatenate([p.U_z, p.U_r, p.U_h] if self.after else [p.U_z, p.U_r], axis=1))
        self.U_h = np.asfortranarray(p.U_h)

        def rows(vector):  # a bias as a contiguous (batch, n) array, so every per-step addition is contiguous
            return np.ascontiguousarray(np.broadcast_to(vector.astype(dtype, copy=False), (batch, vector.shape[0])))

        self.bias_zr = rows(np.concatenate([p.b_z + p.c_z, p.b_r + p.c_r]))
        if self.after:  # c_h sits inside the reset product, b_h outside it
            self.b_h, self.c_h = rows(p.b_h), rows(p.c_h)
        else:
            self.bias_h = rows(p.b_h + p.c_h)
        self.h_proj = np.empty((batch, self.U.shape[1]), dtype)  # h_prev @ U, all gates
        self.zr = np.empty((batch, 2 * hidden), dtype)  # [z | r]
        self.h_cand = np.empty((batch, hidden), dtype)
        self.scratch = np.empty((batch, hidden), dtype)  # r * h_prev (reset-before)
        self.blend = BLEND[convention.update]

    def step(self, x_proj, h_prev, out, zr=None, h_cand=None, q_or_s=None):
        """One step: ``x_proj`` is this step's ``x_t @ W`` (batch, 3H), no bias; writes ``h_t`` into ``out``.

        ``zr`` (batch, 2H), ``h_cand`` and ``q_or_s`` (batch, H), when given, replace the step's own
        buffers, so the backward pass's tape is written in place (q = h_prev U_h + c_h, s = r * h_prev)."""
        H = self.hidden
        np.matmul(h_prev, self.U, out=self.h_proj)
        zr = gates(x_proj[:, : 2 * H], self.h_proj[:, : 2 * H], self.bias_zr, self.activation,
                   out=self.zr if zr is None else zr)
        z, r = zr[:, :H], zr[:, H:]
        h_cand = self.h_cand if h_cand is None else h_cand
        if self.after:
            candidate_reset_after(x_proj[:, 2 * H :], self.b_h, r, self.h_proj[:, 2 * H :], self.c_h,
                                  out=h_cand, activation=self.candidate_activation, q=q_or_s)
        else:
            candidate_reset_before(x_proj[:, 2 * H :], r, h_prev, self.U_h, self.bias_h,
                                   out=h_cand, scratch=self.scratch if q_or_s is None else q_or_s,
                                   activation=self.candidate_activation)
        return self.blend(z, h_prev, h_cand, out=out)


def input_projection(x: np.ndarray, p: GRUParams, dtype) -> np.ndarray:
    """``x @ [W_z | W_r | W_h]`` for every step in one matmul, ``(batch, time, 3 * hidden)``, without the
    biases (the steps add them), in x's own row order: no transposed copy of x, no pass over the result."""
    batch, time, input_size = x.shape
    W = np.asfortranarray(np.concatenate([p.W_z, p.W_r, p.W_h], axis=1))
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported once, after the loop
        x_rows = np.ascontiguousarray(x, dtype=dtype).reshape(batch * time, input_size)
        return (x_rows @ W).reshape(batch, time, 3 * p.hidden_size)


def _takes_out(activation) -> bool:
    """Whether ``activation`` accepts ``out=``; cached per function, since identification calls the reference
    thousands of times with the same few activations and ``inspect.signature`` costs ~0.2 ms a call."""
    try:
        return _TAKES_OUT[activation]
    except (KeyError, TypeError):  # not seen yet, or unhashable
        pass
    try:
        takes = "out" in inspect.signature(activation).parameters
    except (TypeError, ValueError):  # NumPy ufuncs accept out= but have no signature
        takes = True
    try:
        _TAKES_OUT[activation] = takes
    except TypeError:
        pass
    return takes


_TAKES_OUT: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _with_out(activation):
    """Let a plain ``f(a) -> array`` serve where the equations pass ``out=``."""
    if _takes_out(activation):
        return activation

    def wrapped(a, out=None):
        result = activation(a)
        if out is None:
            return result
        np.copyto(out, result)
        return out

    return wrapped


def _checked_activation(name: str, activation, sample: np.ndarray):
    """``activation`` in the ``out=`` form the equations call, after one trial on a real pre-activation.

    A gate activation must act element-wise: return a NumPy array of its input's shape and dtype,
    finite for finite input. Anything else would be broadcast or cast into the gate buffers
    silently, so it is refused here, once per call (the recurrence itself stays unchecked).
    """
    if not callable(activation):
        raise TypeError(f"{name} must be callable (an element-wise function of a NumPy array), "
                        f"got {describe_value(activation)}")
    wrapped = _with_out(activation)
    trial, out = sample.copy(), np.empty_like(sample)
    where = f"a {sample.dtype} array of shape {sample.shape}"
    try:
        result = wrapped(trial, out=out) if wrapped is activation else activation(trial)
    except Exception as error:
        raise TypeError(f"{name} raised {type(error).__name__}: {error} when called on {where}") from error
    if not isinstance(result, np.ndarray):
        raise TypeError(f"{name} returned {describe_value(result)} for {where}; it must return a NumPy array of "
                        f"the same shape and dtype (an element-wise function)")
    if result.shape != sample.shape:
        raise ValueError(f"{name} returned shape {result.shape} for {where}; it must act element-wise and keep the "
                         f"shape (a result of another shape would be broadcast into the gates)")
    if result.dtype != sample.dtype:
        raise TypeError(f"{name} returned dtype {result.dtype} for {where}; it must keep the input's dtype "
                        f"(cast inside it, e.g. .astype(a.dtype))")
    if not np.isfinite(result).all():
        raise ValueError(f"{name} returned non-finite values (NaN or inf) for finite input ({where})")
    return wrapped


def _check_clip(clip):
    """None (no clip) or a positive finite number, as a Python float."""
    if clip is None:
        return None
    if isinstance(clip, (bool, np.bool_)) or not isinstance(clip, numbers.Real) or not math.isfinite(clip) or clip <= 0:
        raise ValueError(f"clip must be a positive finite number (every gate's pre-activation is clipped to "
                         f"[-clip, clip]) or None for no clip, got {describe_value(clip)}")
    return float(clip)


def _clipped(activation, clip: float):
    """``activation`` applied to its input clipped to ``[-clip, clip]`` (the ONNX ``clip`` attribute)."""
    low, high = -clip, clip

    def clipped(a, out=None):
        return activation(np.clip(a, low, high, out=out), out=out)

    return clipped


def _non_finite_error(x_proj: np.ndarray, dtype, gate_activation, candidate_activation=np.tanh) -> ValueError:
    """Why a forward pass on finite, validated inputs produced NaN or inf."""
    if not np.isfinite(x_proj).all():
        return ValueError(
            f"the input projection x @ W + b overflowed {np.dtype(dtype).name}: x or the input weights are too large "
            f"for this dtype; scale them, or compute with dtype=np.float64"
        )
    if candidate_activation is not np.tanh:
        return ValueError(
            "the forward pass produced non-finite values: candidate_activation (or gate_activation) returned NaN "
            "or inf for some pre-activation, or an unbounded candidate activation let the state overflow "
            f"{np.dtype(dtype).name}; check the activations on large inputs, or set clip"
        )
    if gate_activation is not sigmoid:
        return ValueError(
            "the forward pass produced non-finite values: gate_activation returned NaN or inf for some "
            "pre-activation, or the recurrent weights overflowed; check gate_activation on large inputs"
        )
    return ValueError(
        f"the forward pass produced non-finite values: h_prev @ U overflowed {np.dtype(dtype).name}; h0 or the "
        f"recurrent weights are too large for this dtype"
    )


def gru(
    x,
    params: GRUParams,
    convention: Convention | str,
    h0=None,
    mask=None,
    reverse: bool = False,
    dtype=np.float64,
    gate_activation=sigmoid,
    candidate_activation=np.tanh,
    clip=None,
):
    """Run one GRU layer in one direction.

    ``x`` ``(batch, time, input_size)``; ``h0`` ``(batch, hidden_size)`` (zeros when None);
    ``mask`` ``(batch, time)`` bool. Returns ``(outputs (batch, time, hidden), h_last (batch, hidden))``
    in ``dtype`` (float64 by default: this is the oracle). Masked steps carry the state and
    output it (see the module docstring). ``gate_activation`` replaces the sigmoid of the
    update and reset gates (for modelling frameworks that use another one), ``candidate_activation``
    the tanh of the candidate (``reference.activations`` has the ONNX operator's functions); any
    element-wise ``f(a)`` or ``f(a, out=None)`` will do. ``clip`` (None: no clip) clips the complete
    input of every activation to ``[-clip, clip]``, as the ONNX ``GRU`` attribute does: the z and r
    pre-activations (biases included), and the candidate's after the reset gate is applied
    (reset-after: ``clip(x W_h + b_h + r * (h U_h + c_h))``).

    Cost: one matmul for every input projection, then one (reset-after) or two (reset-before)
    matmuls a step and 14 element-wise NumPy calls into preallocated buffers; time is linear in
    sequence length (``make bench`` prints the time per step and the ratios to torch and to the bare matmuls).
    """
    params = check_params(params)
    convention = as_convention(convention)
    reverse, dtype = check_flag(reverse, "reverse"), check_dtype(dtype)
    clip = _check_clip(clip)
    x, h0, mask = _check_inputs(x, params.input_size, params.hidden_size, h0, mask, "(batch, hidden_size)")
    batch, time, input_size = x.shape
    hidden = params.hidden_size
    p = params if params.dtype == np.dtype(dtype) else params.astype(dtype)

    x_proj = input_projection(x, p, dtype)

    first = time - 1 if reverse else 0
    if gate_activation is sigmoid:
        activation = sigmoid
    else:
        # Tried on the update gate's pre-activation; the steps call it on z|r together (it acts element-wise).
        activation = _checked_activation("gate_activation", gate_activation, x_proj[:, first, :hidden] + p.b_z + p.c_z)
    if candidate_activation is np.tanh:
        candidate = np.tanh
    else:
        candidate = _checked_activation("candidate_activation", candidate_activation,
                                        x_proj[:, first, 2 * hidden :] + p.b_h + p.c_h)
    if clip is not None:
        activation, candidate = _clipped(activation, clip), _clipped(candidate, clip)
    recurrence = _Recurrence(p, convention, batch, dtype, activation, candidate)
    outputs = np.empty((time, batch, hidden), dtype)
    h = np.zeros((batch, hidden), dtype) if h0 is None else np.array(h0, dtype=dtype)
    padding = None if mask is None else ~mask.T[:, :, None]
    # Overflow (exp in the sigmoid; anything else) is not warned about a step at a time: it is checked once, below.
    with np.errstate(over="ignore"):
        for t in (range(time - 1, -1, -1) if reverse else range(time)):
            h_new = recurrence.step(x_proj[:, t], h, out=outputs[t])
            if padding is not None:
                np.copyto(h_new, h, where=padding[t])
            h = h_new
    # One pass over the result, not a check per step: finite inputs can still overflow (|x| near the
    # dtype's maximum, huge weights, or a gate_activation that returns NaN on some input).
    if not np.isfinite(outputs).all():
        raise _non_finite_error(x_proj, dtype, gate_activation, candidate_activation)
    return outputs.transpose(1, 0, 2), h.copy()


def masked_outputs(outputs: np.ndarray, mask: np.ndarray, masked_output: str, reverse: bool = False) -> np.ndarray:
    """Turn ``gru``'s outputs (carried state at masked steps) into the ``masked_output`` form."""
    if masked_output == "carry":
        return outputs
    if masked_output == "zero":
        return np.where(mask[:, :, None], outputs, 0.0)
    if masked_output == "previous_output":
        order = mask[:, ::-1] if reverse else mask
        seen = np.logical_or.accumulate(order, axis=1)
        seen = seen[:, ::-1] if reverse else seen
        return np.where(seen[:, :, None], outputs, 0.0)
    raise ValueError(f"unknown masked_output {masked_output!r}; valid: {', '.join(MASKED_OUTPUTS)}")


def merge_directions(forward: np.ndarray, backward: np.ndarray, merge: str) -> np.ndarray:
    """Combine per-direction outputs: ``concat`` puts forward units first (PyTorch, Keras, ONNX agree)."""
    forward, backward = check_float_array("forward", forward), check_float_array("backward", backward)
    if forward.shape != backward.shape:
        raise ValueError(f"forward has shape {forward.shape} but backward has shape {backward.shape}; the two "
                         f"directions' outputs must have one shape")
    if merge == "concat":
        return np.concatenate([forward, backward], axis=-1)
    if merge == "sum":
        return forward + backward
    if merge == "ave":
        return (forward + backward) / 2
    if merge == "mul":
        return forward * backward
    raise ValueError(f"unknown merge mode {merge!r}; valid: {', '.join(MERGE_MODES)}")


def gru_stack(
    x,
    layers: Layers,
    convention: Convention | str,
    h0=None,
    mask=None,
    merge: str = "concat",
    masked_output: str = "carry",
    reverse: bool = False,
    dtype=np.float64,
    gate_activation=sigmoid,
    candidate_activation=np.tanh,
    clip=None,
):
    """Run stacked and/or bidirectional GRU layers, each direction through ``gru``.

    ``layers[l][d]``: layer ``l``, direction ``d`` (0 forward, 1 backward). ``h0`` is
    ``(num_layers * directions, batch, hidden)`` ordered layer-major, direction-minor (the
    PyTorch order). Each layer's merged outputs feed the next layer. Returns
    ``(outputs (batch, time, features), h_last (num_layers * directions, batch, hidden))``
    where ``features`` is ``directions * hidden`` for ``concat`` and ``hidden`` otherwise.
    ``reverse=True`` runs every layer of a single-direction stack backwards.
    ``gate_activation``, ``candidate_activation`` and ``clip`` apply to every layer and direction
    (see ``gru``).
    """
    convention = as_convention(convention)
    num_layers, directions = check_layers(layers, merge)
    reverse, dtype = check_flag(reverse, "reverse"), check_dtype(dtype)
    if reverse and directions == 2:
        raise ValueError("reverse=True applies to single-direction stacks; a bidirectional stack already runs both ways")
    if not isinstance(masked_output, str) or masked_output not in MASKED_OUTPUTS:
        raise ValueError(f"unknown masked_output {masked_output!r}; valid: {', '.join(MASKED_OUTPUTS)}")
    first = layers[0][0]
    x, h0, mask = _check_inputs(
        x, first.input_size, first.hidden_size, h0, mask,
        "(num_layers * directions, batch, hidden_size)", (num_layers * directions,),
    )
    finals = []
    layer_input = x
    for index, layer in enumerate(layers):
        direction_outputs = []
        for direction, params in enumerate(layer):
            slot = index * directions + direction
            outputs, h_last = gru(
                layer_input, params, convention,
                h0=None if h0 is None else h0[slot], mask=mask, reverse=direction == 1 or reverse,
                dtype=dtype, gate_activation=gate_activation, candidate_activation=candidate_activation, clip=clip,
            )
            if mask is not None:
                outputs = masked_outputs(outputs, mask, masked_output, reverse=direction == 1 or reverse)
            direction_outputs.append(outputs)
            finals.append(h_last)
        layer_input = direction_outputs[0] if directions == 1 else merge_directions(*direction_outputs, merge)
    return layer_input, np.stack(finals)
