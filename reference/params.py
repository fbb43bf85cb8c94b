"""Canonical GRU parameters: one layer, one direction, one array per gate and role.

Every framework layout converts to and from ``GRUParams`` (see ``reference.layouts``);
the forward pass reads only this form. The matmul convention is ``x @ W``, so
``W_*`` is ``(input_size, hidden_size)`` and ``U_*`` is ``(hidden_size, hidden_size)``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Iterator, Sequence

import numpy as np

GATES = ("z", "r", "h")
INPUT_WEIGHTS = ("W_z", "W_r", "W_h")
RECURRENT_WEIGHTS = ("U_z", "U_r", "U_h")
INPUT_BIASES = ("b_z", "b_r", "b_h")
RECURRENT_BIASES = ("c_z", "c_r", "c_h")
FIELDS = INPUT_WEIGHTS + RECURRENT_WEIGHTS + INPUT_BIASES + RECURRENT_BIASES


def check_float_array(name: str, value, expected_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Return ``value`` as a finite floating array, or raise an error naming ``name``."""
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(
            f"{name} has dtype {array.dtype}; GRU parameters and inputs must be floating point "
            f"(convert with .astype(np.float32) or .astype(np.float64))"
        )
    if expected_shape is not None and array.shape != tuple(expected_shape):
        raise ValueError(f"{name} has shape {array.shape}, expected {tuple(expected_shape)}")
    if not np.all(np.isfinite(array)):
        bad = np.argwhere(~np.isfinite(array))[0]
        raise ValueError(
            f"{name} contains a non-finite value ({float(array[tuple(bad)])} at index {tuple(int(i) for i in bad)}); "
            f"replace NaN/inf before comparing GRUs"
        )
    return array


@dataclass(frozen=True, eq=False)
class GRUParams:
    """Parameters of one GRU layer in one direction.

    Shapes: ``W_*`` ``(input_size, hidden_size)``, ``U_*`` ``(hidden_size, hidden_size)``,
    ``b_*`` and ``c_*`` ``(hidden_size,)``. All arrays share one floating dtype and are
    finite. A GRU without biases has all-zero ``b_*`` and ``c_*`` (see ``has_bias``).
    The arrays are copied and made read-only, so a ``GRUParams`` never aliases a
    caller's buffer and cannot be changed after validation.
    """

    W_z: np.ndarray
    W_r: np.ndarray
    W_h: np.ndarray
    U_z: np.ndarray
    U_r: np.ndarray
    U_h: np.ndarray
    b_z: np.ndarray
    b_r: np.ndarray
    b_h: np.ndarray
    c_z: np.ndarray
    c_r: np.ndarray
    c_h: np.ndarray

    def __post_init__(self) -> None:
        W_z = np.asarray(self.W_z)
        if W_z.ndim != 2:
            raise ValueError(f"W_z has shape {W_z.shape}, expected (input_size, hidden_size)")
        input_size, hidden_size = W_z.shape
        expected = _shapes(input_size, hidden_size)
        dtypes = {}
        for name in FIELDS:
            array = check_float_array(name, getattr(self, name), expected[name]).copy()
            array.setflags(write=False)
            object.__setattr__(self, name, array)
            dtypes[name] = array.dtype
        if len(set(dtypes.values())) > 1:
            listing = ", ".join(f"{name}={dtype}" for name, dtype in dtypes.items())
            raise TypeError(f"GRUParams arrays must share one dtype, got {listing}; cast them all with .astype")

    @property
    def input_size(self) -> int:
        return self.W_z.shape[0]

    @property
    def hidden_size(self) -> int:
        return self.W_z.shape[1]

    @property
    def dtype(self) -> np.dtype:
        return self.W_z.dtype

    @property
    def has_bias(self) -> bool:
        return any(np.any(getattr(self, name) != 0) for name in INPUT_BIASES + RECURRENT_BIASES)

    def arrays(self) -> Iterator[tuple[str, np.ndarray]]:
        for name in FIELDS:
            yield name, getattr(self, name)

    def astype(self, dtype) -> "GRUParams":
        return GRUParams(**{name: array.astype(dtype) for name, array in self.arrays()})

    def replace(self, **changes) -> "GRUParams":
        return replace(self, **changes)

    def derive(self, **changes) -> "GRUParams":
        """Like ``replace``, for arrays computed from this instance's own (already validated) arrays:
        it checks shapes and dtype but not finiteness again. ``reference.mistakes`` builds thousands
        of these while searching, where re-validating dominated the time."""
        derived = object.__new__(GRUParams)
        for name in FIELDS:
            current = getattr(self, name)
            value = changes.pop(name, current)
            if not isinstance(value, np.ndarray) or value.shape != current.shape or value.dtype != current.dtype:
                raise ValueError(f"derive: {name} must stay a {current.dtype} array of shape {current.shape}")
            if value is not current:
                value = value.view()
                value.setflags(write=False)
            object.__setattr__(derived, name, value)
        if changes:
            raise TypeError(f"derive: unknown field(s) {sorted(changes)}; valid: {', '.join(FIELDS)}")
        return derived

    def without_biases(self, recurrent_only: bool = False) -> "GRUParams":
        """The same weights with zero biases (or only zero recurrent biases ``c_*``)."""
        names = RECURRENT_BIASES if recurrent_only else INPUT_BIASES + RECURRENT_BIASES
        return self.replace(**{name: np.zeros_like(getattr(self, name)) for name in names})

    def identical(self, other: "GRUParams") -> bool:
        """Bit-for-bit equality of every array, dtype included."""
        return all(
            a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
            for (_, a), (_, b) in zip(self.arrays(), other.arrays())
        )

    def first_difference(self, other: "GRUParams") -> str | None:
        """Name the first field where ``other`` differs bitwise, with the largest difference."""
        for (name, a), (_, b) in zip(self.arrays(), other.arrays()):
            if a.dtype != b.dtype or a.shape != b.shape:
                return f"{name}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
            if not np.array_equal(a, b):
                diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
                where = tuple(int(i) for i in np.unravel_index(np.argmax(diff), diff.shape))
                return f"{name}: max difference {diff.max():.3g} at {where}"
        return None

    @classmethod
    def zeros(cls, input_size: int, hidden_size: int, dtype=np.float64) -> "GRUParams":
        return cls(**{name: np.zeros(shape, dtype) for name, shape in _shapes(input_size, hidden_size).items()})

    @classmethod
    def random(
        cls,
        input_size: int,
        hidden_size: int,
        seed: int = 0,
        dtype=np.float64,
        scale: float = 0.5,
        bias: bool = True,
    ) -> "GRUParams":
        """Dense, seeded, normally distributed parameters with standard deviation ``scale``.

        Every gate and unit gets distinct values, so gate orders and conventions are
        distinguishable; ``scale=0.5`` keeps pre-activations of unit-variance inputs
        mostly out of sigmoid/tanh saturation. ``bias=False`` gives all-zero biases.
        """
        for label, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{label} must be a positive integer, got {value!r}")
        rng = np.random.default_rng(seed)
        arrays = {}
        for name, shape in _shapes(input_size, hidden_size).items():
            is_bias = name in INPUT_BIASES + RECURRENT_BIASES
            values = rng.normal(0.0, scale, size=shape)
            arrays[name] = (values if bias or not is_bias else np.zeros(shape)).astype(dtype)
        return cls(**arrays)


