"""The comparison matrix: every adapter configuration x dtype against all four conventions.

A probe is data (``Case``): seeded dense parameters, unit-variance inputs, a non-zero initial
state, and for masked configurations right-padded lengths that differ per sequence.
"""

from __future__ import annotations

import os
import shlex
import threading
from dataclasses import dataclass, field

import numpy as np

import adapters
from adapters import Adapter, AdapterUnavailable, ForwardResult, LayerConfig
from adapters.isolation import LAST_OUTPUT
from reference import Convention, ForwardDifference, compare_forward, gru_stack, tolerance_for
from reference.identify import Identification, Observation, Structure, design_probe, identify_observations
from reference.params import layer_input_size
from reference.compare import SEPARATION_FACTOR

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True)
class Case:
    """Shapes and seed of one probe."""

    name: str = "default"
    batch: int = 3
    time: int = 7
    input_size: int = 4
    hidden_size: int = 5
    seed: int = 0


DEFAULT_CASE = Case()


@dataclass(frozen=True)
class StackProbe:
    """Inputs for one configuration: parameters for every (layer, direction), x, h0 and mask."""

    layers: list
    x: np.ndarray
    h0: np.ndarray
    mask: np.ndarray | None


def make_probe(case: Case, config: LayerConfig, dtype) -> StackProbe:
    """Parameters from ``reference.identify.design_probe`` for every (layer, direction) slot."""
    dtype = np.dtype(dtype)
    layers = []
    for index in range(config.num_layers):
        width = layer_input_size(case.input_size, case.hidden_size, index, config.directions, config.merge)
        layers.append([
            design_probe(width, case.hidden_size, seed=case.seed * 100 + index * 2 + direction, dtype=dtype).params
            for direction in range(config.directions)
        ])
    layers = config.holdable(layers)  # its absent biases are zero (a single-bias layout has no c_*)
    rng = np.random.default_rng([case.seed, 1])
    x = rng.normal(size=(case.batch, case.time, case.input_size)).astype(dtype)
    # A non-zero initial state: with h0 = 0 the first step cannot tell the blends apart.
    h0 = rng.uniform(-0.8, 0.8, size=(config.num_layers * config.directions, case.batch, case.hidden_size)).astype(dtype)
    mask = None
    if config.masked:
        # Full length, about half, and a single step: padding at the end, after one step and nowhere.
        lengths = np.maximum(1, np.array([case.time, (case.time + 1) // 2, 1] * case.batch)[: case.batch])
        mask = np.arange(case.time)[None, :] < lengths[:, None]
    return StackProbe(layers, x, h0, mask)


def reference_forward(config: LayerConfig, probe: StackProbe, convention: Convention) -> ForwardResult:
    """What ``config`` computes on ``probe`` if its framework follows ``convention`` (float64)."""
    outputs, h_last = gru_stack(
        probe.x, probe.layers, convention, h0=probe.h0, mask=probe.mask,
        merge=config.merge, masked_output=config.masked_output, reverse=config.reverse,
        **dict(config.reference_options),
    )
    return ForwardResult(outputs if config.returns_sequences else None, h_last)


def error_headline(error: str) -> str:
    """An error's first line, for a finding: the row keeps the whole message, such as the C++ call chain a
    crashed worker printed last (``adapters.isolation.WorkerCrashed``), which the banner need not repeat."""
    lines = error.strip().splitlines()
    return lines[0].removesuffix(LAST_OUTPUT) if lines else error


@dataclass
class ConfigResult:
    """One configuration at one dtype, measured against every convention."""

    framework: str
    config: LayerConfig
    dtype: np.dtype
    versions: dict[str, str]
    case: Case
    differences: dict[Convention, ForwardDifference] = field(default_factory=dict)
    identification: Identification | None = None
    observed: ForwardResult | None = None
    expected: dict[Convention, ForwardResult] = field(default_factory=dict)
    error: str | None = None  # the configuration failed to build or run
    gradients: object = None  # reports.gradients.GradientResult, when gradients were compared (--gradients)

    @property
    def claimed(self) -> Convention:
        return self.config.claimed

    @property
    def matched(self) -> Convention | None:
        """The convention ``reference.identify`` settles on, or None (none fits, or ambiguous)."""
        return self.identification.matched if self.identification else None

    def ranked(self) -> list[tuple[Convention, ForwardDifference]]:
        return sorted(self.differences.items(), key=lambda item: item[1].max_abs)

    @property
    def nearest_other(self) -> tuple[Convention, ForwardDifference] | None:
        """The closest convention other than the match (or than the best, when nothing matched)."""
        ranked = self.ranked()
        return ranked[1] if len(ranked) > 1 else None

    @property
    def separated(self) -> bool:
        """Every other convention misses by at least SEPARATION_FACTOR tolerances."""
        other = self.nearest_other
        return other is not None and other[1].max_abs >= SEPARATION_FACTOR * other[1].tolerance

    def explain(self, convention: Convention | None = None) -> str:
        """Why ``convention`` (default: the documented one) did or did not match, with the numbers."""
        convention = convention or self.claimed
        if self.error:
            return f"{self.config.label} [{self.dtype.name}] failed to run: {self.error}\nrerun: {self.rerun_command()}"
        diff = self.differences[convention]
        best, best_diff = self.ranked()[0]
        lines = [
            f"{self.config.label} [{self.dtype.name}] vs {convention.id}: {'matches' if diff.passed else 'does not match'}",
            *(f"  {part.describe()}" for part in diff.parts),
            f"  best-matching convention: {best.id} (max abs error {best_diff.max_abs:.3g})",
            f"  matched: {self.matched.id if self.matched else None}; documentation claims: {self.claimed.id}",
            f"  versions: {', '.join(f'{k} {v}' for k, v in self.versions.items())}",
            f"  rerun: {self.rerun_command()}",
        ]
        return "\n".join(lines)

    @property
    def precision(self):
        """``reference.precision.PrecisionVerdict`` (None when nothing fits at any precision)."""
        return self.identification.precision if self.identification else None

    def findings(self) -> list[tuple[str, str]]:
        """What a reader must know about this row, as ``(kind, text)``; empty when it is as documented.

        Kinds, each a separate answer: ``failure`` (it did not run, or no formula fits),
        ``documentation`` (it computes another formula than its documentation claims, or the
        documentation and the class disagree on something else: ``LayerConfig.documentation_findings``),
        ``precision`` (it computes at lower precision than requested).
        """
        documented = [("documentation", text) for text in self.config.documentation_findings]
        if self.error:
            return [("failure", f"failed to run: {error_headline(self.error)}")] + documented
        identification = self.identification
        found = []
        if self.matched is None:
            if identification.ambiguous:
                found.append(("failure", "ambiguous: " + ", ".join(c.id for c in identification.candidates)
                              + " all fit the probe"))
            elif identification.diagnosis:
                found.append(("failure", f"matches no convention; diagnosis: {identification.diagnosis[0].name}"))
            else:
                found.append(("failure", "matches no convention, and no catalogued mistake explains it"))
        elif self.matched != self.claimed:
            found.append(("documentation", f"computes {self.matched.id}, its documentation claims {self.claimed.id} "
                                           f"({self.config.claim_source or 'source not recorded'})"))
        if self.precision is not None and self.precision.lower_than_requested:
            found.append(("precision", self.precision.describe()))
        return found + documented

    def rerun_command(self) -> str:
        return (
            f"gru-equiv check --frameworks {self.framework} --config {shlex.quote(self.config.name)} "
            f"--dtypes {self.dtype.name} --seed {self.case.seed}"
        )

    def to_json(self) -> dict:
        return {
            "framework": self.framework,
            "config": self.config.name,
            "dtype": self.dtype.name,
            "versions": self.versions,
            "claimed": self.claimed.id,
            "matched": self.matched.id if self.matched else None,
            "errors": {c.id: d.max_abs for c, d in self.differences.items()},
            "margin": self.identification.margin if self.identification else None,
            "ambiguous": self.identification.ambiguous if self.identification else None,
            "diagnosis": [d.to_json() for d in self.identification.diagnosis] if self.identification else [],
            "tolerance": dict(zip(("rtol", "atol"), tolerance_for(self.dtype))),
            "seed": self.case.seed,
            "returns_sequences": self.config.returns_sequences,
            "error": self.error,
            "precision": self.precision.to_json() if self.precision else None,
            "findings": [{"kind": kind, "text": text} for kind, text in self.findings()],
            "structure": {
                "num_layers": self.config.num_layers, "directions": self.config.directions,
                "merge": self.config.merge, "reverse": self.config.reverse, "masked": self.config.masked,
            },
            "biases": list(self.config.bias_fields),
            "layout": self.config.layout,
            "padding": self.config.padding_semantics,
            "claim_source": self.config.claim_source,
            **({"gradients": self.gradients.to_json()} if self.gradients is not None else {}),
        }


def compare_configuration(adapter: Adapter, config: LayerConfig, dtype, case: Case = DEFAULT_CASE) -> ConfigResult:
    dtype = np.dtype(dtype)
    result = ConfigResult(adapter.name, config, dtype, adapter.versions(), case)
    probe = make_probe(case, config, dtype)
    layer = adapter.build(config, probe.layers, dtype)
    observed = adapter.run(layer, probe.x, probe.h0, probe.mask)
    result.observed = observed
    for convention in Convention.all():
        expected = reference_forward(config, probe, convention)
        result.expected[convention] = expected
        result.differences[convention] = compare_forward(
            observed.outputs, observed.h_last, expected.outputs, expected.h_last, dtype
        )
    observation = Observation(
        tuple(tuple(layer) for layer in probe.layers), probe.x, probe.h0, probe.mask, observed.outputs, observed.h_last
    )
    structure = Structure(config.merge, config.masked_output, config.reverse, config.reference_options)
    result.identification = identify_observations([observation], dtype, structure, expected=config.claimed)
    return result


@dataclass(frozen=True)
class UnavailableFramework:
    framework: str
    reason: str

    def to_json(self) -> dict:
        return {"framework": self.framework, "unavailable": self.reason}


# This lane's share (this process, or with ``contained=True`` the CONTAINED_ENV worker) even when other lanes
# run: the conversion audit, which follows it in the same process, imports torch and TensorFlow anyway (seconds
# each), so no such import is paid twice. ONNX Runtime imports in a fraction of a second and goes to the other
# lanes, which this lane's share (with the audit) outlasts otherwise.
IN_PROCESS = ("torch", "keras", "tf-legacy", "torch-cuda")
# The rest are shared out slowest first (as measured on 2 cores, imports included), so whichever lane
# frees up last is left a short one; frameworks not named here follow in registry order.
SLOWEST_FIRST = ("keras-torch", "keras-jax", "flax", "paddle", "onnxruntime", "onnx-reference")
LANE_TIMEOUT_S = 3600.0
# With ``contained=True`` (the gru-equiv commands) the IN_PROCESS share is measured in this worker instead, one
# framework a call, so a framework's segfault costs its rows only; the report's conversion audit runs in the same
# worker (reports.conversions), which has imported torch and TensorFlow for the matrix already.
CONTAINED_ENV = {"GRU_EQUIV_CONTAINED_LANE": "1"}


def _lane_environment(index: int) -> dict[str, str]:
    """A background lane's worker environment: also keras-jax's, when it can run, so the lane hosts it
    (``adapters.isolation.hosts``) and measures it in the process that imports JAX for flax, haiku and
    equinox anyway, instead of starting one more process that imports JAX and Keras again. The
    ``keras`` adapter, which needs Keras on TensorFlow, is always measured in this process (IN_PROCESS)."""
    environment = {"GRU_EQUIV_MATRIX_LANE": str(index)}
    try:
        from adapters.keras_backends import JAX_ADAPTER
    except ImportError:  # Keras is not installed: nothing to host
        return environment
    if JAX_ADAPTER.unavailable_reason() is None:
        environment.update(JAX_ADAPTER.env)
    return environment


def default_jobs() -> int:
    """Lanes for ``run_matrix``: one per core, at most 2 (beyond that the frameworks' imports dominate)."""
    return max(1, min(2, os.cpu_count() or 1))


def _measure_lane(frameworks, dtypes, case, configs, progress, gradients):
    """Rows of ``frameworks`` measured in this process, and the ``configs`` names none of them has."""
    rows: list[ConfigResult | UnavailableFramework] = []
    unknown_names = set(configs or ())
    for name in frameworks:
        try:
            adapter = adapters.get(name)
        except AdapterUnavailable as unavailable:
            rows.append(UnavailableFramework(name, unavailable.reason))
            continue
        selected = adapter.configurations()
        if configs:
            unknown_names.difference_update(c.name for c in selected)
            selected = [c for c in selected if c.name in configs]
        for config in selected:
            for dtype in dtypes:
                if progress:
                    progress(f"{config.label} [{np.dtype(dtype).name}]")
                try:
                    rows.append(compare_configuration(adapter, config, dtype, case))
                except Exception as error:  # one broken configuration must not hide the others
                    failed = ConfigResult(adapter.name, config, np.dtype(dtype), adapter.versions(), case)
                    failed.error = f"{type(error).__name__}: {error}"
                    rows.append(failed)
    if gradients:
        from .gradients import attach_gradients

        attach_gradients(rows, progress)
    return rows, unknown_names


def _lane_in_worker(frameworks, registry_lines, dtypes, case, configs, gradients):
    """The worker side of a lane (``adapters.isolation`` calls it by name)."""
    for name, line in registry_lines.items():
        adapters.ensure_registered(name, line)
    return _measure_lane(frameworks, dtypes, case, configs, None, gradients)


def _measure_in_worker(name: str, arguments: tuple, env: dict[str, str]):
    """One framework's rows, and the unknown ``configs`` names, measured in the worker for ``env``; a crash of the
    worker is one unavailable row saying how it died, and the next call gets a new worker."""
    from adapters import isolation

    try:
        return isolation.call("reports.matrix:_lane_in_worker", [name], {name: adapters.REGISTRY[name]}, *arguments,
                              env=env, timeout=LANE_TIMEOUT_S)
    except isolation.WorkerCrashed as crash:
        return [UnavailableFramework(name, f"the worker process measuring it {crash.status}")], set(arguments[2] or ())


def _measure_contained(frameworks, arguments: tuple, progress):
    """``_measure_lane`` with every framework measured in the CONTAINED_ENV worker."""
    rows, unknown_names = [], set(arguments[2] or ())
    for name in frameworks:
        if progress:
            progress(f"{name} (in a worker process)")
        framework_rows, unknown = _measure_in_worker(name, arguments, CONTAINED_ENV)
        rows += framework_rows
        unknown_names &= unknown
    return rows, unknown_names


class _SharedFrameworks:
    """Frameworks not yet measured, taken one at a time by the worker lanes (slowest first) and, once its
    own share is done, by this process (shortest first): whoever is free takes one, so no lane idles
    while another has a queue."""

    def __init__(self, names: list[str], dtypes, case, configs, gradients):
        rank = {name: index for index, name in enumerate(SLOWEST_FIRST)}
        self.pending = sorted(names, key=lambda name: rank.get(name, len(rank)))
        self.measured: dict[str, tuple] = {}
        self.lock = threading.Lock()
        self.arguments = (tuple(dtypes), case, configs, gradients)

    def take(self, shortest: bool = False) -> str | None:
        with self.lock:
            return self.pending.pop(-1 if shortest else 0) if self.pending else None

    def in_worker(self, index: int) -> None:
        while (name := self.take()) is not None:
            try:
                self.measured[name] = _measure_in_worker(name, self.arguments, _lane_environment(index))
            except BaseException as error:  # handed to the caller by ``here``
                self.measured[name] = error

    def here(self, progress, contained: bool = False) -> None:
        dtypes, case, configs, gradients = self.arguments
        # From the short end: the slow ones stay with the workers, whose environment hosts some of them.
        while (name := self.take(shortest=True)) is not None:
            if contained:
                self.measured[name] = _measure_contained([name], self.arguments, progress)
            else:
                self.measured[name] = _measure_lane([name], dtypes, case, configs, progress, gradients)


def run_matrix(
    frameworks: list[str] | None = None,
    dtypes=DTYPES,
    case: Case = DEFAULT_CASE,
    configs: list[str] | None = None,
    progress=None,
    *,
    gradients: bool = False,
    jobs: int = 1,
    alongside=None,
    contained: bool = False,
) -> list[ConfigResult | UnavailableFramework]:
    """Every selected configuration x dtype; a framework that cannot load becomes one row with its reason.

    ``jobs`` > 1 measures the frameworks outside ``IN_PROCESS`` in that many - 1 worker processes
    (``adapters.isolation``) while this process measures its own share, then joins in on what is
    left: the same rows, in registry order, in about half the time on two cores. ``alongside()`` runs
    in this process after its share, while the workers go on (the report runs the conversion audit
    there). ``gradients``: also compare every row's gradients (``reports.gradients``), in the lane that
    measured it. ``contained``: what this process would measure is measured in the ``CONTAINED_ENV`` worker,
    one framework a call, so a framework that crashes its process (a segfault in native code) is one unavailable
    row saying so and the matrix goes on; this process then imports no framework for the matrix.
    """
    frameworks = list(frameworks or adapters.REGISTRY)
    local = [name for name in frameworks if jobs <= 1 or name in IN_PROCESS]
    shared = _SharedFrameworks([name for name in frameworks if name not in local], dtypes, case, configs, gradients)
    lanes = []
    if len(shared.pending) > (0 if local or alongside else 1):  # a worker for the only work would only add its start
        lanes = [threading.Thread(target=shared.in_worker, args=(index,), name=f"gru-equiv lane {index}", daemon=True)
                 for index in range(1, jobs)]
        for lane in lanes:
            lane.start()
        if progress:
            progress(f"{', '.join(shared.pending)} in {len(lanes)} worker process(es), alongside this one")
    if contained:
        rows, unknown_names = _measure_contained(local, shared.arguments, progress)
    else:
        rows, unknown_names = _measure_lane(local, dtypes, case, configs, progress, gradients)
    if alongside is not None:
        alongside()
    shared.here(progress, contained)
    for lane in lanes:
        lane.join()
    for name, outcome in shared.measured.items():
        if isinstance(outcome, BaseException):
            raise outcome
        lane_rows, lane_unknown = outcome
        rows += lane_rows
        unknown_names &= lane_unknown
    order = {name: index for index, name in enumerate(frameworks)}
    rows.sort(key=lambda row: order[row.framework])  # stable: each framework's rows keep their order
    if unknown_names:
        unavailable = [r.framework for r in rows if isinstance(r, UnavailableFramework)]
        hint = f" (unavailable, so not searched: {', '.join(unavailable)})" if unavailable else ""
        raise ValueError(f"unknown configuration(s) {sorted(unknown_names)}{hint}; `gru-equiv list` shows the valid names")
    return rows
