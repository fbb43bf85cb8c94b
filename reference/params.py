"""Canonical GRU parameters: one layer, one direction, one array per gate and role.

Every framework layout converts to and from ``GRUParams`` (see ``reference.layouts``);
the forward pass reads only this form. The matmul convention is ``x @ W``, so
``W_*`` is ``(input_size, hidden_size)`` and ``U_*`` is ``(hidden_size, hidden_size)``.

This module also holds the argument checks every public function of ``reference`` shares
(``check_float_array``, ``check_dtype``, ``check_size``, ``check_flag``, ``check_params``): a bad
argument is refused here, once per call, with a message naming the argument and the fix, instead
of failing deep inside NumPy or silently giving a wrong or empty answer. They import no
deep-learning framework; a framework's tensor is recognised by its attributes.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields, replace
from typing import Iterator, Sequence

import numpy as np

GATES = ("z", "r", "h")
INPUT_WEIGHTS = ("W_z", "W_r", "W_h")
RECURRENT_WEIGHTS = ("U_z", "U_r", "U_h")
INPUT_BIASES = ("b_z", "b_r", "b_h")
RECURRENT_BIASES = ("c_z", "c_r", "c_h")
FIELDS = INPUT_WEIGHTS + RECURRENT_WEIGHTS + INPUT_BIASES + RECURRENT_BIASES

# The precisions the oracle computes in and the tolerances of ``reference.compare`` are defined for.
SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
SUPPORTED_DTYPE_NAMES = "float32 or float64"


def describe_value(value) -> str:
    """A short description of a value for an error message: its type, and dtype and shape for arrays."""
    if value is None:
        return "None"
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    if isinstance(value, (bool, numbers.Number, str)):
        text = repr(value)
        return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of length {len(value)}"
    return f"a {type(value).__module__.split('.')[0]}.{type(value).__qualname__}" if type(value).__module__ != "builtins" \
        else f"a {type(value).__name__}"


def _is_torch_tensor(value) -> bool:
    # torch.Tensor and nn.Parameter, recognised without importing torch (reference/ imports no framework).
    return hasattr(value, "detach") and hasattr(value, "requires_grad") and hasattr(value, "numpy")


def _is_torch_module(value) -> bool:
    return hasattr(value, "state_dict") and hasattr(value, "named_parameters") and callable(getattr(value, "forward", None))


def _tensor_hint(name: str, value) -> str | None:
    """How to turn a framework's tensor or model into what ``reference`` takes, or None for anything else."""
    if _is_torch_tensor(value):
        return (f"{name} is a torch {type(value).__name__}; pass a NumPy array instead: "
                f"{name}.detach().cpu().numpy()")
    if _is_torch_module(value):
        return (f"{name} is a torch module ({type(value).__name__}); pass NumPy arrays: read its weights with "
                f"adapters.get('torch').extract(module), or tensor.detach().cpu().numpy() for one tensor")
    return None


def check_dtype(dtype, name: str = "dtype") -> np.dtype:
    """``dtype`` as a NumPy float32 or float64 dtype, or an error naming ``name``."""
    shown = dtype.__name__ if isinstance(dtype, type) else repr(dtype)
    if dtype is None or isinstance(dtype, bool):
        raise TypeError(f"{name} must be float32 or float64, got {shown} (pass np.float32 or np.float64)")
    try:
        resolved = np.dtype(dtype)
    except (TypeError, ValueError):
        raise TypeError(
            f"{name} must be float32 or float64, got {shown}, which is not a NumPy dtype (pass np.float32 or np.float64)"
        ) from None
    if resolved.kind == "f" and resolved.itemsize in (4, 8):
        return resolved.newbyteorder("=")
    raise ValueError(
        f"{name} must be float32 or float64, got {shown}: dtype {resolved} is not supported "
        f"(the reference and its tolerances are defined for {SUPPORTED_DTYPE_NAMES})"
    )


