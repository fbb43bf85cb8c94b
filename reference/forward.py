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

import numpy as np

from .conventions import Convention, as_convention
from .equations import BLEND, candidate_reset_after, candidate_reset_before, reset_gate, sigmoid, update_gate
from .params import MERGE_MODES, GRUParams, Layers, check_float_array, check_layers

MASKED_OUTPUTS = ("carry", "previous_output", "zero")


def _check_inputs(x, input_size: int, hidden_size: int, h0, mask, h0_shape_name: str, h0_leading=()):
    x = check_float_array("x", x)
    if x.ndim != 3:
        raise ValueError(f"x has shape {x.shape}; expected (batch, time, input_size)")
    batch, time, features = x.shape
    if features != input_size:
        raise ValueError(f"x has input_size {features} (shape {x.shape}) but the parameters expect {input_size}")
    if time == 0:
        raise ValueError(f"x has shape {x.shape}: at least one timestep is needed")
    expected_h0 = (*h0_leading, batch, hidden_size)
    if h0 is not None:
        h0 = check_float_array("h0", h0)
        if h0.shape != expected_h0:
            raise ValueError(f"h0 has shape {h0.shape}; expected {h0_shape_name} = {expected_h0}")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.dtype != np.bool_:
            raise TypeError(f"mask has dtype {mask.dtype}; expected bool (True = real step, False = padding)")
        if mask.shape != (batch, time):
            raise ValueError(f"mask has shape {mask.shape}; expected (batch, time) = {(batch, time)}")
    return x, h0, mask


class _Recurrence:
    """The sequential part of one direction: recurrent weights packed for one matmul a step, and
    every per-step buffer allocated once."""

    def __init__(self, p: GRUParams, convention: Convention, batch: int, dtype, activation):
        hidden = p.hidden_size
        self.hidden, self.activation = hidden, activation
        self.after = convention.reset == "after"
        # Reset-after projects h_prev for all three gates at once; reset-before needs r first for h.
        # Column-major: OpenBLAS multiplies (batch, H) by it markedly faster than by a row-major copy.
        self.U = np.asfortranarray(np.concatenate([p.U_z, p.U_r, p.U_h] if self.after else [p.U_z, p.U_r], axis=1))
        self.U_h = np.asfortranarray(p.U_h)
        self.c_z, self.c_r, self.c_h = p.c_z, p.c_r, p.c_h
        self.h_proj = np.empty((batch, self.U.shape[1]), dtype)
        self.z = np.empty((batch, hidden), dtype)
        self.r = np.empty((batch, hidden), dtype)
        self.h_cand = np.empty((batch, hidden), dtype)
        self.scratch = np.empty((batch, hidden), dtype)
        self.blend = BLEND[convention.update]

    def step(self, x_proj, h_prev, out):
        H = self.hidden
        np.matmul(h_prev, self.U, out=self.h_proj)
        z = update_gate(x_proj[:, :H], self.h_proj[:, :H], self.c_z, self.activation, out=self.z)
        r = reset_gate(x_proj[:, H : 2 * H], self.h_proj[:, H : 2 * H], self.c_r, self.activation, out=self.r)
        if self.after:
            h_cand = candidate_reset_after(x_proj[:, 2 * H :], r, self.h_proj[:, 2 * H :], self.c_h, out=self.h_cand)
        else:
            h_cand = candidate_reset_before(x_proj[:, 2 * H :], r, h_prev, self.U_h, self.c_h,
                                            out=self.h_cand, scratch=self.scratch)
        return self.blend(z, h_prev, h_cand, out=out)


def _with_out(activation):
    """Let a plain ``f(a) -> array`` serve where the equations pass ``out=``."""
    try:
        if "out" in inspect.signature(activation).parameters:
            return activation
    except (TypeError, ValueError):  # NumPy ufuncs accept out= but have no signature
        return activation

    def wrapped(a, out=None):
        result = activation(a)
        if out is None:
            return result
        np.copyto(out, result)
        return out

    return wrapped


def gru(
    x,
    params: GRUParams,
    convention: Convention | str,
    h0=None,
    mask=None,
    reverse: bool = False,
    dtype=np.float64,
    gate_activation=sigmoid,
):
    """Run one GRU layer in one direction.

    ``x`` ``(batch, time, input_size)``; ``h0`` ``(batch, hidden_size)`` (zeros when None);
    ``mask`` ``(batch, time)`` bool. Returns ``(outputs (batch, time, hidden), h_last (batch, hidden))``
    in ``dtype`` (float64 by default: this is the oracle). Masked steps carry the state and
    output it (see the module docstring). ``gate_activation`` replaces the sigmoid of the
    update and reset gates (for modelling frameworks that use another one).

    Cost: one matmul for every input projection, then one (reset-after) or two (reset-before)
    matmuls a step into preallocated buffers; time is linear in sequence length.
    """
    convention = as_convention(convention)
    if not isinstance(params, GRUParams):
        raise TypeError(f"params is {type(params).__name__}; expected reference.GRUParams")
    x, h0, mask = _check_inputs(x, params.input_size, params.hidden_size, h0, mask, "(batch, hidden_size)")
    batch, time, input_size = x.shape
    hidden = params.hidden_size
    p = params if params.dtype == np.dtype(dtype) else params.astype(dtype)

    # All input projections in one matmul, time-major so each step reads a contiguous block.
    W = np.asfortranarray(np.concatenate([p.W_z, p.W_r, p.W_h], axis=1))
    b = np.concatenate([p.b_z, p.b_r, p.b_h])
    x_time_major = np.ascontiguousarray(x.transpose(1, 0, 2), dtype=dtype).reshape(time * batch, input_size)
    x_proj = (x_time_major @ W).reshape(time, batch, 3 * hidden)
    x_proj += b

    recurrence = _Recurrence(p, convention, batch, dtype, _with_out(gate_activation))
    outputs = np.empty((time, batch, hidden), dtype)
    h = np.zeros((batch, hidden), dtype) if h0 is None else np.array(h0, dtype=dtype)
    padding = None if mask is None else ~mask.T[:, :, None]
    for t in (range(time - 1, -1, -1) if reverse else range(time)):
        h_new = recurrence.step(x_proj[t], h, out=outputs[t])
        if padding is not None:
            np.copyto(h_new, h, where=padding[t])
        h = h_new
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
):
    """Run stacked and/or bidirectional GRU layers, each direction through ``gru``.

    ``layers[l][d]``: layer ``l``, direction ``d`` (0 forward, 1 backward). ``h0`` is
    ``(num_layers * directions, batch, hidden)`` ordered layer-major, direction-minor (the
    PyTorch order). Each layer's merged outputs feed the next layer. Returns
    ``(outputs (batch, time, features), h_last (num_layers * directions, batch, hidden))``
    where ``features`` is ``directions * hidden`` for ``concat`` and ``hidden`` otherwise.
    ``reverse=True`` runs every layer of a single-direction stack backwards.
    """
    convention = as_convention(convention)
    num_layers, directions = check_layers(layers, merge)
    if reverse and directions == 2:
        raise ValueError("reverse=True applies to single-direction stacks; a bidirectional stack already runs both ways")
    if masked_output not in MASKED_OUTPUTS:
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
                dtype=dtype, gate_activation=gate_activation,
            )
            if mask is not None:
                outputs = masked_outputs(outputs, mask, masked_output, reverse=direction == 1 or reverse)
            direction_outputs.append(outputs)
            finals.append(h_last)
        layer_input = direction_outputs[0] if directions == 1 else merge_directions(*direction_outputs, merge)
    return layer_input, np.stack(finals)
