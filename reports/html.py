"""The HTML and JSON difference report: data as dataclasses first, then an autoescaped Jinja2 template.

One self-contained file: inline CSS, charts as inline SVG, no request to any other host.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape

from reference import Convention, tolerance_for

from .ecosystem import EcosystemRow, build_ecosystem
from .matrix import ConfigResult, UnavailableFramework

CHART_WIDTH, CHART_HEIGHT = 360, 140
CONVENTION_COLOURS = {
    "z_on_previous+reset_before": "#1f77b4",
    "z_on_previous+reset_after": "#d62728",
    "z_on_candidate+reset_before": "#2ca02c",
    "z_on_candidate+reset_after": "#9467bd",
}


@dataclass
class ConventionStats:
    convention: str
    max_abs: float
    max_rel: float
    mean_abs: float
    mismatched: int
    total: int
    first_divergent_step: int | None
    passed: bool


@dataclass
class Polyline:
    convention: str
    colour: str
    points: str  # SVG "x,y x,y ..."


@dataclass
class Heatmap:
    title: str
    width: int
    height: int
    cells: list[tuple[int, int, int, int, str, str]]  # x, y, w, h, fill, tooltip
    max_value: float


@dataclass
class Section:
    anchor: str
    label: str
    dtype: str
    claimed: str
    matched: str | None
    margin: float | None
    ambiguous: bool
    diagnosis: list[str]
    stats: list[ConventionStats]
    chart: Chart | None
    heatmaps: list[Heatmap]
    reproduce: str
    shapes: str
    seed: int
    error: str | None


@dataclass
class Report:
    title: str
    generated_at: str
    tool_version: str
    environment: dict[str, str]
    conventions: list[tuple[str, list[str]]]
    convention_ids: list[str]
    sections: list[Section]
    unavailable: list[dict]
    summary: list[dict] = field(default_factory=list)
    ecosystem: list[EcosystemRow] = field(default_factory=list)


def _per_step_error(observed: np.ndarray, expected: np.ndarray) -> np.ndarray:
    return np.abs(observed.astype(np.float64) - expected).max(axis=(0, 2))


@dataclass
class Chart:
    lines: list[Polyline]
    steps: int
    ticks: list[tuple[float, str]]  # (y, label) on the log axis
    tolerance_y: float | None


def _chart(result: ConfigResult) -> Chart | None:
    if result.observed is None or result.observed.outputs is None:
        return None
    curves = {c: _per_step_error(result.observed.outputs, result.expected[c].outputs) for c in Convention.all()}
    tolerance = sum(tolerance_for(result.dtype))
    floor = 1e-17
    values = np.log10(np.maximum(np.concatenate([*curves.values(), [tolerance]]), floor))
    low, high = np.floor(values.min()), np.ceil(values.max())
    high = max(high, low + 1)
    steps = len(next(iter(curves.values())))
    left, right, top, bottom = 48, CHART_WIDTH - 8, 8, CHART_HEIGHT - 22

    def y_of(value: float) -> float:
        return top + (bottom - top) * (1 - (np.log10(max(value, floor)) - low) / (high - low))

    lines = []
    for convention, curve in curves.items():
        points = " ".join(
            f"{left + (right - left) * (t / max(steps - 1, 1)):.1f},{y_of(v):.1f}" for t, v in enumerate(curve)
        )
        lines.append(Polyline(convention.id, CONVENTION_COLOURS[convention.id], points))
    stride = max(1, int((high - low) // 4))
    ticks = [(round(y_of(10.0**e), 1), f"1e{int(e)}") for e in np.arange(low, high + 1, stride)]
    return Chart(lines, steps, ticks, round(y_of(tolerance), 1))


def _heatmap(title: str, observed: np.ndarray, expected: np.ndarray) -> Heatmap:
    gap = np.abs(observed.astype(np.float64) - expected).max(axis=0)  # (time, unit)
    top = float(gap.max()) or 1.0
    cell = 20
    cells = []
    for t in range(gap.shape[0]):
        for u in range(gap.shape[1]):
            level = gap[t, u] / top
            shade = int(255 * (1 - level))
            cells.append((u * cell, t * cell, cell, cell, f"rgb(255,{shade},{shade})",
                          f"timestep {t}, unit {u}: {gap[t, u]:.3g}"))
    return Heatmap(title, gap.shape[1] * cell, gap.shape[0] * cell, cells, top)


def _section(index: int, result: ConfigResult) -> Section:
    anchor = f"config-{index}"
    shapes = (f"batch {result.case.batch}, time {result.case.time}, input {result.case.input_size}, "
              f"hidden {result.case.hidden_size}, layers {result.config.num_layers}, directions {result.config.directions}")
    if result.error:
        return Section(anchor, result.config.label, result.dtype.name, result.claimed.id, None, None, False, [], [],
                       None, [], result.rerun_command(), shapes, result.case.seed, result.error)
    stats = []
    for convention, diff in result.differences.items():
        parts = diff.parts
        stats.append(ConventionStats(
            convention.id, diff.max_abs, max(p.max_rel for p in parts), max(p.mean_abs for p in parts),
            sum(p.mismatched for p in parts), sum(p.total for p in parts),
            diff.outputs.first_divergent_step if diff.outputs else None, diff.passed,
        ))
    chart = _chart(result)
    heatmaps = []
    if result.observed.outputs is not None:
        best = result.matched or result.ranked()[0][0]
        other = next(c for c, _ in result.ranked() if c != best)
        for label, convention in (("matched" if result.matched else "closest", best), ("nearest other", other)):
            heatmaps.append(_heatmap(f"{label}: {convention.id}", result.observed.outputs, result.expected[convention].outputs))
    identification = result.identification
    return Section(
        anchor, result.config.label, result.dtype.name, result.claimed.id,
        result.matched.id if result.matched else None, identification.margin, identification.ambiguous,
        [d.describe() for d in identification.diagnosis], stats, chart, heatmaps,
        result.rerun_command(), shapes, result.case.seed, None,
    )


def environment() -> dict[str, str]:
    info = {"python": platform.python_version(), "platform": platform.platform(), "cpu": platform.processor() or platform.machine(),
            "cpu count": str(os.cpu_count())}
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


def build_report(rows: list[ConfigResult | UnavailableFramework], generated_at: str | None = None) -> Report:
    try:
        version = metadata.version("gru-equivalence")
    except metadata.PackageNotFoundError:
        version = "unknown"
    results = [r for r in rows if isinstance(r, ConfigResult)]
    return Report(
        title="GRU equivalence report",
        generated_at=generated_at or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        tool_version=version,
        environment=environment(),
        conventions=[(c.id, list(c.equations)) for c in Convention.all()],
        convention_ids=[c.id for c in Convention.all()],
        sections=[_section(i, r) for i, r in enumerate(results)],
        unavailable=[r.to_json() for r in rows if isinstance(r, UnavailableFramework)],
        summary=[r.to_json() for r in results],
        ecosystem=build_ecosystem(rows),
    )


_ENV = Environment(loader=PackageLoader("reports", "templates"), autoescape=select_autoescape(["html", "j2"]))
_ENV.filters["sci"] = lambda value: "-" if value is None else f"{value:.2e}"


def render_html(report: Report) -> str:
    return _ENV.get_template("report.html.j2").render(report=report)


def write_report(rows, out_dir: str | Path, generated_at: str | None = None) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = build_report(rows, generated_at)
    html_path, json_path = out / "index.html", out / "report.json"
    html_path.write_text(render_html(report), encoding="utf-8")
    payload = {"generated_at": report.generated_at, "tool_version": report.tool_version,
               "environment": report.environment, "ecosystem": [row.to_json() for row in report.ecosystem],
               "results": report.summary, "unavailable": report.unavailable}
    json_path.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return html_path, json_path

