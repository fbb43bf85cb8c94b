"""The conversion-path audit: every available path x source configuration x dtype, judged.

For each cell the runner builds the source layer with the matrix probe (``reports.matrix.make_probe``),
runs it, converts it with the real tool (``adapters.paths``), runs the result on the same probe, and
judges the result with ``reference.identify.identify_observations`` against the formula the source
documents (the framework matrix confirms each source computes it): the convention it computes, its
error against the source, any diagnosed mistake with the fix, the precision, and what the tool emitted.
Verdicts (``adapters.paths.onnx_audit.judge``): exact / precision only / formula changed / mistake
named, plus failed (the tool raised: "conversion failed: <message>", a finding, never a crash),
refused (this project's ports that cannot be exact, with the reason) and unavailable (with the reason).

Containment: ``BaseException`` other than ``KeyboardInterrupt`` is contained per cell (the converters
measured here raise Python exceptions, onnx2tf's ``SystemExit`` included). A crash of the interpreter
itself (a segfault in a converter's native code) is contained with ``contained=True``: every cell then
runs in one worker process (``adapters.isolation``, environment ``CONTAINED_ENV``), which a crash
replaces, and the crashed cell is a failed row saying so. ``gru-equiv convert``, ``report`` and ``baseline``
run that way. The worker is the contained matrix's (``reports.matrix.CONTAINED_ENV``), which has measured torch,
Keras and legacy TensorFlow before the audit, so a report imports them once: measured, a report contained
throughout takes 13.9-14.2 s where one that measured and audited in its own process took 13.0-13.2 s.

By default each path runs its first source configuration (the one-layer one) in its first dtype;
``sources="all"`` runs every configuration the path takes, in every dtype it keeps.
"""

from __future__ import annotations

import shlex
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import adapters
import adapters.paths as paths
from adapters.paths import ConversionFailed, ConversionPath, ConversionRefused, PathUnavailable
from adapters.paths.onnx_audit import VERDICTS, judge
from adapters.paths.onnx_common import summarize_emitted
from reference.identify import Identification, Observation, Structure, identify_observations

# CONTAINED_ENV: the worker of contained cells is the contained matrix's, so a report imports torch and
# TensorFlow once for both; one process runs every cell, a new one after a crash.
from .matrix import CONTAINED_ENV, DEFAULT_CASE, Case, make_probe

VERDICT_COLOURS = {"exact": "pass", "precision only": "precision", "formula changed": "fail", "mistake named": "fail",
                   "failed": "fail", "refused": "refused", "unavailable": "unavailable"}
SOURCE_CHOICES = ("default", "all")


