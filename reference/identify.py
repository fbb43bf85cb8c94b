"""Which formula does a black-box GRU compute, and which porting mistake explains it when none fits?

``identify(forward, input_size=..., hidden_size=...)`` calls ``forward(params, x, h0)`` (and, when
``forward`` accepts a ``mask`` keyword, once more with right-padded lengths) on a probe designed to
separate the hypotheses, then compares the observed output with every convention and, if none
fits, with every catalogued mistake (``reference.mistakes``) and every pair of them.

Probe design (``design_probe``), each choice for a reason:

- non-zero initial state: with ``h0 = 0`` the first step cannot tell the reset placements apart
  and the blends differ only through ``z``;
- non-zero recurrent biases, distinct per gate and unit: otherwise dropping, folding or swapping
  them changes nothing, and reset-before equals reset-after at ``h = 0``;
- dense random weights, distinct per gate and unit: constant or symmetric weights make gate
  permutations and transposes invisible;
- weights scaled by ``1/sqrt(fan_in)`` so pre-activations have standard deviation ~0.8: out of
  sigmoid/tanh saturation (saturated gates are 0 or 1 in every convention), yet wide enough that
  the hard sigmoids' clip and slope show;
- six timesteps and four sequences: reversals, state carry and errors compounding over time show;
- a mask with lengths 6, 3, 1, 6: padding after a long, a short and a one-step sequence.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field, replace
from itertools import combinations
from typing import Callable

import numpy as np

from .compare import SEPARATION_FACTOR, tolerance_for
from .conventions import Convention, as_convention
from .forward import gru_stack
from .mistakes import CATALOGUE, Mistake, Scenario, convention_mistakes
from .equations import sigmoid
from .params import GRUParams
from .precision import (MODELLED_TOLERANCES, PrecisionVerdict, coarser_precisions, explaining_precision, model_error,
                        probe_tolerance, separation_for)


@dataclass(frozen=True)
class Probe:
    params: GRUParams
    x: np.ndarray
    h0: np.ndarray
    mask: np.ndarray | None = None


def design_probe(input_size: int, hidden_size: int, seed: int = 0, dtype=np.float64,
                 batch: int = 4, time: int = 6) -> Probe:
    rng = np.random.default_rng([seed, 7])
    arrays = {}
    for name, array in GRUParams.zeros(input_size, hidden_size).arrays():
        fan_in = {"W": input_size, "U": hidden_size}.get(name[0], 1)
        spread = 0.8 / np.sqrt(fan_in) if name[0] in "WU" else 0.5
        arrays[name] = rng.normal(0.0, spread, size=array.shape).astype(dtype)
    params = GRUParams(**arrays)
    x = rng.normal(size=(batch, time, input_size)).astype(dtype)
    h0 = rng.uniform(-0.8, 0.8, size=(batch, hidden_size)).astype(dtype)
    lengths = np.array([time, max(1, time // 2), 1, time] * batch)[:batch]
    mask = np.arange(time)[None, :] < lengths[:, None]
    return Probe(params, x, h0, mask)


@dataclass(frozen=True)
class Diagnosis:
    """A hypothesis that explains the observed output: a convention plus named mistakes."""

    convention: Convention
    mistakes: tuple[Mistake, ...]
    error: float

    @property
    def name(self) -> str:
        return " + ".join(m.name for m in self.mistakes)

    def describe(self) -> str:
        lines = [f"{self.name} (under {self.convention.id}; max abs error {self.error:.3g})"]
        for mistake in self.mistakes:
            lines.append(f"    {mistake.name}: {mistake.description}")
            lines.append(f"      fix: {mistake.fix}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "convention": self.convention.id,
            "mistakes": [m.name for m in self.mistakes],
            "fixes": [m.fix for m in self.mistakes],
            "error": self.error,
        }


@dataclass
class Identification:
    """Two separate answers: which formula (``matched``) and at which precision (``precision``).

    ``tolerance`` and ``margin`` are those of the precision the match was made at: a float64 request
    computed in float32 is matched at float32's tolerance and says so in ``precision``.
    """

    matched: Convention | None
    errors: dict[Convention, float]
    tolerance: float
    margin: float  # runner-up convention's error / tolerance, or best error / tolerance when nothing fits
    ambiguous: bool
    candidates: list[Convention]  # conventions within tolerance
    diagnosis: list[Diagnosis] = field(default_factory=list)
    calls: int = 0
    precision: PrecisionVerdict | None = None  # None when nothing fits at any precision

    @property
    def explained(self) -> bool:
        return self.matched is not None or bool(self.diagnosis)

    def describe(self) -> str:
        lines = []
        if self.matched:
            lines.append(f"matched: {self.matched.id}")
            lines += [f"    {eq}" for eq in self.matched.equations]
        elif self.ambiguous:
            lines.append(f"ambiguous: {', '.join(c.id for c in self.candidates)} all fit; the probe cannot tell them apart")
        else:
            lines.append("matched: none of the four conventions")
        if self.precision is not None:
            lines.append(f"precision: {self.precision.describe()}")
        if self.candidates:
            needed = separation_for(self.precision.computed) if self.precision else SEPARATION_FACTOR
            lines.append(f"margin: the runner-up misses by {self.margin:.3g} x tolerance ({self.tolerance:g}); "
                         f"{needed:g} x is needed to decide")
        else:
            lines.append(f"the nearest convention misses by {self.margin:.3g} x tolerance ({self.tolerance:g})")
        lines += [f"  {c.id}: max abs error {e:.3g}" for c, e in sorted(self.errors.items(), key=lambda i: i[1])]
        if self.diagnosis:
            lines.append("diagnosis (most likely first):")
            lines += [f"  {i + 1}. {d.describe()}" for i, d in enumerate(self.diagnosis)]
        elif not self.matched and not self.ambiguous:
            lines.append("no catalogued mistake, nor pair of them, explains the output")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "matched": self.matched.id if self.matched else None,
            "errors": {c.id: e for c, e in self.errors.items()},
            "tolerance": self.tolerance,
            "margin": self.margin,
            "ambiguous": self.ambiguous,
            "candidates": [c.id for c in self.candidates],
            "diagnosis": [d.to_json() for d in self.diagnosis],
            "calls": self.calls,
            "precision": self.precision.to_json() if self.precision else None,
        }


# --------------------------------------------------------------- evaluating hypotheses


@dataclass(frozen=True)
class Structure:
    """How the observed GRU is assembled: what ``gru_stack`` needs beyond parameters and convention."""

    merge: str = "concat"
    masked_output: str = "carry"
    reverse: bool = False
    # Extra keyword arguments of gru_stack the implementation needs modelled (activations, clip).
    reference_options: tuple = ()


@dataclass(frozen=True)
class Observation:
    """One call's inputs and what the implementation returned (outputs may be None)."""

    layers: tuple
    x: np.ndarray
    h0: np.ndarray | None  # (slots, batch, hidden)
    mask: np.ndarray | None
    outputs: np.ndarray | None
    h_last: np.ndarray


