"""The GRU step, one function per equation, both variants of each axis side by side.

Arguments are NumPy arrays of one step, ``(batch, hidden)`` (``(batch, 2 * hidden)`` for the two
gates together). The projections are computed by the caller, in as few matmuls as possible:
``x_proj_*`` is ``x_t W_*`` (for all steps at once) and ``h_proj_*`` is ``h_prev U_*`` (for all
gates at once); the biases are added here, where the gate biases fold into one addition.

    z | r  = sigmoid(x_proj_zr + h_proj_zr + (b_zr + c_zr))           gates  (z and r side by side)
    h_cand = tanh(x_proj_h + (r * h_prev) U_h + (b_h + c_h))            candidate_reset_before
    h_cand = tanh(x_proj_h + b_h + r * (h_proj_h + c_h))                candidate_reset_after
    h_t    = z * h_prev + (1 - z) * h_cand                              blend_z_on_previous
    h_t    = (1 - z) * h_prev + z * h_cand                              blend_z_on_candidate

The update gate ``z`` and the reset gate ``r`` are the same equation on adjacent columns
(``x W_z + b_z + h_prev U_z + c_z`` and the same with ``_r``), so ``gates`` computes both in one
pass over ``(batch, 2 * hidden)``: half the NumPy calls, each on twice the elements.

``activation`` replaces the sigmoid of the gates or the tanh of the candidate (for frameworks
that use another one, e.g. the ONNX operator's ``activations`` attribute); it is called as
``activation(a, out=a)`` on the complete pre-activation.

Every function writes into ``out`` when given (no allocation per step) and returns it; ``out``
must not alias an input, except where noted. Bias arguments may be pre-broadcast to the shape of
``out``: NumPy adds two contiguous arrays of one shape about twice as fast as it broadcasts a row.
"""

from __future__ import annotations

import numpy as np


def sigmoid(a, out=None):
    """``1 / (1 + exp(-a))``.

    Through ``exp``, which NumPy evaluates about twice as fast as ``tanh``; ``exp`` overflows to
    ``inf`` for ``a < -88`` (float32) or ``-709`` (float64), which gives the exact limit 0.
    """
    with np.errstate(over="ignore"):
        return sigmoid_overflow_unchecked(a, out=out)


def sigmoid_overflow_unchecked(a, out=None):
    """``sigmoid`` for a caller that has already set ``np.errstate(over="ignore")`` (the forward's loop
    does, once, instead of once a step: entering an errstate costs about as much as a 16k-element add)."""
    out = np.negative(a, out=out)
    np.exp(out, out=out)
    out += 1.0
    return np.reciprocal(out, out=out)


def gates(x_proj_zr, h_proj_zr, bias_zr, activation=sigmoid, out=None):
    """``[z | r] = g(x W_zr + h_prev U_zr + (b_zr + c_zr))``: the update and the reset gate in one pass."""
    out = np.add(x_proj_zr, h_proj_zr, out=out)
    out += bias_zr
    return activation(out, out=out)


def candidate_reset_before(x_proj_h, r, h_prev, U_h, bias_h, out=None, scratch=None, activation=np.tanh):
    """``bias_h`` is ``b_h + c_h``: reset-before adds both after the matmul."""
    scratch = np.multiply(r, h_prev, out=scratch)
    out = np.matmul(scratch, U_h, out=out)
    out += x_proj_h
    out += bias_h
    return activation(out, out=out)


def candidate_reset_after(x_proj_h, b_h, r, h_proj_h, c_h, out=None, activation=np.tanh, q=None):
    """``q = h_proj_h + c_h`` is written into ``q`` when given (the backward pass keeps it), else into
    ``out``; ``out`` may be ``h_proj_h`` itself."""
    q = np.add(h_proj_h, c_h, out=out if q is None else q)
    out = np.multiply(q, r, out=out)
    out += x_proj_h
    out += b_h
    return activation(out, out=out)


def blend_z_on_previous(z, h_prev, h_cand, out=None):
    # z * h_prev + (1 - z) * h_cand, as h_cand + z * (h_prev - h_cand): one temporary fewer.
    out = np.subtract(h_prev, h_cand, out=out)
    out *= z
    out += h_cand
    return out


def blend_z_on_candidate(z, h_prev, h_cand, out=None):
    # (1 - z) * h_prev + z * h_cand, as h_prev + z * (h_cand - h_prev).
    out = np.subtract(h_cand, h_prev, out=out)
    out *= z
    out += h_prev
    return out


BLEND = {"z_on_previous": blend_z_on_previous, "z_on_candidate": blend_z_on_candidate}
