"""``reference.identify``: stock frameworks are matched, broken ports are diagnosed by name,
correct implementations raise no false alarm, and a degenerate probe is never a confident answer.

The broken ports here are written by hand (real PyTorch layers loaded the wrong way, or the
reference run on hand-edited inputs), not with ``reference.mistakes``, so a catalogue entry
that models its mistake wrongly cannot pass by sharing the bug.
"""

from __future__ import annotations

from itertools import permutations

import numpy as np
import pytest

from reference import Convention, GRUParams, activations, gru
from reference.compare import SEPARATION_FACTOR
from reference.identify import Observation, Probe, Structure, design_probe, identify, identify_observations

from .conftest import adapter_or_skip

PREVIOUS_AFTER = Convention("z_on_previous", "after")
PREVIOUS_BEFORE = Convention("z_on_previous", "before")
I, H = 3, 4


# ---------------------------------------------------------------- broken ports through real PyTorch


def _torch_port(order=("r", "z", "h"), hh_order=None, bias_order=None, transpose_hh=True, transpose_ih=True,
                swap_biases=False, drop_c_h=False, fold_c_h=False, use_h0=True, use_mask=True,
                reverse_time=False, reverse_outputs=False, mask=True, input_size=I):
    """A hand-written PyTorch port of GRUParams with switchable mistakes (``mask=False``: takes no mask)."""
    import torch

    hh_order = hh_order or order
    bias_order = bias_order or order

    def forward(params: GRUParams, x, h0, mask=None):
        gru_layer = torch.nn.GRU(input_size, H, batch_first=True, dtype=torch.float64)
        b = {g: getattr(params, f"b_{g}").copy() for g in "zrh"}
        c = {g: getattr(params, f"c_{g}").copy() for g in "zrh"}
        if swap_biases:
            b, c = c, b
        if drop_c_h:
            c["h"] = np.zeros(H)
        if fold_c_h:
            b["h"], c["h"] = b["h"] + c["h"], np.zeros(H)
        with torch.no_grad():
            gru_layer.weight_ih_l0.copy_(torch.from_numpy(np.concatenate(
                [getattr(params, f"W_{g}").T if transpose_ih else getattr(params, f"W_{g}") for g in order])))
            gru_layer.weight_hh_l0.copy_(torch.from_numpy(np.concatenate(
                [getattr(params, f"U_{g}").T if transpose_hh else getattr(params, f"U_{g}") for g in hh_order])))
            gru_layer.bias_ih_l0.copy_(torch.from_numpy(np.concatenate([b[g] for g in bias_order])))
            gru_layer.bias_hh_l0.copy_(torch.from_numpy(np.concatenate([c[g] for g in bias_order])))
            inputs = torch.from_numpy(np.ascontiguousarray(x[:, ::-1] if reverse_time else x))
            state = torch.from_numpy(h0)[None] if use_h0 else None
            if mask is not None and use_mask:
                lengths = torch.from_numpy(mask.sum(axis=1))
                packed = torch.nn.utils.rnn.pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
                out, h_n = gru_layer(packed, state)
                out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
            else:
                out, h_n = gru_layer(inputs, state)
        out = out.numpy()
        if reverse_time:
            out = out[:, ::-1]
        if reverse_outputs:
            out = out[:, ::-1]
        return out, h_n[0].numpy()

    return forward if mask else (lambda params, x, h0: forward(params, x, h0))