def check_size(value, name: str, minimum: int = 1) -> int:
    """A whole number of at least ``minimum`` (a bool is not a size), or an error naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive integer, got {describe_value(value)}")
    if value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return int(value)


def check_flag(value, name: str) -> bool:
    """``True`` or ``False`` (NumPy's bool too): a truthy string or number is refused, not guessed."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {describe_value(value)}")


def check_seed(value, name: str = "seed") -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {describe_value(value)}")
    return int(value)


def check_float_array(
    name: str,
    value,
    expected_shape: tuple[int, ...] | None = None,
    *,
    finite: bool = True,
    any_float: bool = False,
) -> np.ndarray:
    """Return ``value`` as a float32/float64 NumPy array, or raise an error naming ``name`` and the fix.

    Refused, each with its own message: None, strings, dicts, a ``GRUParams``, torch tensors
    (``.detach().cpu().numpy()``), ragged nested lists, object/bool/integer/complex arrays, other
    float widths (float16, bfloat16, longdouble), a shape other than ``expected_shape`` and, unless
    ``finite=False``, NaN or inf. ``any_float=True`` also accepts other float widths (a framework's
    output computed in float16 can still be compared). Never copies a valid native-order array.
    """
    if value is None:
        raise TypeError(f"{name} is None; expected a {SUPPORTED_DTYPE_NAMES} NumPy array")
    hint = _tensor_hint(name, value)
    if hint:
        raise TypeError(hint)
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} is {describe_value(value)}; expected a {SUPPORTED_DTYPE_NAMES} NumPy array")
    if isinstance(value, dict):
        keys = ", ".join(repr(k) for k in list(value)[:4]) + (", ..." if len(value) > 4 else "")
        raise TypeError(
            f"{name} is a dict (keys {keys}); expected one {SUPPORTED_DTYPE_NAMES} array: pass the entry you mean"
        )
    if isinstance(value, GRUParams):
        raise TypeError(f"{name} is a GRUParams; expected an array (one of its fields, e.g. params.W_z?)")
    if isinstance(value, np.ma.MaskedArray):  # np.asarray would drop the mask and use the hidden values
        raise TypeError(f"{name} is a NumPy masked array; pass {name}.filled(0.0) (for padded steps give "
                        f"mask= instead, where the function takes one)")
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, RuntimeError) as error:
        if "inhomogeneous" in str(error) or "sequence" in str(error):
            raise ValueError(
                f"{name} is a ragged nested sequence (rows of different lengths); every row must have the same "
                f"length to form an array"
            ) from None
        raise TypeError(f"{name} ({describe_value(value)}) cannot be read as an array: {error}") from None
    dtype = array.dtype
    if dtype.kind == "f" and dtype.itemsize in (4, 8):
        if not dtype.isnative:
            array = array.astype(dtype.newbyteorder("="))
    elif any_float and dtype.kind == "f":
        pass
    elif dtype.kind == "O":
        kinds = sorted({type(v).__name__ for v in array.flat}) if array.size else []
        raise TypeError(
            f"{name} has dtype object (elements of type {', '.join(kinds[:4]) or 'none'}); expected numbers in a "
            f"{SUPPORTED_DTYPE_NAMES} array (a ragged list, or a list holding arrays of different shapes, reads as object)"
        )
    elif dtype.kind in "biu":
        raise TypeError(
            f"{name} has dtype {dtype}; GRU parameters and inputs must be floating point, {SUPPORTED_DTYPE_NAMES} "
            f"(convert with .astype(np.float64) or .astype(np.float32))"
        )
    elif dtype.kind == "c":
        raise TypeError(f"{name} has dtype {dtype}; complex values are not supported, use a real "
                        f"{SUPPORTED_DTYPE_NAMES} array")
    else:
        raise TypeError(
            f"{name} has dtype {dtype}, which is not supported; supported dtypes are float32 and float64 "
            f"(cast with .astype(np.float32) or .astype(np.float64))"
        )
    if expected_shape is not None and array.shape != tuple(expected_shape):
        raise ValueError(f"{name} has shape {array.shape}, expected {tuple(expected_shape)}")
    if finite and not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))[0]
        raise ValueError(
            f"{name} contains a non-finite value ({float(array[tuple(bad)])} at index {tuple(int(i) for i in bad)}); "
            f"replace NaN/inf before comparing GRUs"
        )
    return array


