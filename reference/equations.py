"""The GRU step, one function per equation, both variants of each axis side by side.

Arguments are NumPy arrays of one step, ``(batch, hidden)``. The projections are computed by
the caller, in as few matmuls as possible: ``x_proj_*`` is ``x_t W_* + b_*`` (for all steps at
once) and ``h_proj_*`` is ``h_prev U_*`` (for all gates at once).

    z      = sigmoid(x_proj_z + h_proj_z + c_z)                       update_gate
    r      = sigmoid(x_proj_r + h_proj_r + c_r)                       reset_gate
    h_cand = tanh(x_proj_h + (r * h_prev) U_h + c_h)                  candidate_reset_before
    h_cand = tanh(x_proj_h + r * (h_proj_h + c_h))                    candidate_reset_after
    h_t    = z * h_prev + (1 - z) * h_cand                            blend_z_on_previous
    h_t    = (1 - z) * h_prev + z * h_cand                            blend_z_on_candidate

``activation`` replaces the sigmoid of the gates or the tanh of the candidate (for frameworks
that use another one, e.g. the ONNX operator's ``activations`` attribute); it is called as
``activation(a, out=a)`` on the complete pre-activation.

Every function writes into ``out`` when given (no allocation per step) and returns it; ``out``
must not alias an input, except where noted.
"""

from __future__ import annotations

import numpy as np


def sigmoid(a, out=None):
    """``1 / (1 + exp(-a))``.

    Through ``exp``, which NumPy evaluates about twice as fast as ``tanh``; ``exp`` overflows to
    ``inf`` for ``a < -88`` (float32) or ``-709`` (float64), which gives the exact limit 0.
    """
    out = np.negative(a, out=out)
    with np.errstate(over="ignore"):
        np.exp(out, out=out)
    out += 1.0
    return np.reciprocal(out, out=out)


def update_gate(x_proj_z, h_proj_z, c_z, activation=sigmoid, out=None):
    out = np.add(x_proj_z, h_proj_z, out=out)
    out += c_z
    return activation(out, out=out)


def reset_gate(x_proj_r, h_proj_r, c_r, activation=sigmoid, out=None):
    out = np.add(x_proj_r, h_proj_r, out=out)
    out += c_r
    return activation(out, out=out)


def candidate_reset_before(x_proj_h, r, h_prev, U_h, c_h, out=None, scratch=None, activation=np.tanh):
    scratch = np.multiply(r, h_prev, out=scratch)
    out = np.matmul(scratch, U_h, out=out)
    out += c_h
    out += x_proj_h
    return activation(out, out=out)


def candidate_reset_after(x_proj_h, r, h_proj_h, c_h, out=None, activation=np.tanh):
    """``out`` may be ``h_proj_h`` itself."""
    out = np.add(h_proj_h, c_h, out=out)
    out *= r
    out += x_proj_h
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