TORCH_BROKEN_PORTS = {
    "Keras gate order into PyTorch": (dict(order=("z", "r", "h")), ["all gate blocks: z<->r"]),
    "only weight_ih in Keras order": (dict(order=("z", "r", "h"), hh_order=("r", "z", "h"), bias_order=("r", "z", "h")),
                                      ["input weights: z<->r"]),
    "only weight_hh rotated": (dict(hh_order=("z", "h", "r")), ["recurrent weights:"]),
    "biases in Keras order": (dict(bias_order=("z", "r", "h")), ["biases: z<->r"]),
    "weight_hh not transposed": (dict(transpose_hh=False), ["recurrent weights transposed"]),
    "bias_ih and bias_hh swapped": (dict(swap_biases=True), ["input and recurrent biases swapped"]),
    "c_h dropped": (dict(drop_c_h=True), ["recurrent bias c_h absent"]),
    "c_h folded into b_h": (dict(fold_c_h=True), ["candidate recurrent bias folded into input bias"]),
    "h0 not passed": (dict(use_h0=False), ["initial state ignored"]),
    "lengths not passed": (dict(use_mask=False), ["mask ignored"]),
    # Flipping time and padding do not mix in a port; these ports take no mask.
    "input flipped in time": (dict(reverse_time=True, mask=False), ["time reversed"]),
    "outputs returned backwards": (dict(reverse_outputs=True, mask=False), ["outputs in reverse order"]),
    "pair: biases swapped and h0 not passed": (dict(swap_biases=True, use_h0=False),
                                               ["input and recurrent biases swapped", "initial state ignored"]),
    "pair: Keras order and time flipped": (dict(order=("z", "r", "h"), reverse_time=True, mask=False),
                                           ["all gate blocks: z<->r", "time reversed"]),
}


@pytest.mark.parametrize("port", list(TORCH_BROKEN_PORTS))
def test_broken_torch_port_is_diagnosed_by_name(port):
    adapter_or_skip("torch")
    options, names = TORCH_BROKEN_PORTS[port]
    result = identify(_torch_port(**options), input_size=I, hidden_size=H, expected=PREVIOUS_AFTER)
    assert result.matched is None and result.diagnosis, f"{port}:\n{result.describe()}"
    top = [m.name for m in result.diagnosis[0].mistakes]
    assert len(top) == len(names) and all(any(n.startswith(want) for n in top) for want in names), (
        f"{port}: expected {names} top-ranked\n{result.describe()}"
    )


TORCH_ORDER = ("r", "z", "h")


def _permutation_cases():
    cases = []
    for block, keys in {"input weights": ("order",), "recurrent weights": ("hh_order",), "biases": ("bias_order",),
                        "all gate blocks": ("order", "hh_order", "bias_order")}.items():
        for perm in permutations(TORCH_ORDER):
            if perm == TORCH_ORDER:
                continue
            # PyTorch reads slot k as gate TORCH_ORDER[k]; the port put gate perm[k] there.
            reads = {TORCH_ORDER[k]: perm[k] for k in range(3)}
            moved = [g for g in "zrh" if reads[g] != g]
            key = f"{moved[0]}<->{moved[1]}" if len(moved) == 2 else "".join(reads[g] for g in "zrh")
            options = {"order": TORCH_ORDER, "hh_order": TORCH_ORDER, "bias_order": TORCH_ORDER}
            options.update({k: perm for k in keys})
            cases.append(pytest.param(options, f"{block}: {key}", id=f"{block}-{''.join(perm)}"))
    return cases


@pytest.mark.parametrize("options,name", _permutation_cases())
def test_every_gate_block_permutation_is_diagnosed(options, name):
    adapter_or_skip("torch")
    result = identify(_torch_port(**options), input_size=I, hidden_size=H, expected=PREVIOUS_AFTER)
    assert result.diagnosis and [m.name for m in result.diagnosis[0].mistakes] == [name], result.describe()


def test_input_weights_not_transposed_is_diagnosed_when_square():
    adapter_or_skip("torch")
    result = identify(_torch_port(transpose_ih=False, input_size=H), input_size=H, hidden_size=H, expected=PREVIOUS_AFTER)
    assert [m.name for m in result.diagnosis[0].mistakes] == ["input weights transposed"], result.describe()


def test_a_correct_torch_port_is_matched_with_a_large_margin():
    adapter_or_skip("torch")
    result = identify(_torch_port(), input_size=I, hidden_size=H, expected=PREVIOUS_AFTER)
    assert result.matched == PREVIOUS_AFTER and not result.diagnosis, result.describe()
    assert result.margin > 1e4 and result.calls == 2, result.describe()


