"""The backward pass: analytic backpropagation through time for all four conventions.

Notation as in ``reference.equations`` (row vectors, ``x @ W``); ``d<name>`` is the gradient of the
scalar loss with respect to ``<name>``, ``a_*`` a gate's pre-activation, ``q = h_prev U_h + c_h``
(reset-after) and ``s = r * h_prev`` (reset-before). Each forward equation and its derivative:

    z      = g(a_z),  a_z = x W_z + b_z + h_prev U_z + c_z     da_z = dz * g'(z)
    r      = g(a_r),  a_r = x W_r + b_r + h_prev U_r + c_r     da_r = dr * g'(r)
    h_cand = tanh(x W_h + b_h + r * q)          (after)         da_h = dh_cand * (1 - h_cand^2);  dr = da_h * q;  dq = da_h * r
    h_cand = tanh(x W_h + b_h + s U_h + c_h)    (before)        da_h = dh_cand * (1 - h_cand^2);  ds = da_h U_h^T;  dr = ds * h_prev
    h_t    = z * h_prev + (1 - z) * h_cand      (z_on_previous)   dz = dh_t * (h_prev - h_cand);  dh_cand = dh_t * (1 - z);  dh_prev += dh_t * z
    h_t    = (1 - z) * h_prev + z * h_cand      (z_on_candidate)  dz = dh_t * (h_cand - h_prev);  dh_cand = dh_t * z;  dh_prev += dh_t * (1 - z)

and, through the matmuls, ``dh_prev += da_z U_z^T + da_r U_r^T + (dq U_h^T (after) | ds * r (before))``;
parameter gradients sum over batch and time: ``dW_* = x^T da_*``, ``db_* = sum da_*``,
``dU_{z,r} = h_prev^T da_{z,r}``, ``dc_{z,r} = sum da_{z,r}``; after: ``dU_h = h_prev^T dq``,
``dc_h = sum dq``; before: ``dU_h = s^T da_h``, ``dc_h = sum da_h``; ``dx = da_z W_z^T + da_r W_r^T + da_h W_h^T``.

Padding (``mask`` False at a step): the state is carried, ``h_t = h_prev``, so ``dh_prev = dh_t`` and the
step contributes no parameter or input gradient. The gradient of ``outputs[:, t]`` joins ``dh_t`` (the
output is the state after step ``t``; what a framework outputs at padded steps is handled by
``gru_stack_grad`` through ``masked_output``).

Cost: the forward is ``reference.gru``'s own step (``forward._Recurrence``), writing z|r, h_cand, q or s
and the state straight into the tape (``5 x time x batch x hidden``; h_prev of a step is the state before
it, not a copy). The backward keeps each step's pre-activation gradients (``4 x batch x hidden``
reset-after, 3 reset-before: every weight gradient is then one matmul over all steps) and a few
``(batch, hidden)`` buffers that every step reuses; each derivative below writes into the buffers it is
given. One recurrent matmul a step (reset-after) or two (reset-before); time and memory are linear in
the sequence length (``make bench`` prints both, and the ratio to torch autograd).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .conventions import Convention, as_convention
from .equations import sigmoid
from .forward import MASKED_OUTPUTS, _check_inputs, _Recurrence, _with_out, input_projection, merge_directions
from .activations import keras2_hard_sigmoid, keras3_hard_sigmoid
from .params import MERGE_MODES, GRUParams, Layers, check_layers

# g'(a) written through g's output y = g(a), for the gate activations the reference models; each
# writes into ``out`` (one buffer per step, no allocation).
def _sigmoid_derivative(y, out):
    out = np.subtract(1.0, y, out=out)
    out *= y
    return out


def _hard_sigmoid_derivative(slope):
    def derivative(y, out):
        np.copyto(out, np.where((y > 0.0) & (y < 1.0), slope, 0.0))
        return out
    return derivative


GATE_DERIVATIVES = {
    sigmoid: _sigmoid_derivative,
    keras2_hard_sigmoid: _hard_sigmoid_derivative(0.2),
    keras3_hard_sigmoid: _hard_sigmoid_derivative(1.0 / 6.0),
}


# ---------------------------------------------------------------- one derivative per forward equation
# Each writes its results into the buffers it is given (the backward loop's per-step slots).


def blend_z_on_previous_backward(dh_t, z, h_prev, h_cand, dz, dh_prev, dh_cand):
    """``h_t = z * h_prev + (1 - z) * h_cand`` -> ``dz = dh_t * (h_prev - h_cand)``, ``dh_prev = dh_t * z``
    (the direct term), ``dh_cand = dh_t * (1 - z)``."""
    np.subtract(h_prev, h_cand, out=dz)
    dz *= dh_t
    np.multiply(dh_t, z, out=dh_prev)
    np.subtract(dh_t, dh_prev, out=dh_cand)  # dh_t * (1 - z), as dh_t - dh_t * z: no (1 - z) temporary


def blend_z_on_candidate_backward(dh_t, z, h_prev, h_cand, dz, dh_prev, dh_cand):
    """``h_t = (1 - z) * h_prev + z * h_cand`` -> ``dz = dh_t * (h_cand - h_prev)``,
    ``dh_prev = dh_t * (1 - z)`` (the direct term), ``dh_cand = dh_t * z``."""
    np.subtract(h_cand, h_prev, out=dz)
    dz *= dh_t
    np.multiply(dh_t, z, out=dh_cand)
    np.subtract(dh_t, dh_cand, out=dh_prev)


def _tanh_backward(dh_cand, h_cand, da_h, scratch):
    """``da_h = dh_cand * (1 - h_cand^2)``; ``da_h`` may be ``dh_cand`` itself."""
    np.multiply(h_cand, h_cand, out=scratch)
    np.subtract(1.0, scratch, out=scratch)
    np.multiply(dh_cand, scratch, out=da_h)


def candidate_reset_after_backward(dh_cand, h_cand, r, q, da_h, dr, dq, scratch):
    """``h_cand = tanh(x W_h + b_h + r * q)``, ``q = h_prev U_h + c_h`` -> ``da_h``, ``dr = da_h * q``, ``dq = da_h * r``."""
    _tanh_backward(dh_cand, h_cand, da_h, scratch)
    np.multiply(da_h, q, out=dr)
    np.multiply(da_h, r, out=dq)


def candidate_reset_before_backward(dh_cand, h_cand, r, h_prev, U_h_T, da_h, dr, dh_prev, scratch):
    """``h_cand = tanh(x W_h + b_h + (r * h_prev) U_h + c_h)`` -> ``da_h``, ``ds = da_h U_h^T``,
    ``dr = ds * h_prev``, and ``dh_prev += ds * r`` (through ``s = r * h_prev``)."""
    _tanh_backward(dh_cand, h_cand, da_h, scratch)
    ds = np.matmul(da_h, U_h_T, out=scratch)
    np.multiply(ds, h_prev, out=dr)
    ds *= r
    dh_prev += ds


def gate_backward(d_gate, gate, derivative, scratch):
    """``gate = g(a)`` -> ``da = d_gate * g'(a)``, in place over ``d_gate`` (z and r together, over [z | r])."""
    d_gate *= derivative(gate, out=scratch)


