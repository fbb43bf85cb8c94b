"""PyTorch ``nn.GRU`` -> ONNX with ``torch.onnx.export`` -> onnxruntime: both exporters.

``TORCHSCRIPT_PATH`` (``torch-onnx-script``) calls ``torch.onnx.export(..., dynamo=False)``, the
TorchScript tracer whose GRU symbolic (``torch/onnx/_internal/torchscript_exporter/symbolic_opset9.py``,
``_generic_rnn``) writes one ONNX ``GRU`` node per layer with ``linear_before_reset_i=1`` (:4405) and
reorders torch's gate rows r, z, n to ONNX's z, r, h (``reform_weights``, :4311, with the intervals
``[(1, 2), (0, 1), (2, 3)]``, :4305). ``DYNAMO_PATH`` (``torch-onnx-dynamo``) calls
``torch.onnx.export(..., dynamo=True)``, which goes through ``torch.export`` and onnxscript's
``aten::gru`` translation. Both are measured here, not assumed: the audit records what each wrote
(``onnx_common.describe_onnx``: GRU nodes or an unrolled Loop/Scan, and their attributes).

Source configurations: the torch adapter's ``nn.GRU(batch_first=True)`` (1 layer), ``nn.GRU(num_layers=2,
bidirectional=True)`` (batch_first=False, so the time-major input is exported as it is), ``nn.GRU(bias=False)``
and ``nn.GRU + PackedSequence``, which is exported the way a user must: a wrapper module that takes
``(x, h0, lengths)`` and calls ``pack_padded_sequence`` / ``pad_packed_sequence`` around the GRU (the
exporter sees no PackedSequence argument otherwise). The model is exported with the probe's static
shapes (the audit runs it on that probe only); the user's module is put in eval mode by the caller
and never changed: ``torch.onnx.export`` restores the training flag it touches.

Only float32: onnxruntime 1.32's CPU GRU refuses float64 ("GRU operator does not support double
yet", ``adapters/onnx_runtime.py`` finding 1), so a float64 export could not be run here.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np

from .base import ConversionFailed, ConversionPath, Converted, missing_modules
from .onnx_common import OnnxIO, describe_onnx, load_model, onnx_runner

# The opset asked of the TorchScript exporter. torch 2.13's default is 20 (torch/onnx/_constants.py:9,
# ONNX_DEFAULT_OPSET); 17 is what most deployed runtimes load, and GRU's schema is the same from 14 to 21.
OPSET_SCRIPT = 17

SOURCE_CONFIGS = (
    "nn.GRU(batch_first=True)",
    "nn.GRU(num_layers=2, bidirectional=True)",
    "nn.GRU(bias=False)",
    "nn.GRU + PackedSequence",
)


def _quiet_call(function, *args, **kwargs):
    """Call the exporter with its prints and warnings captured; returns (result, notes)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._export", "onnxscript")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), \
                warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = function(*args, **kwargs)
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
    notes = sorted({f"{w.category.__name__}: {str(w.message).splitlines()[0][:200]}" for w in caught})
    return result, tuple(notes)


