"""The rounding models of ``reference.precision`` and the ladder's modelled rungs, measured."""

from __future__ import annotations

import numpy as np
import pytest

from reference import Convention, gru_stack
from reference.identify import design_probe
from reference.precision import (
    MODELLED_ERRORS, MODELLED_TOLERANCES, PRECISION_LADDER, PrecisionVerdict, coarser_precisions, model_error,
    modelled_gru_stack, quantize_int8_weights, quantize_uint8_dynamic, round_to, rung_tolerance, separation_for,
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
