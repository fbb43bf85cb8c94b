"""The ecosystem table (``reports.ecosystem``): one row per framework class, every column derived from the
measured rows. Built here from fake frameworks whose answers are known (tests/fake_adapters.py)."""

from __future__ import annotations

import numpy as np

from adapters import LayerConfig
from reference import Convention
from reports.ecosystem import build_ecosystem, render_ecosystem_text
from reports.matrix import DEFAULT_CASE, ConfigResult, UnavailableFramework, compare_configuration

from .fake_adapters import PREVIOUS_AFTER, LowPrecisionAdapter, ReferenceBackedAdapter

PREVIOUS_BEFORE = Convention("z_on_previous", "before")
DTYPES = (np.float32, np.float64)


class TwoConfigurations(ReferenceBackedAdapter):
    """Two configurations of one class (``FakeGRU``), as a framework's table lists variants of one class."""

    def configurations(self):
        return [LayerConfig(framework=self.name, name="FakeGRU", claimed=self.claims),
                LayerConfig(framework=self.name, name="FakeGRU(variant=True)", claimed=self.claims)]


def _rows(adapter):
    return [compare_configuration(adapter, config, dtype) for config in adapter.configurations() for dtype in DTYPES]


def test_one_row_per_class_holding_what_its_runs_computed():
    (row,) = build_ecosystem(_rows(TwoConfigurations(PREVIOUS_AFTER, PREVIOUS_AFTER, name="honest")))
    assert (row.framework, row.component, row.configurations) == ("honest", "FakeGRU", 2), row
    assert row.computes == row.claims == PREVIOUS_AFTER.id and row.precision == "as requested", row
    assert row.as_documented and row.findings == [] and row.biases == "all six (b_z b_r b_h c_z c_r c_h)", row


def test_a_class_computing_another_formula_says_so_once_for_all_its_runs():
    (row,) = build_ecosystem(_rows(TwoConfigurations(PREVIOUS_BEFORE, PREVIOUS_AFTER, name="misdocumented")))
    assert (row.computes, row.claims) == (PREVIOUS_BEFORE.id, PREVIOUS_AFTER.id), row
    assert len(row.findings) == 1 and row.findings[0].startswith("documentation: computes z_on_previous+reset_before")
    assert not row.as_documented


def test_a_class_computing_below_the_requested_precision_says_which():
    (row,) = build_ecosystem(_rows(LowPrecisionAdapter(PREVIOUS_AFTER, PREVIOUS_AFTER, name="float32-only")))
    assert row.computes == PREVIOUS_AFTER.id and row.precision == "float64 requested, float32 computed", row


def test_a_finding_whose_text_holds_a_semicolon_is_one_finding():
    adapter = ReferenceBackedAdapter(PREVIOUS_AFTER, PREVIOUS_AFTER, name="failing")
    (config,) = adapter.configurations()
    failed = ConfigResult(adapter.name, config, np.dtype(np.float32), adapter.versions(), DEFAULT_CASE)
    failed.error = "RuntimeError: cannot run; the kernel is float32 only"
    (row,) = build_ecosystem([failed])
    assert row.computes == "failed" and row.findings == [
        "failure: failed to run: RuntimeError: cannot run; the kernel is float32 only"], row.findings


def test_the_text_table_has_a_line_per_class_and_the_reason_a_framework_is_unavailable():
    rows = _rows(TwoConfigurations(PREVIOUS_BEFORE, PREVIOUS_AFTER, name="misdocumented"))
    rows.append(UnavailableFramework("ghost", "ghost is not installed (pip install ghost)"))
    table = build_ecosystem(rows)
    lines = render_ecosystem_text(table).splitlines()
    assert len(lines) == 2 + len(table) == 4, lines  # header, rule, one line per row
    assert lines[0].startswith("framework class") and set(lines[1].replace(" ", "")) == {"-"}, lines
    # Unavailable frameworks first (what this machine could not check), then the measured classes.
    assert lines[2].startswith("ghost") and lines[2].endswith("ghost is not installed (pip install ghost)"), lines
    assert lines[3].startswith("misdocumented: FakeGRU") and lines[3].endswith("1 finding(s)"), lines
    assert all(line == line.rstrip() for line in lines), "no trailing padding"
