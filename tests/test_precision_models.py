"""The rounding models of ``reference.precision`` and the ladder's modelled rungs, measured."""

from __future__ import annotations

import numpy as np
import pytest

from reference import Convention, gru_stack
from reference.identify import Observation, Structure, design_probe, identify_observations
from reference.precision import (
    MODELLED_ERRORS, MODELLED_TOLERANCES, PRECISION_LADDER, PrecisionVerdict, coarser_precisions, model_error,
    modelled_gru_stack, probe_tolerance, quantize_int8_weights, quantize_uint8_dynamic, round_to, rung_tolerance,
    separation_for,
)

# (value, precision, exact result): ties to even, the carry into the exponent, the format's range.
ROUNDING_CASES = [
    (1.0 + 2.0**-11, "tfloat32", 1.0),                       # a tie at TF32: to even (down)
    (1.0 + 3 * 2.0**-11, "tfloat32", 1.0 + 2.0**-9),          # a tie at TF32: to even (up)
    (1.0 + 2.0**-11 + 2.0**-20, "tfloat32", 1.0 + 2.0**-10),  # above the tie: up
    (1.0 + 2.0**-8, "bfloat16", 1.0),                         # a tie at bfloat16: to even
    (2.0 - 2.0**-9, "bfloat16", 2.0),                         # the carry into the exponent
    (3.0e38, "bfloat16", 226 * 2.0**120),                     # float32's range is kept (step 2**120 there)
    (70000.0, "float16", np.inf),                             # beyond float16's largest finite value
    (1.0 + 2.0**-11, "float16", 1.0),                         # float16 has TF32's mantissa
    (1e-7, "float16", 1.1920929e-07),                         # a float16 subnormal
    (0.1, "float32", float(np.float32(0.1))),
]


@pytest.mark.parametrize("value, precision, expected", ROUNDING_CASES, ids=[f"{c[1]}:{c[0]!r}" for c in ROUNDING_CASES])
def test_round_to_follows_the_format(value, precision, expected):
    got = float(round_to(np.array([value]), precision)[0])
    assert got == pytest.approx(expected, rel=1e-7) if np.isfinite(expected) else got == expected, \
        f"round_to({value!r}, {precision}) = {got!r}, expected {expected!r}"


def test_round_to_keeps_nan_and_refuses_unknown_precisions():
    assert np.isnan(round_to(np.array([np.nan]), "bfloat16")[0])
    with pytest.raises(ValueError, match="round_to has no precision 'int8'.*quantize_int8_weights"):
        round_to(np.ones(2), "int8")
    with pytest.raises(ValueError, match="no precision 'fp8'"):
        round_to(np.ones(2), "fp8")


def test_int8_weight_model_is_per_tensor_symmetric():
    weight = np.array([[-1.0, 0.5], [0.25, 2.0]])
    scale = np.float32(2.0 / 127.5)
    got = quantize_int8_weights(weight)
    expected = np.clip(np.rint(weight / scale), -128, 127) * scale
    assert np.array_equal(got, expected), (got, expected)
    assert np.abs(got - weight).max() <= scale / 2 + 1e-12


def test_uint8_activation_model_spans_its_range_with_zero():
    activation = np.linspace(-0.9, 0.7, 50)
    got = quantize_uint8_dynamic(activation, reduce_range=True)
    step = 1.6 / 127
    assert np.abs(got - activation).max() <= step / 2 + 1e-12, np.abs(got - activation).max()
    assert np.unique(np.round(got / step)).size <= 128


# Every modelled rung: its model error on the identification probe stays within its tolerance, is above
# float32's, and below the smallest gap between conventions on the probe (so the rung can decide).
@pytest.mark.parametrize("precision", list(MODELLED_TOLERANCES))
@pytest.mark.parametrize("convention", ["z_on_previous+reset_after", "z_on_previous+reset_before"])
def test_each_rung_covers_its_model_and_stays_below_the_convention_gaps(precision, convention):
    probe = design_probe(4, 5, seed=3)
    error = model_error(probe.x, [[probe.params]], convention, precision, h0=probe.h0[None])
    tolerance = sum(rung_tolerance(precision))
    assert 1e-5 < error <= MODELLED_ERRORS[precision] <= tolerance / 2, \
        f"{precision}: model error {error:.3g}, recorded {MODELLED_ERRORS[precision]:.3g}, tolerance {tolerance:.3g}"
    reference = gru_stack(probe.x, [[probe.params]], convention, h0=probe.h0[None])[1]
    gaps = [np.abs(gru_stack(probe.x, [[probe.params]], other, h0=probe.h0[None])[1] - reference).max()
            for other in Convention.all() if other.id != convention]
    assert min(gaps) > separation_for(precision) * tolerance, (precision, min(gaps), tolerance)


def test_float32_model_is_float32_rounding():
    probe = design_probe(4, 5, seed=1)
    error = model_error(probe.x, [[probe.params]], "z_on_previous+reset_after", "float32", h0=probe.h0[None])
    assert 1e-9 < error < 1e-6, error


