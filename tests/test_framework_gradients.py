"""Every adapter with autodiff differentiates through its own framework (``jax.grad``, ``tf.GradientTape``,
Keras 3's backends in their workers, paddle's autograd in its contained child) and agrees with the
reference backward pass (``reports.gradients.compare_gradients``); every adapter without one says why.

One template over (framework, configuration, dtype), the cases as data: a representative subset of each
adapter's table (stacked, bidirectional, masked, reversed, single-bias and bias-free layouts, float32 and
float64). A known deviation is looked up in ``tests/expected_failures.py`` under the aspect
``"gradients"`` and becomes a strict xfail, so it fails loudly the day it disappears. The torch and Keras
(TensorFlow) rows live in ``tests/test_gradients.py``.
"""

from __future__ import annotations

import json

import pytest

import adapters
from adapters.base import GradientsUnavailable, device_class
from reports.gradients import compare_gradients, loss_weights
from reports.matrix import DEFAULT_CASE, make_probe

from .conftest import ISOLATED_BACKENDS, adapter_or_skip
from .expected_failures import expected_failure

pytestmark = pytest.mark.xdist_group(ISOLATED_BACKENDS)

# (framework, configuration, dtype): one or two rows per framework, chosen to cover its distinct code paths.
CASES = [
    ("flax", "linen.RNN(GRUCell) + x64", "float64"),
    ("flax", "nnx.RNN(GRUCell, reverse=True)", "float32"),
    ("haiku", "hk.DeepRNN([GRU, GRU]) + dynamic_unroll(reverse=True) + x64", "float64"),
    ("equinox", "eqx.nn.GRUCell(use_bias=False) + lax.scan(reverse=True) + x64", "float64"),
    ("tf-legacy", "tf.compat.v1.nn.bidirectional_dynamic_rnn(GRUCell, GRUCell) + sequence_length", "float64"),
    ("tf-legacy", "tf.compat.v1.keras.layers.GRU + mask", "float32"),  # Keras 2's hard sigmoid, reset before
    ("tf-legacy", "[tf_keras.layers.Bidirectional(GRU), Bidirectional(GRU)]", "float64"),
    ("keras-jax", "GRU(reset_after=True, use_bias=False)", "float32"),  # JAX's own lax.scan GRU loop
    ("keras-torch", "Bidirectional(GRU) + mask", "float32"),
    ("keras-torch", "GRU(go_backwards=True)", "float64"),  # the fast path keeps float64
    ("keras-torch", "RNN(GRUCell(reset_after=True))", "float64"),  # Keras demotes float64 here: precision
    ("paddle", "nn.GRU(num_layers=2, direction='bidirect')", "float64"),
    ("paddle", "nn.GRU(num_layers=2, direction='bidirect') + sequence_length", "float32"),
    ("paddle", "nn.RNN(GRUCell(bias_ih_attr=False))", "float32"),
]

# Frameworks without autodiff, and what their reason must say.
NO_AUTODIFF = [
    ("onnxruntime", "forward passes only"),
    ("onnx-reference", "forward passes only"),
]


@pytest.mark.parametrize("framework, name, dtype", CASES, ids=[f"{f}:{n}[{d}]" for f, n, d in CASES])
def test_framework_gradients_agree_with_the_reference(framework, name, dtype, request):
    adapter = adapter_or_skip(framework)
    # Looked up once the adapter is loaded: some deviations depend on the device it computes on.
    reason = expected_failure(framework, name, dtype, "gradients", device_class(adapter.versions()))
    if reason:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))
    config = adapter.configuration(name)
    result = compare_gradients(adapter, config, dtype)
    assert result.unavailable is None and result.error is None, (config.label, dtype, result.verdict)
    assert result.passed, (config.label, dtype, result.verdict,
                           {group: (diff.max_abs, diff.scale, diff.atol) for group, diff in result.groups.items()})
    assert {"W", "U", "x", "h0"} <= set(result.groups), (config.label, sorted(result.groups))
    # Exactly the biases the class holds are compared; the ones it lacks are named as excluded.
    compared_biases = {group for group in ("b", "c") if group in result.groups}
    held = {name[0] for name in config.bias_fields}
    assert compared_biases == held, (config.label, compared_biases, config.bias_fields)
    json.dumps(result.to_json())


@pytest.mark.parametrize("framework, says", NO_AUTODIFF, ids=[f for f, _ in NO_AUTODIFF])
def test_adapters_without_autodiff_say_why(framework, says):
    adapter = adapter_or_skip(framework)
    config = adapter.configurations()[0]
    result = compare_gradients(adapter, config, "float32")
    assert result.passed is None and result.unavailable, (framework, result.verdict)
    assert says in result.unavailable and "no gradients" in result.unavailable, result.unavailable
    probe = make_probe(DEFAULT_CASE, config, "float32")
    with pytest.raises(GradientsUnavailable, match="no gradients"):
        adapter.gradients(adapter.build(config, probe.layers, "float32"), probe.x, probe.h0, probe.mask, None, None)


def test_an_op_without_a_registered_gradient_is_unavailable_not_an_error():
    """``tf.raw_ops.GRUBlockCell`` runs, but TensorFlow registers no gradient for it: measured through the tape."""
    adapter = adapter_or_skip("tf-legacy")
    result = compare_gradients(adapter, adapter.configuration("tf.raw_ops.GRUBlockCell"), "float32")
    assert result.passed is None and result.error is None, result.verdict
    assert "registers no gradient for tf.raw_ops.GRUBlockCell" in result.unavailable, result.unavailable


def test_a_crash_while_differentiating_is_contained_and_reported():
    """``nn.GRU(bias_ih_attr=False)`` segfaults in paddle (forward and backward): the child dies, the row says how."""
    adapter = adapter_or_skip("paddle")
    result = compare_gradients(adapter, adapter.configuration("nn.GRU(bias_ih_attr=False)"), "float32")
    assert result.passed is None and result.error, result.verdict
    assert result.error.startswith("WorkerCrashed") and "SIG" in result.error, result.error
    # The worker serves the next configuration.
    after = compare_gradients(adapter, adapter.configuration("nn.GRUCell"), "float32")
    assert after.passed, after.verdict


def test_the_loss_weights_reach_the_framework_unchanged():
    """Differentiating ``sum(h_last * K)`` alone gives ``dh0`` with ``K``'s shape, and zero loss weights give
    zero gradients: the adapters weight exactly the arrays they are given (here tf-legacy's TF1 cell)."""
    adapter = adapter_or_skip("tf-legacy")
    config = adapter.configuration("tf.compat.v1.nn.rnn_cell.GRUCell")
    probe = make_probe(DEFAULT_CASE, config, "float64")
    layer = adapter.build(config, probe.layers, "float64")
    G, K = loss_weights(DEFAULT_CASE, config, DEFAULT_CASE.hidden_size, "float64")
    grads = adapter.gradients(layer, probe.x, probe.h0, None, None, K * 0)
    assert grads.h0.shape == K.shape and not grads.h0.any() and not grads.x.any(), (grads.h0, grads.x)
    assert adapter.extract(layer)[0][0].identical(probe.layers[0][0]), "the layer's weights changed"
