"""Exact conversions between ``GRUParams`` and each framework's packed layout (plain NumPy).

Every conversion only slices, transposes and concatenates, so a round trip is bit-exact.
Where a layout cannot hold a parameter, the conversion refuses instead of changing the function.

| layout  | input weights        | recurrent weights    | biases                                  | gate order |
|---------|----------------------|----------------------|-----------------------------------------|------------|
| PyTorch | weight_ih (3H, I)    | weight_hh (3H, H)    | bias_ih (3H,), bias_hh (3H,)            | r, z, n    |
| Keras   | kernel (I, 3H)       | recurrent_kernel (H, 3H) | bias (2, 3H) reset_after=True; (3H,) reset_after=False | z, r, h |
| ONNX    | W [dirs, 3H, I]      | R [dirs, 3H, H]      | B [dirs, 6H] = input then recurrent     | z, r, h    |
"""

from __future__ import annotations

import numpy as np

from .params import GRUParams, check_flag, check_float_array, check_params, describe_value

TORCH_GATE_ORDER = ("r", "z", "h")  # PyTorch calls the candidate gate "n"
KERAS_GATE_ORDER = ("z", "r", "h")
ONNX_GATE_ORDER = ("z", "r", "h")


def _check_sizes(hidden_name: str, hidden: int, input_name: str, input_size: int) -> None:
    if hidden == 0:
        raise ValueError(f"{hidden_name} gives hidden_size 0; a GRU needs at least one hidden unit")
    if input_size == 0:
        raise ValueError(f"{input_name} gives input_size 0; a GRU needs at least one input feature")


def _check_same_dtype(**arrays) -> None:
    """A layout's tensors come from one layer, so they share its dtype; a mix is a mistake made before this call."""
    given = {name: array.dtype for name, array in arrays.items() if array is not None}
    if len(set(given.values())) > 1:
        listing = ", ".join(f"{name} is {dtype}" for name, dtype in given.items())
        raise TypeError(f"the tensors of one layer must share one dtype, but {listing}; cast them all with .astype")


def _split_rows(name: str, array: np.ndarray, order, hidden_size: int) -> dict[str, np.ndarray]:
    if array.shape[0] != 3 * hidden_size:
        raise ValueError(f"{name} has {array.shape[0]} rows (shape {array.shape}); expected 3 * hidden_size = {3 * hidden_size}")
    return {gate: array[i * hidden_size : (i + 1) * hidden_size] for i, gate in enumerate(order)}


def _stack_rows(params: GRUParams, prefix: str, order, transpose: bool) -> np.ndarray:
    blocks = [getattr(params, f"{prefix}_{gate}") for gate in order]
    return np.concatenate([block.T if transpose else block for block in blocks], axis=0)


def _from_blocks(W: dict, U: dict, b: dict | None, c: dict | None, dtype) -> GRUParams:
    zeros = {gate: np.zeros(W[gate].shape[1], dtype) for gate in "zrh"}
    b = b or zeros
    c = c or zeros
    return GRUParams(
        W_z=W["z"], W_r=W["r"], W_h=W["h"],
        U_z=U["z"], U_r=U["r"], U_h=U["h"],
        b_z=b["z"], b_r=b["r"], b_h=b["h"],
        c_z=c["z"], c_r=c["r"], c_h=c["h"],
    )


# ---------------------------------------------------------------- PyTorch


def from_torch(weight_ih, weight_hh, bias_ih=None, bias_hh=None) -> GRUParams:
    """From ``nn.GRU``/``nn.GRUCell`` tensors as NumPy arrays (rows r, z, n). Missing biases are zero."""
    weight_hh = check_float_array("weight_hh", weight_hh)
    if weight_hh.ndim != 2 or weight_hh.shape[0] != 3 * weight_hh.shape[1]:
        raise ValueError(f"weight_hh has shape {weight_hh.shape}; expected (3 * hidden_size, hidden_size)")
    hidden = weight_hh.shape[1]
    weight_ih = check_float_array("weight_ih", weight_ih)
    if weight_ih.ndim != 2:
        raise ValueError(f"weight_ih has shape {weight_ih.shape}; expected (3 * hidden_size, input_size)")
    _check_sizes(f"weight_hh of shape {weight_hh.shape}", hidden, f"weight_ih of shape {weight_ih.shape}",
                 weight_ih.shape[1])
    W = {g: a.T for g, a in _split_rows("weight_ih", weight_ih, TORCH_GATE_ORDER, hidden).items()}
    U = {g: a.T for g, a in _split_rows("weight_hh", weight_hh, TORCH_GATE_ORDER, hidden).items()}
    if (bias_ih is None) != (bias_hh is None):
        raise ValueError("give both bias_ih and bias_hh, or neither (a GRU with bias=False)")
    b = c = None
    if bias_ih is not None:
        bias_ih = check_float_array("bias_ih", bias_ih, (3 * hidden,))
        bias_hh = check_float_array("bias_hh", bias_hh, (3 * hidden,))
        b = _split_rows("bias_ih", bias_ih, TORCH_GATE_ORDER, hidden)
        c = _split_rows("bias_hh", bias_hh, TORCH_GATE_ORDER, hidden)
    _check_same_dtype(weight_ih=weight_ih, weight_hh=weight_hh, bias_ih=bias_ih, bias_hh=bias_hh)
    return _from_blocks(W, U, b, c, weight_hh.dtype)


