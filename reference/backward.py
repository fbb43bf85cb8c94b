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

Cost: the forward stores z, r, h_cand, h_prev and q or s for every step (``5 x time x batch x hidden``);
the backward keeps O(batch x hidden) per step of its own, with one recurrent matmul a step
(reset-after) or two (reset-before), and every weight gradient as one matmul over all steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .conventions import Convention, as_convention
from .equations import sigmoid
from .forward import MASKED_OUTPUTS, _check_inputs, merge_directions
from .activations import keras2_hard_sigmoid, keras3_hard_sigmoid
from .params import MERGE_MODES, GRUParams, Layers, check_layers

# g'(a) written through g's output y = g(a), for the gate activations the reference models.
GATE_DERIVATIVES = {
    sigmoid: lambda y: y * (1.0 - y),
    keras2_hard_sigmoid: lambda y: np.where((y > 0.0) & (y < 1.0), 0.2, 0.0),
    keras3_hard_sigmoid: lambda y: np.where((y > 0.0) & (y < 1.0), 1.0 / 6.0, 0.0),
}


# ---------------------------------------------------------------- one derivative per forward equation


def blend_z_on_previous_backward(dh_t, z, h_prev, h_cand):
    """``h_t = z * h_prev + (1 - z) * h_cand`` -> ``(dz, dh_prev_direct, dh_cand)``."""
    return dh_t * (h_prev - h_cand), dh_t * z, dh_t * (1.0 - z)


def blend_z_on_candidate_backward(dh_t, z, h_prev, h_cand):
    """``h_t = (1 - z) * h_prev + z * h_cand`` -> ``(dz, dh_prev_direct, dh_cand)``."""
    return dh_t * (h_cand - h_prev), dh_t * (1.0 - z), dh_t * z


def candidate_reset_after_backward(dh_cand, h_cand, r, q):
    """``h_cand = tanh(x W_h + b_h + r * q)``, ``q = h_prev U_h + c_h`` -> ``(da_h, dr, dq)``."""
    da_h = dh_cand * (1.0 - h_cand * h_cand)
    return da_h, da_h * q, da_h * r


def candidate_reset_before_backward(dh_cand, h_cand, r, h_prev, U_h):
    """``h_cand = tanh(x W_h + b_h + (r * h_prev) U_h + c_h)`` -> ``(da_h, dr, dh_prev_through_s)``."""
    da_h = dh_cand * (1.0 - h_cand * h_cand)
    ds = da_h @ U_h.T
    return da_h, ds * h_prev, ds * r


def gate_backward(d_gate, gate, derivative):
    """``gate = g(a)`` -> ``da = d_gate * g'(a)`` (for the update and the reset gate alike)."""
    return d_gate * derivative(gate)


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
    """What the forward keeps for the backward, time-major ``(time, batch, hidden)``, in processing order."""

    z: np.ndarray
    r: np.ndarray
    h_cand: np.ndarray
    h_prev: np.ndarray
    q_or_s: np.ndarray  # q = h_prev U_h + c_h (reset-after) or s = r * h_prev (reset-before)
    outputs: np.ndarray  # state after each step, in input order (batch, time, hidden)
    h_last: np.ndarray


