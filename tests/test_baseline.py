"""The committed baseline catches a framework that changes its formula or drifts, and nothing else."""

from __future__ import annotations

import copy
import json

import pytest

from reports import baseline
from reports.cli import main

from .conftest import adapter_or_skip

# One xdist worker measures the matrix once for all the files of this group (conftest.measured; see Makefile).
pytestmark = pytest.mark.xdist_group("matrix")


@pytest.fixture(scope="module")
def committed():
    return baseline.load()


def test_current_run_matches_the_committed_baseline(committed, check_json):
    result = baseline.check(committed, check_json)
    assert result.passed, result.describe()


# Rows whose float32 and float64 runs both match at full precision: the first that ran here is planted on
# (Keras when TensorFlow is installed, torch when only torch is; the suite passes with either missing).
PLANTED = [("keras", "GRU(reset_after=False)"), ("torch", "nn.GRU(batch_first=True)"), ("paddle", "nn.GRUCell")]


def _planted(rows):
    ran = {(r["framework"], r.get("config")) for r in rows if "unavailable" not in r}
    for key in PLANTED:
        if key in ran:
            return key
    pytest.skip(f"none of {PLANTED} ran here")


def _first(rows, framework, config, dtype):
    return next(r for r in rows if r["framework"] == framework and r.get("config") == config and r.get("dtype") == dtype)


def test_a_planted_convention_change_fails_naming_framework_config_and_both_formulas(committed, check_json):
    adapter_or_skip("torch")  # planted on torch's rows
    planted = copy.deepcopy(committed)
    entry = next(e for e in planted["entries"] if e["config"] == "nn.GRU(batch_first=True)" and e["dtype"] == "float32")
    entry["matched"] = "z_on_candidate+reset_before"
    result = baseline.check(planted, check_json)
    assert not result.passed
    (failure,) = result.failures
    assert failure.startswith("torch nn.GRU(batch_first=True) [float32]: the formula changed from "
                              "z_on_candidate+reset_before (h_cand = tanh(x_t W_h + b_h + (r * h_prev) U_h + c_h)")
    assert "to z_on_previous+reset_after (h_cand = tanh(x_t W_h + b_h + r * (h_prev U_h + c_h))" in failure


def test_planted_error_growth_fails_and_rounding_noise_does_not(committed, check_json):
    rows = copy.deepcopy(check_json)
    framework, config = _planted(rows)
    row = _first(rows, framework, config, "float64")
    row["errors"][row["matched"]] = 1e-9  # a precision loss: float64 computed in float32, say
    result = baseline.check(committed, rows)
    assert len(result.failures) == 1 and "grew from" in result.failures[0] and "beyond 10 x the baseline" in result.failures[0]
    row["errors"][row["matched"]] = 3e-15  # a BLAS that sums in another order
    assert baseline.check(committed, rows).passed
    # The floor is per dtype: 10 x 16 float32 eps tolerates 1.5e-5 in float32, never in float64.
    row32 = _first(rows, framework, config, "float32")
    row32["errors"][row32["matched"]] = 1.5e-5
    assert baseline.check(committed, rows).passed
    row["errors"][row["matched"]] = 1.5e-13
    assert not baseline.check(committed, rows).passed


def test_a_new_framework_version_with_the_same_formula_passes_with_a_note(committed, check_json):
    adapter_or_skip("torch")  # planted on torch's rows
    rows = copy.deepcopy(check_json)
    for row in rows:
        if row["framework"] == "torch":
            row["versions"] = {"torch": "9.9.9"}
    result = baseline.check(committed, rows)
    assert result.passed, result.describe()
    assert any("torch" in n and "-> 9.9.9; same convention, errors within bounds" in n for n in result.notes)


def test_unavailable_frameworks_are_notes_and_new_configurations_fail_unless_allowed(committed, check_json):
    adapter_or_skip("torch")  # planted on torch's rows
    rows = [r for r in check_json if r["framework"] != "keras"] + [{"framework": "keras", "unavailable": "not installed"}]
    torch_row = next(r for r in rows if r["framework"] == "torch")
    rows.append({**torch_row, "config": "nn.GRU(proj)", "dtype": "float32"})
    result = baseline.check(committed, rows, allow_new=True)
    assert result.passed, result.describe()
    assert any("keras is unavailable" in n for n in result.notes)
    not_checked = [line for line in result.describe().splitlines() if "NOT CHECKED here" in line]
    assert len(not_checked) == 1 and "keras (not installed)" in not_checked[0], result.describe()
    assert any("nn.GRU(proj) [float32] is not in the baseline" in n for n in result.notes)
    strict = baseline.check(committed, rows)
    assert [f for f in strict.failures if "nn.GRU(proj) [float32] is not in the baseline" in f and "--allow-new" in f]


