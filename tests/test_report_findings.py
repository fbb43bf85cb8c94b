"""The verdict banner lists a planted finding of each kind, each linked to evidence that exists,
is green only when there is nothing to report, and ``report.md`` says the same."""

from __future__ import annotations

import re

import numpy as np

from adapters import LayerConfig
from adapters.isolation import WorkerCrashed
from reference import Convention
from reports.html import Finding, Verdict, build_report, render_html, write_report
from reports.markdown import render_markdown
from reports.matrix import DEFAULT_CASE, ConfigResult, UnavailableFramework, compare_configuration

from .fake_adapters import PREVIOUS_AFTER, CrashingAdapter, LowPrecisionAdapter, ReferenceBackedAdapter

PREVIOUS_BEFORE = Convention("z_on_previous", "before")
FIXED_TIME = "2026-01-01T00:00:00+00:00"


def _row(adapter, dtype=np.float64):
    config = adapter.configurations()[0]
    try:
        return compare_configuration(adapter, config, dtype)
    except Exception as error:  # what run_matrix does with a configuration that fails
        failed = ConfigResult(adapter.name, config, np.dtype(dtype), adapter.versions(), DEFAULT_CASE)
        failed.error = f"{type(error).__name__}: {error}"
        return failed


def _planted_rows():
    return [
        _row(ReferenceBackedAdapter(PREVIOUS_AFTER, PREVIOUS_AFTER, name="honest")),
        _row(ReferenceBackedAdapter(PREVIOUS_BEFORE, PREVIOUS_AFTER, name="misdocumented")),
        _row(LowPrecisionAdapter(PREVIOUS_AFTER, PREVIOUS_AFTER, name="float32-only")),
        _row(CrashingAdapter(PREVIOUS_AFTER, PREVIOUS_AFTER, name="crashing")),
        UnavailableFramework("ghost", "ghost is not installed (No module named 'ghost')"),
    ]


def _ids(html: str) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', html))


def test_each_kind_of_finding_is_listed_in_the_banner_with_a_working_link():
    report = build_report(_planted_rows(), FIXED_TIME)
    html = render_html(report)
    kinds = {f.kind: f for f in report.verdict.findings}
    assert set(kinds) == {"documentation", "precision", "failure", "unavailable"}, report.verdict.findings
    assert kinds["documentation"].label.startswith("misdocumented:") and "z_on_previous+reset_before" in kinds["documentation"].text
    assert "float32 where float64 was asked" in kinds["precision"].text
    assert "kernel not registered" in kinds["failure"].text
    assert kinds["unavailable"].label == "ghost"
    assert not report.verdict.ok and "ATTENTION" in html and 'class="banner"' in html
    banner = html[html.index('<header id="verdict"') : html.index("</header>")]
    ids = _ids(html)
    for finding in report.verdict.findings:
        assert f'href="#{finding.anchor}"' in banner, finding
        assert finding.anchor in ids, f"{finding} links to a missing anchor"
    # The honest row is not a finding and its evidence stays collapsed; the others open.
    assert re.search(r'<details class="config" id="honest-fakegru-float64">', html)
    for name in ("misdocumented", "float32-only", "crashing"):
        assert re.search(rf'<details class="config finding" id="{name}-fakegru-float64" open>', html), name


def test_the_banner_is_green_only_when_there_is_nothing_to_report():
    clean = build_report([_row(ReferenceBackedAdapter(PREVIOUS_AFTER, PREVIOUS_AFTER, name="honest"))], FIXED_TIME)
    assert clean.verdict.ok and "All clear" in clean.verdict.headline
    html = render_html(clean)
    assert 'class="banner ok"' in html and "PASS" in html and 'id="findings"' not in html
    assert "No findings" in render_markdown(clean)
    unavailable_only = build_report([UnavailableFramework("ghost", "not installed")], FIXED_TIME)
    assert not unavailable_only.verdict.ok