def to_torch(params: GRUParams, bias: bool = True) -> dict[str, np.ndarray]:
    """To ``{"weight_ih", "weight_hh", "bias_ih", "bias_hh"}`` (biases left out when ``bias=False``)."""
    params, bias = check_params(params), check_flag(bias, "bias")
    packed = {
        "weight_ih": _stack_rows(params, "W", TORCH_GATE_ORDER, transpose=True),
        "weight_hh": _stack_rows(params, "U", TORCH_GATE_ORDER, transpose=True),
    }
    if bias:
        packed["bias_ih"] = _stack_rows(params, "b", TORCH_GATE_ORDER, transpose=False)
        packed["bias_hh"] = _stack_rows(params, "c", TORCH_GATE_ORDER, transpose=False)
    elif params.has_bias:
        raise ValueError(
            "these parameters have non-zero biases, which a bias=False layout cannot hold; "
            "use bias=True, or zero the biases deliberately if that is the model you want"
        )
    return packed


# ---------------------------------------------------------------- Keras


def from_keras(kernel, recurrent_kernel, bias=None, reset_after: bool = True) -> GRUParams:
    """From a Keras ``GRU``/``GRUCell``'s weights (columns z, r, h).

    ``bias`` is ``(2, 3H)`` (input row, recurrent row) when ``reset_after=True`` and ``(3H,)``
    when ``reset_after=False`` (then every recurrent bias is zero); None for ``use_bias=False``.
    """
    reset_after = check_flag(reset_after, "reset_after")
    recurrent_kernel = check_float_array("recurrent_kernel", recurrent_kernel)
    if recurrent_kernel.ndim != 2 or recurrent_kernel.shape[1] != 3 * recurrent_kernel.shape[0]:
        raise ValueError(f"recurrent_kernel has shape {recurrent_kernel.shape}; expected (hidden_size, 3 * hidden_size)")
    hidden = recurrent_kernel.shape[0]
    kernel = check_float_array("kernel", kernel)
    if kernel.ndim != 2:
        raise ValueError(f"kernel has shape {kernel.shape}; expected (input_size, 3 * hidden_size)")
    _check_sizes(f"recurrent_kernel of shape {recurrent_kernel.shape}", hidden, f"kernel of shape {kernel.shape}",
                 kernel.shape[0])
    W = _split_rows("kernel (columns)", kernel.T, KERAS_GATE_ORDER, hidden)
    W = {g: a.T for g, a in W.items()}
    U = {g: a.T for g, a in _split_rows("recurrent_kernel (columns)", recurrent_kernel.T, KERAS_GATE_ORDER, hidden).items()}
    b = c = None
    if bias is not None:
        expected = (2, 3 * hidden) if reset_after else (3 * hidden,)
        bias = check_float_array("bias", bias)
        if bias.shape != expected:
            other = (3 * hidden,) if reset_after else (2, 3 * hidden)
            hint = f" (that is the reset_after={not reset_after} layout)" if bias.shape == other else ""
            raise ValueError(f"bias has shape {bias.shape}; reset_after={reset_after} expects {expected}{hint}")
        if reset_after:
            b = _split_rows("bias[0]", bias[0], KERAS_GATE_ORDER, hidden)
            c = _split_rows("bias[1]", bias[1], KERAS_GATE_ORDER, hidden)
        else:
            b = _split_rows("bias", bias, KERAS_GATE_ORDER, hidden)
    _check_same_dtype(kernel=kernel, recurrent_kernel=recurrent_kernel, bias=bias)
    return _from_blocks(W, U, b, c, recurrent_kernel.dtype)


