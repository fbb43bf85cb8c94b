"""Precision as its own verdict: which precision a GRU really computed at, separately from its formula.

A framework asked for float64 may compute in float32 (JAX without ``jax_enable_x64``, a kernel
with no float64 path), a GPU may use TF32 for float32 matmuls, a deployment runtime may run in
bfloat16 or float16, a quantizer may store int8 weights. Its outputs then miss every convention
at the requested tolerance although the formula is right. Identification therefore asks two
questions: which formula fits, and at which precision of this ladder, finest first.

``PRECISION_LADDER`` lists ``(name, (rtol, atol))``. A result computed at precision P is compared
with the float64 reference at P's tolerance (``reference.compare.TOLERANCES`` for float32 and
float64, each number justified there; the coarser rungs below, each derived from a model of that
precision), and a formula is accepted at P only if every other convention still misses by
``SEPARATION_FACTOR`` times that tolerance, the same rule as at full precision: a coarser
tolerance never buys an ambiguous answer.

Rounding models (``round_to``), each from the format's definition, not a library:

- ``tfloat32``: NVIDIA's TensorFloat-32, the format Ampere/Hopper tensor cores read float32 matmul
  operands in: float32's 8-bit exponent, 10 explicit mantissa bits (unit roundoff 2**-11 = 4.9e-4),
  round to nearest, ties to even. cuBLAS/cuDNN round *operands* of matmuls (and convolutions) only;
  products are accumulated and everything element-wise is computed in float32.
- ``bfloat16``: float32's exponent, 7 mantissa bits (unit roundoff 2**-8 = 3.9e-3), round to nearest even
  (what ``torch.Tensor.bfloat16()`` and oneDNN's ``cvt_float_to_bfloat16`` do).
- ``float16``: IEEE 754 binary16 (``np.float16``): 5-bit exponent, 10 mantissa bits, largest finite
  65504, subnormals below 6.1e-5; NumPy's cast rounds to nearest even and overflows to inf.
- ``int8``: PyTorch's default dynamic quantization (``torch.ao.quantization.quantize_dynamic`` on
  ``nn.GRU``), read from its source (torch 2.13): ``default_dynamic_qconfig`` (``ao/quantization/qconfig.py:172``)
  quantizes weights with ``default_weight_observer`` = ``MinMaxObserver(dtype=qint8,
  qscheme=per_tensor_symmetric)`` (``observer.py:2072``): *one* scale per weight matrix
  (``weight_ih_l{k}`` holds all three gates), ``scale = max|w| / ((127 - (-128)) / 2) = max|w| / 127.5``
  (``observer.py:386``), zero point 0, values clamped to [-128, 127]; every ``(layer, direction)``
  packs ``weight_ih`` and ``weight_hh`` separately (``ao/nn/quantized/dynamic/modules/rnn.py:430-437``),
  biases stay float32. Activations are quantized at run time: ``default_dynamic_quant_observer`` is
  ``quint8`` 0..255 (``observer.py:2114``), and the GRU's cell params are made with ``reduce_range=True``
  (the trailing ``True`` of ``make_quantized_cell_params_dynamic``, rnn.py:444-449), so the input of
  each matmul is quantized per tensor, affine, to 7 bits (0..127) from its own min/max (with 0 included).
  The model quantizes each layer's whole input sequence once (ATen's CPU ``FullLayer`` projects all
  steps in one ``linear_ih`` call) and ``h_prev`` at every step. onnxruntime's ``quantize_dynamic``
  has no GRU operator at all (``onnxruntime/quantization/registry.py``: ``LSTM`` is listed, ``GRU`` is
  not), so it needs no model: it leaves a GRU in float32.

``modelled_gru_stack`` runs the reference with one of these models applied where the runtime
rounds (``PrecisionModel`` says where), and ``model_error`` returns the largest absolute gap it
produces against the float64 reference: the error a correct implementation at that precision is
expected to show. The rung tolerances below are a fixed multiple of that gap, measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .compare import SEPARATION_FACTOR, TOLERANCES
from .conventions import Convention, as_convention
from .equations import BLEND, sigmoid
from .forward import gru_stack, masked_outputs, merge_directions
from .params import GRUParams, check_float_array, check_layers, describe_value

# ---------------------------------------------------------------- rounding to a format

# name -> (explicit mantissa bits kept, what the format is); float32/float64 are NumPy casts.
FORMATS: dict[str, str] = {
    "float64": "IEEE binary64",
    "float32": "IEEE binary32",
    "tfloat32": "TensorFloat-32: float32 exponent, 10 mantissa bits (matmul operands on NVIDIA tensor cores)",
    "float16": "IEEE binary16: 5-bit exponent (largest 65504), 10 mantissa bits",
    "bfloat16": "bfloat16: float32 exponent, 7 mantissa bits",
    "int8": "int8 per-tensor symmetric weights, uint8 (7-bit, reduce_range) dynamic activations",
}
_DROPPED_BITS = {"tfloat32": 13, "bfloat16": 16}  # float32 has 23 explicit mantissa bits


def _round_float32_mantissa(array: np.ndarray, dropped: int) -> np.ndarray:
    """Round float32 values to ``23 - dropped`` mantissa bits, to nearest, ties to even (bit arithmetic)."""
    single = np.ascontiguousarray(array, dtype=np.float32)
    bits = single.view(np.uint32).astype(np.uint64)
    half = (1 << (dropped - 1)) - 1
    lowest_kept = (bits >> dropped) & 1
    rounded = ((bits + half + lowest_kept) >> dropped) << dropped  # a carry into the exponent is right: 1.111.. -> 10.0
    result = rounded.astype(np.uint32).view(np.float32)
    # NaN stays NaN (its payload could round into inf); inf stays inf (its mantissa is zero).
    return np.where(np.isnan(single), single, result)


def round_to(array, precision: str) -> np.ndarray:
    """``array`` rounded to ``precision`` ("float64", "float32", "tfloat32", "bfloat16", "float16"),
    returned as float64 (exactly representable) so the rounding is all that changed.

    Values are first rounded to float32 (what a framework holds before it converts, and exactly
    what ``torch.Tensor.bfloat16()`` starts from); float16 overflows to ±inf beyond 65504, as the
    format does. int8 is not an element-wise rounding (its scale depends on the whole tensor):
    ``quantize_int8_weights`` / ``quantize_uint8_dynamic``.
    """
    if not isinstance(precision, str) or precision not in FORMATS or precision == "int8":
        valid = ", ".join(name for name in FORMATS if name != "int8")
        hint = " (int8 depends on the whole tensor: use quantize_int8_weights)" if precision == "int8" else ""
        raise ValueError(f"round_to has no precision {precision!r}{hint}; valid: {valid}")
    array = check_float_array("array", array, finite=False, any_float=True)
    if precision == "float64":
        return array.astype(np.float64)
    if precision == "float32":
        return array.astype(np.float32).astype(np.float64)
    if precision == "float16":
        with np.errstate(over="ignore"):
            return array.astype(np.float32).astype(np.float16).astype(np.float64)
    return _round_float32_mantissa(array, _DROPPED_BITS[precision]).astype(np.float64)


def quantize_int8_weights(weight) -> np.ndarray:
    """torch's default dynamic-quantization weight model, dequantized: per-tensor symmetric qint8.

    ``scale = max(max|w| / 127.5, float32 eps)``, ``q = clamp(round_half_even(w / scale), -128, 127)``,
    returns ``q * scale`` (``torch/ao/quantization/observer.py:386-387``; the quantize kernel rounds with
    ``nearbyint``, ties to even)."""
    weight = check_float_array("weight", weight, any_float=True).astype(np.float64)
    scale = max(float(np.abs(weight).max(initial=0.0)) / 127.5, float(np.finfo(np.float32).eps))
    scale = float(np.float32(scale))  # the observer's scale is a float32 tensor
    return np.clip(np.rint(weight / scale), -128, 127) * scale


def quantize_uint8_dynamic(activation, reduce_range: bool = True) -> np.ndarray:
    """A dynamically quantized activation, dequantized: per-tensor affine uint8 from its own min/max.

    The range always includes 0 (fbgemm's ``ChooseQuantizationParams``); ``reduce_range`` (what
    torch's quantized RNN cells use) keeps 7 bits, 0..127, instead of 0..255."""
    activation = check_float_array("activation", activation, any_float=True).astype(np.float64)
    levels = 127 if reduce_range else 255
    low, high = min(0.0, float(activation.min())), max(0.0, float(activation.max()))
    scale = (high - low) / levels if high > low else 1.0
    zero_point = int(np.clip(np.rint(-low / scale), 0, levels))
    return (np.clip(np.rint(activation / scale) + zero_point, 0, levels) - zero_point) * scale


# ---------------------------------------------------------------- where a runtime rounds


def _identity(array):
    return array


def _to(precision: str) -> Callable[[np.ndarray], np.ndarray]:
    return lambda array: round_to(array, precision)


@dataclass(frozen=True)
class PrecisionModel:
    """Where a runtime at ``name`` rounds, as three functions of a float64 array.

    ``weights``: applied once to every weight matrix (per gate block stacked as the framework packs
    it, so a per-tensor int8 scale spans all three gates); ``operands``: applied to the activation
    side of every matmul (the layer's input sequence, and ``h_prev`` each step); ``storage``:
    applied to every stored intermediate (projections, gates, candidate, the new state).
    """

    name: str
    description: str
    weights: Callable[[np.ndarray], np.ndarray]
    operands: Callable[[np.ndarray], np.ndarray]
    storage: Callable[[np.ndarray], np.ndarray]
    biases: Callable[[np.ndarray], np.ndarray] = field(default=_identity)


PRECISION_MODELS: dict[str, PrecisionModel] = {
    "float32": PrecisionModel("float32", "everything in float32", _to("float32"), _to("float32"), _to("float32"),
                              _to("float32")),
    # cuBLAS/cuDNN TF32: operands of each matmul rounded to TF32, accumulation and element-wise in float32.
    "tfloat32": PrecisionModel("tfloat32", "matmul operands in TF32, accumulation and element-wise ops in float32",
                               _to("tfloat32"), _to("tfloat32"), _to("float32"), _to("float32")),
    # oneDNN/OpenVINO bf16 inference: weights, matmul inputs and the stored state in bf16, gate math in float32.
    "bfloat16": PrecisionModel("bfloat16", "weights, matmul inputs and the state stored in bfloat16; gate math in "
                               "float32", _to("bfloat16"), _to("bfloat16"), _to("bfloat16"), _to("float32")),
    # A float16 graph: every tensor is float16 (weights, biases, inputs, every intermediate and the state).
    "float16": PrecisionModel("float16", "every tensor stored in float16", _to("float16"), _to("float16"),
                              _to("float16"), _to("float16")),
    # torch quantize_dynamic: int8 weights, 7-bit dynamic activations, float32 biases and gate math.
    "int8": PrecisionModel("int8", "int8 per-tensor symmetric weights, 7-bit dynamic uint8 matmul inputs, float32 "
                           "biases, gates and state", quantize_int8_weights, quantize_uint8_dynamic, _to("float32"),
                           _to("float32")),
}


def _direction(x, p: GRUParams, convention: Convention, h0, mask, reverse: bool, model: PrecisionModel):
    """One direction of one layer under ``model`` (the structure of ``reference.gru``, rounding added)."""
    store, operand = model.storage, model.operands
    W = model.weights(np.concatenate([p.W_z, p.W_r, p.W_h], axis=1).astype(np.float64))
    U = model.weights(np.concatenate([p.U_z, p.U_r, p.U_h], axis=1).astype(np.float64))
    b = model.biases(np.concatenate([p.b_z, p.b_r, p.b_h]).astype(np.float64))
    c = model.biases(np.concatenate([p.c_z, p.c_r, p.c_h]).astype(np.float64))
    batch, time, _ = x.shape
    hidden = p.hidden_size
    x_proj = store(operand(x.astype(np.float64)) @ W + b)  # one matmul over every step (ATen, oneDNN, cuDNN)
    h = store(np.zeros((batch, hidden)) if h0 is None else np.asarray(h0, np.float64))
    outputs = np.empty((batch, time, hidden))
    after = convention.reset == "after"
    blend = BLEND[convention.update]
    for t in (range(time - 1, -1, -1) if reverse else range(time)):
        xp = x_proj[:, t]
        h_in = operand(h)
        if after:
            h_proj = store(h_in @ U)
            z = store(sigmoid(store(xp[:, :hidden] + h_proj[:, :hidden] + c[:hidden])))
            r = store(sigmoid(store(xp[:, hidden:2 * hidden] + h_proj[:, hidden:2 * hidden] + c[hidden:2 * hidden])))
            h_cand = store(np.tanh(store(xp[:, 2 * hidden:] + r * store(h_proj[:, 2 * hidden:] + c[2 * hidden:]))))
        else:
            h_proj = store(h_in @ U[:, :2 * hidden])
            z = store(sigmoid(store(xp[:, :hidden] + h_proj[:, :hidden] + c[:hidden])))
            r = store(sigmoid(store(xp[:, hidden:2 * hidden] + h_proj[:, hidden:] + c[hidden:2 * hidden])))
            h_cand = store(np.tanh(store(xp[:, 2 * hidden:] + store(operand(store(r * h)) @ U[:, 2 * hidden:])
                                         + c[2 * hidden:])))
        h_new = store(blend(z, h, h_cand))
        if mask is not None:
            h_new = np.where(mask[:, t, None], h_new, h)
        outputs[:, t] = h = h_new
    return outputs, h


def modelled_gru_stack(x, layers, convention, precision: str, h0=None, mask=None, merge: str = "concat",
                       masked_output: str = "carry", reverse: bool = False):
    """``reference.gru_stack`` computed the way a runtime at ``precision`` computes it (see
    ``PRECISION_MODELS``); same arguments and shapes, float64 results holding the modelled rounding.

    Sigmoid and tanh are evaluated in float64 on rounded inputs and their results rounded: a runtime's
    own approximation of them (onnxruntime's rational sigmoid, 3e-7) is far below every modelled rung.
    """
    if precision not in PRECISION_MODELS:
        raise ValueError(f"no precision model {precision!r}; valid: {', '.join(PRECISION_MODELS)}")
    model = PRECISION_MODELS[precision]
    convention = as_convention(convention)
    num_layers, directions = check_layers(layers, merge)
    if reverse and directions == 2:
        raise ValueError("reverse=True applies to single-direction stacks; a bidirectional stack already runs both ways")
    # The checks (shapes, mask, finiteness) are gru_stack's: run it once for them and for the structure's errors.
    gru_stack(x, layers, convention, h0=h0, mask=mask, merge=merge, masked_output=masked_output, reverse=reverse)
    x = np.asarray(x, np.float64)
    mask = None if mask is None else np.asarray(mask, bool)
    finals, layer_input = [], x
    for index, layer in enumerate(layers):
        direction_outputs = []
        for direction, params in enumerate(layer):
            slot = index * directions + direction
            backwards = direction == 1 or reverse
            outputs, h_last = _direction(layer_input, params, convention, None if h0 is None else h0[slot], mask,
                                         backwards, model)
            if mask is not None:
                outputs = masked_outputs(outputs, mask, masked_output, reverse=backwards)
            direction_outputs.append(outputs)
            finals.append(h_last)
        layer_input = direction_outputs[0] if directions == 1 else merge_directions(*direction_outputs, merge)
    return layer_input, np.stack(finals)


def model_error(x, layers, convention, precision: str, h0=None, mask=None, merge: str = "concat",
                masked_output: str = "carry", reverse: bool = False) -> float:
    """The largest absolute gap between ``modelled_gru_stack`` at ``precision`` and the float64 reference
    (outputs at unmasked steps, and final states): the error scale a correct implementation at that
    precision produces on these inputs."""
    kwargs = dict(h0=h0, mask=mask, merge=merge, masked_output=masked_output, reverse=reverse)
    reference_outputs, reference_h = gru_stack(x, layers, convention, **kwargs)
    outputs, h_last = modelled_gru_stack(x, layers, convention, precision, **kwargs)
    gap = np.abs(outputs - reference_outputs)
    if mask is not None:
        gap = np.where(np.asarray(mask, bool)[:, :, None], gap, 0.0)
    return float(max(gap.max(), np.abs(h_last - reference_h).max()))


# ---------------------------------------------------------------- the ladder

# Tolerances of the modelled rungs, (rtol, atol) = (t/2, t/2), so the allowance is t/2 at |h| ~ 0 and t at
# |h| ~ 1. Each is derived from the largest ``model_error`` measured (numpy, this module) on 32 seeds of the
# identification probe (``reference.identify.design_probe``: 4 sequences x 6 steps, hidden 5 and 16,
# h0 in [-0.8, 0.8], reset before and after) and 8 seeds of the matrix probe (``reports.matrix.make_probe``
# for nn.GRU 1 layer, 2 layers bidirectional, bias-free, PackedSequence; Keras reset_after=False);
# ``tests/test_precision_models.py`` re-measures a subset and checks each tolerance still covers it:
#   tfloat32 8.6e-4 -> 3e-3 (3.5x; only matmul operands are rounded, to 2**-11 relative);
#   float16  1.2e-3 -> 5e-3 (4x; the same mantissa as TF32, but every intermediate and the state rounded);
#   bfloat16 1.2e-2 -> 5e-2 (4x; 8x float16's unit roundoff);
#   int8     3.4e-2 -> 7e-2 (2x: the model reproduces torch's quantized GRU to 1.2e-7 on one layer and 1e-3
#            on two bidirectional layers, measured, so it needs less headroom than a rounding model).
# The headroom allows a runtime that rounds at a few more places than its model (another summation
# order, one more stored intermediate); every tolerance stays below the smallest gap between two
# conventions on these probes (7.1e-2, bias-free nn.GRU reset before vs after; typically 0.3-0.5).
MODELLED_TOLERANCES: dict[str, float] = {"tfloat32": 3e-3, "float16": 5e-3, "bfloat16": 5e-2, "int8": 7e-2}

MODELLED_SEPARATION = 3.0  # see separation_for

# The largest model_error measured for each modelled rung (the numbers above): what describe() cites.
MODELLED_ERRORS: dict[str, float] = {"tfloat32": 8.6e-4, "float16": 1.2e-3, "bfloat16": 1.2e-2, "int8": 3.4e-2}

PRECISION_LADDER: tuple[tuple[str, tuple[float, float]], ...] = (
    *((dtype.name, TOLERANCES[dtype]) for dtype in sorted(TOLERANCES, key=lambda d: np.finfo(d).eps)),
    *((name, (tolerance / 2, tolerance / 2)) for name, tolerance in MODELLED_TOLERANCES.items()),
)


def coarser_precisions(requested, modelled: bool = False) -> list[tuple[str, tuple[float, float]]]:
    """The ladder's rungs coarser than ``requested``, finest first.

    ``modelled=False`` (the default, what ``reference.identify`` asks today) gives the NumPy dtype rungs
    only (float32 under float64): the modelled rungs need a separation rule of their own
    (``separation_for``) and are too coarse to look for porting mistakes at (each extra rung of the
    mistake search costs a full pass over the catalogue and its pairs, ~10 s, and at int8's
    tolerance a mistake that changes the output by 5e-2 would "fit"). ``modelled=True`` adds
    tfloat32, float16, bfloat16 and int8."""
    names = [name for name, _ in PRECISION_LADDER]
    try:
        requested = np.dtype(requested).name
    except TypeError:
        pass  # a rung name that is not a NumPy dtype ("bfloat16", "tfloat32", "int8")
    if requested not in names:
        raise ValueError(f"no precision rung for dtype {requested}; valid: {', '.join(names)}")
    rungs = PRECISION_LADDER[names.index(requested) + 1 :]
    return [rung for rung in rungs if modelled or rung[0] not in MODELLED_TOLERANCES]


def separation_for(name: str) -> float:
    """How many of rung ``name``'s tolerances the runner-up convention must miss by for a decision.

    ``SEPARATION_FACTOR`` (100) at float32/float64. At a modelled rung the tolerance is already ~4x
    the rounding the model produces, and the conventions differ by 7e-2 at the least on the probes
    (bias-free ``nn.GRU``, reset before vs after) and ~0.3 typically: 100 tolerances (5 at bfloat16)
    could never be met. There a decision needs the runner-up to miss by ``MODELLED_SEPARATION`` (3)
    tolerances, i.e. >= 12x the rounding the model gives: still an order of magnitude between what
    rounding explains and what it does not. Where the conventions are closer than that on a probe,
    ``reference.identify`` counts those tolerances scaled to the probe (``probe_tolerance``)."""
    rung_tolerance(name)
    return MODELLED_SEPARATION if name in MODELLED_TOLERANCES else SEPARATION_FACTOR


def probe_tolerance(name: str, rounding_here: float, best_error: float) -> float:
    """Rung ``name``'s tolerance scaled to the probe at hand, for the separation rule only.

    A modelled rung's tolerance covers the largest rounding its model gave on any probe measured
    (``MODELLED_ERRORS``); on a probe where the model rounds less (``rounding_here``, its ``model_error``
    on these very inputs) the same headroom gives a smaller tolerance:
    ``tolerance x max(rounding_here, best_error) / MODELLED_ERRORS[name]``, never above the rung's own. The
    best fit's error stands in where the runtime rounds more than the model. Without it a runtime that rounds
    like the model could never be told apart on a probe whose conventions are close: torch's bias-free
    ``nn.GRU`` through OpenVINO in bfloat16 misses reset-after by 4.6e-3 and reset-before by 0.149, under 3
    bfloat16 tolerances (0.15), where the model's own rounding on that probe is 3.5e-3: scaled, the tolerance is
    1.9e-2 and the runner-up misses by 7.8 of them."""
    tolerance = sum(rung_tolerance(name))
    if name not in MODELLED_ERRORS:
        return tolerance
    return min(tolerance, tolerance * max(rounding_here, best_error) / MODELLED_ERRORS[name])


def rung_tolerance(name: str) -> tuple[float, float]:
    """``(rtol, atol)`` of the ladder's rung ``name``."""
    for rung, pair in PRECISION_LADDER:
        if rung == name:
            return pair
    raise ValueError(f"no precision rung {name!r}; valid: {', '.join(rung for rung, _ in PRECISION_LADDER)}")


def explaining_precision(observed_error: float, model_errors: dict[str, float]) -> str | None:
    """Which modelled precision explains ``observed_error``: among the rungs whose tolerance covers it, the
    one whose model error on the same inputs (``model_errors[name] = model_error(...)``) is closest to it
    on a log scale. Tolerances alone cannot say it (an int8 error of 1.8e-2 fits bfloat16's tolerance too;
    the int8 model gives 1.8e-2 on that probe, the bfloat16 model 5.5e-3). None when no rung covers it."""
    if not np.isfinite(observed_error) or observed_error < 0:
        raise ValueError(f"observed_error must be a finite number >= 0, got {describe_value(observed_error)}")
    covering = [name for name, tolerance in MODELLED_TOLERANCES.items()
                if name in model_errors and observed_error <= tolerance and model_errors[name] > 0]
    if not covering:
        return None
    return min(covering, key=lambda name: abs(np.log(max(observed_error, 1e-300) / model_errors[name])))


@dataclass(frozen=True)
class PrecisionVerdict:
    """What was asked for, what the numbers show was computed, and the evidence.

    ``model_error``: what the model of ``computed`` gives on the same probe (None: not measured; the
    describe() text then cites the largest measured on the standard probes, ``MODELLED_ERRORS``)."""

    requested: str
    computed: str
    error: float  # the matched formula's largest absolute error against the float64 reference
    requested_tolerance: float  # rtol + atol of the requested dtype: the error expected at full precision
    model_error: float | None = None

    @property
    def lower_than_requested(self) -> bool:
        return self.computed != self.requested

    def describe(self) -> str:
        if not self.lower_than_requested:
            return f"computed at the requested precision ({self.requested})"
        text = (f"computed at lower precision than requested: {self.computed} where {self.requested} was asked "
                f"(max abs error {self.error:.2g}, where {self.requested} keeps it below {self.requested_tolerance:.0g}")
        if self.model_error is not None:
            text += f"; the {self.computed} model of the reference gives {self.model_error:.2g} on this probe"
        elif self.computed in MODELLED_ERRORS:
            text += f"; the {self.computed} model of the reference gives up to {MODELLED_ERRORS[self.computed]:.2g}"
        return text + ")"

    def to_json(self) -> dict:
        result = {"requested": self.requested, "computed": self.computed, "error": self.error,
                  "lower_than_requested": self.lower_than_requested}
        if self.model_error is not None:
            result["model_error"] = self.model_error
        return result
