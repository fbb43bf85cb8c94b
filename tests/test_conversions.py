"""The conversion-path audit: every registered path, one source configuration each, judged by measurement.

Templates over data: ``test_default_cell`` runs each path's first source configuration with the
real tool (an unavailable path must say why); fake paths (``FAKE_CONVERSIONS``: a converter that
swaps gates, flips the reset, drops a bias, computes in float32, raises, exits, or refuses) show
that the runner turns each outcome into the right verdict and never crashes. Known deviations are
listed in ``tests/expected_failures.py`` under ``(path id, source configuration, dtype, aspect)``: aspect
``"precision"`` for a "precision only" verdict, ``"formula"`` for every other verdict but exact.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

import adapters
import adapters.paths as paths
from adapters.base import device_class
from adapters.paths import ConversionFailed, ConversionPath, ConversionRefused, Converted
from reference import gru_stack
from reports.conversions import VERDICTS, convert_cell, run_conversions
from reports.matrix import DEFAULT_CASE
from tests.conftest import ISOLATED_BACKENDS, adapter_or_skip
from tests.crashing_path import IDENTITY
from tests.expected_failures import expected_failure


# A verdict other than exact is a deviation of one aspect: "precision" (precision only) or "formula" (formula
# changed, mistake named, failed), listed in tests/expected_failures.py under (path id, configuration, dtype, aspect).
ASPECTS = ("formula", "precision")


# The path through Keras on torch runs in the keras-torch worker: in the group that starts it (conftest).
@pytest.mark.parametrize("path_id", [pytest.param(path_id, marks=[pytest.mark.xdist_group(ISOLATED_BACKENDS)]
                                                  if path_id == "port-torch-keras-torch" else [])
                                     for path_id in paths.REGISTRY])
def test_default_cell(path_id):
    """The path's first source configuration, converted with the real tool, computes what the source computes."""
    rows = run_conversions([path_id])
    assert rows, f"{path_id}: no row at all"
    for row in rows:
        document = json.loads(json.dumps(row.to_json()))  # JSON-able, every field
        assert document["verdict"] in VERDICTS, document
        if row.verdict == "unavailable":
            assert row.detail, f"{path_id}: unavailable without a reason"
            continue
        listed = {aspect: expected_failure(path_id, row.config, row.dtype, aspect, device_class(row.versions))
                  for aspect in ASPECTS}
        if row.verdict == "exact":
            stale = {aspect: reason for aspect, reason in listed.items() if reason}
            assert not stale, f"{path_id} [{row.config}, {row.dtype}] is exact now; remove its expected_failures entry: {stale}"
        else:
            aspect = "precision" if row.verdict == "precision only" else "formula"
            if listed[aspect]:
                pytest.xfail(f"{row.verdict}: {listed[aspect]}")
        assert row.verdict == "exact", row.describe()
        assert row.error_vs_source is not None and row.error_vs_source < 1e-5, row.describe()
        assert row.emitted, f"{path_id}: the tool's output is not described"
        assert f"--paths {path_id}" in row.rerun_command(), row.rerun_command()


def test_onnx2torch_unavailable_reason_is_measured():
    path = paths.status()["onnx-onnx2torch"]
    if isinstance(path, ConversionPath):
        pytest.skip("onnx2torch imports here")
    assert "torchvision" in path.reason, path.reason


# ----------------------------------------------------------------- fake paths: each outcome, one verdict

SOURCE = "torch"
CONFIG = "nn.GRU(batch_first=True)"


def _swap_update_reset(params):
    return params.replace(W_z=params.W_r, W_r=params.W_z, U_z=params.U_r, U_r=params.U_z,
                          b_z=params.b_r, b_r=params.b_z, c_z=params.c_r, c_r=params.c_z)


def _reference_port(convention="z_on_previous+reset_after", change=lambda p: p, compute_dtype=None):
    """A fake converter whose result is the reference under ``convention`` with ``change`` applied to
    the weights, computed in ``compute_dtype`` (default: the request's)."""
    def convert(layer, config, dtype, workdir):
        layers = [[change(p) for p in direction] for direction in adapters.get(SOURCE).extract(layer)]

        def run(x, h0=None, mask=None):
            working = np.dtype(compute_dtype or x.dtype)
            outputs, h_last = gru_stack(x.astype(working), [[p.astype(working.name) for p in d] for d in layers],
                                        convention, h0=None if h0 is None else h0.astype(working), dtype=working)
            return adapters.ForwardResult(outputs.astype(x.dtype), h_last.astype(x.dtype))

        return Converted(run=run, emitted={"format": "fake"})
    return convert


def _raises(error):
    def convert(layer, config, dtype, workdir):
        raise error
    return convert


def _writes_outside(layer, config, dtype, workdir):
    (Path(workdir) / "model.bin").write_bytes(b"x")  # allowed: under workdir
    return _reference_port()(layer, config, dtype, workdir)