BLEND_BACKWARD = {"z_on_previous": blend_z_on_previous_backward, "z_on_candidate": blend_z_on_candidate_backward}


# ---------------------------------------------------------------- one direction


@dataclass(frozen=True)
class GRUGradients:
    """Gradients of the loss for one layer and direction: ``params`` (a ``GRUParams`` of gradients),
    ``x (batch, time, input_size)`` and ``h0 (batch, hidden)``."""

    params: GRUParams
    x: np.ndarray
    h0: np.ndarray


@dataclass(frozen=True)
class _Tape:
    """What the forward keeps for the backward, time-major, in processing order (step ``k``)."""

    zr: np.ndarray  # (time, batch, 2H): [z | r]
    h_cand: np.ndarray  # (time, batch, H)
    q_or_s: np.ndarray  # (time, batch, H): q = h_prev U_h + c_h (reset-after) or s = r * h_prev (reset-before)
    states: np.ndarray  # (time + 1, batch, H): h0, then the state after each step; h_prev of step k is states[k]


def _forward_with_tape(x, p: GRUParams, convention: Convention, h0, mask, order, dtype, gate_activation) -> _Tape:
    """``reference.gru``'s own step (``_Recurrence``), writing z|r, h_cand and q or s straight into the tape."""
    batch, time, _ = x.shape
    H = p.hidden_size
    x_proj = input_projection(x, p, dtype)
    recurrence = _Recurrence(p, convention, batch, dtype, _with_out(gate_activation))
    tape = _Tape(zr=np.empty((time, batch, 2 * H), dtype), h_cand=np.empty((time, batch, H), dtype),
                 q_or_s=np.empty((time, batch, H), dtype), states=np.empty((time + 1, batch, H), dtype))
    tape.states[0] = 0.0 if h0 is None else h0
    with np.errstate(over="ignore"):  # the sigmoid's exp may overflow to inf: the exact limit 0
        for k, t in enumerate(order):
            recurrence.step(x_proj[:, t], tape.states[k], out=tape.states[k + 1],
                            zr=tape.zr[k], h_cand=tape.h_cand[k], q_or_s=tape.q_or_s[k])
            if mask is not None:  # padding carries the state
                np.copyto(tape.states[k + 1], tape.states[k], where=~mask[:, t, None])
    return tape