def _expected(scenario: Scenario, structure: Structure):
    options = dict(scenario.reference_options)
    if scenario.gate_activation is not sigmoid:
        options["gate_activation"] = scenario.gate_activation
    outputs, h_last = gru_stack(
        scenario.x, [list(layer) for layer in scenario.layers], scenario.convention, h0=scenario.h0,
        mask=scenario.mask, merge=structure.merge, masked_output=structure.masked_output,
        reverse=structure.reverse != scenario.reverse if len(scenario.layers[0]) == 1 else False,
        **options,
    )
    if scenario.outputs_reversed:
        outputs = outputs[:, ::-1]
    return outputs, h_last


def _gap(observation: Observation, expected, tolerance_pair) -> tuple[float, bool]:
    """Largest scaled gap; compares outputs only where the mask is True (padding is framework-specific)."""
    rtol, atol = tolerance_pair
    gaps = []
    passed = True
    pairs = [(observation.h_last, expected[1], None)]
    if observation.outputs is not None:
        pairs.append((observation.outputs, expected[0], observation.mask))
    for actual, wanted, mask in pairs:
        actual = np.asarray(actual, np.float64)
        if actual.shape != wanted.shape:
            return np.inf, False
        gap = np.abs(actual - wanted)
        gap = np.where(np.isnan(gap), np.inf, gap)
        if mask is not None:
            gap = np.where(mask[:, :, None], gap, 0.0)
        passed &= bool(np.all(gap <= atol + rtol * np.abs(wanted)))
        gaps.append(float(gap.max()))
    return max(gaps), passed


def _scenario(observation: Observation, convention: Convention, structure: Structure) -> Scenario:
    return Scenario(observation.layers, convention, observation.x, observation.h0, observation.mask,
                    reference_options=structure.reference_options)