def _forward_with_tape(x, p: GRUParams, convention: Convention, h0, mask, reverse, dtype, gate_activation) -> _Tape:
    batch, time, input_size = x.shape
    H = p.hidden_size
    after = convention.reset == "after"
    W = np.concatenate([p.W_z, p.W_r, p.W_h], axis=1)
    x_proj = (np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(time * batch, input_size) @ W).reshape(time, batch, 3 * H)
    x_proj += np.concatenate([p.b_z, p.b_r, p.b_h])
    U = np.asfortranarray(np.concatenate([p.U_z, p.U_r, p.U_h] if after else [p.U_z, p.U_r], axis=1))
    tape = {name: np.empty((time, batch, H), dtype) for name in ("z", "r", "h_cand", "h_prev", "q_or_s")}
    outputs = np.empty((time, batch, H), dtype)
    h = np.zeros((batch, H), dtype) if h0 is None else np.array(h0, dtype=dtype)
    order = range(time - 1, -1, -1) if reverse else range(time)
    for k, t in enumerate(order):
        projection = h @ U
        z = gate_activation(x_proj[t, :, :H] + projection[:, :H] + p.c_z)
        r = gate_activation(x_proj[t, :, H : 2 * H] + projection[:, H : 2 * H] + p.c_r)
        if after:
            q_or_s = projection[:, 2 * H :] + p.c_h
            h_cand = np.tanh(x_proj[t, :, 2 * H :] + r * q_or_s)
        else:
            q_or_s = r * h
            h_cand = np.tanh(x_proj[t, :, 2 * H :] + q_or_s @ p.U_h + p.c_h)
        h_new = z * h + (1 - z) * h_cand if convention.update == "z_on_previous" else (1 - z) * h + z * h_cand
        if mask is not None:
            h_new = np.where(mask[:, t, None], h_new, h)
        for name, value in (("z", z), ("r", r), ("h_cand", h_cand), ("h_prev", h), ("q_or_s", q_or_s)):
            tape[name][k] = value
        outputs[t] = h_new
        h = h_new
    return _Tape(**tape, outputs=outputs.transpose(1, 0, 2), h_last=h)


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
    tape = _forward_with_tape(x, p, convention, h0, mask, reverse, dtype, gate_activation)
    after = convention.reset == "after"
    blend_backward = BLEND_BACKWARD[convention.update]

    U_T = np.ascontiguousarray(np.concatenate([p.U_z, p.U_r, p.U_h] if after else [p.U_z, p.U_r], axis=1).T)
    d_pre = np.empty((time, batch, 3 * H), dtype)  # da_z | da_r | da_h, processing order
    dq = np.empty((time, batch, H), dtype) if after else None
    dh = np.zeros((batch, H), dtype) if d_h_last is None else np.array(d_h_last, dtype=dtype)
    order = list(range(time - 1, -1, -1) if reverse else range(time))
    for k in range(time - 1, -1, -1):  # backwards through the processing order
        t = order[k]
        if d_outputs is not None:
            dh = dh + d_outputs[:, t]
        z, r, h_cand, h_prev, q_or_s = tape.z[k], tape.r[k], tape.h_cand[k], tape.h_prev[k], tape.q_or_s[k]
        dz, dh_prev, dh_cand = blend_backward(dh, z, h_prev, h_cand)
        if after:
            da_h, dr, dq_k = candidate_reset_after_backward(dh_cand, h_cand, r, q_or_s)
        else:
            da_h, dr, dh_through_s = candidate_reset_before_backward(dh_cand, h_cand, r, h_prev, p.U_h)
            dh_prev = dh_prev + dh_through_s
        da_z = gate_backward(dz, z, derivative)
        da_r = gate_backward(dr, r, derivative)
        if mask is not None:
            real = mask[:, t, None]
            da_z, da_r, da_h = da_z * real, da_r * real, da_h * real
            if after:
                dq_k = dq_k * real
        d_pre[k, :, :H], d_pre[k, :, H : 2 * H], d_pre[k, :, 2 * H :] = da_z, da_r, da_h
        through_U = np.concatenate([da_z, da_r, dq_k] if after else [da_z, da_r], axis=1) @ U_T
        if after:
            dq[k] = dq_k
        dh_prev = dh_prev + through_U
        dh = dh_prev if mask is None else np.where(mask[:, t, None], dh_prev, dh)

    # Weight gradients: every step at once. Rows of d_pre are in processing order; x follows it.
    steps = np.array(order)
    x_rows = x[:, steps].transpose(1, 0, 2).reshape(time * batch, input_size)
    pre_rows = d_pre.reshape(time * batch, 3 * H)
    h_rows = tape.h_prev.reshape(time * batch, H)
    dW = x_rows.T @ pre_rows
    db = pre_rows.sum(axis=0)
    dU_zr = h_rows.T @ pre_rows[:, : 2 * H]
    if after:
        dq_rows = dq.reshape(time * batch, H)
        dU_h, dc_h = h_rows.T @ dq_rows, dq_rows.sum(axis=0)
    else:
        dU_h, dc_h = tape.q_or_s.reshape(time * batch, H).T @ pre_rows[:, 2 * H :], pre_rows[:, 2 * H :].sum(axis=0)
    W = np.concatenate([p.W_z, p.W_r, p.W_h], axis=1)
    dx = np.empty_like(x)
    dx[:, steps] = (pre_rows @ W.T).reshape(time, batch, input_size).transpose(1, 0, 2)
    grads = GRUParams(
        W_z=dW[:, :H], W_r=dW[:, H : 2 * H], W_h=dW[:, 2 * H :],
        U_z=dU_zr[:, :H], U_r=dU_zr[:, H:], U_h=dU_h,
        b_z=db[:H], b_r=db[H : 2 * H], b_h=db[2 * H :],
        c_z=db[:H], c_r=db[H : 2 * H], c_h=dc_h,
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