def test_stable_anchors_name_framework_configuration_and_dtype():
    row = _row(ReferenceBackedAdapter(PREVIOUS_AFTER, PREVIOUS_AFTER, name="torch"))
    row.config = LayerConfig(framework="torch", name="nn.GRU(batch_first=True)", claimed=PREVIOUS_AFTER)
    report = build_report([row], FIXED_TIME)
    assert report.sections[0].anchor == "torch-nn-gru-batch-first-true-float64"


def test_report_md_carries_the_verdict_and_the_findings_table(tmp_path):
    write_report(_planted_rows(), tmp_path, FIXED_TIME)
    markdown = (tmp_path / "report.md").read_text()
    assert markdown.startswith("## ⚠️ GRU equivalence report")
    assert "| kind | finding | runs |" in markdown
    for kind in ("documentation", "precision", "failure", "unavailable"):
        assert f"| {kind} | " in markdown, kind
    assert "(index.html#misdocumented-fakegru-float64)" in markdown
    assert (tmp_path / "index.html").exists() and (tmp_path / "report.json").exists()


def test_a_finding_given_by_several_runs_is_listed_once_with_a_link_to_each_run(tmp_path):
    """The banner and report.md list each distinct finding once (kind and text), linking every run that gives it."""
    rows = [_row(CrashingAdapter(PREVIOUS_AFTER, PREVIOUS_AFTER, name=name)) for name in ("crash-a", "crash-b", "crash-c")]
    rows += [_row(ReferenceBackedAdapter(PREVIOUS_BEFORE, PREVIOUS_AFTER, name="misdocumented"), dtype)
             for dtype in (np.float32, np.float64)]
    report = build_report(rows, FIXED_TIME)
    assert len(report.verdict.findings) == 5
    assert [(g.kind, len(g.findings)) for g in report.verdict.groups] == [("documentation", 2), ("failure", 3)]
    assert report.verdict.headline.endswith("5 findings to read, 2 distinct."), report.verdict.headline
    html = render_html(report)
    banner = html[html.index('<ul id="findings">') : html.index("</ul>", html.index('<ul id="findings">'))]
    assert banner.count("<li>") == 2 and banner.count("kernel not registered for this dtype") == 1, banner
    assert "<summary>3 runs</summary>" in banner, banner  # more than two runs fold under a count
    for finding in report.verdict.findings:
        assert f'href="#{finding.anchor}"' in banner, finding
    write_report(rows, tmp_path, FIXED_TIME)
    markdown = (tmp_path / "report.md").read_text()
    (failure_line,) = [line for line in markdown.splitlines() if line.startswith("| failure |")]
    assert all(f"(index.html#{name}-fakegru-float64)" in failure_line for name in ("crash-a", "crash-b", "crash-c"))


def test_findings_that_differ_only_in_measured_numbers_are_one_finding_with_their_ranges():
    """Three runs computing float32 where float64 was asked, each with its own error: one finding, the error a range."""
    def finding(label, text):
        return Finding("precision", label, text, label)

    text = "computed at lower precision than requested: float32 where float64 was asked (max abs error {}, below 2e-12)"
    verdict = Verdict(3, 0, [], [finding("a", text.format("1.1e-07")), finding("b", text.format("2.3e-07")),
                                 finding("c", text.format("9.9e-08")), finding("d", "float16 where float32 was asked")])
    (ranged, other) = verdict.groups
    assert ranged.text == text.format("9.9e-08 to 2.3e-07"), ranged.text
    assert [f.label for f in ranged.findings] == ["a", "b", "c"] and other.text == "float16 where float32 was asked"
    same = Verdict(2, 0, [], [finding("a", text.format("1e-07")), finding("b", text.format("1.0e-07"))])
    assert same.groups[0].text == text.format("1e-07"), "equal values are given once"
    assert ranged.to_json() == {"kind": "precision", "text": ranged.text, "anchors": ["a", "b", "c"]}
    decimal = ("bfloat16 where float32 was asked (max abs error {}, where float32 keeps it below 2e-05; the bfloat16 "
               "model of the reference gives 0.0035 on this probe; openvino 2026.4.1, ml_dtypes 0.6.0)")
    (openvino,) = Verdict(2, 0, [], [finding("a", decimal.format("0.0037")), finding("b", decimal.format("0.0051"))]).groups
    assert openvino.text == decimal.format("0.0037 to 0.0051"), openvino.text
    versions = Verdict(2, 0, [], [finding("a", "needs ml_dtypes 0.6.0"), finding("b", "needs ml_dtypes 0.7.0")]).groups
    assert len(versions) == 2, "a version is not a measured number"


