"""``report.md``: the verdict and the findings table, for a GitHub job summary or a PR comment.

Built from the same ``Report`` as the HTML page, so the two never disagree. Table cells are escaped
(``|`` and newlines), and each finding links to its anchor in ``index.html``.
"""

from __future__ import annotations

from .html import FINDING_KINDS, Report


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def render_markdown(report: Report, page: str = "index.html") -> str:
    verdict = report.verdict
    lines = [
        f"## {'✅' if verdict.ok else '⚠️'} {report.title}",
        "",
        f"**{_cell(verdict.headline)}**",
        "",
        f"Checked {verdict.checked} configuration run(s) across: {_cell('; '.join(verdict.frameworks) or 'none')}.",
        "",
    ]
    if verdict.findings:
        lines += ["| kind | finding | runs |", "|---|---|---|"]
        for group in verdict.groups:
            runs = ", ".join(f"[{_cell(finding.label)}]({page}#{finding.anchor})" for finding in group.findings)
            lines.append(f"| {group.kind} | {_cell(group.text)} | {runs} |")
        lines.append("")
        lines.append("Kinds: " + "; ".join(f"**{kind}**: {text}" for kind, text in FINDING_KINDS.items()) + ".")
    else:
        lines.append("No findings: every configuration computes its documented formula at the requested precision.")
    lines += ["", "| framework class | computes | claims | biases | precision |", "|---|---|---|---|---|"]
    for row in report.ecosystem:
        if row.unavailable:
            lines.append(f"| {row.framework} | unavailable: {_cell(row.unavailable)} | | | |")
        else:
            lines.append(f"| {row.framework}: `{_cell(row.component)}` | `{row.computes}` | `{row.claims}` | "
                         f"{_cell(row.biases)} | {_cell(row.precision)} |")
    lines += ["", f"_gru-equivalence {report.tool_version}, generated {report.generated_at}._", ""]
    return "\n".join(lines)