def _shapes(input_size: int, hidden_size: int) -> dict[str, tuple[int, ...]]:
    return {
        **{name: (input_size, hidden_size) for name in INPUT_WEIGHTS},
        **{name: (hidden_size, hidden_size) for name in RECURRENT_WEIGHTS},
        **{name: (hidden_size,) for name in INPUT_BIASES + RECURRENT_BIASES},
    }


# A stack of layers: ``layers[l][d]`` is layer ``l`` in direction ``d`` (0 forward, 1 backward).
Layers = Sequence[Sequence[GRUParams]]

MERGE_MODES = ("concat", "sum", "ave", "mul")


def layer_input_size(input_size: int, hidden_size: int, layer: int, directions: int, merge: str) -> int:
    """Input width of ``layer``: the data for layer 0, the merged outputs of the layer below after."""
    if layer == 0:
        return input_size
    return hidden_size * directions if merge == "concat" else hidden_size


def random_layers(
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    bidirectional: bool = False,
    seed: int = 0,
    dtype=np.float64,
    bias: bool = True,
    merge: str = "concat",
) -> list[list[GRUParams]]:
    """Seeded parameters for a stacked and/or bidirectional GRU, each (layer, direction) distinct."""
    directions = 2 if bidirectional else 1
    return [
        [
            GRUParams.random(
                layer_input_size(input_size, hidden_size, layer, directions, merge),
                hidden_size,
                seed=seed * 1000 + layer * 2 + direction,
                dtype=dtype,
                bias=bias,
            )
            for direction in range(directions)
        ]
        for layer in range(num_layers)
    ]


def check_layers(layers: Layers, merge: str = "concat") -> tuple[int, int]:
    """Validate a stack's structure; return ``(num_layers, directions)``."""
    if merge not in MERGE_MODES:
        raise ValueError(f"unknown merge mode {merge!r}; valid: {', '.join(MERGE_MODES)}")
    if isinstance(layers, GRUParams) or not len(layers):
        raise TypeError("layers must be a non-empty list of layers, each a list of GRUParams per direction")
    directions = len(layers[0])
    if directions not in (1, 2):
        raise ValueError(f"layer 0 has {directions} directions; expected 1 or 2")
    hidden_size = layers[0][0].hidden_size
    input_size = layers[0][0].input_size
    for index, layer in enumerate(layers):
        if len(layer) != directions:
            raise ValueError(f"layer {index} has {len(layer)} directions, layer 0 has {directions}")
        expected_input = layer_input_size(input_size, hidden_size, index, directions, merge)
        for direction, params in enumerate(layer):
            if not isinstance(params, GRUParams):
                raise TypeError(f"layers[{index}][{direction}] is {type(params).__name__}, expected GRUParams")
            if params.hidden_size != hidden_size or params.input_size != expected_input:
                raise ValueError(
                    f"layers[{index}][{direction}] has input_size={params.input_size}, hidden_size={params.hidden_size}; "
                    f"expected input_size={expected_input}, hidden_size={hidden_size} "
                    f"(merge={merge!r}, {directions} direction(s))"
                )
    return len(layers), directions
