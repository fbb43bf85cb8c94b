"""Each framework configuration computes exactly the convention its documentation claims.

Generic templates over adapter x configuration x dtype; the cases are the adapters' own
configuration tables, the probes come from ``reports.matrix.make_probe``.
"""

from __future__ import annotations

import numpy as np
import pytest

import adapters
from adapters.base import device_class
from reference.precision import separation_for
from reports.matrix import DEFAULT_CASE, DTYPES

from .conftest import adapter_or_skip, measured
from .expected_failures import expected_failure

# One xdist worker measures the matrix once for all the files of this group (conftest.measured; see Makefile).
pytestmark = pytest.mark.xdist_group("matrix")


def _configuration_params():
    params = []
    for name in adapters.REGISTRY:
        status = adapters.status()[name]
        configs = status.configurations() if isinstance(status, adapters.Adapter) else []
        if not configs:
            params.append(pytest.param(name, None, id=f"{name}-unavailable"))
        for config in configs:
            params.append(pytest.param(name, config.name, id=f"{name}:{config.name}"))
    return params


_RESULTS: dict = {}


def _measured(framework: str, config_name: str, dtype, gru_comparisons):
    """One measurement per (framework, configuration, dtype), shared by the formula and precision tests."""
    key = (framework, config_name, dtype.name)
    if key not in _RESULTS:
        adapter = adapter_or_skip(framework)
        _RESULTS[key] = measured(adapter, adapter.configuration(config_name), dtype)
        gru_comparisons.append(_RESULTS[key])
    return _RESULTS[key]


def _expect(request, adapter, config_name, dtype, aspect):
    reason = expected_failure(adapter.name, config_name, dtype.name, aspect, device_class(adapter.versions()))
    if reason:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("framework,config_name", _configuration_params())
def test_configuration_computes_its_documented_convention(framework, config_name, dtype, request, gru_comparisons):
    """The formula: exactly one convention fits (at whatever precision it was computed), and it is the documented one,
    by the suite's own rule: the runner-up misses by ``separation_for`` the precision's tolerances (100 at
    float32/float64, 3 at a coarser modelled precision such as TF32, whose tolerance is already 4x its rounding)."""
    _expect(request, adapter_or_skip(framework), config_name, dtype, "formula")
    result = _measured(framework, config_name, dtype, gru_comparisons)
    assert result.error is None, result.explain()
    assert result.matched == result.claimed, result.explain()
    identification = result.identification
    separation = separation_for(identification.precision.computed)
    assert identification.margin >= separation and not identification.diagnosis, identification.describe()
    other, other_diff = result.nearest_other
    assert other_diff.max_abs >= separation * identification.tolerance, (
        f"{result.config.label} [{dtype.name}]: the nearest other convention {other.id} misses by only "
        f"{other_diff.max_abs:.3g}, less than {separation:g} x tolerance {identification.tolerance:g}: "
        f"the probe does not separate the conventions\n{result.explain(other)}"
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("framework,config_name", _configuration_params())
def test_configuration_computes_at_the_requested_precision(framework, config_name, dtype, request, gru_comparisons):
    """The precision, a separate answer: the matched formula's error is that of the requested dtype."""
    _expect(request, adapter_or_skip(framework), config_name, dtype, "precision")
    result = _measured(framework, config_name, dtype, gru_comparisons)
    assert result.error is None, result.explain()
    assert result.precision is not None, result.explain()
    assert not result.precision.lower_than_requested, f"{result.config.label} [{dtype.name}]: {result.precision.describe()}"


@pytest.mark.parametrize("framework", list(adapters.REGISTRY))
def test_every_configuration_states_its_claim_source_layout_and_biases(framework):
    """A reader can port by hand: each row says where its claim comes from, its layout and its biases."""
    adapter = adapter_or_skip(framework)
    configs = adapter.configurations()
    assert configs, f"{framework} has no configurations"
    for config in configs:
        assert config.claim_source, f"{config.label}: no claim_source (file and line of the framework's own source)"
        assert config.layout, f"{config.label}: no layout (gate order and shapes)"
        assert config.bias or not config.bias_fields, f"{config.label}: bias=False but biases {config.bias_fields}"
    assert len({c.name for c in configs}) == len(configs), f"{framework}: duplicate configuration names"


def test_default_case_is_large_enough_to_tell_conventions_apart():
    assert DEFAULT_CASE.time >= 3 and DEFAULT_CASE.hidden_size >= 2 and DEFAULT_CASE.batch >= 3, DEFAULT_CASE
