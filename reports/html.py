"""The report a reader understands in ten seconds: verdict first, then the evidence.

Dataclasses first (what the page says), then an autoescaped Jinja2 template (how it looks). One
self-contained file: inline CSS, charts and heatmaps as inline SVG, no script, no request to any
other host. The order of the page is the order of a reader's questions:

1. the verdict banner: how much was checked, how much computes its documented formula, and every
   finding (documentation mismatch, lower precision, failure, unavailable framework) linked to its evidence;
2. the ecosystem table: one row per framework class;
3. the matrix, grouped by framework, short convention labels with a legend, the match marked by a
   symbol as well as a colour (Okabe-Ito palette; a black-and-white printout still reads);
4. the four formulas side by side with the differing terms highlighted;
5. each configuration's evidence in ``<details>`` (open only where there is a finding), under a stable
   anchor such as ``#torch-nn-gru-batch-first-true-float32`` that a CI log can link to;
6. the environment.

``report.json`` carries the same numbers (the HTML formats them from it), ``report.md`` the verdict
and the findings table for a GitHub job summary.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from reference import Convention, tolerance_for

from .ecosystem import EcosystemRow, build_ecosystem
from .matrix import ConfigResult, UnavailableFramework

# Okabe-Ito, safe for the common colour-vision deficiencies; each line also has its own dash pattern.
CONVENTION_STYLE = {
    "z_on_previous+reset_before": ("#0072B2", ""),
    "z_on_previous+reset_after": ("#D55E00", "6 3"),
    "z_on_candidate+reset_before": ("#009E73", "2 2"),
    "z_on_candidate+reset_after": ("#CC79A7", "8 3 2 3"),
}
SHORT_LABELS = {
    "z_on_previous+reset_before": "P·B",
    "z_on_previous+reset_after": "P·A",
    "z_on_candidate+reset_before": "C·B",
    "z_on_candidate+reset_after": "C·A",
}
# ColorBrewer "Blues": monotone in lightness, so the heatmap reads in greyscale too.
HEATMAP_LEVELS = ("#f7fbff", "#deebf7", "#c6dbef", "#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08519c", "#08306b")
CHART_WIDTH, CHART_HEIGHT = 420, 190
HEATMAP_CELL = 26
FINDING_KINDS = {
    "documentation": "computes another formula than documented",
    "precision": "computes at lower precision than requested",
    "failure": "failed, or matches no formula",
    "gradients": "gradients differ from the reference backward pass",
    "conversion": "a conversion path changes the GRU (formula, mistake, precision) or fails",
    "unavailable": "framework unavailable here",
}


def anchor_for(text: str) -> str:
    """A stable URL fragment: ``torch:nn.GRU(batch_first=True) float32`` -> ``torch-nn-gru-batch-first-true-float32``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "row"


# --------------------------------------------------------------- what the page says


@dataclass
class Finding:
    kind: str
    label: str
    text: str
    anchor: str


# A measured number as the findings write it (1.8e-07, 2e-12, or 0.0037 where ``:.2g`` keeps it decimal):
# runs whose findings differ only in these are one finding, given with the range of each number. Plain
# numbers (versions such as 2026.4.1 or 0.6.0, line numbers, 1.0) never vary so and are not matched.
_MEASURED_NUMBER = re.compile(r"\d(?:\.\d+)?e[-+]\d+|(?<![\w.])0\.\d+(?![\w.]*\d)")


@dataclass
class FindingGroup:
    """One finding and every run that gives it: the banner lists each once. Runs group by kind and by text
    up to the measured numbers in it, which the group gives as ranges (a finding mostly repeats per dtype and
    configuration, and precision findings differ only in their error: the 217 findings of the full report
    of 2026-12-05 are 21 groups)."""

    kind: str
    findings: list[Finding]

    @property
    def text(self) -> str:
        """The text of the first run, each measured number that differs between runs given as "low to high"."""
        literals = _MEASURED_NUMBER.split(self.findings[0].text)
        numbers = [_MEASURED_NUMBER.findall(finding.text) for finding in self.findings]
        text = literals[0]
        for index, literal in enumerate(literals[1:]):
            values = [found[index] for found in numbers]
            low, high = min(values, key=float), max(values, key=float)
            text += (low if float(low) == float(high) else f"{low} to {high}") + literal
        return text

    def to_json(self) -> dict:
        return {"kind": self.kind, "text": self.text, "anchors": [finding.anchor for finding in self.findings]}


