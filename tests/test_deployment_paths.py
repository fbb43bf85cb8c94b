"""Round trips, deployment runtimes and quantizers (worker A2's paths), run on the real tools.

Each case is data: a path, one source configuration, and what the measurement must show (the error
against the float64 reference in the documented convention, or the tool's failure message, and what
``emitted`` records). An unavailable tool skips its case with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

import adapters
import adapters.paths as paths
from adapters.base import device_class
from reference.precision import modelled_gru_stack
from reports.matrix import DEFAULT_CASE, make_probe, reference_forward


@dataclass(frozen=True)
class Case:
    path: str
    config: str
    dtype: str = "float32"
    max_error: float | None = None   # largest abs error against the reference allowed
    min_error: float = 0.0           # and the smallest (a lowered precision must show)
    failure: str | None = None       # the tool's message must contain this
    emitted: tuple = field(default=())  # (key, value) pairs emitted must hold
    model: str | None = None         # the precision model the result must match to ``model_match``
    model_match: float = 0.0
    on: str | None = None            # only where the path's device class is this (adapters.base.device_class)


CASES = [
    Case("torch-jit-script", "nn.GRU + PackedSequence", "float64", max_error=1e-12),
    Case("keras-save-load", "GRU(reset_after=True) + mask", "float64", max_error=1e-12),
    Case("torch-quantize-dynamic", "nn.GRU(batch_first=True)", max_error=5e-2, min_error=1e-3,
         emitted=(("bare_gru_quantized", False), ("weights", "qint8 per-tensor symmetric")), model="int8",
         model_match=1e-5),
    Case("torch-quantize-dynamic", "nn.GRU(bias=False)", failure="mod.bias must be True"),
    Case("onnx-quantize-dynamic", "GRU(linear_before_reset=1)", max_error=1e-5, emitted=(("quantized_ops", []),)),
    Case("onnx-float16", "GRU(linear_before_reset=1)", max_error=5e-3, min_error=1e-5,
         emitted=(("weights_dtype", "float16"), ("gru_blocked_variant", {"weights_dtype": "float32"}))),
    Case("onnx-openvino", "GRU(linear_before_reset=1)", max_error=1e-5, on="cpu",
         emitted=(("inference_precision_default", "f32"),)),
    # A CPU with native bf16: the plugin's default rounds to bfloat16 (tests/expected_failures.py,
    # OPENVINO_BF16_DEFAULT): above float32's error, within the bfloat16 rung's tolerance.
    *(Case(path, config, min_error=1e-4, max_error=5e-2, on="bf16 cpu",
           emitted=(("inference_precision_default", "bf16"), ("inference_precision_f32", "f32")))
      for path, config in (("onnx-openvino", "GRU(linear_before_reset=1)"), ("torch-openvino", "nn.GRU(bias=False)"))),
]


def _run(case: Case, tmp_path):
    try:
        path = paths.get(case.path)
    except paths.PathUnavailable as unavailable:
        pytest.skip(unavailable.reason)
    if case.on is not None and device_class(path.versions()) != case.on:
        pytest.skip(f"{case.path} measures on {path.versions().get('device')}; this case is for the {case.on!r} class")
    source = adapters.get(path.source)
    config = source.configuration(case.config)
    probe = make_probe(DEFAULT_CASE, config, case.dtype)
    layer = source.build(config, probe.layers, case.dtype)
    return path, config, probe, layer


@pytest.mark.parametrize("case", CASES, ids=[f"{c.path}:{c.config}:{c.dtype}" + (f" on {c.on}" if c.on else "") for c in CASES])
def test_path_computes_what_is_measured(case, tmp_path):
    path, config, probe, layer = _run(case, tmp_path)
    if case.failure:
        with pytest.raises(paths.ConversionFailed, match=case.failure):
            path.convert(layer, config, np.dtype(case.dtype), tmp_path)
        return
    converted = path.convert(layer, config, np.dtype(case.dtype), tmp_path)
    result = converted.run(probe.x, probe.h0, probe.mask)
    expected = reference_forward(config, probe, config.claimed)
    gaps = [np.abs(result.h_last - expected.h_last).max()]
    if result.outputs is not None:
        valid = np.ones(result.outputs.shape[:2], bool) if probe.mask is None else probe.mask
        gaps.append(np.abs(np.where(valid[:, :, None], result.outputs - expected.outputs, 0.0)).max())
    error = float(max(gaps))
    assert case.min_error <= error <= case.max_error, \
        f"{case.path} on {case.config} [{case.dtype}]: max abs error {error:.3g}, expected in [{case.min_error}, {case.max_error}]"
    for key, value in case.emitted:
        assert converted.emitted.get(key) == value, f"{case.path}: emitted[{key!r}] = {converted.emitted.get(key)!r}, expected {value!r}"
    if case.model:
        outputs, h_last = modelled_gru_stack(probe.x, probe.layers, config.claimed, case.model, h0=probe.h0,
                                             mask=probe.mask, merge=config.merge, masked_output=config.masked_output)
        gap = np.abs(result.h_last - h_last).max()
        assert gap <= case.model_match, f"{case.path}: differs from the {case.model} model by {gap:.3g}"


def test_the_users_layer_is_not_changed(tmp_path):
    path, config, probe, layer = _run(CASES[2], tmp_path)
    before = {name: tensor.detach().clone() for name, tensor in layer.state_dict().items()}
    path.convert(layer, config, np.dtype("float32"), tmp_path)
    assert type(layer).__name__ == "GRU" and type(layer).__module__.startswith("torch.nn")
    assert all(np.array_equal(before[name].numpy(), tensor.numpy()) for name, tensor in layer.state_dict().items())


def test_every_a2_path_is_registered_and_loads():
    ours = ["torch-jit-script", "torch-jit-trace", "torch-export", "keras-save-load", "keras-savedmodel",
            "keras-tflite", "onnx-openvino", "torch-openvino", "onnx-float16", "torch-quantize-dynamic",
            "onnx-quantize-dynamic"]
    status = paths.status()
    missing = [name for name in ours if name not in status]
    assert not missing, f"not registered: {missing}"
    for name in ours:
        loaded = status[name]
        assert isinstance(loaded, paths.ConversionPath) or loaded.reason, (name, loaded)
