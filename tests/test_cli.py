"""The main job as a user runs it: ``gru-equiv check`` (table and JSON) and ``gru-equiv list``."""

from __future__ import annotations

import json
import pytest

import adapters
from reports.cli import main

from .conftest import adapter_or_skip, run_console_script
from .expected_failures import expected_failure

# One xdist worker measures the matrix once for all the files of this group (conftest.measured; see Makefile).
pytestmark = pytest.mark.xdist_group("matrix")

EXPECTED = {
    ("torch", "nn.GRU(batch_first=True)"): "z_on_previous+reset_after",
    ("keras", "GRU(reset_after=True)"): "z_on_previous+reset_after",
    ("keras", "GRU(reset_after=False)"): "z_on_previous+reset_before",
}


def test_console_script_is_installed_and_lists_its_commands():
    completed = run_console_script("--help", timeout=120)
    assert completed.returncode == 0, completed.stderr
    for command in ("check", "identify", "report", "baseline", "list"):
        assert command in completed.stdout


def test_check_json_states_each_frameworks_formula(check_json):
    rows = {(r["framework"], r["config"], r["dtype"]): r for r in check_json if "config" in r}
    for (framework, config), convention in EXPECTED.items():
        if isinstance(adapters.status()[framework], adapters.AdapterUnavailable):
            continue
        for dtype in ("float32", "float64"):
            row = rows[(framework, config, dtype)]
            assert row["matched"] == row["claimed"] == convention, row
            assert set(row["errors"]) == {
                "z_on_previous+reset_before", "z_on_previous+reset_after",
                "z_on_candidate+reset_before", "z_on_candidate+reset_after",
            }
            assert row["errors"][convention] == min(row["errors"].values())


def test_check_json_covers_every_configuration_and_dtype(check_json):
    for name, adapter in adapters.status().items():
        rows = [r for r in check_json if r["framework"] == name]
        if isinstance(adapter, adapters.AdapterUnavailable):
            assert rows == [{"framework": name, "unavailable": adapter.reason}]
            continue
        assert {(r["config"], r["dtype"]) for r in rows} == {
            (c.name, d) for c in adapter.configurations() for d in ("float32", "float64")
        }
        for row in rows:
            # A row listed in the one expected-failures table must deviate (strict), every other must not.
            expected = expected_failure(name, row["config"], row["dtype"], "formula")
            agrees = row["error"] is None and row["matched"] == row["claimed"]
            assert agrees != bool(expected), (expected, row)


def test_check_table_and_formulas(capsys):
    adapter_or_skip("torch")
    assert main(["check", "--frameworks", "torch", "--config", "nn.GRUCell", "--dtypes", "float64", "--quiet"]) == 0
    out = capsys.readouterr().out
    header, rule, row = out.splitlines()[:3]
    assert header.split("  ")[0] == "framework configuration" and "nearest other convention" in header
    assert row.startswith("torch:nn.GRUCell") and row.count("z_on_previous+reset_after") == 2
    assert "h_cand = tanh(x_t W_h + b_h + r * (h_prev U_h + c_h))" in out