def _hypothesis(observations, structure, convention, mistakes, memo: dict | None) -> list | None:
    """What the reference gives for each observation under ``convention`` with ``mistakes`` applied, or
    None when a mistake applies to none of them. ``memo`` keeps it for the next precision rung, which
    judges the same hypotheses at a coarser tolerance."""
    key = (convention, tuple(m.name for m in mistakes))
    if memo is not None and key in memo:
        return memo[key]
    expected, applied = [], set()
    for observation in observations:
        scenario = _scenario(observation, convention, structure)
        for mistake in mistakes:
            # A mistake may show in only some calls (an ignored mask needs a masked call).
            if mistake.applies(scenario):
                scenario = mistake.apply(scenario)
                applied.add(mistake.name)
        expected.append(_expected(scenario, structure))
    result = expected if len(applied) == len(mistakes) else None
    if memo is not None:
        memo[key] = result
    return result


def _evaluate(observations, structure, convention, mistakes, tolerance_pair, memo=None) -> tuple[float, bool]:
    expected = _hypothesis(observations, structure, convention, mistakes, memo)
    if expected is None:
        return np.inf, False
    worst, all_passed = 0.0, True
    for observation, wanted in zip(observations, expected):
        error, passed = _gap(observation, wanted, tolerance_pair)
        worst, all_passed = max(worst, error), all_passed and passed
    return worst, all_passed


def _judge(observations, structure, tolerance_pair, memo=None) -> tuple[dict[Convention, float], list[Convention]]:
    errors, passing = {}, []
    for convention in Convention.all():
        error, passed = _evaluate(observations, structure, convention, (), tolerance_pair, memo)
        errors[convention] = error
        if passed:
            passing.append(convention)
    return errors, passing


def _margin(errors: dict[Convention, float], passing: list[Convention], tolerance: float) -> float:
    ranked = sorted(errors, key=errors.get)
    return (errors[ranked[1]] if passing else errors[ranked[0]]) / tolerance


def identify_observations(
    observations: list[Observation],
    dtype,
    structure: Structure = Structure(),
    expected: Convention | str | None = None,
    max_mistakes: int = 2,
) -> Identification:
    """Judge recorded observations against the conventions, then the mistake catalogue.

    The formula is judged at the requested dtype's tolerance first; if nothing fits there, at each
    coarser precision of ``reference.precision.PRECISION_LADDER`` (a float64 request computed in
    float32), accepting a formula only when it is unambiguous at that precision too.
    """
    requested = np.dtype(dtype)
    tolerance_pair = tolerance_for(requested)
    requested_tolerance = sum(tolerance_pair)
    computed = requested.name
    tolerance = requested_tolerance
    memo: dict = {}  # each hypothesis runs once, however many precision rungs judge it
    errors, passing = _judge(observations, structure, tolerance_pair, memo)
    if not passing:
        # Coarser precisions, finest first: the NumPy dtypes, then the modelled formats (TF32, float16,
        # bfloat16, int8), each with its own separation rule (reference.precision.separation_for).
        for name, coarse_pair in coarser_precisions(requested, modelled=True):
            _, coarse_passing = _judge(observations, structure, coarse_pair, memo)
            if len(coarse_passing) != 1:
                continue
            coarse_tolerance = sum(coarse_pair)
            if _margin(errors, coarse_passing, coarse_tolerance) < separation_for(name):
                coarse_tolerance = _probe_tolerance(observations[0], structure, coarse_passing[0],
                                                    errors[coarse_passing[0]], name, coarse_tolerance)
            if _margin(errors, coarse_passing, coarse_tolerance) >= separation_for(name):
                passing, tolerance_pair, computed = coarse_passing, coarse_pair, name
                tolerance = coarse_tolerance
                break
    margin = _margin(errors, passing, tolerance)
    ambiguous = len(passing) > 1 or (len(passing) == 1 and margin < separation_for(computed))
    matched = passing[0] if len(passing) == 1 and not ambiguous else None
    result = Identification(matched, errors, tolerance, margin, ambiguous, passing)
    if passing:
        best = min(errors[c] for c in passing)
        model = None
        if matched and computed in MODELLED_TOLERANCES:
            computed, model = _explaining_precision(observations[0], structure, matched, best, computed)
        result.precision = PrecisionVerdict(requested.name, computed, best, requested_tolerance, model)
    expected = as_convention(expected) if expected is not None else None
    if matched and expected and matched != expected:
        result.diagnosis = [Diagnosis(expected, convention_mistakes(expected, matched), errors[matched])]
    if not passing:
        # A wrong port may also run at lower precision: look for the mistake at each rung, finest first.
        for name, pair in [(requested.name, tolerance_pair), *coarser_precisions(requested)]:
            result.diagnosis = _diagnose(observations, structure, pair, expected, max_mistakes, memo)
            if result.diagnosis:
                best = result.diagnosis[0].error
                result.precision = PrecisionVerdict(requested.name, name, best, requested_tolerance)
                break
    return result


