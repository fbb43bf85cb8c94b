"""How close is close enough, and where two results differ.

``TOLERANCES`` is the one table of ``{dtype: (rtol, atol)}`` used by the tests, the
``check`` command and the reports. An element passes when
``|actual - expected| <= atol + rtol * |expected|`` (the rule of ``numpy.isclose`` and
``torch.testing.assert_close``). The expected side is always the float64 reference run on
the same (already rounded) parameters and inputs, so the gap measures only the framework's
own rounding.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from .params import check_float_array, describe_value

TOLERANCES: dict[np.dtype, tuple[float, float]] = {
    # float32 (eps 1.2e-7): each step rounds three matmuls, a sigmoid/tanh and the blend, and
    # the error is carried through the recurrence; 1e-5 is ~80 eps at |h| ~ 1, several times the
    # largest gap seen (~2e-6) on our cases, and ~1000x below the gaps between conventions (>1e-2).
    np.dtype(np.float32): (1e-5, 1e-5),
    # float64 (eps 2.2e-16): the same reasoning at ~4500 eps; libraries sum matmuls in a
    # different order (MKL, oneDNN, Eigen), which moves results by ~1e-15, not more.
    np.dtype(np.float64): (1e-12, 1e-12),
}

# A convention counts as clearly excluded when it misses by this many tolerances.
SEPARATION_FACTOR = 100.0


def tolerance_for(dtype) -> tuple[float, float]:
    valid = ", ".join(str(d) for d in TOLERANCES)
    try:
        resolved = None if dtype is None or isinstance(dtype, bool) else np.dtype(dtype)
    except (TypeError, ValueError):
        resolved = None
    if resolved is None:
        raise TypeError(f"dtype={dtype!r} is not a NumPy dtype; tolerances are defined for {valid}")
    try:
        return TOLERANCES[resolved.newbyteorder("=")]
    except KeyError:
        raise ValueError(f"no tolerance is defined for dtype {resolved}; valid: {valid}") from None


def _check_tolerance(name: str, value) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {describe_value(value)}")
    return float(value)


@dataclass(frozen=True)
class Difference:
    """Element-wise gap between an actual and an expected array."""

    name: str
    axes: tuple[str, ...]
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float
    mean_abs: float
    mismatched: int
    worst_index: tuple[int, ...]
    rtol: float
    atol: float
    first_divergent_step: int | None  # first index along "timestep" with a mismatch, if that axis exists

    @property
    def total(self) -> int:
        return int(np.prod(self.shape))

    @property
    def passed(self) -> bool:
        return self.mismatched == 0

    @property
    def tolerance(self) -> float:
        """The allowed gap at ``|expected| = 1`` (a scale for margins)."""
        return self.atol + self.rtol

    def where(self) -> str:
        return ", ".join(f"{axis} {index}" for axis, index in zip(self.axes, self.worst_index))

    def describe(self) -> str:
        return (
            f"{self.name}: {self.mismatched} of {self.total} elements differ; largest difference "
            f"{self.max_abs:.3g} at ({self.where()}); tolerance rtol={self.rtol:g}, atol={self.atol:g}"
        )


def difference(name: str, actual, expected, axes: tuple[str, ...], rtol: float, atol: float) -> Difference:
    """``actual`` may hold NaN or inf (the worst mismatch, reported as such) and any float width;
    ``expected`` is the reference: finite float32/float64. Both non-empty, of one shape."""
    actual = check_float_array(f"actual_{name}", actual, finite=False, any_float=True).astype(np.float64)
    expected = check_float_array(f"expected_{name}", expected).astype(np.float64)
    if actual.shape != expected.shape:
        raise ValueError(f"{name}: actual shape {actual.shape} differs from expected shape {expected.shape}")
    if actual.size == 0:
        raise ValueError(f"{name} is empty (shape {actual.shape}): there is nothing to compare, so no verdict")
    if isinstance(axes, str) or not all(isinstance(axis, str) for axis in axes):
        raise TypeError(f"{name}: axes must be a tuple of axis names, got {axes!r}")
    if len(axes) != actual.ndim:
        raise ValueError(f"{name}: {len(axes)} axis names for a {actual.ndim}-d array")
    rtol, atol = _check_tolerance("rtol", rtol), _check_tolerance("atol", atol)
    gap = np.abs(actual - expected)
    gap = np.where(np.isnan(gap), np.inf, gap)  # a NaN output is the worst possible mismatch
    bad = gap > atol + rtol * np.abs(expected)
    worst = np.unravel_index(int(np.argmax(gap)), gap.shape) if gap.size else ()
    first = None
    if "timestep" in axes and bad.any():
        time_axis = axes.index("timestep")
        steps = np.nonzero(bad.any(axis=tuple(i for i in range(bad.ndim) if i != time_axis)))[0]
        first = int(steps[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(expected != 0, gap / np.abs(expected), np.where(gap == 0, 0.0, np.inf))
    return Difference(
        name=name,
        axes=tuple(axes),
        shape=actual.shape,
        max_abs=float(gap.max()) if gap.size else 0.0,
        max_rel=float(rel.max()) if rel.size else 0.0,
        mean_abs=float(gap.mean()) if gap.size else 0.0,
        mismatched=int(bad.sum()),
        worst_index=tuple(int(i) for i in worst),
        rtol=rtol,
        atol=atol,
        first_divergent_step=first,
    )


OUTPUT_AXES = ("batch", "timestep", "unit")
STATE_AXES = ("layer*direction", "batch", "unit")


@dataclass(frozen=True)
class ForwardDifference:
    """Gap between two forward passes: the output sequence (if any) and the final states."""

    outputs: Difference | None
    h_last: Difference

    @property
    def parts(self) -> tuple[Difference, ...]:
        return tuple(d for d in (self.outputs, self.h_last) if d is not None)

    @property
    def max_abs(self) -> float:
        return max(d.max_abs for d in self.parts)

    @property
    def passed(self) -> bool:
        return all(d.passed for d in self.parts)

    @property
    def tolerance(self) -> float:
        return self.h_last.tolerance

    def describe(self) -> str:
        return "; ".join(d.describe() for d in self.parts)


def compare_forward(actual_outputs, actual_h_last, expected_outputs, expected_h_last, dtype) -> ForwardDifference:
    """Compare a forward pass with the reference at ``dtype``'s tolerance.

    ``*_outputs`` are ``(batch, time, features)`` or None (a layer that returns no sequence);
    ``*_h_last`` are ``(layers * directions, batch, hidden)``.
    """
    rtol, atol = tolerance_for(dtype)
    outputs = None
    if actual_outputs is not None and expected_outputs is None:
        raise TypeError("actual_outputs were given but expected_outputs is None; pass the reference's outputs too")
    if actual_outputs is not None:
        outputs = difference("outputs", actual_outputs, expected_outputs, OUTPUT_AXES, rtol, atol)
    return ForwardDifference(outputs, difference("h_last", actual_h_last, expected_h_last, STATE_AXES, rtol, atol))
