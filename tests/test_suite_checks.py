"""The checks themselves: a wrong formula, a wrong gate order or a failing framework must be caught,
and the failure message must carry the numbers."""

from __future__ import annotations

import numpy as np
import pytest

import adapters
import adapters.paths
from adapters.base import device_class
from reference import Convention, flip_update_weighting
from reference.compare import compare_forward, difference
from reports.matrix import DEFAULT_CASE, compare_configuration, run_matrix

from .expected_failures import EXPECTED_FAILURES, JAX_GPU_TF32, OPENVINO_BF16_DEFAULT, expected_failure
from .fake_adapters import PREVIOUS_AFTER, ReferenceBackedAdapter, swap_reset_and_update

CANDIDATE_AFTER = Convention("z_on_candidate", "after")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_an_honest_fake_matches_its_convention(dtype):
    result = compare_configuration(ReferenceBackedAdapter(CANDIDATE_AFTER, CANDIDATE_AFTER), 
                                   ReferenceBackedAdapter(CANDIDATE_AFTER, CANDIDATE_AFTER).configurations()[0], dtype)
    assert result.matched == CANDIDATE_AFTER and result.separated, result.explain()


def test_a_framework_computing_another_convention_is_caught_with_numbers():
    fake = ReferenceBackedAdapter(CANDIDATE_AFTER, PREVIOUS_AFTER)
    result = compare_configuration(fake, fake.configurations()[0], np.float64)
    assert result.matched == CANDIDATE_AFTER != result.claimed
    message = result.explain()
    for fragment in ("fake:FakeGRU [float64] vs z_on_previous+reset_after: does not match",
                     "elements differ; largest difference", "timestep", "unit", "rtol=1e-12, atol=1e-12",
                     "best-matching convention: z_on_candidate+reset_after", "rerun: gru-equiv check"):
        assert fragment in message, message


def test_swapped_gate_blocks_match_no_convention():
    fake = ReferenceBackedAdapter(PREVIOUS_AFTER, PREVIOUS_AFTER, transform=swap_reset_and_update)
    result = compare_configuration(fake, fake.configurations()[0], np.float32)
    assert result.matched is None, result.explain()
    assert all(d.max_abs > 1e-3 for d in result.differences.values())


def test_an_equivalent_reparameterisation_is_still_judged_by_its_outputs():
    # z on candidate with negated update weights computes exactly the z-on-previous function.
    fake = ReferenceBackedAdapter(CANDIDATE_AFTER, PREVIOUS_AFTER, transform=flip_update_weighting)
    result = compare_configuration(fake, fake.configurations()[0], np.float64)
    assert result.matched == PREVIOUS_AFTER, result.explain()


def test_difference_locates_the_worst_element_and_first_divergent_step():
    expected = np.zeros((2, 5, 3))
    actual = expected.copy()
    actual[1, 3, 2] = 0.5
    actual[0, 2, 0] = 1e-3
    d = difference("outputs", actual, expected, ("batch", "timestep", "unit"), rtol=1e-5, atol=1e-5)
    assert (d.mismatched, d.total, d.worst_index, d.first_divergent_step) == (2, 30, (1, 3, 2), 2)
    assert d.describe() == ("outputs: 2 of 30 elements differ; largest difference 0.5 at (batch 1, timestep 3, unit 2); "
                            "tolerance rtol=1e-05, atol=1e-05")
    nan = expected.copy()
    nan[0, 0, 0] = np.nan
    assert not difference("outputs", nan, expected, ("batch", "timestep", "unit"), 1e-5, 1e-5).passed


def test_no_tolerance_for_unsupported_dtypes():
    with pytest.raises(ValueError, match="no tolerance is defined for dtype float16"):
        compare_forward(None, np.zeros((1, 1, 1)), None, np.zeros((1, 1, 1)), np.float16)


def test_a_framework_that_cannot_load_is_unavailable_not_an_import_error(monkeypatch):
    monkeypatch.setitem(adapters.REGISTRY, "missing", "adapters.no_such_framework_module")
    adapters._load.cache_clear()
    try:
        with pytest.raises(adapters.AdapterUnavailable, match="unavailable: .*no_such_framework_module"):
            adapters.get("missing")
        rows = run_matrix(["missing"])
        assert rows[0].to_json() == {"framework": "missing", "unavailable": rows[0].reason}
    finally:
        adapters._load.cache_clear()


def test_unknown_framework_and_configuration_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="unknown framework 'jax'; valid: torch, keras"):
        adapters.get("jax")
    fake = ReferenceBackedAdapter(PREVIOUS_AFTER, PREVIOUS_AFTER)
    with pytest.raises(ValueError, match="no configuration 'GRU'; valid: FakeGRU"):
        fake.configuration("GRU")


def test_registry_adapter_module_is_found_and_judged(monkeypatch):
    monkeypatch.setitem(adapters.REGISTRY, "fake", "tests.fake_adapters")
    adapters._load.cache_clear()
    try:
        (row,) = run_matrix(["fake"], dtypes=[np.float64])
        assert row.claimed == PREVIOUS_AFTER and row.matched == CANDIDATE_AFTER
        assert row.to_json()["matched"] == "z_on_candidate+reset_after"
    finally:
        adapters._load.cache_clear()


def test_default_probe_has_nonzero_initial_state_and_distinct_lengths():
    from reports.matrix import make_probe

    config = ReferenceBackedAdapter(PREVIOUS_AFTER, PREVIOUS_AFTER).configurations()[0]
    probe = make_probe(DEFAULT_CASE, config.__class__(**{**config.__dict__, "masked": True}), np.float64)
    assert np.abs(probe.h0).min() > 0 or np.abs(probe.h0).mean() > 0.1
    assert len(set(probe.mask.sum(axis=1).tolist())) == DEFAULT_CASE.batch


def test_a_deviation_seen_only_on_a_gpu_is_expected_only_there():
    """``"haiku on gpu"`` entries apply where the adapter computes on a GPU, never on a CPU (strict xfails
    would fail there), ``"onnx-openvino on bf16 cpu"`` only where OpenVINO defaults to bf16, and each names a
    registered framework or path."""
    row = ("haiku", "hk.GRU + static_unroll", "float32", "precision")
    assert expected_failure(*row) is None
    assert expected_failure(*row, device="gpu") == JAX_GPU_TF32
    assert expected_failure("flax", "linen.RNN(GRUCell)", "float32", "gradients", device="gpu") is None
    assert expected_failure("flax", "nnx.RNN(GRUCell)", "float32", "gradients", device="gpu") == JAX_GPU_TF32
    assert device_class({"jax": "0.11.2", "device": "gpu: NVIDIA H200"}) == "gpu"
    assert device_class({"jax": "0.10.2", "device": "cpu"}) == device_class({"torch": "2.13.0"}) == "cpu"
    openvino = ("onnx-openvino", "GRU(linear_before_reset=1)", "float32", "precision")
    assert expected_failure(*openvino) is None and expected_failure(*openvino, device="gpu") is None
    assert expected_failure(*openvino, device="bf16 cpu") == OPENVINO_BF16_DEFAULT
    assert device_class({"openvino": "2026.4.1", "device": "bf16 cpu: AMD EPYC"}) == "bf16 cpu"
    qualified = {name for name, *_ in EXPECTED_FAILURES if " on " in name}
    assert qualified, "no device-qualified entry left: drop this test and the qualifier"
    for name in qualified:
        framework, device = name.split(" on ")
        assert (framework in adapters.REGISTRY and device == "gpu"
                or framework in adapters.paths.REGISTRY and device == "bf16 cpu"), name
