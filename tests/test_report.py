"""The HTML/JSON report: same numbers as ``check --json``, escaped text, deterministic, written when a
framework is missing, produced by ``pytest --gru-report``, and rendered by a real browser."""

from __future__ import annotations

import contextlib
from html import unescape
import io
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import adapters
from adapters import LayerConfig
from reports.cli import main
from reports.html import build_report, render_html, write_report
from reports.matrix import compare_configuration, run_matrix

from .conftest import adapter_or_skip
from .fake_adapters import PREVIOUS_AFTER, ReferenceBackedAdapter

# One xdist worker measures the matrix once for all the files of this group (conftest.measured; see Makefile).
pytestmark = pytest.mark.xdist_group("matrix")

FIXED_TIME = "2026-01-01T00:00:00+00:00"


# exact, failed, precision only, unavailable (where the tools are installed as pinned).
REPORT_PATHS = ["torch-onnx-script", "keras-tflite", "onnx-float16", "onnx-onnx2torch"]


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    """``gru-equiv report`` with defaults, in-process (``check_json`` already covers the console script)."""
    from .conftest import render_from_the_memo

    out = tmp_path_factory.mktemp("report")
    stdout, stderr = io.StringIO(), io.StringIO()
    # The measurements are shared with check_json (conftest.measured): what is tested here is the rendering.
    # The conversion section is rendered from a few paths, one of each verdict: every path's own cell is
    # tested in tests/test_conversions.py.
    from reports import conversions

    run_conversions = conversions.run_conversions
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        render_from_the_memo(patch)
        # In this process too (contained=False): the report's containment is tested in tests/test_cli.py.
        patch.setattr(conversions, "run_conversions", lambda path_ids=None, *args, **kwargs: run_conversions(
            path_ids or REPORT_PATHS, *args, **{**kwargs, "contained": False}))
        assert main(["report", "--out", str(out), "--jobs", "1"]) == 0  # one process: workers would not share the memo
    assert f"report written: {(out / 'index.html').resolve()}" in stdout.getvalue()
    assert "framework configuration" in stdout.getvalue()  # the table is printed too
    assert "running " in stderr.getvalue()  # progress while it runs
    return out, json.loads((out / "report.json").read_text()), (out / "index.html").read_text()


def test_report_json_and_html_agree_with_check_json(full_report, check_json):
    _, data, html = full_report
    checked = {(r["framework"], r.get("config"), r.get("dtype")): r for r in check_json}
    reported = {(r["framework"], r.get("config"), r.get("dtype")): r for r in data["results"]}
    assert set(checked) - {k for k in checked if k[1] is None} == set(reported)
    for key, row in reported.items():
        assert row["errors"] == checked[key]["errors"], key
        assert row["matched"] == checked[key]["matched"], key
        evidence = _evidence(html, row["anchor"])
        for value in row["errors"].values():
            assert f"{value:.2e}" in evidence, (key, value)
    assert len(re.findall(r'<tr>\n<td><a href="#[a-z0-9-]+">', html)) == len(reported)


def _evidence(html: str, anchor: str) -> str:
    """The <details> block of one configuration."""
    start = html.index(f'id="{anchor}"')
    return html[start : html.index("</details>", start)]


def test_report_page_has_every_part(full_report):
    _, data, html = full_report
    assert 'id="summary-matrix"' in html and html.count('<svg class="chart"') >= 1
    assert "h_cand = tanh(x_t W_h + b_h + <mark>r * (h_prev U_h + c_h)</mark>)" in html
    assert "h_t = <mark>z * h_prev + (1 - z)</mark> * h_cand" in html
    for key in ("python", "numpy", "torch", "tensorflow", "keras", "cpu", "numpy BLAS"):
        assert f"<th>{key}</th>" in html and key in data["environment"]
    assert re.search(r"gru-equiv check --frameworks [\w-]+ --config &#39;", html)  # quoted, HTML-escaped
    # Self-contained: no scripts, stylesheets, images or links fetched from anywhere.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert "<script" not in html and "@import" not in html