def _check_gradient(name: str, value, shape: tuple[int, ...]) -> np.ndarray | None:
    if value is None:
        return None
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"{name} has dtype {array.dtype}; the gradient of the loss must be a float array of shape {shape}")
    if array.shape != shape:
        raise ValueError(f"{name} has shape {array.shape}; expected {shape} (the shape of what it is the gradient of)")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains a non-finite value; the gradient of the loss must be finite")
    return array


def _gate_derivative(gate_activation):
    try:
        return GATE_DERIVATIVES[gate_activation]
    except (KeyError, TypeError):
        known = ", ".join(f.__name__ for f in GATE_DERIVATIVES)
        raise ValueError(f"gate_activation {getattr(gate_activation, '__name__', gate_activation)!r} has no derivative "
                         f"in reference.backward.GATE_DERIVATIVES; known: {known}") from None


def gru_grad(
    x,
    params: GRUParams,
    convention: Convention | str,
    h0=None,
    mask=None,
    reverse: bool = False,
    d_outputs=None,
    d_h_last=None,
    dtype=np.float64,
    gate_activation=sigmoid,
) -> GRUGradients:
    """Gradients of ``sum(outputs * d_outputs) + sum(h_last * d_h_last)`` through one GRU layer and direction.

    Arguments as ``reference.gru`` (``outputs`` is the state after each step, also at padded steps);
    ``d_outputs (batch, time, hidden)`` and ``d_h_last (batch, hidden)`` are the gradients of the loss
    with respect to what ``gru`` returns; at least one must be given. Returns ``GRUGradients`` with a
    gradient for every parameter (biases included, even all-zero ones), for ``x`` and for ``h0``.

    Cost: the forward's tape (``5 x time x batch x hidden``: z|r, h_cand, q or s, the states), the
    pre-activation gradients of every step (``4 x`` (reset-after) or ``3 x time x batch x hidden``, kept
    for the weight gradients, which are one matmul each over all steps) and a few ``(batch, hidden)``
    buffers; one recurrent matmul a step (reset-after) or two (reset-before). Time is linear in length.
    """
    convention = as_convention(convention)
    if not isinstance(params, GRUParams):
        raise TypeError(f"params is {type(params).__name__}; expected reference.GRUParams")
    if np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
    derivative = _gate_derivative(gate_activation)
    x, h0, mask = _check_inputs(x, params.input_size, params.hidden_size, h0, mask, "(batch, hidden_size)")
    batch, time, input_size = x.shape
    H = params.hidden_size
    d_outputs = _check_gradient("d_outputs", d_outputs, (batch, time, H))
    d_h_last = _check_gradient("d_h_last", d_h_last, (batch, H))
    if d_outputs is None and d_h_last is None:
        raise ValueError("give d_outputs and/or d_h_last: the gradient of your loss with respect to outputs and h_last")
    p = params if params.dtype == np.dtype(dtype) else params.astype(dtype)
    x = x.astype(dtype, copy=False)
    order = range(time - 1, -1, -1) if reverse else range(time)
    tape = _forward_with_tape(x, p, convention, h0, mask, order, dtype, gate_activation)
    after = convention.reset == "after"
    blend_backward = BLEND_BACKWARD[convention.update]

    # Step k's pre-activation gradients, [da_h | da_z | da_r | dq] (reset-after) or [da_h | da_z | da_r]:
    # da_h first so that [:, :3H] feeds the input-weight gradients and [:, H:] the recurrent matmul,
    # both without a copy.
    d_pre = np.empty((time, batch, (4 if after else 3) * H), dtype)
    U_T = np.ascontiguousarray(np.concatenate([p.U_z, p.U_r, p.U_h] if after else [p.U_z, p.U_r], axis=1).T)
    U_h_T = None if after else np.ascontiguousarray(p.U_h.T)
    dh = np.zeros((batch, H), dtype) if d_h_last is None else np.array(d_h_last, dtype=dtype)
    dh_prev, scratch, through_U = (np.empty((batch, H), dtype) for _ in range(3))
    scratch_zr = np.empty((batch, 2 * H), dtype)
    for k in range(time - 1, -1, -1):  # backwards through the processing order
        t = order[k]
        if d_outputs is not None:
            dh += d_outputs[:, t]
        zr, h_cand, q_or_s, h_prev = tape.zr[k], tape.h_cand[k], tape.q_or_s[k], tape.states[k]
        z, r = zr[:, :H], zr[:, H:]
        d = d_pre[k]
        da_h, da_z, da_r = d[:, :H], d[:, H : 2 * H], d[:, 2 * H : 3 * H]
        blend_backward(dh, z, h_prev, h_cand, dz=da_z, dh_prev=dh_prev, dh_cand=da_h)
        if after:
            candidate_reset_after_backward(da_h, h_cand, r, q_or_s, da_h=da_h, dr=da_r, dq=d[:, 3 * H :], scratch=scratch)
        else:
            candidate_reset_before_backward(da_h, h_cand, r, h_prev, U_h_T, da_h=da_h, dr=da_r, dh_prev=dh_prev,
                                            scratch=scratch)
        gate_backward(d[:, H : 3 * H], zr, derivative, scratch=scratch_zr)
        if mask is not None:
            d *= mask[:, t, None]  # a padded step contributes no parameter or input gradient
        dh_prev += np.matmul(d[:, H:], U_T, out=through_U)
        if mask is not None:  # padding carried the state: the gradient passes through unchanged
            np.copyto(dh_prev, dh, where=~mask[:, t, None])
        dh, dh_prev = dh_prev, dh

    # Weight gradients: every step at once, rows in processing order (x is reordered to match).
    rows = time * batch
    x_steps = x[:, ::-1] if reverse else x
    x_rows = np.ascontiguousarray(x_steps.transpose(1, 0, 2)).reshape(rows, input_size)
    pre_rows = d_pre.reshape(rows, d_pre.shape[2])
    h_rows = tape.states[:time].reshape(rows, H)
    dW = x_rows.T @ pre_rows[:, : 3 * H]  # columns h | z | r
    db = pre_rows[:, : 3 * H].sum(axis=0)
    if after:
        dU = h_rows.T @ pre_rows[:, H:]  # columns z | r | h: dU_h = h_prev^T dq
        dc = pre_rows[:, H:].sum(axis=0)
        dU_zr, dU_h, dc_h = dU[:, : 2 * H], dU[:, 2 * H :], dc[2 * H :]
    else:
        dU_zr = h_rows.T @ pre_rows[:, H:]
        dU_h, dc_h = tape.q_or_s.reshape(rows, H).T @ pre_rows[:, :H], db[:H]
    W_T = np.concatenate([p.W_h, p.W_z, p.W_r], axis=1).T
    dx_steps = (pre_rows[:, : 3 * H] @ W_T).reshape(time, batch, input_size).transpose(1, 0, 2)
    dx = np.ascontiguousarray(dx_steps[:, ::-1] if reverse else dx_steps)
    grads = GRUParams(
        W_z=dW[:, H : 2 * H], W_r=dW[:, 2 * H :], W_h=dW[:, :H],
        U_z=dU_zr[:, :H], U_r=dU_zr[:, H:], U_h=dU_h,
        b_z=db[H : 2 * H], b_r=db[2 * H :], b_h=db[:H],
        c_z=db[H : 2 * H], c_r=db[2 * H :], c_h=dc_h,
    )
    return GRUGradients(grads, dx, dh)