def test_baseline_cli_update_then_check_and_a_tampered_file_fails(tmp_path, capsys, monkeypatch):
    adapter_or_skip("torch")  # planted on torch's rows
    import reports.commands.baseline as command

    real_run_matrix = command.run_matrix
    # The CLI wiring, on two configurations: the whole matrix is covered by the tests above.
    monkeypatch.setattr(command, "run_matrix", lambda frameworks, dtypes, case, configs, progress, **options: real_run_matrix(
        ["torch"], dtypes, case, ["nn.GRUCell", "nn.GRU(bias=False)"], progress, **options))
    path = tmp_path / "baseline.json"
    assert main(["baseline", "--update", "--path", str(path), "--quiet"]) == 0
    recorded = json.loads(path.read_text())
    assert recorded["machine"]["cpu_count"] and recorded["tool_version"] and recorded["entries"]
    assert main(["baseline", "--check", "--path", str(path), "--quiet"]) == 0
    entry = recorded["entries"][0]
    entry["matched"] = "z_on_candidate+reset_after"
    entry["matched_error"] = entry["errors"]["z_on_candidate+reset_after"]
    path.write_text(json.dumps(recorded))
    capsys.readouterr()
    assert main(["baseline", "--check", "--path", str(path), "--quiet"]) == 1
    assert "FAIL:" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["baseline", "--check", "--path", str(tmp_path / "missing.json")])
    assert info.value.code == 2 and "no baseline " in capsys.readouterr().err


def _with_gradients(rows, failing=()):
    rows = copy.deepcopy(rows)
    for row in rows:
        if "unavailable" not in row and not row.get("error"):
            row["gradients"] = {"passed": not failing, "failing": list(failing),
                                "verdict": "gradients match" if not failing else "gradients differ: " + ", ".join(failing)}
    return rows


def test_a_changed_gradient_verdict_fails_and_unchecked_gradients_are_said(check_json):
    """Recorded with --gradients, a run whose gradients now differ fails naming both verdicts; a run without
    --gradients passes but says how many recorded gradient verdicts it did not check."""
    adapter_or_skip("torch")  # planted on torch's rows
    torch_rows = [r for r in check_json if r["framework"] == "torch"]
    recorded = baseline.record(_with_gradients(torch_rows))
    assert all(entry["gradients"]["passed"] for entry in recorded["entries"] if not entry.get("error"))
    assert baseline.check(recorded, _with_gradients(torch_rows)).passed
    broken = baseline.check(recorded, _with_gradients(torch_rows, failing=("U",)))
    assert not broken.passed and all("gradient verdict changed from 'gradients match' to 'gradients differ: U'" in f
                                     for f in broken.failures), broken.describe()
    unchecked = baseline.check(recorded, torch_rows)
    assert unchecked.passed and any(f"{unchecked.compared} recorded gradient verdict(s) not checked" in n
                                    for n in unchecked.notes), unchecked.describe()


def test_update_keeps_the_entries_of_frameworks_unavailable_here(committed, check_json):
    """A GPU's rows are recorded where a GPU is; ``baseline --update`` on a machine without one keeps them."""
    adapter_or_skip("torch")  # planted on torch's rows
    rows = [r for r in check_json if r["framework"] != "torch"] + [{"framework": "torch", "unavailable": "hidden"}]
    unavailable = {r["framework"] for r in rows if "unavailable" in r}
    kept = baseline.keep_unavailable(committed, rows)
    assert "torch" in {e["framework"] for e in kept} and {e["framework"] for e in kept} <= unavailable
    assert len([e for e in kept if e["framework"] == "torch"]) == len([e for e in committed["entries"] if e["framework"] == "torch"])
    updated = baseline.record(rows, kept=kept)
    assert [e for e in updated["entries"] if e["framework"] in unavailable] == sorted(kept, key=baseline._key)
    assert baseline.keep_unavailable(None, rows) == []
