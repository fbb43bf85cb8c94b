"""How close is close enough, and where two results differ.

``TOLERANCES`` is the one table of ``{dtype: (rtol, atol)}`` used by the tests, the
``check`` command and the reports. An element passes when
``|actual - expected| <= atol + rtol * |expected|`` (the rule of ``numpy.isclose`` and
``torch.testing.assert_close``). The expected side is always the float64 reference run on
the same (already rounded) parameters and inputs, so the gap measures only the framework's
own rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
    dtype = np.dtype(dtype)
    try:
        return TOLERANCES[dtype]
    except KeyError:
        valid = ", ".join(str(d) for d in TOLERANCES)
        raise ValueError(f"no tolerance is defined for dtype {dtype}; valid: {valid}") from None


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
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        raise ValueError(f"{name}: actual shape {actual.shape} differs from expected shape {expected.shape}")
    if len(axes) != actual.ndim:
        raise ValueError(f"{name}: {len(axes)} axis names for a {actual.ndim}-d array")
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
    if actual_outputs is not None:
        outputs = difference("outputs", actual_outputs, expected_outputs, OUTPUT_AXES, rtol, atol)
    return ForwardDifference(outputs, difference("h_last", actual_h_last, expected_h_last, STATE_AXES, rtol, atol))