@dataclass
class Verdict:
    checked: int
    documented: int
    frameworks: list[str]
    findings: list[Finding]

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def groups(self) -> list[FindingGroup]:
        """The findings grouped by kind and by text up to its measured numbers, in the order of their first run."""
        groups: dict[tuple[str, str], FindingGroup] = {}
        for finding in self.findings:
            key = (finding.kind, _MEASURED_NUMBER.sub("#", finding.text))
            groups.setdefault(key, FindingGroup(finding.kind, [])).findings.append(finding)
        return list(groups.values())

    @property
    def counts(self) -> dict[str, int]:
        counts = {kind: 0 for kind in FINDING_KINDS}
        for finding in self.findings:
            counts[finding.kind] += 1
        return {kind: n for kind, n in counts.items() if n}

    @property
    def headline(self) -> str:
        if not self.checked and not self.findings:
            return "Nothing was checked."
        summary = (f"{self.documented} of {self.checked} configuration runs compute their documented formula "
                   f"at the requested precision")
        if self.ok:
            return f"All clear: {summary}; nothing to report."
        distinct = len(self.groups)
        return (f"{summary}; {len(self.findings)} finding{'s' if len(self.findings) != 1 else ''} to read"
                + (f", {distinct} distinct." if distinct != len(self.findings) else "."))


@dataclass
class Cell:
    text: str
    css: str
    title: str


@dataclass
class MatrixRow:
    anchor: str
    label: str
    dtype: str
    claimed: str
    claim_ok: bool
    cells: list[Cell]
    precision: str
    precision_ok: bool
    margin: float | None
    error: str | None
    gradients: str | None = None  # the gradient verdict, when the report compared gradients
    gradients_ok: bool | None = None


@dataclass
class MatrixGroup:
    framework: str
    versions: str
    rows: list[MatrixRow] = field(default_factory=list)
    unavailable: str | None = None


@dataclass
class ConventionStats:
    convention: str
    short: str
    max_abs: float
    max_rel: float
    mean_abs: float
    mismatched: int
    total: int
    first_divergent_step: int | None
    passed: bool


@dataclass
class ChartLine:
    convention: str
    colour: str
    dash: str
    points: str  # SVG "x,y x,y ..."


# Every chart shares one log axis, so charts compare at a glance and their frame (axes, ticks,
# labels) is drawn once per page in <defs> and reused, which keeps pages with hundreds of charts small.
CHART_LOG_RANGE = (-17, 1)
CHART_BOX = dict(left=58, right=CHART_WIDTH - 10, top=10, bottom=CHART_HEIGHT - 40)


@dataclass
class ChartFrame:
    """Axes, ticks and labels for charts of ``steps`` timesteps (one per distinct length on the page)."""

    steps: int
    y_ticks: list[tuple[float, str]]
    x_ticks: list[tuple[float, str]]
    width: int = CHART_WIDTH
    height: int = CHART_HEIGHT
    left: int = CHART_BOX["left"]
    right: int = CHART_BOX["right"]
    top: int = CHART_BOX["top"]
    bottom: int = CHART_BOX["bottom"]


@dataclass
class Chart:
    lines: list[ChartLine]
    steps: int
    tolerance_y: float
    width: int = CHART_WIDTH
    height: int = CHART_HEIGHT
    left: int = CHART_BOX["left"]
    right: int = CHART_BOX["right"]


def _x_of(step: float, steps: int) -> float:
    return CHART_BOX["left"] + (CHART_BOX["right"] - CHART_BOX["left"]) * (step / max(steps - 1, 1))


def _y_of(value: float) -> float:
    low, high = CHART_LOG_RANGE
    exponent = np.clip(np.log10(max(value, 10.0**low)), low, high)
    return CHART_BOX["top"] + (CHART_BOX["bottom"] - CHART_BOX["top"]) * (1 - (exponent - low) / (high - low))