def to_keras(params: GRUParams, reset_after: bool = True, use_bias: bool = True) -> list[np.ndarray]:
    """To ``[kernel, recurrent_kernel, bias]`` (the order of ``layer.get_weights()``).

    With ``reset_after=False`` the single bias row has no slot for recurrent biases: non-zero
    ``c_*`` are refused. For a reset-before GRU they fold into the input biases exactly;
    call ``reference.fold_recurrent_biases(params, convention)`` first to say so.
    """
    params = check_params(params)
    reset_after, use_bias = check_flag(reset_after, "reset_after"), check_flag(use_bias, "use_bias")
    kernel = _stack_rows(params, "W", KERAS_GATE_ORDER, transpose=True).T
    recurrent_kernel = _stack_rows(params, "U", KERAS_GATE_ORDER, transpose=True).T
    if not use_bias:
        if params.has_bias:
            raise ValueError(
                "these parameters have non-zero biases, which use_bias=False cannot hold; use use_bias=True"
            )
        return [kernel, recurrent_kernel]
    input_bias = _stack_rows(params, "b", KERAS_GATE_ORDER, transpose=False)
    recurrent_bias = _stack_rows(params, "c", KERAS_GATE_ORDER, transpose=False)
    if reset_after:
        return [kernel, recurrent_kernel, np.stack([input_bias, recurrent_bias])]
    nonzero = [f"c_{g}" for g in KERAS_GATE_ORDER if np.any(getattr(params, f"c_{g}") != 0)]
    if nonzero:
        raise ValueError(
            f"recurrent biases {', '.join(nonzero)} are non-zero, and Keras' reset_after=False layout has a single "
            f"bias of shape (3H,) with no slot for them. Under reset-before they fold into the input biases "
            f"exactly: call reference.fold_recurrent_biases(params, convention) first. Under reset-after, "
            f"c_h is scaled by the reset gate and cannot be folded: keep reset_after=True."
        )
    return [kernel, recurrent_kernel, input_bias]


# ---------------------------------------------------------------- ONNX


def from_onnx(W, R, B=None, direction: int = 0) -> GRUParams:
    """From the ONNX ``GRU`` operator's ``W [dirs, 3H, I]``, ``R [dirs, 3H, H]``, ``B [dirs, 6H]`` (rows z, r, h)."""
    R = check_float_array("R", R)
    if R.ndim != 3 or R.shape[1] != 3 * R.shape[2]:
        raise ValueError(f"R has shape {R.shape}; expected [num_directions, 3 * hidden_size, hidden_size]")
    directions, _, hidden = R.shape
    if isinstance(direction, (bool, np.bool_)) or not isinstance(direction, (int, np.integer)):
        raise TypeError(f"direction must be an integer index (0 = forward, 1 = reverse), got {describe_value(direction)}")
    if not 0 <= direction < directions:
        raise ValueError(f"direction {direction} is out of range for {directions} direction(s) (0 = forward, 1 = reverse)")
    W = check_float_array("W", W)
    if W.ndim != 3 or W.shape[:2] != (directions, 3 * hidden):
        raise ValueError(f"W has shape {W.shape}; expected [{directions}, {3 * hidden}, input_size]")
    _check_sizes(f"R of shape {R.shape}", hidden, f"W of shape {W.shape}", W.shape[2])
    weights = {g: a.T for g, a in _split_rows("W", W[direction], ONNX_GATE_ORDER, hidden).items()}
    recurrent = {g: a.T for g, a in _split_rows("R", R[direction], ONNX_GATE_ORDER, hidden).items()}
    b = c = None
    if B is not None:
        B = check_float_array("B", B, (directions, 6 * hidden))
        b = _split_rows("B (input half)", B[direction, : 3 * hidden], ONNX_GATE_ORDER, hidden)
        c = _split_rows("B (recurrent half)", B[direction, 3 * hidden :], ONNX_GATE_ORDER, hidden)
    _check_same_dtype(W=W, R=R, B=B)
    return _from_blocks(weights, recurrent, b, c, R.dtype)


def to_onnx(directions: list[GRUParams]) -> dict[str, np.ndarray]:
    """To ``{"W", "R", "B"}`` for one ONNX ``GRU`` node: ``[forward]`` or ``[forward, reverse]``."""
    if isinstance(directions, GRUParams):
        directions = [directions]
    if not isinstance(directions, (list, tuple)):
        check_params(directions, "directions")  # names what was passed and what to pass instead
    if len(directions) not in (1, 2):
        raise ValueError(f"an ONNX GRU node has 1 or 2 directions, got {len(directions)}")
    directions = [check_params(p, f"directions[{index}]") for index, p in enumerate(directions)]
    if len(directions) == 2:
        forward, backward = directions
        if (forward.input_size, forward.hidden_size, forward.dtype) != (backward.input_size, backward.hidden_size,
                                                                       backward.dtype):
            raise ValueError(
                f"the two directions of one ONNX GRU node must have the same sizes and dtype; forward has "
                f"input_size={forward.input_size}, hidden_size={forward.hidden_size}, {forward.dtype}, backward has "
                f"input_size={backward.input_size}, hidden_size={backward.hidden_size}, {backward.dtype}"
            )
    return {
        "W": np.stack([_stack_rows(p, "W", ONNX_GATE_ORDER, transpose=True) for p in directions]),
        "R": np.stack([_stack_rows(p, "U", ONNX_GATE_ORDER, transpose=True) for p in directions]),
        "B": np.stack(
            [
                np.concatenate([_stack_rows(p, "b", ONNX_GATE_ORDER, False), _stack_rows(p, "c", ONNX_GATE_ORDER, False)])
                for p in directions
            ]
        ),
    }