class TorchOnnxPath(ConversionPath):
    source = "torch"

    def __init__(self, dynamo: bool):
        self.dynamo = dynamo
        self.id = "torch-onnx-dynamo" if dynamo else "torch-onnx-script"
        self.title = f"torch.onnx.export(dynamo={dynamo}) -> onnxruntime"
        self.tool = "torch.onnx (torch.export + onnxscript exporter)" if dynamo else "torch.onnx (TorchScript exporter)"

    def unavailable_reason(self) -> str | None:
        needed = ("torch", "onnx", "onnxruntime") + (("onnxscript",) if self.dynamo else ())
        return missing_modules(*needed)

    def versions(self) -> dict[str, str]:
        import onnx
        import onnxruntime
        import torch

        found = {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
        if self.dynamo:
            import onnxscript

            found["onnxscript"] = getattr(onnxscript, "__version__", "unknown")
        return found

    def source_configs(self) -> tuple[str, ...]:
        return SOURCE_CONFIGS

    def convert(self, layer, config, dtype, workdir: Path) -> Converted:
        import torch

        dtype = np.dtype(dtype)
        masked = config.masked
        module = _PackedGRU(layer) if masked else layer
        slots = layer.num_layers * (2 if layer.bidirectional else 1)
        # dynamo: the probe's own static shape. With dynamic_axes, torch.export (torch 2.13) fails for the
        # 2-layer bidirectional, bias-free and packed modules and takes ~12 s a module (measured), so the
        # dynamo export is audited as users most often run it: fixed shapes.
        batch, time = STATIC_SHAPE if self.dynamo else EXAMPLE_SHAPE
        rng = np.random.default_rng(0)
        x = rng.normal(size=(batch, time, layer.input_size)).astype(dtype)
        h0 = np.zeros((slots, batch, layer.hidden_size), dtype)
        lengths = np.array([time, time - 2, 1, time][:batch]) if masked else None
        names = ["x", "h0"] + (["lengths"] if masked else [])
        time_axis, batch_axis = (1, 0) if layer.batch_first else (0, 1)
        dynamic_axes = {"x": {batch_axis: "batch", time_axis: "time"}, "h0": {1: "batch"},
                        "outputs": {batch_axis: "batch", time_axis: "time"}, "h_n": {1: "batch"}}
        if masked:
            dynamic_axes["lengths"] = {0: "batch"}
        target = workdir / f"{self.id}.onnx"
        options = dict(input_names=names, output_names=["outputs", "h_n"], dynamo=self.dynamo)
        if not self.dynamo:
            options.update(opset_version=OPSET_SCRIPT, dynamic_axes=dynamic_axes)
        try:
            _, notes = _quiet_call(torch.onnx.export, module, _example_inputs(layer, x, h0, lengths), str(target),
                                   **options)
            model = load_model(target)
        except Exception as error:  # the exporter refused or broke: a finding, in its own words
            raise ConversionFailed(_exporter_message(error)) from None
        emitted = describe_onnx(model)
        graph_inputs = set(emitted["inputs"])
        io_map = OnnxIO(
            x_name="x", outputs_name="outputs", h_last_names=("h_n",),
            h0_names=("h0",) if "h0" in graph_inputs else (), lengths_name="lengths" if masked else None,
            lengths_dtype="int64", x_layout="batch_time" if layer.batch_first else "time_batch",
            outputs_layout="batch_time" if layer.batch_first else "time_batch",
        )
        if "h0" not in graph_inputs:
            notes += ("the exported graph has no h0 input: the exporter dropped the initial state",)
        if self.dynamo:
            notes += (f"exported with static shapes (batch, time) = {STATIC_SHAPE}: it runs on inputs of that shape only",)
        if masked:
            notes += ("exported through a wrapper: pack_padded_sequence(x, lengths, enforce_sorted=False) -> GRU -> "
                      "pad_packed_sequence(total_length=T)",)
        return Converted(run=onnx_runner(model, io_map), emitted=emitted, notes=notes, artifact=model)


STATIC_SHAPE = (3, 7)  # batch, time of reports.matrix.DEFAULT_CASE: the probe the audit runs
EXAMPLE_SHAPE = (4, 6)  # batch, time of the tracing example (other than the probe's: the axes are dynamic)


def _exporter_message(error: Exception) -> str:
    """The exporter's message, with the root cause first: torch.onnx wraps torch.export's error in a
    long 'Failed to export ... Next steps' text whose useful part is the chained cause."""
    import re

    causes, seen = [], error
    while seen is not None and len(causes) < 4:
        causes.append(seen)
        seen = seen.__cause__ or seen.__context__
    root = causes[-1]
    text = f"{type(error).__name__}"
    if root is not error:
        text += f" caused by {type(root).__name__}: {_first_lines(root, 400)}"
    else:
        text += f": {_first_lines(error)}"
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _first_lines(error: Exception, limit: int = 600) -> str:
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", " ".join(str(error).strip().split()))
    return text[:limit] + (" ..." if len(text) > limit else "")


def _packed_module_class():
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    class PackedGRU(torch.nn.Module):
        """What a user exports for variable-length input: the GRU between pack and pad."""

        def __init__(self, gru):
            super().__init__()
            self.gru = gru

        def forward(self, x, h0, lengths):
            packed = pack_padded_sequence(x, lengths, batch_first=self.gru.batch_first, enforce_sorted=False)
            outputs, h_n = self.gru(packed, h0)
            outputs, _ = pad_packed_sequence(outputs, batch_first=self.gru.batch_first,
                                             total_length=x.shape[1 if self.gru.batch_first else 0])
            return outputs, h_n

    return PackedGRU


def _PackedGRU(gru):
    return _packed_module_class()(gru)


def _example_inputs(layer, x: np.ndarray, h0: np.ndarray, lengths: np.ndarray | None):
    import torch

    x_t = torch.from_numpy(np.ascontiguousarray(x if layer.batch_first else x.transpose(1, 0, 2)))
    inputs = (x_t, torch.from_numpy(np.ascontiguousarray(h0)))
    if lengths is not None:
        inputs += (torch.from_numpy(lengths.astype(np.int64)),)
    return inputs


TORCHSCRIPT_PATH = TorchOnnxPath(dynamo=False)
DYNAMO_PATH = TorchOnnxPath(dynamo=True)