FAKE_CONVERSIONS = [
    # (case, convert, dtype, verdict, words the detail must contain)
    ("faithful", _reference_port(), "float32", "exact", "as the source"),
    ("writes its file under workdir", _writes_outside, "float32", "exact", "as the source"),
    ("gates z and r swapped", _reference_port(change=_swap_update_reset), "float32", "mistake named",
     "all gate blocks: z<->r"),
    ("reset placement flipped", _reference_port("z_on_previous+reset_before"), "float32", "formula changed",
     "reset placement flipped"),
    ("recurrent biases dropped", _reference_port(change=lambda p: p.replace(
        c_z=0 * p.c_z, c_r=0 * p.c_r, c_h=0 * p.c_h)), "float32", "mistake named", "c_z, c_r, c_h absent"),
    ("float64 computed in float32", _reference_port(compute_dtype="float32"), "float64", "precision only", "float32"),
    ("tool refuses", _raises(ConversionFailed("unsupported operator GRU")), "float32", "failed",
     "conversion failed: unsupported operator GRU"),
    ("tool raises anything", _raises(KeyError("W")), "float32", "failed", "conversion failed: KeyError"),
    ("tool calls sys.exit", _raises(SystemExit(1)), "float32", "failed", "conversion failed: SystemExit"),
    ("port refuses", _raises(ConversionRefused("cannot be exact: use X")), "float32", "refused", "use X"),
]


class FakePath(ConversionPath):
    id = "fake"
    title = "a fake converter"
    source = SOURCE
    tool = "fake"

    def __init__(self, convert):
        self._convert = convert

    def versions(self):
        return {"fake": "0"}

    def source_configs(self):
        return (CONFIG,)

    def dtypes(self):
        return ("float32", "float64")

    def convert(self, layer, config, dtype, workdir):
        return self._convert(layer, config, dtype, workdir)


@pytest.mark.parametrize("case, convert, dtype, verdict, words", FAKE_CONVERSIONS, ids=[f[0] for f in FAKE_CONVERSIONS])
def test_runner_turns_each_outcome_into_its_verdict(case, convert, dtype, verdict, words):
    adapter_or_skip(SOURCE)
    row = convert_cell(FakePath(convert), CONFIG, dtype)
    assert (row.verdict, words in row.detail or words in row.describe()) == (verdict, True), \
        f"{case}: expected {verdict!r} mentioning {words!r}\n{row.describe()}"
    json.dumps(row.to_json())


def test_converted_run_that_breaks_is_a_failed_row():
    adapter_or_skip(SOURCE)

    def convert(layer, config, dtype, workdir):
        def run(x, h0=None, mask=None):
            raise RuntimeError("kernel not implemented for GRU")
        return Converted(run=run, emitted={"format": "fake"})

    row = convert_cell(FakePath(convert), CONFIG, "float32")
    assert row.verdict == "failed" and "kernel not implemented" in row.detail, row.describe()


def test_exact_port_refuses_with_reason_and_alternative():
    adapter_or_skip("keras")
    row = convert_cell(paths.get("port-keras-torch"), "GRU(reset_after=False)", "float32")
    assert row.verdict == "refused", row.describe()
    assert "reset-after" in row.detail and "linear_before_reset=0" in row.detail, row.detail


def test_a_path_module_that_fails_to_import_is_unavailable(monkeypatch):
    monkeypatch.setitem(paths.REGISTRY, "broken", "adapters.paths.no_such_module:PATH")
    paths._load.cache_clear()
    try:
        rows = run_conversions(["broken"])
        assert [(r.verdict, "no_such_module" in r.detail) for r in rows] == [("unavailable", True)], rows
        with pytest.raises(paths.PathUnavailable, match="no_such_module"):
            paths.get("broken")
    finally:
        paths._load.cache_clear()


def test_convert_contains_a_converter_that_crashes_the_process_and_goes_on(monkeypatch, capsys):
    """``gru-equiv convert`` runs the cells in a worker process: a segfault in a converter (tests/crashing_path.py
    kills its process with SIGSEGV) is a failed cell saying so, and the next cell runs in a new worker."""
    from reports.cli import main

    adapter_or_skip("onnxruntime")
    monkeypatch.setitem(paths.REGISTRY, "crashing", "tests.crashing_path:CRASHING")
    monkeypatch.setitem(paths.REGISTRY, "identity", "tests.crashing_path:IDENTITY")
    paths._load.cache_clear()
    try:
        assert main(["convert", "--paths", "crashing", "identity", "--json", "--quiet"]) == 0
    finally:
        paths._load.cache_clear()
    crashed, after = json.loads(capsys.readouterr().out)
    assert crashed["verdict"] == "failed", crashed
    assert crashed["detail"].startswith("the conversion crashed: the process running it was killed by signal SIGSEGV (11)"), (
        crashed["detail"])
    assert (after["path"], after["verdict"]) == ("identity", "exact"), after


