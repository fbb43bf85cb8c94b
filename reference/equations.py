"""The GRU step, one function per equation, both variants of each axis side by side.

Arguments are NumPy arrays of one step: ``x_proj_*`` is ``x_t W_* + b_*`` (the input
projection, computed for all steps at once by the caller), ``h_prev`` is ``(batch, hidden)``.

    z      = sigmoid(x_proj_z + h_prev U_z + c_z)                     update_gate
    r      = sigmoid(x_proj_r + h_prev U_r + c_r)                     reset_gate
    h_cand = tanh(x_proj_h + (r * h_prev) U_h + c_h)                  candidate_reset_before
    h_cand = tanh(x_proj_h + r * (h_prev U_h + c_h))                  candidate_reset_after
    h_t    = z * h_prev + (1 - z) * h_cand                            blend_z_on_previous
    h_t    = (1 - z) * h_prev + z * h_cand                            blend_z_on_candidate
"""

from __future__ import annotations

import numpy as np

from .conventions import Convention


def sigmoid(a: np.ndarray) -> np.ndarray:
    # tanh form: no overflow warning for large |a|, and exact symmetry sigmoid(-a) = 1 - sigmoid(a).
    return 0.5 * (np.tanh(0.5 * a) + 1.0)


def update_gate(x_proj_z, h_prev, U_z, c_z, activation=sigmoid):
    return activation(x_proj_z + h_prev @ U_z + c_z)


def reset_gate(x_proj_r, h_prev, U_r, c_r, activation=sigmoid):
    return activation(x_proj_r + h_prev @ U_r + c_r)


def candidate_reset_before(x_proj_h, r, h_prev, U_h, c_h):
    return np.tanh(x_proj_h + (r * h_prev) @ U_h + c_h)


def candidate_reset_after(x_proj_h, r, h_prev, U_h, c_h):
    return np.tanh(x_proj_h + r * (h_prev @ U_h + c_h))


def blend_z_on_previous(z, h_prev, h_cand):
    return z * h_prev + (1.0 - z) * h_cand


def blend_z_on_candidate(z, h_prev, h_cand):
    return (1.0 - z) * h_prev + z * h_cand


CANDIDATE = {"before": candidate_reset_before, "after": candidate_reset_after}
BLEND = {"z_on_previous": blend_z_on_previous, "z_on_candidate": blend_z_on_candidate}


def step(convention: Convention, x_proj_z, x_proj_r, x_proj_h, h_prev, params, activation=sigmoid):
    """One GRU step under ``convention``: the four equations in order."""
    z = update_gate(x_proj_z, h_prev, params.U_z, params.c_z, activation)
    r = reset_gate(x_proj_r, h_prev, params.U_r, params.c_r, activation)
    h_cand = CANDIDATE[convention.reset](x_proj_h, r, h_prev, params.U_h, params.c_h)
    return BLEND[convention.update](z, h_prev, h_cand)
