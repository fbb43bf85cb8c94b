"""``gru-equiv inspect``: every GRU in a saved file, what its format implies, and what its own
framework computes on its real weights (``adapters.formats``), as text or JSON."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from adapters.formats import Confirmation, FoundGRU, confirm, open_file


@dataclass
class Inspected:
    path: Path
    format: str
    grus: list[tuple[FoundGRU, Confirmation]]

    def to_json(self) -> dict:
        return {"path": str(self.path), "format": self.format,
                "grus": [{**found.to_json(), "confirmation": confirmation.to_json()}
                         for found, confirmation in self.grus]}

    def describe(self) -> str:
        lines = [f"{self.path}: {self.format} file, {len(self.grus)} GRU(s)"]
        for found, confirmation in self.grus:
            lines += [
                f"== {found.location} ({found.kind})",
                f"   sizes: input {found.input_size}, hidden {found.hidden_size}; layers {found.num_layers}; "
                f"directions {found.directions}{' (reversed)' if found.reverse else ''}; dtype {found.stored_dtype}",
                f"   biases: {found.bias_layout}",
                f"   format implies: {found.convention.id if found.convention else 'unknown'} ({found.convention_source})",
                f"   measured: {confirmation.describe()}",
            ]
            if confirmation.errors:
                lines += [f"     {name}: max abs error {error:.3g}"
                          for name, error in sorted(confirmation.errors.items(), key=lambda item: item[1])]
            if confirmation.identification and confirmation.identification.diagnosis:
                lines.append(f"   diagnosis: {confirmation.identification.diagnosis[0].describe()}")
            lines += [f"   note: {note}" for note in found.notes]
        return "\n".join(lines)


def inspect_file(path, name: str | None = None) -> Inspected:
    """Read ``path`` (``FormatError`` when it cannot be), confirm each GRU (or the one named ``name``)."""
    from adapters.formats import choose

    format_name, found = open_file(path)
    if name is not None:
        found = [choose(found, name, path)]
    return Inspected(Path(path), format_name, [(gru, confirm(gru)) for gru in found])