def test_gradient_and_conversion_findings_are_listed_in_the_banner_and_link_to_their_evidence():
    """A row whose gradients differ and a conversion cell that changed the GRU are findings of their own kinds."""
    from reports.conversions import ConversionResult
    from reports.gradients import compare_gradients

    from .fake_adapters import DroppedBiasGradientAdapter

    adapter = DroppedBiasGradientAdapter(PREVIOUS_AFTER, PREVIOUS_AFTER, name="no-c_h-gradient", dropped="c_h")
    row = _row(adapter)
    row.gradients = compare_gradients(adapter, row.config, np.float64)
    exact = ConversionResult("port-a", "a -> b", "tool a", "torch", "nn.GRU", "float32", {"a": "1"}, "exact", "as the source")
    broken = ConversionResult("tool-b", "a -> onnx", "tool b", "torch", "nn.GRU", "float32", {"b": "2"},
                              "mistake named", "no convention fits; the best explanation: biases: z<->r")
    report = build_report([row], FIXED_TIME, conversions=[exact, broken])
    html = render_html(report)
    kinds = {f.kind: f for f in report.verdict.findings}
    assert set(kinds) == {"gradients", "conversion"}, report.verdict.findings
    assert "gradients differ: c" in kinds["gradients"].text and kinds["gradients"].anchor == "no-c-h-gradient-fakegru-float64"
    assert kinds["conversion"].label == "tool-b on torch: nn.GRU [float32]" and "biases: z<->r" in kinds["conversion"].text
    banner = html[html.index('<header id="verdict"') : html.index("</header>")]
    for finding in report.verdict.findings:
        assert f'href="#{finding.anchor}"' in banner and finding.anchor in _ids(html), finding
    assert re.search(r'<details class="config finding" id="no-c-h-gradient-fakegru-float64" open>', html)
    assert "| conversion |" in render_markdown(report) and "| gradients |" in render_markdown(report)


def test_a_crashed_workers_last_output_is_evidence_in_its_row_not_in_the_banner():
    """Two dtypes of one configuration crash with call chains that differ (float vs double): the banner gives
    the headline once for both; the row still prints the whole message."""
    rows = []
    for dtype, kernel in ((np.float32, "float"), (np.float64, "double")):
        row = _row(CrashingAdapter(PREVIOUS_AFTER, PREVIOUS_AFTER, name="segfaulting"), dtype)
        row.error = str(WorkerCrashed("segfaulting cfg", "was killed by signal SIGSEGV (11)",
                                      f"FatalError: Segmentation fault\nphi::RnnKernel<{kernel}, phi::CPUContext>"))
        rows.append(row)
    report = build_report(rows, FIXED_TIME)
    (group,) = report.verdict.groups
    assert group.text == "failed to run: segfaulting cfg: the worker process was killed by signal SIGSEGV (11)", group.text
    html = render_html(report)
    banner = html[html.index('<ul id="findings">') : html.index("</ul>", html.index('<ul id="findings">'))]
    assert "RnnKernel" not in banner, banner
    assert "phi::RnnKernel&lt;float, phi::CPUContext&gt;" in html and "RnnKernel&lt;double" in html, "the rows keep the evidence"