def test_report_contains_a_converter_that_crashes_the_process_and_is_written(monkeypatch, tmp_path, capsys):
    """``gru-equiv report`` audits in a worker as ``convert`` does: the segfaulting path is a failed cell of the
    written report, and the next path still runs."""
    from reports.cli import main

    adapter_or_skip("onnxruntime")
    monkeypatch.setattr(paths, "REGISTRY", {"crashing": "tests.crashing_path:CRASHING",
                                            "identity": "tests.crashing_path:IDENTITY"})
    paths._load.cache_clear()
    try:
        assert main(["report", "--frameworks", "onnxruntime", "--dtypes", "float32", "--quiet", "--jobs", "1",
                     "--out", str(tmp_path)]) == 0
    finally:
        paths._load.cache_clear()
    crashed, after = json.loads((tmp_path / "report.json").read_text())["conversions"]
    assert (crashed["path"], crashed["verdict"]) == ("crashing", "failed"), crashed
    assert "the conversion crashed: the process running it was killed by signal SIGSEGV (11)" in crashed["detail"], crashed
    assert (after["path"], after["verdict"]) == ("identity", "exact"), after
    assert "killed by signal SIGSEGV" in (tmp_path / "index.html").read_text()


def test_a_contained_cell_whose_path_the_worker_cannot_load_is_unavailable_with_the_reason(monkeypatch):
    """Usable in this process, not in the worker (here: a path object this process alone holds, under a registry
    line the worker cannot import): one "unavailable" row naming the worker's reason, never a traceback."""
    from reports.conversions import _contained_cell

    line = "tests.no_such_module:PATH"
    monkeypatch.setitem(paths.REGISTRY, "identity", line)
    row = _contained_cell(IDENTITY, "GRU", "float32", DEFAULT_CASE, cache=False)
    assert (row.verdict, row.path) == ("unavailable", "identity"), row
    assert row.detail.startswith("in the worker process: ") and "tests.no_such_module" in row.detail, row.detail


CLI_ERRORS = [
    (["convert", "--paths", "no-such-path"], "no-such-path"),
    (["convert", "--paths", "port-torch-onnx", "--sources", "GRU(made up)"], "GRU(made up)"),
    (["convert", "--dtypes", "float16"], "float16"),
]


@pytest.mark.parametrize("argv, named", CLI_ERRORS, ids=[" ".join(a[1:]) for a, _ in CLI_ERRORS])
def test_cli_refuses_bad_selection_before_work(argv, named, capsys):
    from reports.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and named in capsys.readouterr().err


def test_cli_json_and_list():
    from reports.cli import main

    adapter_or_skip("torch")
    adapter_or_skip("onnxruntime")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["convert", "--paths", "port-torch-onnx", "--json", "--strict"]) == 0
    rows = json.loads(stdout.getvalue())
    assert [(r["path"], r["config"], r["verdict"]) for r in rows] == [
        ("port-torch-onnx", "nn.GRU(batch_first=True)", "exact")], rows
    assert rows[0]["emitted"]["gru_attributes"][0]["linear_before_reset"] == 1, rows[0]["emitted"]
    listing = io.StringIO()
    with contextlib.redirect_stdout(listing):
        assert main(["convert", "--list"]) == 0
    assert all(path_id in listing.getvalue() for path_id in paths.REGISTRY), listing.getvalue()


# ----------------------------------------------------------------- the baseline: a tool upgrade that breaks a GRU fails

def _planted(entry: dict, **changes) -> dict:
    return {**entry, **changes}


BASELINE_PLANTS = [
    # (case, change to the recorded entry or, for "now:" cases, to the current run's row; passes; words)
    ("as recorded", lambda e: e, True, []),
    ("recorded exact, now fails", lambda e: _planted(e, verdict="failed", detail="x"), False,
     ["verdict changed from 'failed' to 'exact'", "port-torch-onnx", "onnxruntime"]),
    ("another convention recorded", lambda e: _planted(e, matched="z_on_previous+reset_before"), False,
     ["now computes z_on_previous+reset_after"]),
    ("now: error grew to 1e-3", lambda r: _planted(r, error_vs_source=1e-3), False, ["error against the source grew"]),
    ("now: rounding noise 1e-6", lambda r: _planted(r, error_vs_source=1e-6), True, []),
    ("older tool version", lambda e: _planted(e, versions={**e["versions"], "onnxruntime": "0.0"}), True, []),
]