def check_params(value, name: str = "params") -> "GRUParams":
    """``value`` if it is one ``GRUParams`` (one layer, one direction), else an error saying what to pass."""
    if isinstance(value, GRUParams):
        return value
    hint = _tensor_hint(name, value)
    if hint:
        raise TypeError(hint.replace("pass NumPy arrays:", "pass a reference.GRUParams:"))
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (list, tuple, GRUParams)) for v in value):
        raise TypeError(
            f"{name} is {describe_value(value)} (a stack or a list of directions?); expected one GRUParams "
            f"(one layer, one direction): pass e.g. layers[0][0]"
        )
    if isinstance(value, dict):
        raise TypeError(
            f"{name} is a dict; expected a reference.GRUParams: convert a framework's weights with "
            f"reference.layouts.from_torch / from_keras / from_onnx"
        )
    raise TypeError(
        f"{name} is {describe_value(value)}; expected a reference.GRUParams (GRUParams(...), GRUParams.random, "
        f"or reference.layouts.from_torch / from_keras / from_onnx)"
    )


@dataclass(frozen=True, eq=False)
class GRUParams:
    """Parameters of one GRU layer in one direction.

    Shapes: ``W_*`` ``(input_size, hidden_size)``, ``U_*`` ``(hidden_size, hidden_size)``,
    ``b_*`` and ``c_*`` ``(hidden_size,)``, with ``input_size`` and ``hidden_size`` at least 1.
    All arrays share one dtype, float32 or float64, and are finite. A GRU without biases has
    all-zero ``b_*`` and ``c_*`` (see ``has_bias``). The arrays are copied and made read-only,
    so a ``GRUParams`` never aliases a caller's buffer and cannot be changed after validation.
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
        W_z = check_float_array("W_z", self.W_z)
        if W_z.ndim != 2:
            raise ValueError(f"W_z has shape {W_z.shape}, expected (input_size, hidden_size)")
        input_size, hidden_size = W_z.shape
        if hidden_size == 0 or input_size == 0:
            empty = "hidden_size" if hidden_size == 0 else "input_size"
            raise ValueError(
                f"W_z has shape {W_z.shape}, so {empty} is 0; a GRU needs at least one input feature and one "
                f"hidden unit"
            )
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

    def __repr__(self) -> str:
        # The dataclass default prints all twelve arrays, which buries an error message that names one.
        bias = "" if self.has_bias else ", no biases"
        return f"GRUParams(input_size={self.input_size}, hidden_size={self.hidden_size}, {self.dtype}{bias})"

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
        dtype = check_dtype(dtype)
        return GRUParams(**{name: array.astype(dtype) for name, array in self.arrays()})

    def replace(self, **changes) -> "GRUParams":
        unknown = sorted(set(changes) - set(FIELDS))
        if unknown:
            raise TypeError(f"replace: unknown field(s) {unknown}; valid: {', '.join(FIELDS)}")
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
        names = RECURRENT_BIASES if check_flag(recurrent_only, "recurrent_only") else INPUT_BIASES + RECURRENT_BIASES
        return self.replace(**{name: np.zeros_like(getattr(self, name)) for name in names})

    def identical(self, other: "GRUParams") -> bool:
        """Bit-for-bit equality of every array, dtype included."""
        other = check_params(other, "other")
        return all(
            a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
            for (_, a), (_, b) in zip(self.arrays(), other.arrays())
        )

    def first_difference(self, other: "GRUParams") -> str | None:
        """Name the first field where ``other`` differs bitwise, with the largest difference."""
        other = check_params(other, "other")
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
        input_size, hidden_size = check_size(input_size, "input_size"), check_size(hidden_size, "hidden_size")
        dtype = check_dtype(dtype)
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
        input_size, hidden_size = check_size(input_size, "input_size"), check_size(hidden_size, "hidden_size")
        seed, dtype, bias = check_seed(seed), check_dtype(dtype), check_flag(bias, "bias")
        if isinstance(scale, (bool, np.bool_)) or not isinstance(scale, numbers.Real) or not math.isfinite(scale) \
                or scale <= 0:
            raise ValueError(
                f"scale must be a finite positive number (the standard deviation), got {describe_value(scale)}; "
                f"GRUParams.zeros gives all-zero parameters"
            )
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


def check_merge(merge) -> str:
    if not isinstance(merge, str) or merge not in MERGE_MODES:
        raise ValueError(f"unknown merge mode {merge!r}; valid: {', '.join(MERGE_MODES)}")
    return merge


def layer_input_size(input_size: int, hidden_size: int, layer: int, directions: int, merge: str) -> int:
    """Input width of ``layer``: the data for layer 0, the merged outputs of the layer below after."""
    if directions not in (1, 2):
        raise ValueError(f"directions must be 1 or 2, got {directions!r}")
    check_merge(merge)
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
    input_size, hidden_size = check_size(input_size, "input_size"), check_size(hidden_size, "hidden_size")
    num_layers = check_size(num_layers, "num_layers")
    directions = 2 if check_flag(bidirectional, "bidirectional") else 1
    seed, dtype, bias, merge = check_seed(seed), check_dtype(dtype), check_flag(bias, "bias"), check_merge(merge)
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
    """Validate a stack's structure; return ``(num_layers, directions)``.

    A stack is a list of layers, each a list of one ``GRUParams`` (forward) or two (forward,
    backward); one layer of one direction is ``[[params]]``.
    """
    merge = check_merge(merge)
    shape = "a non-empty list of layers, each a list of GRUParams per direction ([[params]] for one layer)"
    if isinstance(layers, GRUParams):
        raise TypeError(f"layers is a single GRUParams; a stack is {shape}: wrap it as [[params]]")
    hint = _tensor_hint("layers", layers)
    if hint:
        raise TypeError(hint)
    if isinstance(layers, (str, bytes, dict, np.ndarray)) or not isinstance(layers, Sequence):
        raise TypeError(f"layers is {describe_value(layers)}; expected {shape}")
    if not len(layers):
        raise ValueError(f"layers is empty; expected {shape}")
    for index, layer in enumerate(layers):
        if isinstance(layer, GRUParams):
            raise TypeError(
                f"layers[{index}] is a GRUParams, not a list of directions; a stack is {shape}: "
                f"wrap each layer as [params] (or [forward, backward]), e.g. [[params]]"
            )
        if isinstance(layer, (str, bytes, dict)) or not isinstance(layer, Sequence):
            raise TypeError(f"layers[{index}] is {describe_value(layer)}; expected a list of GRUParams per direction")
    directions = len(layers[0])
    if directions not in (1, 2):
        raise ValueError(f"layer 0 has {directions} directions; expected 1 or 2")
    for index, layer in enumerate(layers):
        if len(layer) != directions:
            raise ValueError(f"layer {index} has {len(layer)} directions, layer 0 has {directions}")
        for direction, params in enumerate(layer):
            if not isinstance(params, GRUParams):
                raise TypeError(
                    f"layers[{index}][{direction}] is {describe_value(params)}, expected GRUParams"
                )
    hidden_size = layers[0][0].hidden_size
    input_size = layers[0][0].input_size
    for index, layer in enumerate(layers):
        expected_input = layer_input_size(input_size, hidden_size, index, directions, merge)
        for direction, params in enumerate(layer):
            if params.hidden_size != hidden_size or params.input_size != expected_input:
                raise ValueError(
                    f"layers[{index}][{direction}] has input_size={params.input_size}, hidden_size={params.hidden_size}; "
                    f"expected input_size={expected_input}, hidden_size={hidden_size} "
                    f"(merge={merge!r}, {directions} direction(s))"
                )
    return len(layers), directions