def _probe_tolerance(observation: Observation, structure: Structure, convention: Convention, error: float,
                     rung: str, tolerance: float) -> float:
    """Rung ``rung``'s tolerance scaled to the rounding its model gives on this observation
    (``reference.precision.probe_tolerance``); ``tolerance`` unchanged where the models cannot run it."""
    if structure.reference_options or rung not in MODELLED_TOLERANCES:
        return tolerance
    rounding = model_error(observation.x, [list(layer) for layer in observation.layers], convention, rung,
                           h0=observation.h0, mask=observation.mask, merge=structure.merge,
                           masked_output=structure.masked_output, reverse=structure.reverse)
    return probe_tolerance(rung, rounding, error)


def _explaining_precision(observation: Observation, structure: Structure, convention: Convention, error: float,
                          rung: str) -> tuple[str, float | None]:
    """Which modelled precision explains ``error``, judged by running each precision model of the reference
    on this very observation: a tolerance alone cannot tell (an int8 error also fits bfloat16's tolerance).
    Keeps ``rung`` (the first whose tolerance fits) when the structure needs options the models lack."""
    if structure.reference_options:
        return rung, None
    layers = [list(layer) for layer in observation.layers]
    models = {
        name: model_error(observation.x, layers, convention, name, h0=observation.h0, mask=observation.mask,
                          merge=structure.merge, masked_output=structure.masked_output, reverse=structure.reverse)
        for name in MODELLED_TOLERANCES
    }
    name = explaining_precision(error, models) or rung
    return name, models.get(name)


def _diagnose(observations, structure, tolerance_pair, expected, max_mistakes, memo=None) -> list[Diagnosis]:
    conventions = Convention.all()
    for size in range(1, max_mistakes + 1):
        found = []
        for mistakes in combinations(CATALOGUE, size):
            blocks = [m.permuted_block for m in mistakes if m.permuted_block]
            if len(set(blocks)) < len(blocks):
                continue  # two permutations of the same block compose into a single permutation
            for convention in conventions:
                error, passed = _evaluate(observations, structure, convention, mistakes, tolerance_pair, memo)
                if passed:
                    named = mistakes
                    if expected is not None:
                        named = convention_mistakes(expected, convention) + mistakes
                    found.append(Diagnosis(convention, named, error))
        if found:
            # Fewest named changes first (a convention the user expected costs a flip), then the smallest error.
            return sorted(found, key=lambda d: (len(d.mistakes), d.error))
    return []


# --------------------------------------------------------------- the public entry point

Forward = Callable[..., tuple]


def _accepts_mask(forward: Forward) -> bool:
    try:
        return "mask" in inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return False


