"""The activation functions of the ONNX recurrent operators (RNN, GRU, LSTM), in pure NumPy.

The ONNX ``GRU`` operator takes ``activations`` (f for the update and reset gates, g for the
candidate; four names when bidirectional) and ``activation_alpha`` / ``activation_beta``. Its
list of functions and their formulas is the operator's documentation, ``onnx/defs/doc_strings.cc``
lines 66-82 (onnx 1.23.2); the defaults of alpha and beta are, by the operator's attribute text
(``onnx/defs/rnn/defs.cc`` lines 94-108: "Default values are the same as of corresponding ONNX
operators"), those of the standalone operators:

| name            | formula (doc_strings.cc)          | alpha, beta defaults and where they come from          |
|-----------------|-----------------------------------|--------------------------------------------------------|
| Relu            | max(0, x)                         | -                                                      |
| Tanh            | (1 - e^{-2x}) / (1 + e^{-2x})     | -                                                      |
| Sigmoid         | 1 / (1 + e^{-x})                  | -                                                      |
| Affine          | alpha * x + beta                  | 1.0, 0.0: the (removed) experimental ``Affine`` operator |
| LeakyRelu       | x if x >= 0 else alpha * x        | 0.01: ``LeakyRelu``, onnx/defs/math/defs.cc:283         |
| ThresholdedRelu | x if x >= alpha else 0            | 1.0: ``ThresholdedRelu``, onnx/defs/math/defs.cc:309    |
| ScaledTanh      | alpha * tanh(beta * x)            | none in ONNX (experimental op); 1.0, 1.0 here: plain tanh |
| HardSigmoid     | min(max(alpha * x + beta, 0), 1)  | 0.2, 0.5: ``HardSigmoid``, onnx/defs/math/defs.cc:763-764 |
| Elu             | x if x >= 0 else alpha * (e^x - 1)| 1.0: ``Elu``, onnx/defs/math/defs.cc:372                |
| Softsign        | x / (1 + abs(x))                  | -                                                      |
| Softplus        | log(1 + e^x)                      | -                                                      |

``ThresholdedRelu``: the GRU text says ``x >= alpha``, the standalone operator (and onnxruntime)
``x > alpha``; they differ only at ``x == alpha`` exactly, which no float probe hits. This module
follows the operator: ``x > alpha``.

Every function is ``f(a, out=None, ...)``: element-wise, keeps ``a``'s dtype and shape, writes into
``out`` when given (``out`` may be ``a`` itself: the GRU equations call ``f(buffer, out=buffer)``).
Parameterised ones take ``alpha`` / ``beta`` keywords; ``onnx_activation(name, alpha, beta)`` returns
the one a node attribute names, bound to its parameters as a ``Bound``: a frozen dataclass of the
module-level function and the numbers, so that it pickles, and compares and hashes by value
(``LayerConfig.reference_options`` needs that; a ``functools.partial`` hashes by identity, and an
unpickled configuration would no longer equal its original). ``sigmoid`` and ``tanh`` are the very
objects the forward pass defaults to (``reference.equations.sigmoid``, ``np.tanh``), so it keeps its
fast path for them.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from .equations import sigmoid

__all__ = [
    "relu", "tanh", "sigmoid", "affine", "leaky_relu", "thresholded_relu", "scaled_tanh", "hard_sigmoid",
    "elu", "softsign", "softplus", "ONNX_ACTIVATIONS", "ONNX_DEFAULTS", "Bound", "onnx_activation",
    "defaults_read_as_zero", "activation_name",
]


def _scalar(name: str, value, dtype) -> np.generic:
    """``value`` as a scalar of the array's dtype (a float64 alpha must not promote a float32 gate)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    return np.dtype(dtype).type(value)


def _finish(result: np.ndarray, out):
    """Write ``result`` into ``out`` (which may alias the input: ``result`` is already computed)."""
    if out is None:
        return result
    np.copyto(out, result)
    return out


def relu(a, out=None):
    """``max(0, x)``."""
    return np.maximum(a, a.dtype.type(0), out=out)


# ``(1 - e^{-2x}) / (1 + e^{-2x})``: NumPy's ufunc itself, so that the forward pass keeps its fast
# path for the default candidate activation (``tanh(a, out=None)`` works like every function here).
tanh = np.tanh


def affine(a, out=None, alpha=1.0, beta=0.0):
    """``alpha * x + beta``."""
    out = np.multiply(a, _scalar("alpha", alpha, a.dtype), out=out)
    out += _scalar("beta", beta, a.dtype)
    return out


def leaky_relu(a, out=None, alpha=0.01):
    """``x if x >= 0 else alpha * x``."""
    scaled = a * _scalar("alpha", alpha, a.dtype)
    return _finish(np.where(a >= 0, a, scaled), out)


def thresholded_relu(a, out=None, alpha=1.0):
    """``x if x > alpha else 0`` (the operator's ``>``; see the module docstring)."""
    alpha = _scalar("alpha", alpha, a.dtype)
    return _finish(np.where(a > alpha, a, a.dtype.type(0)), out)


def scaled_tanh(a, out=None, alpha=1.0, beta=1.0):
    """``alpha * tanh(beta * x)``."""
    result = np.tanh(a * _scalar("beta", beta, a.dtype))
    result *= _scalar("alpha", alpha, a.dtype)
    return _finish(result, out)


def hard_sigmoid(a, out=None, alpha=0.2, beta=0.5):
    """``min(max(alpha * x + beta, 0), 1)``."""
    out = affine(a, out=out, alpha=alpha, beta=beta)
    return np.clip(out, a.dtype.type(0), a.dtype.type(1), out=out)