def test_modelled_stack_handles_masks_and_two_bidirectional_layers():
    rng = np.random.default_rng(0)
    layers = [[design_probe(4, 5, seed=s).params for s in (1, 2)], [design_probe(10, 5, seed=s).params for s in (3, 4)]]
    x = rng.normal(size=(3, 5, 4))
    mask = np.arange(5)[None] < np.array([5, 2, 1])[:, None]
    h0 = rng.uniform(-0.5, 0.5, size=(4, 3, 5))
    outputs, h_last = modelled_gru_stack(x, layers, "z_on_previous+reset_after", "float32", h0=h0, mask=mask,
                                         masked_output="zero")
    expected = gru_stack(x, layers, "z_on_previous+reset_after", h0=h0, mask=mask, masked_output="zero")
    assert outputs.shape == (3, 5, 10) and h_last.shape == (4, 3, 5)
    assert np.abs(outputs - expected[0]).max() < 1e-6 and np.abs(h_last - expected[1]).max() < 1e-6
    assert np.all(outputs[2, 1:] == 0.0), "masked_output='zero' pads with zeros"


def test_ladder_order_and_the_dtype_rungs_identify_uses_by_default():
    names = [name for name, _ in PRECISION_LADDER]
    assert names == ["float64", "float32", "tfloat32", "float16", "bfloat16", "int8"], names
    assert [n for n, _ in coarser_precisions("float64")] == ["float32"]
    assert [n for n, _ in coarser_precisions(np.float32, modelled=True)] == ["tfloat32", "float16", "bfloat16", "int8"]
    assert [n for n, _ in coarser_precisions("bfloat16", modelled=True)] == ["int8"]
    tolerances = [sum(pair) for _, pair in PRECISION_LADDER]
    assert tolerances == sorted(tolerances), tolerances
    with pytest.raises(ValueError, match="no precision rung for dtype float16x"):
        coarser_precisions("float16x")


def test_the_verdict_names_the_precision_and_what_its_model_gives():
    verdict = PrecisionVerdict("float32", "bfloat16", 3e-3, 2e-5, model_error=2e-3)
    text = verdict.describe()
    assert "bfloat16 where float32 was asked" in text and "max abs error 0.003" in text, text
    assert "the bfloat16 model of the reference gives 0.002 on this probe" in text, text
    assert verdict.to_json()["model_error"] == 2e-3
    assert "gives up to" in PrecisionVerdict("float32", "int8", 3e-2, 2e-5).describe()
    assert "model" not in PrecisionVerdict("float64", "float32", 1e-7, 2e-12).describe()


def test_probe_tolerance_scales_a_modelled_rung_to_this_probe_and_never_widens_it():
    bfloat16 = sum(rung_tolerance("bfloat16"))
    assert probe_tolerance("bfloat16", MODELLED_ERRORS["bfloat16"] / 4, 0.0) == pytest.approx(bfloat16 / 4)
    assert probe_tolerance("bfloat16", 1e-4, MODELLED_ERRORS["bfloat16"] / 2) == pytest.approx(bfloat16 / 2), \
        "a runtime that rounds more than the model widens the scaled tolerance"
    assert probe_tolerance("bfloat16", 1.0, 1.0) == bfloat16, "never above the rung's own tolerance"
    assert probe_tolerance("float32", 1e-9, 1e-9) == sum(rung_tolerance("float32")), "dtype rungs are not modelled"


# A bias-free GRU whose recurrent weights are scaled down: reset-before and reset-after differ by 0.082 on
# the probe, under 3 bfloat16 tolerances (0.15), while the bfloat16 model rounds by 5.1e-3 there.
A, B = "z_on_previous+reset_after", "z_on_previous+reset_before"


def _close_conventions():
    probe = design_probe(4, 5, seed=0)
    params = probe.params.without_biases()
    params = params.replace(U_h=params.U_h * 0.5, U_r=params.U_r * 0.5)
    layers, h0 = [[params]], probe.h0[None]
    gap = max(np.abs(a - b).max() for a, b in zip(gru_stack(probe.x, layers, A, h0=h0), gru_stack(probe.x, layers, B, h0=h0)))
    return probe.x, layers, h0, gap


def _observed(x, layers, h0, outputs, h_last) -> Observation:
    f32 = np.float32
    return Observation(tuple(tuple(layer) for layer in layers), x.astype(f32), h0.astype(f32), None,
                       outputs.astype(f32), h_last.astype(f32))


@pytest.mark.parametrize("convention", [A, B])
def test_a_modelled_rung_decides_on_close_conventions_by_this_probes_rounding(convention):
    x, layers, h0, gap = _close_conventions()
    assert gap < separation_for("bfloat16") * sum(rung_tolerance("bfloat16")), f"the conventions are not close: {gap:.3g}"
    observed = _observed(x, layers, h0, *modelled_gru_stack(x, layers, convention, "bfloat16", h0=h0))
    found = identify_observations([observed], "float32", Structure())
    assert found.matched is not None and found.matched.id == convention, found.describe()
    assert found.precision.computed == "bfloat16", found.describe()
    assert found.tolerance < sum(rung_tolerance("bfloat16")) and found.margin >= separation_for("bfloat16"), found.describe()


def test_an_output_between_close_conventions_stays_undecided():
    x, layers, h0, gap = _close_conventions()
    (a_out, a_h), (b_out, b_h) = (gru_stack(x, layers, c, h0=h0) for c in (A, B))
    between = _observed(x, layers, h0, a_out + 0.3 * (b_out - a_out), a_h + 0.3 * (b_h - a_h))
    found = identify_observations([between], "float32", Structure())
    assert found.matched is None, f"an output 30% of the way from {A} to {B} (gap {gap:.3g}) was matched: {found.describe()}"
