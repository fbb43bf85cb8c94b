"""The plain-text equivalence table that ``check`` and ``report`` print, and the conventions under it."""

from __future__ import annotations

from reference import Convention

from .matrix import ConfigResult, UnavailableFramework, error_headline


def _format_error(value: float | None) -> str:
    return "-" if value is None else f"{value:.2e}"


def render_table(rows: list[ConfigResult | UnavailableFramework], gradients: bool = False) -> str:
    """One line per row; ``gradients=True`` (``check --gradients``) adds a column with each row's gradient
    verdict (``ConfigResult.gradients``), and without it the table is unchanged.

    Why a row failed or a framework is unavailable is a numbered note under the table, one per distinct
    text: a long message in a cell would widen that column for every row (24 onnxruntime float64 rows share
    one message)."""
    header = ("framework configuration", "dtype", "documentation claims", "matched", "error of match", "nearest other convention", "margin")
    notes: dict[str, int] = {}

    def note(text: str) -> str:
        # The headline: a crash report's tail (many lines) would break the notes; the JSON and the page keep it all.
        return f"[{notes.setdefault(error_headline(text), len(notes) + 1)}]"

    lines = []
    for row in rows:
        if isinstance(row, UnavailableFramework):
            lines.append((row.framework, "-", "-", f"unavailable {note(row.reason)}", "-", "-", "-"))
            continue
        if row.error:
            lines.append((row.config.label, row.dtype.name, row.claimed.id, f"ERROR {note(row.error)}", "-", "-", "-"))
            continue
        matched = row.matched
        best, best_diff = row.ranked()[0]
        other, other_diff = row.nearest_other
        identification = row.identification
        if matched:
            verdict = matched.id
        elif identification.ambiguous:
            verdict = "ambiguous: " + " / ".join(c.id for c in identification.candidates)
        elif identification.diagnosis:
            verdict = f"none; diagnosis: {identification.diagnosis[0].name}"
        else:
            verdict = f"none (closest {best.id})"
        if matched and matched != row.claimed:
            verdict += "  <- differs from the documentation"
        lines.append((
            row.config.label, row.dtype.name, row.claimed.id, verdict,
            _format_error(best_diff.max_abs), f"{_format_error(other_diff.max_abs)} ({other.id})",
            f"{identification.margin:.3g}x",
        ))
    if gradients:
        header += ("gradients",)
        lines = [line + (row.gradients.verdict if getattr(row, "gradients", None) is not None else "-",)
                 for row, line in zip(rows, lines)]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line).rstrip() for line in lines]
    if notes:
        out += ["", *(f"[{number}] {text}" for text, number in notes.items())]
    return "\n".join(out)


def render_conventions() -> str:
    lines = ["Conventions:"]
    for convention in Convention.all():
        lines.append(f"  {convention.id}:")
        lines += [f"      {equation}" for equation in convention.equations]
    return "\n".join(lines)