@pytest.fixture(scope="module")
def recorded_cell():
    adapter_or_skip("torch")
    adapter_or_skip("onnxruntime")
    rows = [row.to_json() for row in run_conversions(["port-torch-onnx"])]
    from reports import baseline

    from reference import Convention

    matrix_row = {"framework": "torch", "config": "c", "dtype": "float32", "versions": {}, "matched": None,
                  "errors": {c.id: 1.0 for c in Convention.all()}, "margin": None}
    return rows, baseline.record([matrix_row], rows)


@pytest.mark.parametrize("case, plant, passes, words", BASELINE_PLANTS, ids=[p[0] for p in BASELINE_PLANTS])
def test_baseline_check_of_conversions(recorded_cell, tmp_path, case, plant, passes, words):
    from reports import baseline

    rows, recorded = recorded_cell
    now = case.startswith("now:")
    planted = {**recorded, "conversions": [dict(e) if now else plant(dict(e)) for e in recorded["conversions"]]}
    rows = [plant(dict(row)) if now else row for row in rows]
    baseline.save(planted, tmp_path / "baseline.json")
    loaded = baseline.load(tmp_path / "baseline.json")  # the schema accepts what record writes
    result = baseline.check_conversions(loaded, rows)
    assert result.passed == passes and all(any(w in f for f in result.failures) for w in words), \
        f"{case}:\n{result.describe()}"


def test_baseline_check_of_conversions_new_and_missing_cells(recorded_cell):
    from reports import baseline

    rows, recorded = recorded_cell
    new = baseline.check_conversions({**recorded, "conversions": []}, rows)
    assert any("not in the baseline" in f for f in new.failures), new.describe()
    assert baseline.check_conversions({**recorded, "conversions": []}, rows, allow_new=True).passed
    missing = baseline.check_conversions(recorded, [], covered={("torch", "nn.GRU(batch_first=True)")})
    assert any("did not run" in f for f in missing.failures), missing.describe()
    unselected = baseline.check_conversions(recorded, [], covered=set())
    assert unselected.passed and any("not selected" in n for n in unselected.notes), unselected.describe()


def test_onnx2tf_leaves_this_processs_environment_as_it_was(monkeypatch):
    """onnx2tf sets TF_USE_LEGACY_KERAS=1 when imported (onnx2tf/onnx2tf.py:25); the audit must not pass that on to
    every later use of TensorFlow's lazy Keras names in the same process (the report runs both)."""
    import importlib.util
    import os
    import sys

    # Asked without importing it: pytest.importorskip's own import would set the variable before delenv
    # below records it, and the teardown would then put the "1" back for the rest of this process.
    if importlib.util.find_spec("onnx2tf") is None:
        pytest.skip("onnx2tf is not installed")
    from adapters.paths import onnx2tf_path

    monkeypatch.delenv("TF_USE_LEGACY_KERAS", raising=False)
    for name in ("onnx2tf", "onnx2tf.onnx2tf"):  # imported afresh: that import is what sets it
        monkeypatch.delitem(sys.modules, name, raising=False)
    onnx2tf_path._import_onnx2tf()
    assert "onnx2tf.onnx2tf" in sys.modules, "the import did run"
    assert "TF_USE_LEGACY_KERAS" not in os.environ


def _on_device(entry: dict, device: str) -> dict:
    return {**entry, "versions": {**entry["versions"], "device": device}}


def test_baseline_keeps_conversion_cells_per_device_class(recorded_cell):
    """A cell recorded on one device class (OpenVINO's f32-default CPU) is not compared with a run on another (a
    bf16 CPU, where the verdict legitimately differs): it is listed as not checked, never failed or passed, and
    ``--update`` keeps the other class's entry beside the new one."""
    from reports import baseline

    rows, recorded = recorded_cell
    elsewhere = {**recorded, "conversions": [_on_device(e, "bf16 cpu: AMD EPYC") for e in recorded["conversions"]]}
    drifted = [{**row, "verdict": "precision only", "error_vs_source": 4e-3} for row in rows]
    result = baseline.check_conversions(elsewhere, drifted)
    assert not result.failures and result.compared == 0, result.describe()
    assert any("recorded on bf16 cpu only, measured here on cpu" in n for n in result.not_checked), result.describe()
    both = {**recorded, "conversions": recorded["conversions"] + elsewhere["conversions"]}
    compared = baseline.check_conversions(both, drifted)
    assert compared.compared == len(rows) and any("verdict changed" in f for f in compared.failures), compared.describe()
    assert baseline.check_conversions(both, rows).passed, "the other class's entries are not missing cells"
    kept = baseline.keep_other_devices(elsewhere, rows)
    assert kept == elsewhere["conversions"], kept
    assert baseline.keep_other_devices(recorded, rows) == [], "a cell re-recorded on its own class is replaced"
    merged = baseline.record([], rows, kept_conversions=kept)["conversions"]
    assert sorted(e["versions"].get("device", "cpu") for e in merged) == sorted(["bf16 cpu: AMD EPYC", *["cpu"] * len(rows)])
