"""Framework gradients (torch autograd, Keras on TensorFlow's GradientTape) against the reference backward
pass (``reports.gradients``), the meta-tests proving a wrong backward is caught and named, and
``gru-equiv check --gradients``."""

from __future__ import annotations

import copy
import json

import pytest

import adapters
from adapters import AdapterUnavailable
from adapters.base import GradientsUnavailable
from reference import Convention
from reports.cli import main
from reports.gradients import GRADIENT_TOLERANCE_FACTOR, compare_gradients, loss_weights
from reports.matrix import DEFAULT_CASE, make_probe

from .fake_adapters import (
    PREVIOUS_AFTER, DetachedResetGateAdapter, DroppedBiasGradientAdapter, ReferenceBackedAdapter,
    ReferenceGradientsAdapter,
)

CONFIGS = [
    ("torch", "nn.GRU(batch_first=True)"),
    ("torch", "nn.GRU(num_layers=2, bidirectional=True)"),
    ("torch", "nn.GRU(bidirectional=True) + PackedSequence"),
    ("torch", "nn.GRU(bias=False)"),
    ("torch", "nn.GRUCell"),
    ("keras", "GRU(reset_after=True)"),
    ("keras", "GRU(reset_after=False)"),
    ("keras", "GRU(reset_after=True) + mask"),
    ("keras", "GRU(go_backwards=True) + mask"),
    ("keras", "Bidirectional(GRU) + mask"),
    ("keras", "[GRU, GRU](reset_after=False)"),
]


def _adapter(name):
    try:
        return adapters.get(name)
    except AdapterUnavailable as unavailable:
        pytest.skip(unavailable.reason)


@pytest.mark.parametrize("framework, name", CONFIGS, ids=[f"{f}:{n}" for f, n in CONFIGS])
def test_framework_gradients_agree_with_the_reference(framework, name):
    adapter = _adapter(framework)
    config = adapter.configuration(name)
    for dtype, largest in (("float64", 1e-13), ("float32", 1e-5)):
        result = compare_gradients(adapter, config, dtype)
        assert result.passed, result.verdict
        # Tightly in float64 (near machine precision relative to each group's scale), loosely in float32.
        for group in result.groups.values():
            assert group.max_abs <= largest * max(1.0, group.scale), (dtype, group)
        assert set(result.groups) >= {"W", "U", "x", "h0"}
        json.dumps(result.to_json())


def test_absent_biases_are_excluded_and_named():
    keras = _adapter("keras")
    single_bias = compare_gradients(keras, keras.configuration("GRU(reset_after=False)"), "float64")
    assert "b" in single_bias.groups and "c" not in single_bias.groups
    assert {"c", "c_z", "c_r", "c_h"} <= set(single_bias.excluded)
    torch_adapter = _adapter("torch")
    no_bias = compare_gradients(torch_adapter, torch_adapter.configuration("nn.GRU(bias=False)"), "float64")
    assert set(no_bias.groups) == {"W", "U", "x", "h0"} and {"b", "c"} <= set(no_bias.excluded)
    assert no_bias.to_json()["excluded"]["b"].startswith("torch:nn.GRU(bias=False) holds none")


def test_torch_gradients_leave_the_users_module_untouched():
    torch_adapter = _adapter("torch")
    import torch

    config = torch_adapter.configuration("nn.GRU(bidirectional=True)")
    probe = make_probe(DEFAULT_CASE, config, "float64")
    module = torch_adapter.build(config, probe.layers, "float64").eval()
    before = copy.deepcopy(module.state_dict())
    G, K = loss_weights(DEFAULT_CASE, config, 2 * DEFAULT_CASE.hidden_size, "float64")
    grads = torch_adapter.gradients(module, probe.x, probe.h0, None, G, K)
    assert not module.training and all(p.grad is None for p in module.parameters())
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    assert grads.x.shape == probe.x.shape and grads.h0.shape == probe.h0.shape


def test_the_control_fake_passes():
    adapter = ReferenceGradientsAdapter(PREVIOUS_AFTER, PREVIOUS_AFTER, name="fake-right")
    result = compare_gradients(adapter, adapter.configurations()[0], "float64")
    assert result.passed and result.verdict == "gradients match"


