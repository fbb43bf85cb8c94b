"""The catalogue of porting mistakes: each a named, documented transformation of what the
reference computes, so an observed output can be compared with "the right formula, ported wrong".

A mistake edits a ``Scenario`` (parameters, convention, inputs and run options) before the
reference runs it. ``fix`` tells the user what to change, in each framework's own terms.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import combinations, permutations
from typing import Callable

import numpy as np

from .activations import defaults_read_as_zero, keras2_hard_sigmoid, keras3_hard_sigmoid
from .conventions import Convention
from .equations import sigmoid
from .params import RECURRENT_BIASES, GRUParams


@dataclass(frozen=True)
class Scenario:
    """Everything the reference needs to produce one hypothetical output."""

    layers: tuple  # tuple of tuples of GRUParams
    convention: Convention
    x: np.ndarray
    h0: np.ndarray | None
    mask: np.ndarray | None
    reverse: bool = False
    gate_activation: Callable = sigmoid
    outputs_reversed: bool = False
    # Extra keyword arguments of gru_stack the configuration asks for (its activations and clip).
    reference_options: tuple = ()

    def map_params(self, change: Callable[[GRUParams], GRUParams]) -> "Scenario":
        return replace(self, layers=tuple(tuple(change(p) for p in layer) for layer in self.layers))


@dataclass(frozen=True)
class Mistake:
    name: str
    description: str
    fix: str
    apply: Callable[[Scenario], Scenario]
    applies: Callable[[Scenario], bool] = lambda scenario: True
    changes_convention: bool = False
    permuted_block: str | None = None  # for gate-block permutations: which block they reorder

    def __str__(self) -> str:
        return self.name

    def __reduce__(self):
        # Its functions are lambdas, which do not pickle: a catalogued mistake travels by name (results
        # measured in a worker process come back with their diagnosis).
        return _catalogued, (self.name,)


# --------------------------------------------------------------- gate-block permutations

GATE_NAMES = {"z": "update (z)", "r": "reset (r)", "h": "candidate (h/n)"}
BLOCK_FIELDS = {
    "input weights": ("W",),
    "recurrent weights": ("U",),
    "biases": ("b", "c"),
    "all gate blocks": ("W", "U", "b", "c"),
}
BLOCK_TENSORS = {
    "input weights": "the input weights (PyTorch weight_ih rows, Keras kernel columns, ONNX W rows)",
    "recurrent weights": "the recurrent weights (PyTorch weight_hh rows, Keras recurrent_kernel columns, ONNX R rows)",
    "biases": "the biases (PyTorch bias_ih and bias_hh, Keras bias columns, ONNX B)",
    "all gate blocks": "every packed weight and bias (the source's gate order was read as another's)",
}
ORDER_ROWS = {"PyTorch": "r, z, n", "Keras": "z, r, h", "ONNX": "z, r, h"}


def _permute(fields: tuple[str, ...], mapping: dict[str, str]) -> Callable[[GRUParams], GRUParams]:
    def change(params: GRUParams) -> GRUParams:
        return params.derive(**{f"{f}_{g}": getattr(params, f"{f}_{mapping[g]}") for f in fields for g in "zrh"})

    return change


def _permutation_mistakes() -> list[Mistake]:
    mistakes = []
    for block, fields in BLOCK_FIELDS.items():
        for order in permutations("zrh"):
            mapping = dict(zip("zrh", order))  # the port's gate g reads the weights of gate mapping[g]
            if all(g == m for g, m in mapping.items()):
                continue
            moved = [g for g in "zrh" if mapping[g] != g]
            if len(moved) == 2:
                a, b = moved
                what = f"{GATE_NAMES[a]} and {GATE_NAMES[b]} blocks swapped"
                key = f"{a}<->{b}"
            else:
                what = "blocks rotated: " + ", ".join(f"{GATE_NAMES[g]} reads {mapping[g]}" for g in "zrh")
                key = "".join(order)
            mistakes.append(Mistake(
                name=f"{block}: {key}",
                description=what,
                fix=(f"reorder the gate blocks of {BLOCK_TENSORS[block]}; gate order is "
                     + "; ".join(f"{k}: {v}" for k, v in ORDER_ROWS.items())
                     + f". The port's {', '.join(f'{g} gate holds the {mapping[g]} block' for g in moved)}."),
                apply=lambda s, fields=fields, mapping=mapping: s.map_params(_permute(fields, mapping)),
                permuted_block=block,
            ))
    return mistakes


# --------------------------------------------------------------- the rest of the catalogue


def _transpose(prefix: str):
    def change(params: GRUParams) -> GRUParams:
        return params.derive(**{f"{prefix}_{g}": getattr(params, f"{prefix}_{g}").T for g in "zrh"})

    return change


def _swap_biases(params: GRUParams) -> GRUParams:
    return params.derive(**{f"b_{g}": getattr(params, f"c_{g}") for g in "zrh"},
                         **{f"c_{g}": getattr(params, f"b_{g}") for g in "zrh"})


def _drop(names: tuple[str, ...]) -> Callable[[GRUParams], GRUParams]:
    return lambda params: params.derive(**{name: np.zeros_like(getattr(params, name)) for name in names})


def _absent_recurrent_bias_mistakes() -> list[Mistake]:
    """Every non-empty subset of the recurrent biases, absent.

    Many implementations have one bias per gate (d2l's from-scratch GRU, Haiku, single-bias
    layouts) or lack some recurrent biases (Flax and Equinox keep only c_h). Given six biases they
    silently ignore the missing ones; the fix says when folding them into ``b_*`` is exact.
    """
    mistakes = []
    for size in (1, 2, 3):
        for names in combinations(RECURRENT_BIASES, size):
            gates = [name[-1] for name in names]
            folds = [f"{name} into b_{name[-1]}" for name in names if name != "c_h"]
            fix = "the implementation has no " + ", ".join(names) + ": fold " + " and ".join(
                [*folds, *(["c_h into b_h (exact only under reset-before; under reset-after r scales c_h, so "
                            "keep a layout with a separate candidate recurrent bias)"] if "c_h" in names else [])]
            ) + (" (always exact: they add to the gate pre-activation like b_*)" if "c_h" not in names else "")
            fix += "; reference.fold_recurrent_biases does it, and refuses where it is not exact"
            mistakes.append(Mistake(
                name=f"recurrent bias{'es' if size > 1 else ''} {', '.join(names)} absent",
                description=f"the recurrent bias{'es' if size > 1 else ''} of the "
                            f"{', '.join(GATE_NAMES[g] for g in gates)} gate{'s' if size > 1 else ''} "
                            f"{'are' if size > 1 else 'is'} not used (zero) by the implementation",
                fix=fix,
                apply=lambda s, names=names: s.map_params(_drop(names)),
                applies=lambda s, names=names: any(np.any(getattr(p, n) != 0) for layer in s.layers for p in layer
                                                   for n in names),
            ))
    return mistakes


def _fold_candidate_recurrent_bias(params: GRUParams) -> GRUParams:
    return params.derive(b_h=params.b_h + params.c_h, c_h=np.zeros_like(params.c_h))


def _square(prefix: str):
    return lambda s: all(getattr(p, f"{prefix}_z").shape[0] == getattr(p, f"{prefix}_z").shape[1]
                         for layer in s.layers for p in layer)


FLIP_UPDATE = Mistake(
    name="update weighting flipped",
    description="h_t blends with z and 1 - z exchanged (z on candidate instead of z on previous, or back)",
    fix="exchange z and (1 - z) in the blend, or negate the update gate's weights and biases "
        "(reference.flip_update_weighting): 1 - sigmoid(a) = sigmoid(-a)",
    apply=lambda s: replace(s, convention=Convention(
        "z_on_candidate" if s.convention.update == "z_on_previous" else "z_on_previous", s.convention.reset)),
    changes_convention=True,
)
FLIP_RESET = Mistake(
    name="reset placement flipped",
    description="the reset gate multiplies on the other side of the recurrent matmul",
    fix="reset after: tanh(x W_h + b_h + r * (h_prev U_h + c_h)) (PyTorch, Keras reset_after=True, ONNX "
        "linear_before_reset=1); reset before: tanh(x W_h + b_h + (r * h_prev) U_h + c_h) (Keras "
        "reset_after=False, ONNX default). Pick the flag that matches the source model",
    apply=lambda s: replace(s, convention=Convention(s.convention.update, "before" if s.convention.reset == "after" else "after")),
    changes_convention=True,
)


def _defaults_read_as_zero(options: tuple) -> tuple:
    return tuple((key, defaults_read_as_zero(value)) for key, value in options)


CATALOGUE: tuple[Mistake, ...] = (
    *_permutation_mistakes(),
    Mistake("recurrent weights transposed", "each U block is used transposed (h_prev U^T instead of h_prev U)",
            "transpose each recurrent block when converting: PyTorch weight_hh is (3H, H) and used as h @ W.T; "
            "Keras recurrent_kernel is (H, 3H) and used as h @ K",
            lambda s: s.map_params(_transpose("U"))),
    Mistake("input weights transposed", "each W block is used transposed (possible only when input_size == hidden_size)",
            "transpose each input block when converting: PyTorch weight_ih is (3H, I); Keras kernel is (I, 3H)",
            lambda s: s.map_params(_transpose("W")), applies=_square("W")),
    Mistake("input and recurrent biases swapped", "b_* holds the recurrent biases and c_* the input biases",
            "PyTorch bias_ih is the input bias and bias_hh the recurrent one; Keras bias[0] is input, bias[1] "
            "recurrent; ONNX B is [Wb, Rb]",
            lambda s: s.map_params(_swap_biases)),
    *_absent_recurrent_bias_mistakes(),
    Mistake("candidate recurrent bias folded into input bias",
            "c_h was added to b_h, which is exact under reset-before but wrong under reset-after (r scales c_h)",
            "under reset-after keep c_h separate (Keras reset_after=True bias[1], PyTorch bias_hh); only fold "
            "recurrent biases for a reset-before GRU (reference.fold_recurrent_biases)",
            lambda s: s.map_params(_fold_candidate_recurrent_bias)),
    Mistake("time reversed", "the sequence is processed from the last step to the first",
            "process the sequence forwards (Keras go_backwards=False; PyTorch: do not flip the input)",
            lambda s: replace(s, reverse=not s.reverse),
            # A bidirectional layer already reads both ways: reversing time is not a distinct mistake there.
            applies=lambda s: all(len(layer) == 1 for layer in s.layers)),
    Mistake("outputs in reverse order", "the output sequence is returned last step first",
            "flip the output sequence along time (Keras go_backwards returns outputs in processing order)",
            lambda s: replace(s, outputs_reversed=not s.outputs_reversed)),
    Mistake("initial state ignored", "the run starts from zeros instead of h0",
            "pass the initial state (PyTorch h_0 / hx; Keras initial_state=[...]; ONNX initial_h)",
            lambda s: replace(s, h0=None if s.h0 is None else np.zeros_like(s.h0)),
            applies=lambda s: s.h0 is not None and np.any(s.h0 != 0)),
    Mistake("mask ignored", "padded steps update the state as if they were real input",
            "pass the sequence lengths or mask (PyTorch pack_padded_sequence; Keras mask= or a Masking layer; "
            "ONNX sequence_lens)",
            lambda s: replace(s, mask=None), applies=lambda s: s.mask is not None and not s.mask.all()),
    Mistake("activations and clip ignored",
            "the configured gate and candidate activations, their alpha/beta and the clip are not applied: the "
            "default GRU runs instead (sigmoid gates, tanh candidate, no clip)",
            "run the model where these are implemented (ONNX: activations, activation_alpha, activation_beta and "
            "clip are GRU attributes that onnx.reference's evaluator ignores and onnxruntime applies; Keras: "
            "activation= and recurrent_activation=), or rebuild it with the default activations",
            lambda s: replace(s, reference_options=()), applies=lambda s: bool(s.reference_options)),
    Mistake("absent activation parameters read as 0",
            "an activation whose alpha/beta the model leaves to their defaults runs with 0 in their place "
            "(ThresholdedRelu(alpha=0) is relu; Affine and ScaledTanh give 0)",
            "write activation_alpha and activation_beta out for every activation that takes them instead of relying "
            "on the spec's defaults (onnxruntime registers defaults only for LeakyRelu, HardSigmoid and Elu and "
            "reads 0 for the others: onnxruntime/core/providers/cpu/rnn/rnn_helpers.cc, NameToArgDefaultsMap and "
            "NormalizeActivationArgumentAndGetAlphaBetaCount)",
            lambda s: replace(s, reference_options=_defaults_read_as_zero(s.reference_options)),
            applies=lambda s: _defaults_read_as_zero(s.reference_options) != s.reference_options),
    Mistake("hard sigmoid gates (Keras 2)", "z and r use clip(0.2 a + 0.5, 0, 1) instead of sigmoid",
            "use recurrent_activation='sigmoid' (Keras 2's GRU defaulted to hard_sigmoid)",
            lambda s: replace(s, gate_activation=keras2_hard_sigmoid)),
    Mistake("hard sigmoid gates (Keras 3)", "z and r use clip(a / 6 + 0.5, 0, 1) instead of sigmoid",
            "use recurrent_activation='sigmoid' (Keras 3's hard_sigmoid is relu6(a + 3) / 6)",
            lambda s: replace(s, gate_activation=keras3_hard_sigmoid)),
)
CONVENTION_MISTAKES = (FLIP_UPDATE, FLIP_RESET)
BY_NAME = {m.name: m for m in (*CATALOGUE, *CONVENTION_MISTAKES)}


def _catalogued(name: str) -> Mistake:
    return BY_NAME[name]


def convention_mistakes(expected: Convention, actual: Convention) -> tuple[Mistake, ...]:
    """The flips that turn ``expected`` into ``actual``."""
    flips = []
    if expected.update != actual.update:
        flips.append(FLIP_UPDATE)
    if expected.reset != actual.reset:
        flips.append(FLIP_RESET)
    return tuple(flips)