# ---------------------------------------------------------------- mistakes the reference must model


def _reference_port(convention=PREVIOUS_AFTER, gate=None):
    def forward(params, x, h0):
        kwargs = {"gate_activation": gate} if gate else {}
        return gru(x, params, convention, h0=h0, **kwargs)

    return forward


@pytest.mark.parametrize("gate,name", [
    (lambda a: np.minimum(1.0, np.maximum(0.0, a * 0.2 + 0.5)), "hard sigmoid gates (Keras 2)"),
    (lambda a: np.minimum(6.0, np.maximum(0.0, a + 3.0)) / 6.0, "hard sigmoid gates (Keras 3)"),
])
def test_hard_sigmoid_gates_are_diagnosed(gate, name):
    result = identify(_reference_port(gate=gate), input_size=I, hidden_size=H, expected=PREVIOUS_AFTER)
    assert [m.name for m in result.diagnosis[0].mistakes] == [name], result.describe()


def _observe(forward) -> Observation:
    """What ``forward(params, x, h0)`` returns on the designed probe, as one observation."""
    probe = design_probe(I, H, seed=0)
    outputs, h_last = forward(probe.params, probe.x, probe.h0)
    return Observation(((probe.params,),), probe.x, probe.h0[None], None, outputs, np.asarray(h_last)[None])


@pytest.fixture
def onnx_style_structure():
    options = (("gate_activation", activations.onnx_activation("HardSigmoid", 0.25, 0.375)),
               ("candidate_activation", activations.onnx_activation("Affine", 0.5, 0.125)), ("clip", 0.75))
    return Structure(reference_options=options)


def test_activations_and_clip_left_out_are_diagnosed(onnx_style_structure):
    """A stock torch.nn.GRU (sigmoid, tanh, no clip) where ONNX-style activations and a clip were asked for:
    what onnx.reference's evaluator computes for such a graph."""
    adapter_or_skip("torch")
    observation = _observe(_torch_port(mask=False))
    result = identify_observations([observation], np.float64, onnx_style_structure, expected=PREVIOUS_AFTER)
    assert result.matched is None, result.describe()
    assert [m.name for m in result.diagnosis[0].mistakes] == ["activations and clip ignored"], result.describe()
    assert result.diagnosis[0].error < 1e-12, result.describe()


def test_activations_and_clip_applied_raise_no_diagnosis(onnx_style_structure):
    options = dict(onnx_style_structure.reference_options)
    applied = _observe(lambda params, x, h0: gru(x, params, PREVIOUS_AFTER, h0=h0, **options))
    result = identify_observations([applied], np.float64, onnx_style_structure, expected=PREVIOUS_AFTER)
    assert result.matched == PREVIOUS_AFTER and not result.diagnosis, result.describe()


def _thresholded_relu_structure(**alpha):
    return Structure(reference_options=(("candidate_activation", activations.onnx_activation("ThresholdedRelu", **alpha)),))


def test_absent_activation_parameters_read_as_zero_are_diagnosed():
    """What onnxruntime computes for activations=['Sigmoid', 'ThresholdedRelu'] with no activation_alpha: alpha 0,
    where the spec's default is 1 (the matrix's onnxruntime row shows it on the real runtime)."""
    alpha_zero = activations.onnx_activation("ThresholdedRelu", alpha=0.0)
    observation = _observe(lambda params, x, h0: gru(x, params, PREVIOUS_BEFORE, h0=h0, candidate_activation=alpha_zero))
    result = identify_observations([observation], np.float64, _thresholded_relu_structure(), expected=PREVIOUS_BEFORE)
    assert result.matched is None, result.describe()
    assert [m.name for m in result.diagnosis[0].mistakes] == ["absent activation parameters read as 0"], result.describe()
    assert result.diagnosis[0].error < 1e-12, result.describe()