def test_a_backward_without_the_reset_gate_path_is_caught_and_named():
    pytest.importorskip("torch")
    adapter = DetachedResetGateAdapter(PREVIOUS_AFTER, PREVIOUS_AFTER, name="fake-detached-r")
    config = adapter.configurations()[0]
    # Its forward is right: the formula check cannot see the bug.
    from reports.matrix import compare_configuration

    assert compare_configuration(adapter, config, "float64").matched == PREVIOUS_AFTER
    for dtype in ("float64", "float32"):
        result = compare_gradients(adapter, config, dtype)
        assert result.passed is False
        assert {"W", "U", "b", "c", "x", "h0"} <= set(result.failing), result.verdict
        # The r-gate's own parameters lose their whole gradient: that is where the worst gap lies.
        assert result.groups["W"].worst.startswith("W_r") and result.groups["c"].worst.startswith("c_r")
        assert "gradients differ: W (W_r[" in result.verdict


def test_a_dropped_bias_gradient_is_caught_and_named():
    adapter = DroppedBiasGradientAdapter(PREVIOUS_AFTER, PREVIOUS_AFTER, name="fake-no-c_h", dropped="c_h")
    result = compare_gradients(adapter, adapter.configurations()[0], "float64")
    assert result.failing == ["c"] and result.groups["c"].worst.startswith("c_h")
    assert result.to_json()["failing"] == ["c"]


def test_an_adapter_without_gradients_says_so():
    adapter = ReferenceBackedAdapter(PREVIOUS_AFTER, PREVIOUS_AFTER, name="fake-forward-only")
    result = compare_gradients(adapter, adapter.configurations()[0], "float32")
    assert result.passed is None and result.verdict.startswith("no gradients: ")
    assert result.to_json()["unavailable"] == "the fake-forward-only adapter does not compute gradients"
    with pytest.raises(GradientsUnavailable):
        adapter.gradients(None, None, None, None, None, None)


def test_the_reference_is_taken_in_the_convention_asked_for():
    adapter = ReferenceGradientsAdapter(PREVIOUS_AFTER, PREVIOUS_AFTER, name="fake-right")
    other = Convention("z_on_candidate", "after")
    result = compare_gradients(adapter, adapter.configurations()[0], "float64", convention=other)
    assert result.convention == other and result.passed is False


def test_check_gradients_cli_table_and_json(capsys):
    _adapter("torch")
    argv = ["check", "--frameworks", "torch", "--config", "nn.GRU(bidirectional=True)", "--quiet"]
    assert main([*argv, "--gradients"]) == 0
    out = capsys.readouterr().out
    header, _, *rows = out.splitlines()
    assert header.rstrip().endswith("gradients")
    assert [row.rstrip().endswith("gradients match") for row in rows[:2]] == [True, True]
    assert main([*argv, "--gradients", "--json", "--dtypes", "float32"]) == 0
    (document,) = json.loads(capsys.readouterr().out)
    gradients = document["gradients"]
    assert gradients["passed"] is True and gradients["convention"] == "z_on_previous+reset_after"
    assert set(gradients["groups"]) == {"W", "U", "b", "c", "x", "h0"}
    assert gradients["tolerance_factor"] == GRADIENT_TOLERANCE_FACTOR
    # Without the flag the output is as before: no gradient column, no gradient key.
    assert main([*argv, "--json", "--dtypes", "float32"]) == 0
    assert "gradients" not in json.loads(capsys.readouterr().out)[0]
    assert main(argv) == 0
    assert "gradients" not in capsys.readouterr().out.splitlines()[0]


def test_check_gradients_strict_fails_on_a_wrong_backward(monkeypatch, capsys):
    monkeypatch.setitem(adapters.REGISTRY, "fake", "tests.fake_adapters:DROPPED_BIAS_ADAPTER")
    adapters._load.cache_clear()
    try:
        argv = ["check", "--frameworks", "fake", "--dtypes", "float64", "--quiet", "--strict"]
        assert main(argv) == 0  # the forward agrees with the documentation
        capsys.readouterr()
        assert main([*argv, "--gradients"]) == 1
        assert "gradients differ: c (c_h[" in capsys.readouterr().out
    finally:
        adapters._load.cache_clear()