def test_text_containing_html_reaches_the_page_as_text(tmp_path):
    hostile = "<script>alert('x')</script>&<b>"
    fake = ReferenceBackedAdapter(PREVIOUS_AFTER, PREVIOUS_AFTER)
    config = LayerConfig(framework="fake", name=hostile, claimed=PREVIOUS_AFTER)
    result = compare_configuration(fake, config, np.float64)
    html = render_html(build_report([result], FIXED_TIME))
    assert hostile not in html and "<b>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&lt;b&gt;" in html


def test_same_inputs_and_seed_give_the_same_report(tmp_path):
    rows_a = run_matrix(["torch"], dtypes=[np.float32])
    rows_b = run_matrix(["torch"], dtypes=[np.float32])
    assert render_html(build_report(rows_a, FIXED_TIME)) == render_html(build_report(rows_b, FIXED_TIME))


def test_report_is_written_when_a_framework_is_missing(monkeypatch, tmp_path):
    monkeypatch.setitem(adapters.REGISTRY, "missing", "adapters.no_such_framework_module")
    adapters._load.cache_clear()
    try:
        rows = run_matrix(["missing"])
        html_path, json_path = write_report(rows, tmp_path / "out")
    finally:
        adapters._load.cache_clear()
    html = html_path.read_text()
    assert "unavailable: " in html and "no_such_framework_module" in html
    assert json.loads(json_path.read_text())["unavailable"][0]["framework"] == "missing"


# Frameworks measured in the test process itself (no worker process to start for this one test).
SESSION_FRAMEWORKS = ("torch", "keras", "tf-legacy")


def test_pytest_gru_report_option_writes_the_sessions_comparisons(pytester):
    if not [a for a in adapters.available() if a.name in SESSION_FRAMEWORKS]:
        pytest.skip(f"none of {SESSION_FRAMEWORKS} is installed")
    pytester.makepyfile(test_port="""
        import numpy as np
        import adapters
        from reports.matrix import compare_configuration

        def test_cells(gru_comparisons):
            for adapter in adapters.available():
                if adapter.name not in %r:
                    continue
                for config in adapter.configurations():
                    if "GRUCell" in config.name:
                        result = compare_configuration(adapter, config, np.float64)
                        gru_comparisons.append(result)
                        assert result.matched == config.claimed
    """ % (SESSION_FRAMEWORKS,))
    out = pytester.path / "session-report"
    outcome = pytester.runpytest_inprocess("-p", "reports.pytest_plugin", f"--gru-report={out}")
    outcome.assert_outcomes(passed=1)
    data = json.loads((out / "report.json").read_text())
    configs = sorted(r["config"] for r in data["results"])
    expected = sorted(c.name for a in adapters.available() if a.name in SESSION_FRAMEWORKS
                      for c in a.configurations() if "GRUCell" in c.name)
    assert expected, "the session must have measured something"
    assert configs == expected and all(r["dtype"] == "float64" for r in data["results"])
    assert (out / "index.html").exists()
    outcome.stdout.fnmatch_lines(["*GRU report of * comparison(s) written*"])


# ---------------------------------------------------------------- a real browser


def page_chart_count(results) -> int:
    """Configurations that return a sequence get a chart (one line per convention)."""
    return sum(1 for r in results if r["returns_sequences"] and not r["error"])


def _chromium() -> str | None:
    for name in ("chromium", "google-chrome", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return os.environ.get("CHROMIUM") or None


def _launch(playwright, executable):
    return playwright.chromium.launch(executable_path=executable, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run",
    ])