# ---------------------------------------------------------------- stacks and directions


@dataclass(frozen=True)
class StackGradients:
    """Gradients for ``gru_stack``: ``layers[l][d]`` (GRUParams of gradients), ``x``, ``h0 (slots, batch, hidden)``."""

    layers: list[list[GRUParams]]
    x: np.ndarray
    h0: np.ndarray


def _visible(mask, masked_output: str, reverse: bool):
    """Where a direction's output depends on its state: 1, or 0 where the framework outputs constant zeros."""
    if mask is None or masked_output == "carry":
        return None
    if masked_output == "zero":
        return mask
    order = mask[:, ::-1] if reverse else mask
    seen = np.logical_or.accumulate(order, axis=1)
    return seen[:, ::-1] if reverse else seen


def gru_stack_grad(
    x,
    layers: Layers,
    convention: Convention | str,
    h0=None,
    mask=None,
    merge: str = "concat",
    masked_output: str = "carry",
    reverse: bool = False,
    d_outputs=None,
    d_h_last=None,
    dtype=np.float64,
    gate_activation=sigmoid,
) -> StackGradients:
    """Gradients of ``sum(outputs * d_outputs) + sum(h_last * d_h_last)`` through ``reference.gru_stack``.

    Arguments as ``gru_stack``; ``d_outputs`` has the shape of its outputs and ``d_h_last`` that of its
    final states ``(num_layers * directions, batch, hidden)``. Built on ``gru_grad``: each layer's input
    gradient is the next layer down's output gradient, split by the merge mode.
    """
    convention = as_convention(convention)
    num_layers, directions = check_layers(layers, merge)
    if reverse and directions == 2:
        raise ValueError("reverse=True applies to single-direction stacks; a bidirectional stack already runs both ways")
    if masked_output not in MASKED_OUTPUTS:
        raise ValueError(f"unknown masked_output {masked_output!r}; valid: {', '.join(MASKED_OUTPUTS)}")
    if merge not in MERGE_MODES:
        raise ValueError(f"unknown merge mode {merge!r}; valid: {', '.join(MERGE_MODES)}")
    first = layers[0][0]
    x, h0, mask = _check_inputs(x, first.input_size, first.hidden_size, h0, mask,
                                "(num_layers * directions, batch, hidden_size)", (num_layers * directions,))
    batch, time, _ = x.shape
    H = first.hidden_size
    features = H * directions if merge == "concat" else H
    d_outputs = _check_gradient("d_outputs", d_outputs, (batch, time, features))
    d_h_last = _check_gradient("d_h_last", d_h_last, (num_layers * directions, batch, H))
    if d_outputs is None and d_h_last is None:
        raise ValueError("give d_outputs and/or d_h_last: the gradient of your loss with respect to outputs and h_last")
    from .forward import gru, masked_outputs

    # Forward, keeping each layer's input and each direction's visible output.
    inputs, direction_outputs = [], []
    layer_input = x.astype(dtype)
    for index, layer in enumerate(layers):
        inputs.append(layer_input)
        outs = []
        for direction, params in enumerate(layer):
            slot = index * directions + direction
            backwards = direction == 1 or reverse
            out, _ = gru(layer_input, params, convention, h0=None if h0 is None else h0[slot], mask=mask,
                         reverse=backwards, dtype=dtype, gate_activation=gate_activation)
            if mask is not None:
                out = masked_outputs(out, mask, masked_output, reverse=backwards)
            outs.append(out)
        direction_outputs.append(outs)
        layer_input = outs[0] if directions == 1 else merge_directions(*outs, merge)

    grads = [[None] * directions for _ in range(num_layers)]
    d_h0 = np.zeros((num_layers * directions, batch, H), dtype)
    d_layer_output = None if d_outputs is None else np.asarray(d_outputs, dtype=dtype)
    for index in range(num_layers - 1, -1, -1):
        outs = direction_outputs[index]
        if d_layer_output is None:
            per_direction = [None] * directions
        elif directions == 1:
            per_direction = [d_layer_output]
        elif merge == "concat":
            per_direction = [d_layer_output[..., :H], d_layer_output[..., H:]]
        elif merge == "sum":
            per_direction = [d_layer_output, d_layer_output]
        elif merge == "ave":
            per_direction = [d_layer_output / 2, d_layer_output / 2]
        else:  # mul
            per_direction = [d_layer_output * outs[1], d_layer_output * outs[0]]
        d_input = np.zeros_like(inputs[index])
        for direction, params in enumerate(layers[index]):
            slot = index * directions + direction
            backwards = direction == 1 or reverse
            d_out = per_direction[direction]
            visible = _visible(mask, masked_output, backwards)
            if d_out is not None and visible is not None:
                d_out = d_out * visible[:, :, None]
            d_last = None if d_h_last is None else d_h_last[slot]
            if d_out is None and d_last is None:
                d_last = np.zeros((batch, H), dtype)
            result = gru_grad(inputs[index], params, convention, h0=None if h0 is None else h0[slot], mask=mask,
                              reverse=backwards, d_outputs=d_out, d_h_last=d_last, dtype=dtype,
                              gate_activation=gate_activation)
            grads[index][direction] = result.params
            d_input += result.x
            d_h0[slot] = result.h0
        d_layer_output = d_input
    return StackGradients(grads, d_layer_output, d_h0)