def _check_size(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _describe_value(value) -> str:
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is not None:
        return f"{type(value).__module__}.{type(value).__name__} of shape {tuple(shape)} and dtype {dtype}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of length {len(value)}"
    return f"{type(value).__name__} {value!r:.60}"


def _as_result_array(name: str, value, expected_shape: tuple[int, ...]) -> np.ndarray:
    """``value`` (NumPy, a torch/TF/JAX tensor, or nested lists) as a finite float64 array of ``expected_shape``."""
    what = _describe_value(value)
    if hasattr(value, "detach"):  # a torch tensor, possibly requiring grad or on a GPU
        value = value.detach().cpu()
        if str(getattr(value, "dtype", "")) in ("torch.bfloat16", "torch.float16"):
            value = value.float()
    elif hasattr(value, "numpy") and not isinstance(value, np.ndarray):  # a TF eager tensor
        value = value.numpy()
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as error:  # ragged lists
        raise ValueError(f"forward returned {name} as {what}, which is not an array ({error}); "
                         f"expected a float array of shape {expected_shape}") from None
    if not (np.issubdtype(array.dtype, np.floating) or array.dtype.name == "bfloat16"):
        raise TypeError(f"forward returned {name} as {what} (dtype {array.dtype}); "
                        f"expected a float array of shape {expected_shape}")
    if array.shape != expected_shape:
        raise ValueError(f"forward returned {name} of shape {array.shape} ({what}); expected shape {expected_shape}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        raise ValueError(f"forward returned a non-finite {name} ({array[bad]} at index {bad}); "
                         f"a GRU's outputs are bounded, so the implementation is broken or overflowed")
    return array


def _unpack_result(result, batch: int, time: int, hidden: int) -> tuple[np.ndarray | None, np.ndarray]:
    expected = "a pair (outputs (batch, time, hidden) or None, h_last (batch, hidden))"
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise TypeError(f"forward returned {_describe_value(result)}; expected {expected}")
    outputs, h_last = result
    h_last = _as_result_array("h_last", h_last, (batch, hidden))
    if outputs is not None:
        outputs = _as_result_array("outputs", outputs, (batch, time, hidden))
    return outputs, h_last


def identify(
    forward: Forward,
    *,
    input_size: int,
    hidden_size: int,
    seed: int = 0,
    dtype=np.float64,
    expected: Convention | str | None = None,
    probe: Probe | None = None,
    max_mistakes: int = 2,
) -> Identification:
    """Identify the GRU formula that ``forward(params, x, h0) -> (outputs, h_last)`` computes.

    ``outputs`` is ``(batch, time, hidden)`` (or None) and ``h_last`` ``(batch, hidden)``, as NumPy
    arrays, torch/TF tensors (detached here) or nested lists of floats. If ``forward`` takes a
    ``mask`` keyword it is also called with right-padded lengths, which lets "mask ignored" be
    diagnosed. ``expected`` names the convention the implementation should have: a match with
    another convention is then reported as the flip(s) that explain it. ``probe`` replaces the
    designed probe (tests use it to show that a degenerate one comes out ambiguous).

    The contract is enforced: ``forward`` gets fresh copies of the probe on every call (writing into
    them cannot change the verdict), and what it returns is checked (a pair, finite floats, the
    right shapes); anything else is an error that names what came back and what was expected.
    """
    if not callable(forward):
        raise TypeError(f"forward must be callable as forward(params, x, h0) -> (outputs, h_last), got {_describe_value(forward)}")
    input_size = _check_size("input_size", input_size)
    hidden_size = _check_size("hidden_size", hidden_size)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    if isinstance(max_mistakes, bool) or not isinstance(max_mistakes, (int, np.integer)) or not 0 <= max_mistakes <= 2:
        raise ValueError(f"max_mistakes must be 0, 1 or 2, got {max_mistakes!r}")
    try:
        dtype = np.dtype(dtype)
        tolerance_for(dtype)
    except (TypeError, ValueError):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}") from None
    expected = as_convention(expected) if expected is not None else None
    if probe is not None and not isinstance(probe, Probe):
        raise TypeError(f"probe must be a reference.identify.Probe (see design_probe), got {_describe_value(probe)}")
    probe = probe or design_probe(input_size, hidden_size, seed, dtype)
    if probe.params.input_size != input_size or probe.params.hidden_size != hidden_size:
        raise ValueError(
            f"the probe is for input_size={probe.params.input_size}, hidden_size={probe.params.hidden_size}; "
            f"identify was asked for {input_size}, {hidden_size}"
        )
    calls = [None]
    if probe.mask is not None and _accepts_mask(forward) and not probe.mask.all():
        calls.append(probe.mask)
    batch, time = probe.x.shape[:2]
    observations = []
    for mask in calls:
        kwargs = {} if mask is None else {"mask": mask.copy()}
        # Fresh copies each call: a forward that writes into its inputs cannot change what is compared.
        params = probe.params.replace()
        try:
            result = forward(params, probe.x.copy(), probe.h0.copy(), **kwargs)
        except Exception as error:
            raise RuntimeError(
                f"forward raised {type(error).__name__}: {error} when called with params (input_size={input_size}, "
                f"hidden_size={hidden_size}), x {probe.x.shape} {probe.x.dtype}, h0 {probe.h0.shape}"
                + (f", mask {mask.shape}" if mask is not None else "")
            ) from error
        outputs, h_last = _unpack_result(result, batch, time, hidden_size)
        observations.append(Observation(
            layers=((probe.params,),), x=probe.x, h0=probe.h0[None], mask=mask, outputs=outputs, h_last=h_last[None],
        ))
    result = identify_observations(observations, dtype, expected=expected, max_mistakes=max_mistakes)
    result.calls = len(calls)
    return result
