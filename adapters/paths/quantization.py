"""Dynamic int8 quantization of a GRU: PyTorch's ``quantize_dynamic`` and onnxruntime's.

``torch-quantize-dynamic``: ``torch.ao.quantization.quantize_dynamic(model, {nn.GRU}, dtype=torch.qint8)``
on a model that *holds* the ``nn.GRU`` (the wrapper of ``roundtrips.torch_wrapper``), then run. What it
computes is modelled in ``reference.precision`` (``int8``): per-tensor symmetric qint8 weights
(``default_weight_observer``, ``torch/ao/quantization/observer.py:2072``, scale ``max|w| / 127.5``,
``observer.py:386``), 7-bit dynamic uint8 activations (``reduce_range=True`` in the cell params,
``torch/ao/nn/quantized/dynamic/modules/rnn.py:444-449``), float32 biases and gate math. Measured:
the model reproduces the quantized GRU to 1.2e-7 on one layer (so the int8 error *is* the
quantization, nothing else).

Two findings of torch 2.13, measured and read in its source:

- ``quantize_dynamic`` called on a bare ``nn.GRU`` returns an *unquantized* copy, silently: the swap
  (``torch/ao/quantization/quantize.py``, ``convert`` -> ``_convert``) walks ``module.named_children()``,
  so the root module is never replaced. The path records this (``emitted["bare_gru_quantized"]``) and
  quantizes a model holding the GRU, as it must be done;
- a bias-free ``nn.GRU(bias=False)`` cannot be quantized: ``from_float`` asserts "mod.bias must be True"
  (``rnn.py:411``), a 'conversion failed' row.

``onnx-quantize-dynamic``: ``onnxruntime.quantization.quantize_dynamic(model_input, model_output,
weight_type=QInt8)`` on the ONNX adapter's GRU graph. onnxruntime's quantizer has no GRU operator
(``onnxruntime/quantization/registry.py``: ``IntegerOpsRegistry`` lists ``LSTM`` -> ``LSTMQuant`` and no
``GRU``), so the graph comes back with its GRU in float32: measured, the row computes at float32, and
``emitted`` says no node was quantized (a finding: a user asking for int8 gets float32, silently).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import ConversionFailed, ConversionPath, Converted, missing_modules
from .roundtrips import quiet, tool_message, torch_module_facts, torch_runner, torch_wrapper

TORCH_CONFIGS = (
    "nn.GRU(batch_first=True)",
    "nn.GRU(num_layers=2, bidirectional=True)",
    "nn.GRU(bias=False)",
    "nn.GRU + PackedSequence",
)
ONNX_CONFIGS = (
    "GRU(linear_before_reset=1)",
    "[GRU, GRU](direction='bidirectional')",
    "GRU(linear_before_reset=1) without B",
    "GRU + sequence_lens",
)


class TorchDynamicQuantization(ConversionPath):
    id = "torch-quantize-dynamic"
    title = "torch.ao.quantization.quantize_dynamic(model, {nn.GRU}, dtype=torch.qint8) -> run"
    source = "torch"
    tool = "torch.ao.quantization.quantize_dynamic"
    full_precision_setting = "none: int8 is what quantize_dynamic is for; run the float model for full precision"

    def unavailable_reason(self) -> str | None:
        reason = missing_modules("torch")
        if reason:
            return reason
        import torch

        engines = [e for e in torch.backends.quantized.supported_engines if e != "none"]
        return None if engines else "this torch build has no quantized engine (fbgemm, x86, qnnpack)"

    def versions(self) -> dict[str, str]:
        import torch

        return {"torch": torch.__version__, "quantized_engine": torch.backends.quantized.engine}

    def source_configs(self) -> tuple[str, ...]:
        return TORCH_CONFIGS

    def convert(self, layer, config, dtype, workdir: Path) -> Converted:
        import torch

        if np.dtype(dtype) != np.float32:
            raise ConversionFailed(f"quantize_dynamic quantizes float32 models; the source is {np.dtype(dtype).name}")
        try:
            bare, notes = quiet(torch.ao.quantization.quantize_dynamic, layer, {torch.nn.GRU}, dtype=torch.qint8)
            wrapped, more = quiet(torch.ao.quantization.quantize_dynamic, torch_wrapper(layer, config.masked),
                                  {torch.nn.GRU}, dtype=torch.qint8)
        except Exception as error:  # the tool refused: a finding
            raise ConversionFailed(tool_message(error)) from None
        quantized = wrapped.gru
        emitted = {
            "format": "torch module", "class": f"{type(quantized).__module__}.{type(quantized).__name__}",
            "bare_gru_quantized": type(bare) is not torch.nn.GRU,
            "weights": "qint8 per-tensor symmetric" if type(quantized) is not torch.nn.GRU else "float32",
            "engine": torch.backends.quantized.engine, **torch_module_facts(layer, dtype),
        }
        notes = tuple(notes) + tuple(more)
        if not emitted["bare_gru_quantized"]:
            notes += ("quantize_dynamic(nn.GRU) on the bare layer returned an unquantized nn.GRU (the root module is "
                      "never swapped); the audited model holds the GRU as a submodule",)
        slots = layer.num_layers * (2 if layer.bidirectional else 1)
        return Converted(run=torch_runner(wrapped, layer.batch_first, config.masked, layer.hidden_size, slots),
                         emitted=emitted, notes=notes)


def onnx_gru_io(config):
    """The ``OnnxIO`` of the ONNX adapter's graphs (``adapters.onnx_runtime.build_model``): ``X [T, B, I]``,
    ``sequence_lens``, ``initial_h_{k}`` per layer, outputs ``Y [T, D, B, H]`` and ``Y_h_{k}``."""
    from .onnx_common import OnnxIO

    row = config.option("row")
    if row is None or row.layout != 0:
        raise ConversionFailed(f"{config.name}: only the ONNX adapter's layout=0 graphs are audited on this path")
    return OnnxIO(
        x_name="X", x_layout="time_batch",
        outputs_name="Y" if row.returns_sequences else None, outputs_layout="onnx_gru",
        h_last_names=tuple(f"Y_h_{k}" for k in range(row.num_layers)),
        h0_names=tuple(f"initial_h_{k}" for k in range(row.num_layers)),
        lengths_name="sequence_lens",
    )


class OnnxDynamicQuantization(ConversionPath):
    id = "onnx-quantize-dynamic"
    title = "onnxruntime.quantization.quantize_dynamic(weight_type=QInt8) -> onnxruntime"
    source = "onnxruntime"
    tool = "onnxruntime.quantization.quantize_dynamic"

    def unavailable_reason(self) -> str | None:
        return missing_modules("onnx", "onnxruntime", "onnxruntime.quantization")

    def versions(self) -> dict[str, str]:
        import onnx
        import onnxruntime

        return {"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__}

    def source_configs(self) -> tuple[str, ...]:
        return ONNX_CONFIGS

    def convert(self, layer, config, dtype, workdir: Path) -> Converted:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        from .onnx_common import describe_onnx, onnx_runner

        source, target = workdir / "gru.onnx", workdir / "gru.int8.onnx"
        onnx.save(layer.model, str(source))  # a file: the user's ModelProto is never handed to the tool
        try:
            _, notes = quiet(quantize_dynamic, str(source), str(target), weight_type=QuantType.QInt8)
            quantized = onnx.load(str(target))
        except Exception as error:  # the tool refused or broke: a finding
            raise ConversionFailed(tool_message(error)) from None
        emitted = describe_onnx(quantized)
        before = describe_onnx(layer.model)["ops"]
        emitted["quantized_ops"] = sorted(op for op in emitted["ops"] if op not in before)
        if not emitted["quantized_ops"]:
            notes += ("no node was quantized: onnxruntime's quantizer registers no GRU operator, so the GRU stays "
                      f"{emitted.get('weights_dtype')}",)
        try:
            run = onnx_runner(quantized, onnx_gru_io(config))
        except ConversionFailed:
            raise
        except Exception as error:
            raise ConversionFailed(f"onnxruntime cannot load the quantized graph: {tool_message(error)}") from None
        return Converted(run=run, emitted=emitted, notes=tuple(notes), artifact=quantized)


TORCH_PATH = TorchDynamicQuantization()
ONNX_PATH = OnnxDynamicQuantization()