def _open_in_chromium(html_path: Path, check):
    """Open the page at 1280 x 800 as a newcomer would; ``check(page)`` reads it; returns (its result, problems)."""
    executable = _chromium()
    if not executable:
        pytest.skip("no Chromium found (install Debian's chromium package; .ci/run does)")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    problems = []
    with playwright.sync_playwright() as p:
        browser = _launch(p, executable)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("request", lambda r: problems.append(f"request: {r.url}") if not r.url.startswith("file:") else None)
            page.goto(html_path.as_uri())
            return check(page), problems
        finally:
            browser.close()


def _read_page(page) -> dict:
    facts = page.evaluate("""() => ({
        scrollWidth: document.documentElement.scrollWidth,
        clientWidth: document.documentElement.clientWidth,
        first: document.body.firstElementChild.id,
        bannerTop: document.getElementById('verdict').getBoundingClientRect().top,
        findingLinks: [...document.querySelectorAll('#findings a')].map(a => a.getAttribute('href')),
        findingItems: document.querySelectorAll('#findings > li').length,
        missingAnchors: [...document.querySelectorAll('#findings a, #summary-matrix a')]
            .map(a => a.getAttribute('href').slice(1)).filter(id => !document.getElementById(id)),
        matrixRows: document.querySelectorAll('#summary-matrix tbody tr:not(.group)').length,
        matchedCells: document.querySelectorAll('#summary-matrix td.match').length,
        matchSymbols: [...document.querySelectorAll('#summary-matrix td.match')].filter(td => td.textContent.startsWith('✓')).length,
        details: document.querySelectorAll('details.config').length,
        openDetails: document.querySelectorAll('details.config[open]').length,
        formulas: document.querySelectorAll('pre.formula').length,
        marks: document.querySelectorAll('pre.formula mark').length,
    })""")
    closed = page.locator("details.config:not([open])")
    if closed.count():
        anchor = closed.first.get_attribute("id")
        details = page.locator(f"#{anchor}")  # by id: once open it no longer matches :not([open])
        details.locator("summary").click()
        facts["expanded"] = details.evaluate("d => d.open")
        facts["closedStats"] = details.locator("table.stats tbody tr").count()  # numbers: every row has them
        charted = page.locator("details.config[open]:has(svg.chart)").first  # a chart: rows with a finding
        facts["chartBox"] = charted.locator("svg.chart").bounding_box()
        facts["chartLines"] = charted.locator("svg.chart polyline").count()
        flagged = page.locator("details.config[open]:has(svg.heatmap)").first  # drawn where no formula fits
        facts["heatmapBox"] = flagged.locator("svg.heatmap").first.bounding_box()
        facts["colourBar"] = flagged.locator("svg.heatmap use[href='#colour-bar']").count()
    return facts


def test_report_reads_in_ten_seconds_in_chromium_at_1280(full_report, tmp_path):
    out, data, _ = full_report
    screenshot = tmp_path / "report.png"

    def check(page):
        facts = _read_page(page)
        page.goto((out / "index.html").as_uri())
        page.screenshot(path=str(screenshot))
        return facts

    facts, problems = _open_in_chromium(out / "index.html", check)
    results = data["results"]
    assert facts["scrollWidth"] <= facts["clientWidth"], f"horizontal overflow: {facts['scrollWidth']} > {facts['clientWidth']}"
    assert facts["first"] == "verdict" and facts["bannerTop"] == 0, facts
    assert not facts["missingAnchors"], facts["missingAnchors"]
    assert facts["matrixRows"] == len(results) + len(data["unavailable"])
    assert facts["matchedCells"] == facts["matchSymbols"] == sum(1 for r in results if r["matched"])
    assert facts["details"] == len(results)
    assert facts["openDetails"] == sum(1 for r in results if r["findings"])
    assert len(facts["findingLinks"]) == len(data["verdict"]["findings"])
    # One item per finding group, which together link every run that gives a finding.
    groups = data["verdict"]["groups"]
    assert facts["findingItems"] == len(groups) < len(data["verdict"]["findings"]), facts
    assert sorted(anchor for group in groups for anchor in group["anchors"]) == sorted(
        f["anchor"] for f in data["verdict"]["findings"])
    assert facts["formulas"] == 4 and facts["marks"] == 8
    assert facts.get("expanded") is True, facts
    assert facts["closedStats"] == 4, facts
    assert facts["chartLines"] == 4 and facts["chartBox"]["width"] > 300 and facts["chartBox"]["height"] > 150, facts
    assert facts["heatmapBox"]["width"] > 100 and facts["heatmapBox"]["height"] > 100 and facts["colourBar"] == 2, facts
    assert not problems, problems
    assert screenshot.stat().st_size > 10_000
    # Kept for a person (and CI's artifact upload): the first screen, as a newcomer sees it.
    saved = Path(os.environ.get("GRU_REPORT_SCREENSHOT", out / "report.png"))
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_bytes(screenshot.read_bytes())