def test_an_explicit_activation_parameter_is_not_read_as_an_absent_one():
    """The same computation where the node gave alpha=1 itself: the mistake does not apply, so it is not named."""
    alpha_zero = activations.onnx_activation("ThresholdedRelu", alpha=0.0)
    observation = _observe(lambda params, x, h0: gru(x, params, PREVIOUS_BEFORE, h0=h0, candidate_activation=alpha_zero))
    result = identify_observations([observation], np.float64, _thresholded_relu_structure(alpha=1.0),
                                   expected=PREVIOUS_BEFORE, max_mistakes=1)
    assert result.matched is None, result.describe()
    assert all("absent activation parameters read as 0" not in [m.name for m in d.mistakes] for d in result.diagnosis), (
        result.describe())


@pytest.mark.parametrize("computes,names", [
    (Convention("z_on_candidate", "after"), ["update weighting flipped"]),
    (PREVIOUS_BEFORE, ["reset placement flipped"]),
    (Convention("z_on_candidate", "before"), ["update weighting flipped", "reset placement flipped"]),
])
def test_a_convention_other_than_the_expected_one_is_named_as_a_flip(computes, names):
    result = identify(_reference_port(computes), input_size=I, hidden_size=H, expected=PREVIOUS_AFTER)
    assert result.matched == computes
    assert [m.name for m in result.diagnosis[0].mistakes] == names, result.describe()


def test_diagnosis_text_says_what_to_fix():
    adapter_or_skip("torch")
    result = identify(_torch_port(order=("z", "r", "h")), input_size=I, hidden_size=H)
    text = result.describe()
    assert "matched: none of the four conventions" in text
    assert "fix: reorder the gate blocks of every packed weight and bias" in text
    assert "PyTorch: r, z, n; Keras: z, r, h" in text


def test_nonsense_is_unexplained_not_misdiagnosed():
    def noise(params, x, h0):
        rng = np.random.default_rng(0)
        return rng.uniform(-1, 1, size=(*x.shape[:2], H)), rng.uniform(-1, 1, size=(x.shape[0], H))

    result = identify(noise, input_size=I, hidden_size=H)
    assert result.matched is None and result.diagnosis == [] and not result.explained
    assert "no catalogued mistake" in result.describe()


# ---------------------------------------------------------------- no false alarms, no false confidence


def test_two_hundred_random_correct_implementations_identify_without_diagnosis():
    rng = np.random.default_rng(2026)
    failures = []
    for trial in range(200):
        input_size, hidden_size = int(rng.integers(1, 9)), int(rng.integers(1, 9))
        dtype = [np.float32, np.float64][trial % 2]
        convention = Convention.all()[int(rng.integers(4))]

        def forward(params, x, h0, mask=None, convention=convention, dtype=dtype):
            return gru(x, params, convention, h0=h0, mask=mask, dtype=dtype)  # rounds like a framework in dtype

        result = identify(forward, input_size=input_size, hidden_size=hidden_size, seed=trial, dtype=dtype)
        if result.matched != convention or result.diagnosis or result.ambiguous:
            failures.append(f"trial {trial} ({input_size}, {hidden_size}, {np.dtype(dtype).name}, {convention.id}):\n"
                            f"{result.describe()}")
    assert not failures, f"{len(failures)} of 200 misidentified; first:\n{failures[0]}"


def test_degenerate_probe_is_ambiguous_never_a_confident_wrong_answer():
    base = design_probe(I, H)
    zero = np.zeros(H)
    params = base.params.replace(c_z=zero, c_r=zero, c_h=zero)
    degenerate = Probe(params, base.x[:, :1], np.zeros_like(base.h0), None)
    for convention in Convention.all():
        result = identify(_reference_port(convention), input_size=I, hidden_size=H, probe=degenerate)
        assert result.ambiguous and result.matched is None, result.describe()
        assert convention in result.candidates and len(result.candidates) == 2, result.describe()
        assert result.margin < SEPARATION_FACTOR


def test_identify_rejects_a_forward_with_the_wrong_state_shape():
    with pytest.raises(ValueError, match="h_last of shape \\(4, 4, 1\\) .*expected shape \\(4, 4\\)"):
        identify(lambda p, x, h0: (None, np.zeros((4, 4, 1))), input_size=I, hidden_size=H)