def keras2_hard_sigmoid(a, out=None):
    """Keras 2's ``hard_sigmoid`` (``tf_keras/src/backend.py:5926-5944``): multiply by 0.2, add 0.5, clip to
    [0, 1], constants in ``a``'s dtype; ONNX's HardSigmoid at its defaults, bit for bit."""
    return hard_sigmoid(a, out=out)


def keras3_hard_sigmoid(a, out=None):
    """Keras 3's ``hard_sigmoid``, ``relu6(x + 3) / 6`` = ``clip(x / 6 + 1/2, 0, 1)``."""
    return hard_sigmoid(a, out=out, alpha=1.0 / 6.0, beta=0.5)


def elu(a, out=None, alpha=1.0):
    """``x if x >= 0 else alpha * (e^x - 1)`` (``expm1`` on the negative part only: no overflow)."""
    negative = np.expm1(np.minimum(a, a.dtype.type(0)))
    negative *= _scalar("alpha", alpha, a.dtype)
    return _finish(np.where(a >= 0, a, negative), out)


def softsign(a, out=None):
    """``x / (1 + |x|)``."""
    denominator = np.abs(a)
    denominator += a.dtype.type(1)
    return np.divide(a, denominator, out=out)


def softplus(a, out=None):
    """``log(1 + e^x)``, as ``logaddexp(0, x)`` (no overflow for large x)."""
    return np.logaddexp(a.dtype.type(0), a, out=out)


ONNX_ACTIVATIONS = {
    "Relu": relu, "Tanh": tanh, "Sigmoid": sigmoid, "Affine": affine, "LeakyRelu": leaky_relu,
    "ThresholdedRelu": thresholded_relu, "ScaledTanh": scaled_tanh, "HardSigmoid": hard_sigmoid, "Elu": elu,
    "Softsign": softsign, "Softplus": softplus,
}
"""ONNX activation name (as the ``activations`` attribute spells it) -> function."""

ONNX_DEFAULTS: dict[str, dict[str, float]] = {
    "Affine": {"alpha": 1.0, "beta": 0.0},
    "LeakyRelu": {"alpha": 0.01},
    "ThresholdedRelu": {"alpha": 1.0},
    "ScaledTanh": {"alpha": 1.0, "beta": 1.0},
    "HardSigmoid": {"alpha": 0.2, "beta": 0.5},
    "Elu": {"alpha": 1.0},
}
"""The parameters each activation takes, with the defaults of the module docstring's table."""


def _canonical(name) -> str:
    if not isinstance(name, str):
        raise TypeError(f"an ONNX activation is named by a string, got {name!r}")
    lowered = {key.lower(): key for key in ONNX_ACTIVATIONS}
    try:
        return lowered[name.lower()]
    except KeyError:
        raise ValueError(f"unknown ONNX activation {name!r}; valid: {', '.join(ONNX_ACTIVATIONS)}") from None


def onnx_activation(name: str, alpha=None, beta=None):
    """The function an ``activations`` entry names (case-insensitive, as onnxruntime reads it),
    with ``alpha`` / ``beta`` bound where given (None: the default). A function without parameters
    is returned as itself; giving it alpha or beta is an error (the operator would not consume it)."""
    canonical = _canonical(name)
    function = ONNX_ACTIVATIONS[canonical]
    takes = ONNX_DEFAULTS.get(canonical, {})
    given = {key: value for key, value in (("alpha", alpha), ("beta", beta)) if value is not None}
    extra = sorted(set(given) - set(takes))
    if extra:
        raise ValueError(f"{canonical} takes no {' or '.join(extra)} (it takes {', '.join(takes) or 'no parameters'})")
    if not takes:
        return function
    bound = {key: float(_scalar(key, given.get(key, default), np.float64)) for key, default in takes.items()}
    return Bound(function, **bound, defaulted=tuple(key for key in takes if key not in given))


@dataclass(frozen=True)
class Bound:
    """``function`` with ``alpha`` / ``beta`` bound (None: not passed); called as ``f(a, out=None)``.
    ``defaulted`` names the parameters the node left to their defaults; it does not take part in
    equality (a defaulted 0.2 computes what an explicit 0.2 does)."""

    function: Callable
    alpha: float | None = None
    beta: float | None = None
    defaulted: tuple[str, ...] = field(default=(), compare=False)

    @property
    def keywords(self) -> dict[str, float]:
        return {key: value for key, value in (("alpha", self.alpha), ("beta", self.beta)) if value is not None}

    def __call__(self, a, out=None):
        return self.function(a, out=out, **self.keywords)

    def __repr__(self) -> str:
        return activation_name(self)


def defaults_read_as_zero(function):
    """``function`` with the parameters its node left to their defaults at 0 instead: what a runtime that
    registers no default for them computes (onnxruntime for ThresholdedRelu, Affine, ScaledTanh). Any
    other function is returned as itself."""
    if not isinstance(function, Bound) or not function.defaulted:
        return function
    return replace(function, **{key: 0.0 for key in function.defaulted}, defaulted=())


def activation_name(function) -> str:
    """A readable name: ``HardSigmoid(alpha=0.25, beta=0.375)``, ``Tanh``; else the function's own name."""
    bound = {}
    if isinstance(function, Bound):
        bound = function.keywords
        function = function.function
    for name, known in ONNX_ACTIVATIONS.items():
        if function is known or (known is tanh and function is np.tanh):
            arguments = ", ".join(f"{key}={value:g}" for key, value in bound.items())
            return f"{name}({arguments})" if arguments else name
    return getattr(function, "__name__", repr(function))
