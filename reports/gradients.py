"""Framework gradients against the reference backward pass (``reference.backward.gru_stack_grad``).

The loss is ``sum(outputs * G) + sum(h_last * K)`` with ``G``, ``K`` fixed seeded normal arrays (the
probe's outputs and final states carry distinct weights, so every path back is exercised). The
framework differentiates its own layer (``Adapter.gradients``); the reference differentiates the
convention the framework claims (or, given, the one it was measured to compute) on the same probe.
Gradients are compared per parameter group: ``W`` (input weights), ``U`` (recurrent weights), ``b``
(input biases), ``c`` (recurrent biases), ``x`` and ``h0``; a bias the class lacks
(``config.bias_fields``) is excluded and named.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from adapters import Adapter, LayerConfig
from adapters.base import GradientsUnavailable
from reference import Convention, tolerance_for
from reference.backward import StackGradients, gru_stack_grad
from reference.compare import difference

from .matrix import DEFAULT_CASE, Case, make_probe

# Gradients are sums over batch x time of products carried back through every step, so they round more
# than a forward pass: each weight-gradient element adds batch * time (21 in the default case) terms, and
# the backward recurrence compounds rounding as the forward one does. Gradients are also not of order 1
# as states are, and a sum's absolute rounding grows with its magnitude, so atol is scaled by the group's
# largest |expected| gradient. On every torch and Keras (TensorFlow) configuration, seed 0, CPU, the
# largest gap relative to that scale was 5.1e-7 (float32) and 7.7e-16 (float64): the forward tolerance
# (1e-5 / 1e-12) x GRADIENT_TOLERANCE_FACTOR leaves ~200x / ~10^4x room for other seeds, shapes and
# kernels (GPU), while a missing path (a dropped r-path or bias gradient) moves gradients by O(0.1).
GRADIENT_TOLERANCE_FACTOR = 10.0

GROUPS: dict[str, tuple[str, ...]] = {
    "W": ("W_z", "W_r", "W_h"),
    "U": ("U_z", "U_r", "U_h"),
    "b": ("b_z", "b_r", "b_h"),
    "c": ("c_z", "c_r", "c_h"),
    "x": ("x",),
    "h0": ("h0",),
}
GRADIENT_SEED_STREAM = 2  # make_probe draws x and h0 from stream 1 of the case's seed


def gradient_tolerance(dtype, scale: float = 1.0) -> tuple[float, float]:
    """``(rtol, atol)`` for a gradient group whose largest expected magnitude is ``scale``."""
    rtol, atol = tolerance_for(dtype)
    return GRADIENT_TOLERANCE_FACTOR * rtol, GRADIENT_TOLERANCE_FACTOR * atol * max(1.0, scale)


@dataclass(frozen=True)
class GroupDifference:
    """One parameter group: the worst element over every (layer, direction) and field of the group."""

    group: str
    max_abs: float
    max_rel: float
    scale: float  # largest |expected| in the group
    rtol: float
    atol: float
    mismatched: int
    total: int
    worst: str  # e.g. "layer 0 direction 1 W_r[2, 3]"

    @property
    def passed(self) -> bool:
        return self.mismatched == 0

    def to_json(self) -> dict:
        return {"max_abs": self.max_abs, "max_rel": self.max_rel, "scale": self.scale, "rtol": self.rtol,
                "atol": self.atol, "mismatched": self.mismatched, "total": self.total, "worst": self.worst,
                "passed": self.passed}


@dataclass
class GradientResult:
    framework: str
    config: LayerConfig
    dtype: np.dtype
    convention: Convention
    case: Case
    groups: dict[str, GroupDifference] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)  # field or group -> why it is not compared
    unavailable: str | None = None  # GradientsUnavailable's reason
    error: str | None = None  # building, running or differentiating failed

    @property
    def passed(self) -> bool | None:
        """True/False when gradients were compared; None when there were none to compare."""
        if self.unavailable or self.error or not self.groups:
            return None
        return all(g.passed for g in self.groups.values())

    @property
    def failing(self) -> list[str]:
        return [name for name, g in self.groups.items() if not g.passed]

    @property
    def verdict(self) -> str:
        if self.unavailable:
            return f"no gradients: {self.unavailable}"
        if self.error:
            return f"gradient error: {self.error}"
        if self.passed:
            return "gradients match"
        return "gradients differ: " + ", ".join(f"{n} ({self.groups[n].worst})" for n in self.failing)

    def to_json(self) -> dict:
        return {
            "framework": self.framework,
            "config": self.config.name,
            "dtype": self.dtype.name,
            "convention": self.convention.id,
            "seed": self.case.seed,
            "passed": self.passed,
            "verdict": self.verdict,
            "failing": self.failing,
            "groups": {name: g.to_json() for name, g in self.groups.items()},
            "excluded": self.excluded,
            "unavailable": self.unavailable,
            "error": self.error,
            "tolerance_factor": GRADIENT_TOLERANCE_FACTOR,
        }


def loss_weights(case: Case, config: LayerConfig, features: int, dtype) -> tuple[np.ndarray | None, np.ndarray]:
    """``(G, K)``: the loss's weights on outputs ``(batch, time, features)`` (None without a sequence)
    and on final states ``(layers * directions, batch, hidden)``, seeded by the case."""
    rng = np.random.default_rng([case.seed, GRADIENT_SEED_STREAM])
    G = rng.normal(size=(case.batch, case.time, features)).astype(dtype)
    K = rng.normal(size=(config.num_layers * config.directions, case.batch, case.hidden_size)).astype(dtype)
    return (G if config.returns_sequences else None), K


def _group_difference(group: str, pairs: list[tuple[str, np.ndarray, np.ndarray]], dtype) -> GroupDifference:
    scale = max(float(np.abs(expected).max()) for _, _, expected in pairs)
    rtol, atol = gradient_tolerance(dtype, scale)
    max_abs, max_rel, mismatched, total, worst = -1.0, 0.0, 0, 0, ""
    for where, actual, expected in pairs:
        actual, expected = np.atleast_1d(actual), np.atleast_1d(expected)
        diff = difference(group, actual, expected, tuple(f"axis{i}" for i in range(actual.ndim)), rtol, atol)
        mismatched += diff.mismatched
        total += diff.total
        max_rel = max(max_rel, diff.max_rel if np.isfinite(diff.max_rel) else float("inf"))
        if diff.max_abs > max_abs:
            max_abs, worst = diff.max_abs, f"{where}[{', '.join(map(str, diff.worst_index))}]"
    return GroupDifference(group, max_abs, max_rel, scale, rtol, atol, mismatched, total, worst)


def compare_stack_gradients(observed: StackGradients, expected: StackGradients, config: LayerConfig,
                            dtype) -> tuple[dict[str, GroupDifference], dict[str, str]]:
    """Per-group differences, and what was excluded (biases ``config`` does not hold)."""
    present = set(config.bias_fields)
    excluded: dict[str, str] = {}
    groups = {}
    for group, names in GROUPS.items():
        pairs = []
        for name in names:
            if name in ("x", "h0"):
                pairs.append((name, getattr(observed, name), getattr(expected, name)))
                continue
            if name[0] in "bc" and name not in present:
                excluded[name] = f"{config.label} holds no {name}"
                continue
            for index, (layer_obs, layer_exp) in enumerate(zip(observed.layers, expected.layers)):
                for direction, (p_obs, p_exp) in enumerate(zip(layer_obs, layer_exp)):
                    where = f"layer {index} direction {direction} {name}" if len(expected.layers) > 1 or \
                        len(layer_exp) > 1 else name
                    pairs.append((where, getattr(p_obs, name), getattr(p_exp, name)))
        if pairs:
            groups[group] = _group_difference(group, pairs, dtype)
        else:
            excluded[group] = f"{config.label} holds none of {', '.join(names)}"
    return groups, excluded


def compare_gradients(adapter: Adapter, config: LayerConfig, dtype, case: Case = DEFAULT_CASE,
                      convention: Convention | None = None) -> GradientResult:
    """The framework's gradients of the probe's loss against the reference's, under ``convention``
    (default: the one ``config`` claims; pass the measured match to check the formula it computes)."""
    dtype = np.dtype(dtype)
    convention = convention or config.claimed
    result = GradientResult(adapter.name, config, dtype, convention, case)
    probe = make_probe(case, config, dtype)
    features = case.hidden_size * (config.directions if config.merge == "concat" else 1)
    G, K = loss_weights(case, config, features, dtype)
    try:
        expected = gru_stack_grad(
            probe.x, probe.layers, convention, h0=probe.h0, mask=probe.mask, merge=config.merge,
            masked_output=config.masked_output, reverse=config.reverse, d_outputs=G, d_h_last=K,
            dtype=np.float64, **dict(config.reference_options),
        )
    except (TypeError, ValueError) as error:  # e.g. an option the reference backward does not model
        result.unavailable = f"the reference backward cannot model {config.label}: {error}"
        return result
    try:
        layer = adapter.build(config, probe.layers, dtype)
        observed = adapter.gradients(layer, probe.x, probe.h0, probe.mask, G, K)
    except GradientsUnavailable as unavailable:
        result.unavailable = unavailable.reason
        return result
    except Exception as error:  # one broken configuration must not hide the others
        result.error = f"{type(error).__name__}: {error}"
        return result
    result.groups, result.excluded = compare_stack_gradients(observed, expected, config, dtype)
    return result


def attach_gradients(rows, progress=None) -> None:
    """Compare the gradients of every row that ran (``ConfigResult.gradients``), under the convention it was
    measured to compute (the documented one when none matched): ``check``, ``report`` and ``baseline`` with
    ``--gradients`` all call this."""
    import adapters

    from .matrix import ConfigResult

    for row in rows:
        if not isinstance(row, ConfigResult) or row.error:
            continue
        if progress:
            progress(f"gradients of {row.config.label} [{row.dtype.name}]")
        row.gradients = compare_gradients(adapters.get(row.framework), row.config, row.dtype, row.case,
                                          convention=row.matched or row.claimed)
