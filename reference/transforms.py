"""Exact equivalences between conventions and parameterisations.

Both transforms are identities in exact arithmetic; in floating point they agree to
rounding (a few ulps), which the tests check at that level.
"""

from __future__ import annotations

import numpy as np

from .conventions import Convention, as_convention
from .params import GRUParams, check_params


def flip_update_weighting(params: GRUParams) -> GRUParams:
    """Negate the update gate's weights and biases.

    Since ``1 - sigmoid(a) = sigmoid(-a)``, a ``z_on_candidate`` GRU with ``params`` computes
    the same function as a ``z_on_previous`` GRU with ``flip_update_weighting(params)`` (same
    reset placement), and vice versa: the transform is its own inverse.
    """
    params = check_params(params)
    return params.replace(W_z=-params.W_z, U_z=-params.U_z, b_z=-params.b_z, c_z=-params.c_z)


def fold_recurrent_biases(params: GRUParams, convention: Convention | str) -> GRUParams:
    """Move every recurrent bias ``c_*`` into the input bias ``b_*`` (as single-bias layouts need).

    ``c_z`` and ``c_r`` are added to the gate pre-activations like ``b_z`` and ``b_r``, so they
    always fold. ``c_h`` folds only under reset-before, where it sits outside ``r * ...``; under
    reset-after it is scaled by ``r`` and a non-zero ``c_h`` is refused.
    """
    params = check_params(params)
    convention = as_convention(convention)
    if convention.reset == "after" and np.any(params.c_h != 0):
        raise ValueError(
            f"c_h is non-zero and {convention.id} scales it by the reset gate (r * (h_prev U_h + c_h)), "
            f"so it cannot be folded into b_h; keep a layout with separate recurrent biases"
        )
    zero = np.zeros_like(params.c_z)
    return params.replace(
        b_z=params.b_z + params.c_z, b_r=params.b_r + params.c_r, b_h=params.b_h + params.c_h,
        c_z=zero, c_r=zero, c_h=zero,
    )
