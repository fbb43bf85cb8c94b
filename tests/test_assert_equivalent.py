"""``adapters.assert_gru_equivalent``: passes on equal models, fails with the right diagnosis on planted mistakes."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import module_or_skip


def _torch_gru(bias_hh_zero: bool = False, **options):
    torch = module_or_skip("torch")
    torch.manual_seed(0)
    gru = torch.nn.GRU(3, 4, batch_first=True, **options).double().eval()
    if bias_hh_zero:
        with torch.no_grad():
            for name, parameter in gru.named_parameters():
                if name.startswith("bias_hh"):
                    parameter.zero_()
    return gru


def _gate_swapped_copy(gru):
    """A port that swapped the r and z row blocks of every weight and bias (torch rows r, z, n)."""
    import copy

    import torch

    swapped = copy.deepcopy(gru)
    hidden = gru.hidden_size
    with torch.no_grad():
        for _, parameter in swapped.named_parameters():
            r, z, n = parameter[:hidden].clone(), parameter[hidden:2 * hidden].clone(), parameter[2 * hidden:].clone()
            parameter.copy_(torch.cat([z, r, n]))
    return swapped


def _callable_of(gru):
    import adapters

    adapter = adapters.get("torch")
    return lambda x, h0: (lambda r: (r.outputs, r.h_last))(adapter.run(gru, x, h0))


def _keras_of(gru):
    import adapters

    keras_adapter = adapters.get("keras")
    config = keras_adapter.configuration("Bidirectional(GRU, merge_mode='concat')")
    return keras_adapter.build(config, adapters.get("torch").extract(gru), np.float64)


def _onnx_path_of(gru, tmp_path):
    import onnx

    import adapters
    from adapters.onnx_runtime import build_model

    row = adapters.get("onnxruntime").configuration("[GRU, GRU](direction='bidirectional')").option("row")
    layers = [[p.astype(np.float32) for p in layer] for layer in adapters.get("torch").extract(gru)]
    row = type(row)(**{**vars(row), "linear_before_reset": 1})
    onnx.save(build_model(row, layers, "float32"), str(tmp_path / "gru.onnx"))
    return str(tmp_path / "gru.onnx")


@pytest.mark.parametrize("make_actual", [
    pytest.param(lambda gru, _: gru, id="the same module"),
    pytest.param(lambda gru, _: _callable_of(gru), id="a callable wrapping it"),
    pytest.param(_onnx_path_of, id="an .onnx path (float32 against float32)"),
])
def test_equal_models_pass(make_actual, tmp_path):
    from adapters import assert_gru_equivalent

    gru = _torch_gru(num_layers=2, bidirectional=True)
    actual = make_actual(gru, tmp_path)
    if isinstance(actual, str):  # onnxruntime computes float32 only: compare with a float32 copy
        gru = gru.float()
    assert assert_gru_equivalent(actual, gru) is None


@pytest.mark.parametrize("masked", [False, True], ids=["full length", "right-padded mask"])
def test_a_keras_layer_against_torch_passes(masked):
    module_or_skip("keras")
    from adapters import assert_gru_equivalent

    gru = _torch_gru(bidirectional=True)
    x = np.random.default_rng(1).normal(size=(3, 5, 3))
    mask = np.arange(5)[None, :] < np.array([5, 2, 4])[:, None] if masked else None
    assert assert_gru_equivalent(_keras_of(gru), gru, inputs=x, mask=mask, rtol=1e-10, atol=1e-10) is None


CASES = [
    # (id, what is planted, a phrase the message must contain)
    ("gate swap", "swap", "z<->r"),
    ("reset placement flip", "keras reset_after=False", "reset placement"),
]


@pytest.mark.parametrize("planted, phrase", [(p, f) for _, p, f in CASES], ids=[c[0] for c in CASES])
def test_planted_mistake_fails_with_diagnosis(planted, phrase):
    from adapters import assert_gru_equivalent

    gru = _torch_gru(bias_hh_zero=planted != "swap")
    if planted == "swap":
        actual = _gate_swapped_copy(gru)
    else:
        module_or_skip("keras")
        import adapters

        keras_adapter = adapters.get("keras")
        layers = adapters.get("torch").extract(gru)
        actual = keras_adapter.build(keras_adapter.configuration("GRU(reset_after=False)"), layers, np.float64)
    with pytest.raises(AssertionError) as raised:
        assert_gru_equivalent(actual, gru)
    message = str(raised.value)
    assert "elements differ" in message and "largest difference" in message and "tolerance" in message, message
    assert "(batch " in message and "timestep" in message and "unit" in message, message
    assert phrase in message, f"expected {phrase!r} in the diagnosis:\n{message}"


def test_bad_argument_is_named():
    from adapters import assert_gru_equivalent

    with pytest.raises(TypeError, match="expected a torch nn.GRU"):
        assert_gru_equivalent(object(), _torch_gru())
