"""The ecosystem table: one row per framework class, so a reader sees in one glance which formula
each GRU computes, with which weights, at which precision, and what is worth knowing.

Rows group the measured configurations by ``(framework, class, documented convention)``;
every column is derived from the ``ConfigResult``s, never written by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from adapters.base import ALL_BIASES

from .matrix import ConfigResult, UnavailableFramework


@dataclass
class EcosystemRow:
    framework: str
    component: str
    versions: str
    claims: str
    claim_source: str
    computes: str
    layout: str
    biases: str
    precision: str
    padding: str
    configurations: int
    findings: list[str] = field(default_factory=list)
    unavailable: str | None = None

    @property
    def as_documented(self) -> bool:
        return self.unavailable is None and not self.findings

    def to_json(self) -> dict:
        return dict(self.__dict__)


def _biases(fields: tuple[str, ...]) -> str:
    if not fields:
        return "none"
    if fields == ALL_BIASES:
        return "all six (b_z b_r b_h c_z c_r c_h)"
    return " ".join(fields)


def _join_unique(values) -> str:
    seen = []
    for value in values:
        if value and value not in seen:
            seen.append(value)
    return "; ".join(seen)


def build_ecosystem(rows: list[ConfigResult | UnavailableFramework]) -> list[EcosystemRow]:
    groups: dict[tuple[str, str, str], list[ConfigResult]] = {}
    table = []
    for row in rows:
        if isinstance(row, UnavailableFramework):
            table.append(EcosystemRow(row.framework, "-", "-", "-", "", "-", "", "", "", "", 0, unavailable=row.reason))
            continue
        groups.setdefault((row.framework, row.config.framework_class, row.claimed.id), []).append(row)
    for (framework, component, claimed), results in groups.items():
        first = results[0]
        computes = _join_unique(
            (r.matched.id if r.matched else ("failed" if r.error else "none")) for r in results
        )
        lowered = sorted({f"{r.precision.requested} requested, {r.precision.computed} computed"
                          for r in results if r.precision and r.precision.lower_than_requested})
        # A list, not a joined string: a finding's own text may hold "; ".
        findings = list(dict.fromkeys(f"{kind}: {text}" for r in results for kind, text in r.findings()))
        table.append(EcosystemRow(
            framework=framework,
            component=component,
            versions=", ".join(f"{k} {v}" for k, v in first.versions.items()),
            claims=claimed,
            claim_source=first.config.claim_source,
            computes=computes,
            layout=_join_unique(r.config.layout for r in results),
            biases=_join_unique(_biases(r.config.bias_fields) for r in results),
            precision="; ".join(lowered) if lowered else "as requested",
            padding=_join_unique(r.config.padding_semantics for r in results if r.config.masked) or "not exercised",
            configurations=len({r.config.name for r in results}),
            findings=findings,
        ))
    return table


def render_ecosystem_text(table: list[EcosystemRow]) -> str:
    """A compact terminal table: class, computes, claims, biases, precision, findings."""
    header = ("framework class", "computes", "claims", "biases", "precision", "findings")
    lines = []
    for row in table:
        if row.unavailable:
            lines.append((row.framework, "unavailable", "-", "-", "-", row.unavailable))
            continue
        verdict = "as documented" if row.as_documented else f"{len(row.findings)} finding(s)"
        lines.append((f"{row.framework}: {row.component}", row.computes,
                      "same" if row.claims == row.computes else row.claims, row.biases, row.precision, verdict))
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*line).rstrip() for line in [header, tuple("-" * w for w in widths), *lines])
