"""Precision as its own verdict: which precision a GRU really computed at, separately from its formula.

A framework asked for float64 may compute in float32 (JAX without ``jax_enable_x64``, a kernel
with no float64 path), a GPU may use TF32 for float32 matmuls. Its outputs then miss every
convention at the requested tolerance although the formula is right. Identification therefore
asks two questions: which formula fits, and at which precision of this ladder, finest first.

``PRECISION_LADDER`` lists ``(name, (rtol, atol))``. A result computed at precision P is compared
with the float64 reference at P's tolerance (``reference.compare.TOLERANCES`` for float32 and
float64, each number justified there), and a formula is accepted at P only if every other
convention still misses by ``SEPARATION_FACTOR`` times that tolerance, the same rule as at full
precision: a coarser tolerance never buys an ambiguous answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .compare import TOLERANCES

PRECISION_LADDER: tuple[tuple[str, tuple[float, float]], ...] = tuple(
    (dtype.name, TOLERANCES[dtype]) for dtype in sorted(TOLERANCES, key=lambda d: np.finfo(d).eps)
)


def coarser_precisions(requested) -> list[tuple[str, tuple[float, float]]]:
    """The ladder's rungs coarser than ``requested``, finest first."""
    names = [name for name, _ in PRECISION_LADDER]
    requested = np.dtype(requested).name
    if requested not in names:
        raise ValueError(f"no precision rung for dtype {requested}; valid: {', '.join(names)}")
    return list(PRECISION_LADDER[names.index(requested) + 1 :])


@dataclass(frozen=True)
class PrecisionVerdict:
    """What was asked for, what the numbers show was computed, and the evidence."""

    requested: str
    computed: str
    error: float  # the matched formula's largest absolute error against the float64 reference
    requested_tolerance: float  # rtol + atol of the requested dtype: the error expected at full precision

    @property
    def lower_than_requested(self) -> bool:
        return self.computed != self.requested

    def describe(self) -> str:
        if not self.lower_than_requested:
            return f"computed at the requested precision ({self.requested})"
        return (f"computed at lower precision than requested: {self.computed} where {self.requested} was asked "
                f"(max abs error {self.error:.2g}, where {self.requested} keeps it below {self.requested_tolerance:.0g})")

    def to_json(self) -> dict:
        return {"requested": self.requested, "computed": self.computed, "error": self.error,
                "lower_than_requested": self.lower_than_requested}