def test_strict_check_fails_when_a_framework_contradicts_its_documentation(monkeypatch, capsys):
    monkeypatch.setitem(adapters.REGISTRY, "fake", "tests.fake_adapters")
    adapters._load.cache_clear()
    try:
        assert main(["check", "--frameworks", "fake", "--strict", "--quiet"]) == 1
        assert "differs from the documentation" in capsys.readouterr().out
        assert main(["check", "--frameworks", "fake", "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert [r["matched"] for r in rows] == ["z_on_candidate+reset_after"] * 2
    finally:
        adapters._load.cache_clear()


@pytest.mark.parametrize("argv,message", [
    (["check", "--frameworks", "jax"], "unknown framework 'jax'; valid: torch, keras"),
    (["check", "--dtypes", "float16"], "unknown dtype 'float16'; valid: float32, float64"),
    (["check", "--config", "nn.LSTM"], "unknown configuration(s) ['nn.LSTM'] among the selected frameworks"),
    (["check", "--frameworks", "torch", "--config", "GRU(reset_after=True)"], "unknown configuration(s) ['GRU(reset_after=True)']"),
    (["identify", "--framework", "torch", "--config", "nope"], "unknown configuration(s) ['nope']"),
    (["check", "--seed", "-1"], "argument --seed: -1 is out of range; valid: 0 to 4294967295"),
    (["check", "--seed", "99999999999999999999"], "is out of range; valid: 0 to 4294967295"),
    (["report", "--seed", "1.5"], "argument --seed: '1.5' is not an integer; valid: 0 to 4294967295"),
])
def test_bad_arguments_name_the_value_and_the_valid_ones(argv, message, capsys):
    """One line on stderr, exit status 2, before any configuration runs."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2, (argv, info.value.code, err)
    assert message in err, err
    assert "Traceback" not in err and "running" not in err


def test_an_unknown_configuration_is_an_error_even_when_a_framework_is_unavailable(monkeypatch, capsys):
    monkeypatch.setitem(adapters.REGISTRY, "missing", "adapters.no_such_module")
    adapters._load.cache_clear()
    try:
        with pytest.raises(SystemExit) as info:
            main(["check", "--frameworks", "torch", "missing", "--config", "nn.LSTM"])
        err = capsys.readouterr().err
        assert info.value.code == 2 and "unknown configuration(s) ['nn.LSTM']" in err, err
        assert "unavailable here, so not searched: " in err and "missing (adapters.no_such_module is not installed" in err, err
        with pytest.raises(SystemExit) as info:
            main(["check", "--frameworks", "missing"])
        err = capsys.readouterr().err
        assert info.value.code == 2 and "the selection ran no configuration (missing: " in err, err
    finally:
        adapters._load.cache_clear()


def test_identify_json_matches_each_configuration_with_margin(capsys):
    if isinstance(adapters.status()["keras"], adapters.AdapterUnavailable):
        pytest.skip("keras is unavailable")
    assert main(["identify", "--framework", "keras", "--config", "GRU(reset_after=False)", "Bidirectional(GRU) + mask",
                 "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 4
    for row in rows:
        identification = row["identification"]
        assert identification["matched"] == row["claimed"] and identification["margin"] > 100
        assert identification["diagnosis"] == [] and not identification["ambiguous"]
    main(["identify", "--framework", "keras", "--config", "GRU(reset_after=False)", "--dtypes", "float64"])
    assert "matched: z_on_previous+reset_before" in capsys.readouterr().out


def test_list_names_every_configuration(capsys):
    main(["list"])
    out = capsys.readouterr().out
    for name, adapter in adapters.status().items():
        assert out.count(f"{name}") >= 1
        if isinstance(adapter, adapters.Adapter):
            assert all(repr(c.name) in out for c in adapter.configurations())


def test_a_crash_report_in_the_table_is_one_line_the_json_keeps_it_whole():
    """A worker's crash report (signal, then the framework's own many-line tail) must not break the printed table."""
    import numpy as np

    from reports.matrix import DEFAULT_CASE, ConfigResult
    from reports.table import render_table

    from reference import Convention

    from .fake_adapters import ReferenceBackedAdapter

    adapter = ReferenceBackedAdapter(Convention("z_on_previous", "after"), Convention("z_on_previous", "after"))
    (config,) = adapter.configurations()[:1]
    row = ConfigResult(adapter.name, config, np.dtype(np.float32), adapter.versions(), DEFAULT_CASE)
    row.error = "WorkerCrashed: the worker process was killed by signal SIGSEGV (11); its last output:\nFatalError: x\nC++ call chain"
    table = render_table([row])
    assert len(table.splitlines()) == 5, table  # header, rule, one row, a blank line, its note
    assert "ERROR [1]" in table.splitlines()[2], table
    assert table.splitlines()[4].startswith("[1] WorkerCrashed: ") and "killed by signal SIGSEGV (11)" in table, table
    assert "FatalError" not in table
    assert row.to_json()["error"] == row.error


def test_a_long_reason_is_a_note_under_the_table_shared_by_the_rows_that_give_it():
    """Failed rows and unavailable frameworks do not widen the table: each distinct reason is one numbered note."""
    import numpy as np

    from reports.matrix import DEFAULT_CASE, ConfigResult, UnavailableFramework
    from reports.table import render_table

    from reference import Convention

    from .fake_adapters import ReferenceBackedAdapter

    adapter = ReferenceBackedAdapter(Convention("z_on_previous", "after"), Convention("z_on_previous", "after"))
    (config,) = adapter.configurations()[:1]
    refusal = "RuntimeError: " + " ".join(["the runtime cannot run this graph in float64"] * 5)
    rows = [ConfigResult(adapter.name, config, np.dtype(dtype), adapter.versions(), DEFAULT_CASE) for dtype in ("f4", "f8")]
    for row in rows:
        row.error = refusal
    rows.append(UnavailableFramework("gone", "gone is not installed here (pip install gone)"))
    lines = render_table(rows).splitlines()
    assert all("ERROR [1]" in line for line in lines[2:4]), lines
    assert "unavailable [2]" in lines[4], lines
    assert lines[5:] == ["", f"[1] {refusal}", "[2] gone is not installed here (pip install gone)"], lines
    assert max(len(line) for line in lines[:5]) < len(refusal), "a reason must not widen the table"
    assert render_table([UnavailableFramework("silent", "")]).splitlines()[-1] == "[1] ", "an empty reason is a note too"


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_a_bad_jobs_count_is_one_line_exit_2_before_any_work(value, capsys):
    with pytest.raises(SystemExit) as info:
        main(["check", "--jobs", value, "--quiet"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "--jobs" in err and "give" in err and "Traceback" not in err, err


def test_the_command_ends_with_the_status_and_output_of_main(capsys):
    """``gru-equiv`` ends through ``adapters.isolation.exit_without_teardown``; a usage error must still print
    exactly what ``main`` prints, with its status. (Normal ends through it print tables and JSON that the
    console-script tests here and in test_hidden_frameworks.py read back whole.)"""
    refused = run_console_script("check", "--jobs", "0", timeout=300)
    with pytest.raises(SystemExit) as stopped:
        main(["check", "--jobs", "0"])
    assert (refused.returncode, refused.stdout, refused.stderr) == (2, "", capsys.readouterr().err)
    assert stopped.value.code == 2 and "--jobs" in refused.stderr


@pytest.mark.parametrize("command", ["check", "report"])
def test_a_framework_that_segfaults_is_an_unavailable_row_and_the_command_goes_on(command, monkeypatch, capsys, tmp_path):
    """check and report measure in worker processes (run_matrix(contained=True)): a forward pass that kills its
    process (tests/crashing_path.py) is one unavailable row saying how, and the other framework's rows stand."""
    monkeypatch.setitem(adapters.REGISTRY, "segfaulting", "tests.crashing_path:SEGFAULTING_ADAPTER")
    monkeypatch.setitem(adapters.REGISTRY, "honest", "tests.crashing_path:HONEST_ADAPTER")
    adapters._load.cache_clear()
    try:
        options = ["--json"] if command == "check" else ["--out", str(tmp_path), "--quiet"]
        # --jobs 1: no background lane, so only containment keeps the segfault out of this process.
        assert main([command, "--frameworks", "segfaulting", "honest", "--dtypes", "float32", "--jobs", "1",
                     *options]) == 0
    finally:
        adapters._load.cache_clear()
    if command == "check":
        rows = json.loads(capsys.readouterr().out)
    else:
        rows = [*json.loads((tmp_path / "report.json").read_text())["results"],
                *json.loads((tmp_path / "report.json").read_text())["unavailable"]]
    crashed = [row for row in rows if row["framework"] == "segfaulting"]
    assert len(crashed) == 1 and "killed by signal SIGSEGV (11)" in json.dumps(crashed[0]), crashed
    assert [row["matched"] for row in rows if row["framework"] == "honest"] == ["z_on_previous+reset_after"], rows


def test_identify_on_a_framework_that_segfaults_says_so_in_one_line(monkeypatch, capsys):
    monkeypatch.setitem(adapters.REGISTRY, "segfaulting", "tests.crashing_path:SEGFAULTING_ADAPTER")
    adapters._load.cache_clear()
    try:
        with pytest.raises(SystemExit) as info:
            main(["identify", "--framework", "segfaulting"])
    finally:
        adapters._load.cache_clear()
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1, err
    assert "segfaulting: the worker process measuring it was killed by signal SIGSEGV (11)" in err, err