def chart_frame(steps: int) -> ChartFrame:
    low, high = CHART_LOG_RANGE
    y_ticks = [(round(_y_of(10.0**e), 1), f"1e{e}") for e in range(low + 2, high + 1, 3)]
    x_ticks = [(round(_x_of(t, steps), 1), str(t)) for t in range(0, steps, max(1, steps // 6))]
    return ChartFrame(steps, y_ticks, x_ticks)


@dataclass
class Heatmap:
    title: str
    width: int
    height: int
    paths: list[tuple[str, str]]  # (fill, SVG path of every cell at that level, in cell units)
    max_value: float
    rows: int
    columns: int
    cell: int


@dataclass
class Section:
    anchor: str
    framework: str
    label: str
    dtype: str
    claimed: str
    matched: str | None
    precision: str
    margin: float | None
    ambiguous: bool
    findings: list[tuple[str, str]]
    diagnosis: list[str]
    stats: list[ConventionStats]
    chart: Chart | None
    heatmaps: list[Heatmap]
    reproduce: str
    shapes: str
    seed: int
    error: str | None
    claim_source: str  # empty when the ecosystem row states the same (``ecosystem_anchor`` links it)
    layout: str  # likewise
    biases: str
    padding: str
    ecosystem_anchor: str
    gradients: str | None = None  # the gradient verdict with its groups, when gradients were compared

    @property
    def open(self) -> bool:
        return bool(self.findings)


@dataclass
class FormulaCard:
    convention: str
    short: str
    equations: list[tuple[str, str, str]]  # (common start, the term that differs, common end)


@dataclass
class Report:
    title: str
    generated_at: str
    tool_version: str
    environment: dict[str, str]
    verdict: Verdict
    ecosystem: list[EcosystemRow]
    groups: list[MatrixGroup]
    formulas: list[FormulaCard]
    sections: list[Section]
    unavailable: list[dict]
    summary: list[dict] = field(default_factory=list)
    short_labels: dict[str, str] = field(default_factory=lambda: dict(SHORT_LABELS))
    chart_frames: list[ChartFrame] = field(default_factory=list)
    heatmap_levels: tuple[str, ...] = HEATMAP_LEVELS
    convention_styles: dict[str, tuple[str, str]] = field(default_factory=lambda: dict(CONVENTION_STYLE))
    conversions: object = None  # reports.conversions.ConversionSection, when the conversion paths were audited
    has_gradients: bool = False  # the matrix shows a gradient-verdict column

    @property
    def frameworks_with_sections(self) -> list[tuple[str, list[Section]]]:
        grouped: dict[str, list[Section]] = {}
        for section in self.sections:
            grouped.setdefault(section.framework, []).append(section)
        return list(grouped.items())


# --------------------------------------------------------------- building it from results


def _per_step_error(observed: np.ndarray, expected: np.ndarray) -> np.ndarray:
    return np.abs(observed.astype(np.float64) - expected).max(axis=(0, 2))


def _chart(result: ConfigResult) -> Chart | None:
    if result.observed is None or result.observed.outputs is None:
        return None
    curves = {c: _per_step_error(result.observed.outputs, result.expected[c].outputs) for c in Convention.all()}
    steps = len(next(iter(curves.values())))
    lines = []
    for convention, curve in curves.items():
        colour, dash = CONVENTION_STYLE[convention.id]
        points = " ".join(f"{_x_of(t, steps):.1f},{_y_of(v):.1f}" for t, v in enumerate(curve))
        lines.append(ChartLine(convention.id, colour, dash, points))
    return Chart(lines, steps, round(_y_of(sum(tolerance_for(result.dtype))), 1))


def _heatmap(title: str, observed: np.ndarray, expected: np.ndarray) -> Heatmap:
    """|difference| per (timestep, unit), max over the batch, in nine levels of one hue.

    Cells of one level share one SVG path, which keeps a page with hundreds of heatmaps small.
    """
    gap = np.abs(observed.astype(np.float64) - expected).max(axis=0)
    top = float(gap.max())
    levels = np.zeros(gap.shape, int) if top == 0 else np.minimum(
        (gap / top * len(HEATMAP_LEVELS)).astype(int), len(HEATMAP_LEVELS) - 1)
    paths = []
    for level, fill in enumerate(HEATMAP_LEVELS):
        cells = np.argwhere(levels == level)
        if cells.size:
            d = "".join(f"M{u} {t}h1v1h-1z" for t, u in cells)  # in cell units; the template scales them
            paths.append((fill, d))
    rows, columns = gap.shape
    return Heatmap(title, columns * HEATMAP_CELL, rows * HEATMAP_CELL, paths, top, rows, columns, HEATMAP_CELL)


def _biases(fields: tuple[str, ...]) -> str:
    return " ".join(fields) if fields else "none"


def ecosystem_anchor(framework: str, component: str, claims: str) -> str:
    return anchor_for(f"ecosystem {framework} {component} {claims}")


def _section(anchor: str, result: ConfigResult, ecosystem: dict[str, EcosystemRow]) -> Section:
    """One configuration's evidence; facts its ecosystem row already states are linked, not repeated
    (hundreds of rows would otherwise carry the same source lines and layouts)."""
    case, config = result.case, result.config
    eco_anchor = ecosystem_anchor(result.framework, config.framework_class, result.claimed.id)
    eco = ecosystem.get(eco_anchor)
    claim_source = config.claim_source or "not recorded"
    layout = config.layout or "not recorded"
    # The ecosystem row joins its class's distinct claims and layouts: one of them is stated there already.
    if eco is not None and config.claim_source and config.claim_source in eco.claim_source:
        claim_source = ""
    if eco is not None and config.layout and config.layout in eco.layout:
        layout = ""
    shapes = (f"batch {case.batch}, time {case.time}, input {case.input_size}, hidden {case.hidden_size}, "
              f"layers {config.num_layers}, directions {config.directions}")
    common = dict(
        anchor=anchor, framework=result.framework, label=config.label, dtype=result.dtype.name,
        claimed=result.claimed.id, reproduce=result.rerun_command(), shapes=shapes, seed=case.seed,
        findings=result.findings() + _gradient_findings(result), claim_source=claim_source, layout=layout,
        ecosystem_anchor=eco_anchor,
        biases=_biases(config.bias_fields), padding=config.padding_semantics,
        gradients=_gradient_text(result),
    )
    if result.error:
        return Section(matched=None, precision="-", margin=None, ambiguous=False, diagnosis=[], stats=[], chart=None,
                       heatmaps=[], error=result.error, **common)
    stats = []
    for convention, diff in result.differences.items():
        parts = diff.parts
        stats.append(ConventionStats(
            convention.id, SHORT_LABELS[convention.id], diff.max_abs, max(p.max_rel for p in parts),
            max(p.mean_abs for p in parts), sum(p.mismatched for p in parts), sum(p.total for p in parts),
            diff.outputs.first_divergent_step if diff.outputs else None, diff.passed,
        ))
    heatmaps = []
    # Pictures where a reader needs them, so a page of several hundred rows stays under 1.5 MB: a row that
    # computes as documented has its numbers (the stats table); a row with a numeric finding (precision,
    # failure; a documentation finding is words, not numbers) adds the chart of the
    # error per timestep; a row where no formula fits, or another than documented, adds the heatmaps.
    numeric_finding = result.matched is None or result.matched != result.claimed  # a precision row has its chart
    if result.observed.outputs is not None and numeric_finding:
        best = result.matched or result.ranked()[0][0]
        other = next(c for c, _ in result.ranked() if c != best)
        for label, convention in (("matched" if result.matched else "closest", best), ("nearest other", other)):
            heatmaps.append(_heatmap(f"{label}: {convention.id}", result.observed.outputs, result.expected[convention].outputs))
    identification = result.identification
    return Section(
        matched=result.matched.id if result.matched else None,
        precision=result.precision.describe() if result.precision else "no formula fits at any precision",
        margin=identification.margin, ambiguous=identification.ambiguous,
        diagnosis=[d.describe() for d in identification.diagnosis], stats=stats,
        chart=_chart(result) if any(kind != "documentation" for kind, _ in result.findings()) else None,
        heatmaps=heatmaps, error=None, **common,
    )


def _gradient_findings(result: ConfigResult) -> list[tuple[str, str]]:
    gradients = result.gradients
    if gradients is not None and (gradients.passed is False or gradients.error):
        return [("gradients", gradients.verdict)]
    return []


def _gradient_text(result: ConfigResult) -> str | None:
    """The gradient verdict in words, with the worst group differences (None: gradients not compared)."""
    gradients = result.gradients
    if gradients is None:
        return None
    if gradients.passed is None:
        return gradients.verdict
    worst = ", ".join(f"{name} max abs {group.max_abs:.2g}" for name, group in gradients.groups.items())
    return f"{gradients.verdict} (under {gradients.convention.id}; {worst})"


def _matrix_row(anchor: str, result: ConfigResult) -> MatrixRow:
    claimed = SHORT_LABELS[result.claimed.id]
    if result.error:
        return MatrixRow(anchor, result.config.name, result.dtype.name, claimed, False, [], "-", False, None, result.error)
    gradients = result.gradients
    gradient_cell = None if gradients is None else (
        "match" if gradients.passed else "differ: " + ", ".join(gradients.failing) if gradients.passed is False
        else "none" if gradients.unavailable else "error")
    tolerance = result.identification.tolerance
    cells = []
    for convention in Convention.all():
        error = result.differences[convention].max_abs
        if convention == result.matched:
            cells.append(Cell(f"✓ {error:.1e}", "match", f"matched: {convention.id}, max abs error {error:.3g}"))
        elif error <= tolerance:
            cells.append(Cell(f"≈ {error:.1e}", "fits", f"{convention.id} also fits: {error:.3g}"))
        else:
            cells.append(Cell(f"{error:.1e}", "miss", f"{convention.id}: max abs error {error:.3g}"))
    precision = result.precision
    precision_text = "-" if precision is None else (precision.computed if precision.lower_than_requested else "as asked")
    return MatrixRow(
        anchor, result.config.name, result.dtype.name, claimed, result.matched == result.claimed, cells,
        precision_text, precision is not None and not precision.lower_than_requested,
        result.identification.margin, None, gradient_cell, None if gradients is None else gradients.passed,
    )


def _formula_cards() -> list[FormulaCard]:
    """The four conventions, each equation split into (shared start, differing term, shared end)."""
    conventions = Convention.all()
    split = []
    for index in range(len(conventions[0].equations)):
        variants = [c.equations[index] for c in conventions]
        start = os.path.commonprefix(variants)
        end = os.path.commonprefix([v[len(start):][::-1] for v in variants])[::-1]
        split.append([(start, v[len(start):len(v) - len(end)], end) for v in variants])
    return [FormulaCard(c.id, SHORT_LABELS[c.id], [split[i][k] for i in range(len(split))])
            for k, c in enumerate(conventions)]


def _unique_anchors(results: list[ConfigResult]) -> list[str]:
    anchors, seen = [], {}
    for result in results:
        anchor = anchor_for(f"{result.config.label} {result.dtype.name}")
        seen[anchor] = seen.get(anchor, 0) + 1
        anchors.append(anchor if seen[anchor] == 1 else f"{anchor}-{seen[anchor]}")
    return anchors


def environment() -> dict[str, str]:
    info = {"python": platform.python_version(), "platform": platform.platform(),
            "cpu": platform.processor() or platform.machine(), "cpu count": str(os.cpu_count())}
    for package in ("numpy", "torch", "tensorflow", "keras", "tf-keras", "jax", "flax", "dm-haiku", "equinox",
                    "onnx", "onnxruntime", "paddlepaddle", "jinja2"):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = "not installed"
    try:
        blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
        info["numpy BLAS"] = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # older NumPy has no dict mode
        info["numpy BLAS"] = "unknown"
    return info


def build_report(rows: list[ConfigResult | UnavailableFramework], generated_at: str | None = None,
                 conversions: list | None = None) -> Report:
    """The page's content; ``conversions``: ``reports.conversions.ConversionResult`` rows for the
    "conversion paths" section (None: no such section)."""
    try:
        version = metadata.version("gru-equivalence")
    except metadata.PackageNotFoundError:
        version = "unknown"
    results = [r for r in rows if isinstance(r, ConfigResult)]
    anchors = _unique_anchors(results)
    groups: dict[str, MatrixGroup] = {}
    findings: list[Finding] = []
    for anchor, result in zip(anchors, results):
        group = groups.setdefault(result.framework, MatrixGroup(
            result.framework, ", ".join(f"{k} {v}" for k, v in result.versions.items())))
        group.rows.append(_matrix_row(anchor, result))
        label = f"{result.config.label} [{result.dtype.name}]"
        findings += [Finding(kind, label, text, anchor) for kind, text in result.findings()]
        findings += [Finding(kind, label, text, anchor) for kind, text in _gradient_findings(result)]
    # A conversion cell that is not exact (nor a refusal, which is this project's own port saying why not).
    for cell in conversions or []:
        if cell.verdict not in ("exact", "refused", "unavailable"):
            findings.append(Finding("conversion", f"{cell.path} on {cell.source}: {cell.config} [{cell.dtype}]",
                                    f"{cell.verdict}: {cell.detail}", cell.anchor))
    for row in rows:
        if isinstance(row, UnavailableFramework):
            groups[row.framework] = MatrixGroup(row.framework, "", unavailable=row.reason)
            findings.append(Finding("unavailable", row.framework, row.reason, f"unavailable-{anchor_for(row.framework)}"))
    findings.sort(key=lambda f: list(FINDING_KINDS).index(f.kind))
    verdict = Verdict(
        checked=len(results),
        documented=sum(1 for r in results if not r.findings()),
        frameworks=[f"{g.framework} ({g.versions})" for g in groups.values() if not g.unavailable],
        findings=findings,
    )
    ecosystem = build_ecosystem(rows)
    by_anchor = {ecosystem_anchor(e.framework, e.component, e.claims): e for e in ecosystem if not e.unavailable}
    sections = [_section(anchor, r, by_anchor) for anchor, r in zip(anchors, results)]
    return Report(
        title="GRU equivalence report",
        generated_at=generated_at or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        tool_version=version,
        environment=environment(),
        verdict=verdict,
        ecosystem=ecosystem,
        groups=list(groups.values()),
        formulas=_formula_cards(),
        sections=sections,
        chart_frames=[chart_frame(steps) for steps in sorted({s.chart.steps for s in sections if s.chart})],
        unavailable=[r.to_json() for r in rows if isinstance(r, UnavailableFramework)],
        summary=[{**r.to_json(), "anchor": anchor} for anchor, r in zip(anchors, results)],
        conversions=_conversion_section(conversions),
        has_gradients=any(r.gradients is not None for r in results),
    )


def _conversion_section(conversions):
    if conversions is None:
        return None
    from .conversions import conversion_section

    return conversion_section(conversions)


# --------------------------------------------------------------- rendering it

_ENV = Environment(loader=PackageLoader("reports", "templates"), autoescape=select_autoescape(["html", "j2"]),
                   trim_blocks=True, lstrip_blocks=True)
_ENV.filters["sci"] = lambda value: "-" if value is None else f"{value:.2e}"
# Convention ids break after "+" rather than mid-word in narrow columns.
_ENV.filters["conv"] = lambda value: Markup("+<wbr>").join(escape(part) for part in str(value).split("+"))
_ENV.filters["ecosystem_anchor"] = ecosystem_anchor


def render_html(report: Report) -> str:
    return _ENV.get_template("report.html.j2").render(report=report, finding_kinds=FINDING_KINDS)


def report_json(report: Report) -> dict:
    return {
        "generated_at": report.generated_at, "tool_version": report.tool_version, "environment": report.environment,
        "verdict": {"ok": report.verdict.ok, "checked": report.verdict.checked, "documented": report.verdict.documented,
                    "headline": report.verdict.headline,
                    "findings": [f.__dict__ for f in report.verdict.findings],
                    "groups": [group.to_json() for group in report.verdict.groups]},
        "ecosystem": [row.to_json() for row in report.ecosystem],
        "results": report.summary, "unavailable": report.unavailable,
        **({"conversions": [row.to_json() for row in report.conversions.unavailable + report.conversions.details]}
           if report.conversions is not None else {}),
    }


def write_report(rows, out_dir: str | Path, generated_at: str | None = None, conversions: list | None = None
                 ) -> tuple[Path, Path]:
    """Write ``index.html``, ``report.json`` and ``report.md`` into ``out_dir``; return the first two paths."""
    from .markdown import render_markdown

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = build_report(rows, generated_at, conversions)
    html_path, json_path = out / "index.html", out / "report.json"
    html_path.write_text(render_html(report), encoding="utf-8")
    json_path.write_text(json.dumps(report_json(report), indent=2), encoding="utf-8")
    (out / "report.md").write_text(render_markdown(report), encoding="utf-8")
    return html_path, json_path