def test_report_page_stays_light(full_report):
    out, data, _ = full_report
    size = (out / "index.html").stat().st_size
    per_row = size / max(1, len(data["results"]))
    assert size < 1.5e6, f"index.html is {size / 1e6:.2f} MB for {len(data['results'])} rows ({per_row:.0f} bytes a row)"


def test_report_with_gradients_shows_each_rows_gradient_verdict(tmp_path, capsys):
    """``report --gradients``: a gradient column in the matrix, the verdict with its groups in each section, and
    the same in the JSON; without the flag neither appears (the default page stays as it was)."""
    adapter_or_skip("torch")
    from reports import conversions

    out = tmp_path / "report"
    run_conversions = conversions.run_conversions
    with pytest.MonkeyPatch.context() as patch:  # the conversion section is full_report's to test
        patch.setattr(conversions, "run_conversions",
                      lambda path_ids=None, *args, **kwargs: run_conversions(path_ids or REPORT_PATHS, *args, **kwargs))
        assert main(["report", "--out", str(out), "--frameworks", "torch", "--dtypes", "float64", "--gradients",
                     "--quiet"]) == 0
    assert "gradients match" in capsys.readouterr().out
    data = json.loads((out / "report.json").read_text())
    verdicts = {row["config"]: row["gradients"]["verdict"] for row in data["results"]}
    assert verdicts and set(verdicts.values()) == {"gradients match"}, verdicts
    html = (out / "index.html").read_text()
    assert html.count('title="gradients of sum(outputs*G)+sum(h_last*K)') == 1
    assert len(re.findall(r'<td class="good">match</td>', html)) == len(verdicts), "one gradient cell per row"
    assert html.count("<tr><th>gradients</th><td>gradients match (under z_on_previous+reset_after; W max abs") == len(verdicts)


def test_report_has_the_conversion_paths_matrix_linked_to_each_cells_details(full_report):
    """Issue 10's section: source configuration x path, a coloured verdict per cell linking to its details,
    which hold the command that reruns just that cell; the JSON holds the same cells."""
    _, data, html = full_report
    assert '<h2 id="conversions">' in html and '<a href="#conversions">' in html
    cells = data["conversions"]
    assert {cell["path"] for cell in cells} == set(REPORT_PATHS), [cell["path"] for cell in cells]
    section = html[html.index('<h2 id="conversions">'):]
    for cell in cells:
        if cell["verdict"] == "unavailable":
            assert f'id="conv-unavailable-{cell["path"]}"' in section and cell["detail"] in unescape(section)
            continue
        link = re.search(r'<td class="v-(\w+)"><a href="#([\w-]+)" title="[^"]*">' + re.escape(cell["verdict"]), section)
        assert link, (cell["path"], cell["verdict"])
        details = section[section.index(f'id="{link.group(2)}"'):]
        details = details[: details.index("</details>")]
        assert f"gru-equiv convert --paths {cell['path']}" in details and cell["verdict"] in details, details[:300]
    ran = {c["verdict"] for c in cells} - {"unavailable"}
    if not ran:
        pytest.skip("every path of the section is unavailable here (its tools are missing)")