@dataclass
class ConversionResult:
    """One path x source configuration x dtype, judged (or why it could not be)."""

    path: str
    title: str
    tool: str
    source: str
    config: str
    dtype: str
    versions: dict[str, str]
    verdict: str
    detail: str
    expected: str | None = None  # the convention the source computes (its documented claim)
    identification: Identification | None = None
    error_vs_source: float | None = None
    emitted: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    full_precision_setting: str = ""
    seconds: float = 0.0
    seed: int = 0

    @property
    def key(self) -> str:
        """Stable identity of the cell (baseline key, HTML anchor source)."""
        return f"{self.path}|{self.config}|{self.dtype}"

    @property
    def anchor(self) -> str:
        return "conv-" + "".join(ch if ch.isalnum() else "-" for ch in self.key).strip("-")

    @property
    def matched(self) -> str | None:
        return self.identification.matched.id if self.identification and self.identification.matched else None

    @property
    def emitted_summary(self) -> str:
        return summarize_emitted(self.emitted) if self.emitted else ""

    def rerun_command(self) -> str:
        if self.verdict == "unavailable":
            return f"gru-equiv convert --paths {self.path}"
        return (f"gru-equiv convert --paths {self.path} --sources {shlex.quote(self.config)} "
                f"--dtypes {self.dtype} --seed {self.seed}")

    def describe(self) -> str:
        lines = [f"{self.path} [{self.config}, {self.dtype}]: {self.verdict}: {self.detail}"]
        if self.identification is not None:
            for diagnosis in self.identification.diagnosis[:2]:
                lines.append("  " + diagnosis.describe().replace("\n", "\n  "))
        if self.error_vs_source is not None:
            lines.append(f"  max abs error against the source: {self.error_vs_source:.3g}")
        if self.emitted:
            lines.append(f"  emitted: {self.emitted_summary}")
        lines += [f"  note: {note}" for note in self.notes]
        lines.append(f"  rerun: {self.rerun_command()}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        identification = self.identification
        return {
            "path": self.path, "title": self.title, "tool": self.tool, "source": self.source, "config": self.config,
            "dtype": self.dtype, "versions": self.versions, "verdict": self.verdict, "detail": self.detail,
            "expected": self.expected, "matched": self.matched,
            "errors": {c.id: _finite(e) for c, e in identification.errors.items()} if identification else {},
            "margin": identification.margin if identification else None,
            "diagnosis": [d.to_json() for d in identification.diagnosis] if identification else [],
            "precision": identification.precision.to_json() if identification and identification.precision else None,
            "error_vs_source": _finite(self.error_vs_source), "emitted": self.emitted, "emitted_summary": self.emitted_summary,
            "notes": list(self.notes), "full_precision_setting": self.full_precision_setting,
            "seconds": round(self.seconds, 2), "seed": self.seed, "rerun": self.rerun_command(), "anchor": self.anchor,
        }


def _finite(value):
    """JSON has no Infinity or NaN: a non-finite error (a shape that cannot be compared) is None."""
    return None if value is None or not np.isfinite(value) else float(value)


def _masked_max_gap(actual, wanted, mask) -> float:
    if actual is None or wanted is None:
        return 0.0
    actual, wanted = np.asarray(actual, np.float64), np.asarray(wanted, np.float64)
    if actual.shape != wanted.shape:
        return float("inf")
    gap = np.abs(actual - wanted)
    if mask is not None and gap.ndim == 3:
        gap = np.where(mask[:, :, None], gap, 0.0)  # padded steps: each framework's own convention
    return float(np.nan_to_num(gap, nan=np.inf).max()) if gap.size else 0.0


def _message(error: BaseException, limit: int = 700) -> str:
    text = " ".join(str(error).split())
    text = text if text.startswith(type(error).__name__) else f"{type(error).__name__}: {text}"
    return text[:limit] + (" ..." if len(text) > limit else "")


_RESULTS: dict[tuple, ConversionResult] = {}


def convert_cell(path: ConversionPath, config_name: str, dtype, case: Case = DEFAULT_CASE,
                 workdir: Path | None = None, cache: bool = False) -> ConversionResult:
    """One cell: build, run, convert, run, judge. Every failure becomes a row, never an exception
    (except a bad ``config_name``, which is the caller's error).

    ``cache=True`` reuses this process's earlier result of the same registered path, configuration,
    dtype and case (the report and the baseline check in one process, or one test session, then pay
    for each conversion once; the tools are deterministic on a fixed probe)."""
    key = (path.id, type(path).__qualname__, config_name, np.dtype(dtype).name, case)
    if cache and key in _RESULTS:
        return _RESULTS[key]
    result = _convert_cell(path, config_name, dtype, case, workdir)
    if cache:
        _RESULTS[key] = result
    return result


def _convert_cell(path: ConversionPath, config_name: str, dtype, case: Case, workdir: Path | None) -> ConversionResult:
    started = time.perf_counter()
    dtype = np.dtype(dtype)
    source = adapters.get(path.source)
    config = source.configuration(config_name)
    try:
        versions = path.versions()
    except Exception as error:
        versions = {"error": _message(error, 200)}
    result = ConversionResult(path.id, path.title, path.tool, path.source, config_name, dtype.name, versions,
                              verdict="failed", detail="", expected=config.claimed.id,
                              full_precision_setting=path.full_precision_setting, seed=case.seed)
    probe = make_probe(case, config, dtype)
    try:
        layer = source.build(config, probe.layers, dtype)
        reference_run = source.run(layer, probe.x, probe.h0, probe.mask)
    except Exception as error:
        result.detail = f"the source failed to build or run: {_message(error)}"
        result.seconds = time.perf_counter() - started
        return result
    with tempfile.TemporaryDirectory(prefix=f"gru-convert-{path.id}-", dir=workdir) as folder:
        try:
            converted = path.convert(layer, config, dtype, Path(folder))
        except ConversionRefused as refusal:
            result.verdict, result.detail = "refused", str(refusal)
        except ConversionFailed as failure:
            result.detail = f"conversion failed: {failure}"
        except KeyboardInterrupt:
            raise
        except BaseException as error:  # a converter that raises anything (or exits) is a finding, not a crash
            result.detail = f"conversion failed: {_message(error)}"
        else:
            result.emitted, result.notes = converted.emitted, tuple(converted.notes)
            try:
                observed = converted.run(probe.x.copy(), probe.h0.copy(), None if probe.mask is None else probe.mask.copy())
            except KeyboardInterrupt:
                raise
            except BaseException as error:
                result.detail = f"the converted model failed to run: {_message(error)}"
            else:
                _judge_cell(result, config, probe, dtype, reference_run, observed)
    result.seconds = time.perf_counter() - started
    return result


def _judge_cell(result: ConversionResult, config, probe, dtype, source_run, observed) -> None:
    outputs = observed.outputs if config.returns_sequences else None
    expected_shape = None if source_run.outputs is None else source_run.outputs.shape
    if outputs is not None and expected_shape is not None and np.shape(outputs) != expected_shape:
        result.detail = (f"the converted model's outputs have shape {np.shape(outputs)}, the source's "
                         f"{expected_shape}: it computes another structure")
        return
    if np.shape(observed.h_last) != source_run.h_last.shape:
        result.detail = (f"the converted model's final state has shape {np.shape(observed.h_last)}, the source's "
                         f"{source_run.h_last.shape}")
        return
    result.error_vs_source = max(_masked_max_gap(outputs, source_run.outputs, probe.mask),
                                 _masked_max_gap(observed.h_last, source_run.h_last, None))
    observation = Observation(tuple(tuple(layer) for layer in probe.layers), probe.x, probe.h0, probe.mask,
                              outputs, observed.h_last)
    structure = Structure(config.merge, config.masked_output, config.reverse, config.reference_options)
    result.identification = identify_observations([observation], dtype, structure, expected=config.claimed)
    result.verdict, result.detail = judge(result.identification, config.claimed)


CONTAINED_CELL_TIMEOUT_S = 1800.0


def _cell_in_worker(path_id: str, registry_line: str, config_name: str, dtype: str, case: Case,
                    cache: bool) -> ConversionResult:
    """The worker side of a contained cell (``adapters.isolation`` calls it by name)."""
    paths.ensure_registered(path_id, registry_line)
    return convert_cell(paths.get(path_id), config_name, dtype, case, cache=cache)


def _contained_cell(path: ConversionPath, config_name: str, dtype: str, case: Case, cache: bool) -> ConversionResult:
    from adapters import isolation

    try:
        return isolation.call("reports.conversions:_cell_in_worker", path.id, paths.REGISTRY[path.id], config_name,
                              dtype, case, cache, env=CONTAINED_ENV, timeout=CONTAINED_CELL_TIMEOUT_S)
    except isolation.WorkerCrashed as crash:  # the next cell gets a new worker
        tail = " ".join(crash.output.split())[-500:]
        return ConversionResult(path.id, path.title, path.tool, path.source, config_name, dtype, {}, "failed",
                                f"the conversion crashed: the process running it {crash.status}"
                                + (f"{isolation.LAST_OUTPUT} {tail}" if tail else ""),
                                full_precision_setting=path.full_precision_setting, seed=case.seed)
    except PathUnavailable as unavailable:  # usable here, not in the worker's environment
        return ConversionResult(path.id, path.title, path.tool, path.source, config_name, dtype, {}, "unavailable",
                                f"in the worker process: {unavailable.reason}", seed=case.seed)


def select_configs(path: ConversionPath, sources) -> list[str]:
    """The source configurations of ``path`` to run: its first (``"default"``), all (``"all"``), or the
    named ones it takes (a name it does not take is skipped for this path)."""
    taken = list(path.source_configs())
    if sources in (None, "default"):
        return taken[:1]
    if sources == "all":
        return taken
    return [name for name in taken if name in set(sources)]


def run_conversions(path_ids: list[str] | None = None, sources="default", dtypes: list[str] | None = None,
                    case: Case = DEFAULT_CASE, progress=None, cache: bool = True,
                    only_sources: set[tuple[str, str]] | None = None, contained: bool = False
                    ) -> list[ConversionResult]:
    """Every selected path x source configuration x dtype; an unavailable path is one row with its reason.

    ``sources``: "default" (each path's first configuration, in its first dtype), "all" (every
    configuration, every dtype it keeps) or a list of configuration names. ``dtypes`` narrows the dtypes.
    ``only_sources``: run only cells whose ``(source framework, configuration)`` is in this set (the report
    and the baseline pass the configurations their matrix covered). ``cache``: see ``convert_cell``.
    """
    statuses = paths.status()
    selected = path_ids or list(statuses)
    unknown = [p for p in selected if p not in statuses]
    if unknown:
        raise ValueError(f"unknown conversion path(s) {unknown}; valid: {', '.join(statuses)}")
    if sources not in (None, *SOURCE_CHOICES):
        names = set(sources)
        taken = {name for p in selected if not isinstance(statuses[p], PathUnavailable)
                 for name in statuses[p].source_configs()}
        missing = sorted(names - taken)
        if missing:
            raise ValueError(f"no selected path takes source configuration(s) {missing}; "
                             f"`gru-equiv convert --list` shows each path's configurations")
    rows: list[ConversionResult] = []
    for path_id in selected:
        path = statuses[path_id]
        if isinstance(path, PathUnavailable):
            module = paths.REGISTRY[path_id]
            rows.append(ConversionResult(path_id, path_id, module, "", "*", "*", {}, "unavailable", path.reason))
            continue
        path_dtypes = list(path.dtypes())
        if dtypes:
            path_dtypes = [d for d in path_dtypes if d in dtypes]
        elif sources in (None, "default"):
            path_dtypes = path_dtypes[:1]
        for config_name in select_configs(path, sources):
            if only_sources is not None and (path.source, config_name) not in only_sources:
                continue
            for dtype in path_dtypes:
                if progress:
                    progress(f"{path_id} [{config_name}, {dtype}]")
                if contained:
                    rows.append(_contained_cell(path, config_name, dtype, case, cache))
                else:
                    rows.append(convert_cell(path, config_name, dtype, case, cache=cache))
    return rows


def conversions_to_json(rows: list[ConversionResult]) -> list[dict]:
    return [row.to_json() for row in rows]


def conversions_for_matrix(matrix_rows, progress=None, case: Case = DEFAULT_CASE, contained: bool = False
                           ) -> list[ConversionResult]:
    """The default conversion cells whose source configuration the framework matrix covered, plus a row
    for each unavailable path (what ``make report`` and ``gru-equiv baseline`` run)."""
    covered = set()
    for row in matrix_rows:
        document = row if isinstance(row, dict) else row.to_json()
        if "unavailable" not in document and document.get("config"):
            covered.add((document["framework"], document["config"]))
    return run_conversions(None, "default", None, case, progress, only_sources=covered, contained=contained)


def conversions_for_frameworks(frameworks: list[str] | None, progress=None, case: Case = DEFAULT_CASE,
                               contained: bool = False) -> list[ConversionResult]:
    """The same cells as ``conversions_for_matrix`` for a matrix of every configuration of ``frameworks``
    (None: all), known before it runs: the report audits the paths while worker processes measure the
    rest of the matrix (``reports.matrix.run_matrix(alongside=...)``)."""
    selected = set(frameworks or adapters.REGISTRY)
    covered = {(path.source, config) for path in paths.status().values()
               if not isinstance(path, PathUnavailable) and path.source in selected
               for config in path.source_configs()}
    return run_conversions(None, "default", None, case, progress, only_sources=covered, contained=contained)


@dataclass
class MatrixLine:
    label: str  # "source: configuration"
    cells: list[list[ConversionResult]]  # one list per path column (empty: the path does not take it)


@dataclass
class ConversionSection:
    """What the report's "conversion paths" section shows: a matrix source configuration x path, the
    unavailable paths with their reasons, and every cell's details."""

    paths: list[dict]  # {"id", "title", "tool"} per column
    lines: list[MatrixLine]
    unavailable: list[ConversionResult]
    details: list[ConversionResult]
    colours: dict[str, str] = field(default_factory=lambda: dict(VERDICT_COLOURS))

    @property
    def counts(self) -> dict[str, int]:
        counted: dict[str, int] = {}
        for row in self.details:
            counted[row.verdict] = counted.get(row.verdict, 0) + 1
        return counted


def conversion_section(rows: list[ConversionResult]) -> ConversionSection:
    ran = [row for row in rows if row.verdict != "unavailable"]
    path_ids: list[str] = []
    columns: list[dict] = []
    for row in ran:
        if row.path not in path_ids:
            path_ids.append(row.path)
            columns.append({"id": row.path, "title": row.title, "tool": row.tool,
                            "versions": ", ".join(f"{k} {v}" for k, v in row.versions.items())})
    labels: list[str] = []
    cells: dict[tuple[str, str], list[ConversionResult]] = {}
    for row in ran:
        label = f"{row.source}: {row.config}"
        if label not in labels:
            labels.append(label)
        cells.setdefault((label, row.path), []).append(row)
    lines = [MatrixLine(label, [cells.get((label, path_id), []) for path_id in path_ids]) for label in labels]
    return ConversionSection(columns, lines, [row for row in rows if row.verdict == "unavailable"], ran)


def summary_table(rows: list[ConversionResult]) -> str:
    """Plain-text table for the terminal: one line per cell."""
    header = ("path", "source configuration", "dtype", "verdict", "vs source", "emitted")
    lines = [header]
    for row in rows:
        error = "" if row.error_vs_source is None else f"{row.error_vs_source:.1e}"
        detail = row.emitted_summary if row.verdict in ("exact", "precision only") else row.detail
        lines.append((row.path, row.config, row.dtype, row.verdict, error, detail[:110]))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header) - 1)]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)) + "  " + str(line[-1])
                     for line in lines)


__all__ = ["ConversionResult", "ConversionSection", "SOURCE_CHOICES", "VERDICTS", "VERDICT_COLOURS", "conversion_section",
           "conversions_for_frameworks", "conversions_for_matrix", "convert_cell", "conversions_to_json", "run_conversions", "select_configs",
           "summary_table"]
