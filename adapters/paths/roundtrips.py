"""Round trips a user does every day, which must not change what a GRU computes.

- ``keras-save-load``: ``keras.Model.save("m.keras")`` -> ``keras.models.load_model`` (Keras 3's zip of
  ``config.json`` + ``model.weights.h5``, ``keras/src/saving/saving_lib.py``);
- ``keras-savedmodel``: ``keras.Model.export(dir)`` (Keras 3: a TF SavedModel with a ``serve`` endpoint,
  ``keras/src/export/saved_model.py``, ``ExportArchive``) -> ``tf.saved_model.load(dir).serve(...)``;
- ``torch-jit-script`` / ``torch-jit-trace``: ``torch.jit.script`` / ``torch.jit.trace`` -> ``torch.jit.save`` ->
  ``torch.jit.load``;
- ``torch-export``: ``torch.export.export`` -> ``torch.export.save`` (``.pt2``) -> ``torch.export.load`` ->
  ``.module()``.

The Keras source layer is wrapped in the functional model every Keras export path shares
(``adapters.paths.tf2onnx_path.keras_export_model``: inputs ``x``, ``h0_{slot}`` (and ``mask``), outputs
``outputs`` and ``h_last_{slot}``); the torch source ``nn.GRU`` in a small module taking ``(x, h0)`` or,
for ``nn.GRU + PackedSequence``, ``(x, h0, lengths)`` with ``pack_padded_sequence`` /
``pad_packed_sequence`` inside, the way a user must for tracing and export (a PackedSequence is not a
tensor argument). The wrapper holds a deep copy of the source module: the user's module is never
changed. Every round trip goes through a file under ``workdir`` (the save *and* the load are audited).
float32 and float64: each of these keeps the dtype it is given (measured by the audit).
"""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from functools import cache
from pathlib import Path

import numpy as np

from ..base import ForwardResult
from .base import ConversionFailed, ConversionPath, Converted, missing_modules

TORCH_CONFIGS = (
    "nn.GRU(batch_first=True)",
    "nn.GRU(num_layers=2, bidirectional=True)",
    "nn.GRU(bias=False)",
    "nn.GRU + PackedSequence",
)
KERAS_CONFIGS = (
    "GRU(reset_after=True)",
    "GRU(reset_after=False)",
    "Bidirectional(GRU, merge_mode='concat')",
    "[Bidirectional(GRU), Bidirectional(GRU)]",
    "GRU(reset_after=True, use_bias=False)",
    "GRU(reset_after=True) + mask",
)


def tool_message(error: BaseException, limit: int = 600) -> str:
    """The tool's own message, one line: "<Type>: <text>" (whitespace collapsed, cut at ``limit``)."""
    return f"{type(error).__name__}: {' '.join(str(error).split())[:limit]}"


def quiet(function, *args, **kwargs):
    """Call a tool with its prints and warnings captured; returns ``(result, notes)``."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = function(*args, **kwargs)
    notes = tuple(sorted({f"{w.category.__name__}: {str(w.message).splitlines()[0][:200]}" for w in caught}))
    return result, notes


# ----------------------------------------------------------------- torch


@cache
def _torch_wrappers():
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    class GRUWithState(torch.nn.Module):
        """``(x, h0) -> (outputs, h_n)`` of the held ``nn.GRU`` (its own batch_first)."""

        def __init__(self, gru):
            super().__init__()
            self.gru = gru

        def forward(self, x, h0):
            return self.gru(x, h0)

    class PackedGRU(torch.nn.Module):
        """``(x, h0, lengths) -> (outputs, h_n)``: packs, runs the held GRU, pads to x's length with zeros."""

        def __init__(self, gru):
            super().__init__()
            self.gru = gru

        def forward(self, x, h0, lengths):
            batch_first = self.gru.batch_first
            packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
            out, h_n = self.gru(packed, h0)
            total = x.shape[1] if batch_first else x.shape[0]
            padded, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=total)
            return padded, h_n

    return GRUWithState, PackedGRU


def torch_wrapper(gru, masked: bool):
    """A deep copy of ``gru`` (eval mode) in the module users export: the user's module is untouched."""
    GRUWithState, PackedGRU = _torch_wrappers()
    held = copy.deepcopy(gru).eval()
    return (PackedGRU if masked else GRUWithState)(held).eval()


def torch_example(gru, x: np.ndarray, h0: np.ndarray, mask: np.ndarray | None):
    """The wrapper's arguments for ``x (batch, time, input)``, ``h0``, ``mask`` as tensors in ``gru``'s layout."""
    import torch

    inputs = torch.from_numpy(np.ascontiguousarray(x if gru.batch_first else x.transpose(1, 0, 2)))
    state = torch.from_numpy(np.ascontiguousarray(h0))
    if mask is None:
        return (inputs, state)
    return (inputs, state, torch.from_numpy(np.asarray(mask).sum(axis=1).astype(np.int64)))


def torch_runner(module, batch_first: bool, masked: bool, hidden: int, slots: int):
    """``run(x, h0=None, mask=None) -> ForwardResult`` for a wrapper-shaped module (scripted, traced,
    exported, quantized): h0 None is zeros; a masked module without a mask gets full lengths."""
    import torch

    def run(x, h0=None, mask=None) -> ForwardResult:
        x = np.asarray(x)
        batch, time = x.shape[:2]
        if h0 is None:
            h0 = np.zeros((slots, batch, hidden), x.dtype)
        inputs = torch.from_numpy(np.ascontiguousarray(x if batch_first else x.transpose(1, 0, 2)))
        arguments = [inputs, torch.from_numpy(np.ascontiguousarray(h0, dtype=x.dtype))]
        if masked:
            lengths = np.full(batch, time) if mask is None else np.asarray(mask).sum(axis=1)
            arguments.append(torch.from_numpy(lengths.astype(np.int64)))
        with torch.no_grad():
            outputs, h_n = module(*arguments)
        outputs = outputs.detach().float().numpy() if outputs.dtype in (torch.float16, torch.bfloat16) \
            else outputs.detach().numpy()
        if not batch_first:
            outputs = outputs.transpose(1, 0, 2)
        return ForwardResult(np.ascontiguousarray(outputs), np.ascontiguousarray(h_n.detach().numpy()))

    return run


def _probe_inputs(gru, dtype, masked: bool):
    """Small example inputs for tracing/export (shapes only matter: 2 sequences of 3 steps)."""
    input_size, hidden = gru.input_size, gru.hidden_size
    slots = gru.num_layers * (2 if gru.bidirectional else 1)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, input_size)).astype(dtype)
    h0 = np.zeros((slots, 2, hidden), dtype)
    mask = np.array([[True, True, True], [True, True, False]]) if masked else None
    return torch_example(gru, x, h0, mask)


def torch_module_facts(gru, dtype) -> dict:
    return {"num_layers": gru.num_layers, "bidirectional": gru.bidirectional, "bias": gru.bias,
            "batch_first": gru.batch_first, "dtype": np.dtype(dtype).name}


class TorchRoundTrip(ConversionPath):
    source = "torch"

    def __init__(self, kind: str):
        self.kind = kind
        self.id = {"script": "torch-jit-script", "trace": "torch-jit-trace", "export": "torch-export"}[kind]
        self.title = {
            "script": "torch.jit.script -> torch.jit.save -> torch.jit.load -> run",
            "trace": "torch.jit.trace -> torch.jit.save -> torch.jit.load -> run",
            "export": "torch.export.export -> torch.export.save -> torch.export.load -> .module() -> run",
        }[kind]
        self.tool = {"script": "torch.jit (TorchScript compiler)", "trace": "torch.jit (tracer)",
                     "export": "torch.export"}[kind]

    def unavailable_reason(self) -> str | None:
        return missing_modules("torch")

    def versions(self) -> dict[str, str]:
        import torch

        return {"torch": torch.__version__}

    def source_configs(self) -> tuple[str, ...]:
        return TORCH_CONFIGS

    def dtypes(self) -> tuple[str, ...]:
        return ("float32", "float64")

    def convert(self, layer, config, dtype, workdir: Path) -> Converted:
        if self.kind == "export":
            return self._export(layer, config, dtype, workdir)
        import torch

        wrapper = torch_wrapper(layer, config.masked)
        example = _probe_inputs(layer, dtype, config.masked)
        target = workdir / f"{self.id}.pt"
        try:
            if self.kind == "script":
                compiled, notes = quiet(torch.jit.script, wrapper)
            else:
                compiled, notes = quiet(torch.jit.trace, wrapper, example)
            torch.jit.save(compiled, str(target))
            loaded = torch.jit.load(str(target))
        except Exception as error:  # the tool refused or broke: a finding
            raise ConversionFailed(tool_message(error)) from None
        emitted = {"format": "torchscript", "file": target.name, "bytes": target.stat().st_size,
                   **torch_module_facts(layer, dtype)}
        if self.kind == "trace":
            notes += ("traced on 2 sequences of 3 steps and run on the probe's shapes: aten::gru takes any batch "
                      "and length, so the trace is not shape-specific (measured)",)
        slots = layer.num_layers * (2 if layer.bidirectional else 1)
        return Converted(run=torch_runner(loaded, layer.batch_first, config.masked, layer.hidden_size, slots),
                         emitted=emitted, notes=notes)

    def _export(self, layer, config, dtype, workdir: Path) -> Converted:
        """torch.export with batch and time dynamic, as a deployed model needs; if the exporter specializes
        the time axis (it unrolls ``aten.gru`` over the example's steps), that is recorded and the model is
        exported for each sequence length it is run on (batch stays dynamic), each through save and load."""
        import torch

        wrapper = torch_wrapper(layer, config.masked)
        batch_axis, time_axis = (0, 1) if layer.batch_first else (1, 0)

        def export(example, dynamic_time: bool, target: Path):
            batch = torch.export.Dim("batch", min=1, max=1024)
            dims = {batch_axis: batch}
            if dynamic_time:
                dims[time_axis] = torch.export.Dim("time", min=2, max=4096)
            shapes = {"x": dims, "h0": {1: batch}}
            if config.masked:
                shapes["lengths"] = {0: batch}
            program, notes = quiet(torch.export.export, wrapper, example, dynamic_shapes=shapes)
            torch.export.save(program, str(target))
            return program, torch.export.load(str(target)).module(), notes

        example = _probe_inputs(layer, dtype, config.masked)
        emitted = {"format": "pt2", **torch_module_facts(layer, dtype)}
        notes: tuple[str, ...] = ()
        try:
            program, loaded, notes = export(example, True, workdir / "dynamic.pt2")
            emitted["dynamic_time"] = True
        except Exception as error:
            message = tool_message(error, 300)
            if "GuardOnDataDependent" in message or "data-dependent" in message:
                raise ConversionFailed(message) from None  # PackedSequence: not exportable at all
            emitted["dynamic_time"] = False
            notes += (f"a dynamic sequence length is refused ({message}); exported once per length run",)
            try:
                program, loaded, more = export(example, False, workdir / "static.pt2")
            except Exception as error:  # the tool refused or broke: a finding
                raise ConversionFailed(tool_message(error)) from None
            notes += more
        graph_ops = sorted({str(node.target) for node in program.graph.nodes if node.op == "call_function"})
        emitted["gru_ops"] = [op for op in graph_ops if "gru" in op.lower() or "rnn" in op.lower()]
        emitted["op_count"] = sum(1 for node in program.graph.nodes if node.op == "call_function")
        slots = layer.num_layers * (2 if layer.bidirectional else 1)
        if emitted["dynamic_time"]:
            return Converted(run=torch_runner(loaded, layer.batch_first, config.masked, layer.hidden_size, slots),
                             emitted=emitted, notes=notes)
        per_length = {example[0].shape[time_axis]: loaded}

        def run(x, h0=None, mask=None):
            time = np.asarray(x).shape[1]
            if time not in per_length:
                x_example = torch_example(layer, np.asarray(x)[:2], np.zeros((slots, min(2, len(x)), layer.hidden_size),
                                                                             np.asarray(x).dtype),
                                          None if mask is None else np.asarray(mask)[:2])
                per_length[time] = export(x_example, False, workdir / f"static_{time}.pt2")[1]
            return torch_runner(per_length[time], layer.batch_first, config.masked, layer.hidden_size, slots)(x, h0, mask)

        return Converted(run=run, emitted=emitted, notes=notes)


TORCH_SCRIPT = TorchRoundTrip("script")
TORCH_TRACE = TorchRoundTrip("trace")
TORCH_EXPORT = TorchRoundTrip("export")


# ----------------------------------------------------------------- Keras


def keras_model_runner(call, config, slots: int, hidden: int, dtype):
    """``run(x, h0=None, mask=None)`` for ``call(list of inputs) -> list of outputs`` in the order of
    ``keras_export_model`` (``outputs`` first when the layer returns sequences, then ``h_last_{slot}``)."""

    def run(x, h0=None, mask=None) -> ForwardResult:
        x = np.asarray(x)
        batch, time = x.shape[:2]
        if h0 is None:
            h0 = np.zeros((slots, batch, hidden), x.dtype)
        inputs = [x] + [np.ascontiguousarray(h0[slot], dtype=x.dtype) for slot in range(slots)]
        if config.masked:
            inputs.append(np.ones((batch, time), bool) if mask is None else np.asarray(mask, bool))
        results = [np.asarray(r) for r in call(inputs)]
        outputs = results[0] if config.returns_sequences else None
        finals = results[1:] if config.returns_sequences else results
        return ForwardResult(None if outputs is None else np.ascontiguousarray(outputs),
                             np.stack([np.asarray(f) for f in finals]))

    return run


def keras_model(layer, config, dtype: str):
    """The source layer(s) in a functional ``keras.Model``: ``adapters.paths.tf2onnx_path.keras_export_model``."""
    from .tf2onnx_path import keras_export_model

    return keras_export_model(layer, config, dtype)


class KerasRoundTrip(ConversionPath):
    source = "keras"

    def __init__(self, kind: str):
        self.kind = kind
        self.id = {"keras": "keras-save-load", "savedmodel": "keras-savedmodel"}[kind]
        self.title = {"keras": "keras.Model.save('.keras') -> keras.models.load_model -> run",
                      "savedmodel": "keras.Model.export (SavedModel) -> tf.saved_model.load -> serve"}[kind]
        self.tool = {"keras": "Keras 3 saving (.keras)", "savedmodel": "Keras 3 export + tf.saved_model"}[kind]

    def unavailable_reason(self) -> str | None:
        return missing_modules("tensorflow", "keras")

    def versions(self) -> dict[str, str]:
        import keras
        import tensorflow as tf

        return {"keras": keras.__version__, "tensorflow": tf.__version__}

    def source_configs(self) -> tuple[str, ...]:
        return KERAS_CONFIGS

    def dtypes(self) -> tuple[str, ...]:
        return ("float32", "float64")

    def convert(self, layer, config, dtype, workdir: Path) -> Converted:
        import keras

        dtype = np.dtype(dtype)
        try:
            model = keras_model(layer, config, dtype.name)
        except Exception as error:
            raise ConversionFailed(f"wrapping the layer in a keras.Model failed: {tool_message(error)}") from None
        slots = config.num_layers * config.directions
        hidden = int(model.get_layer("h_last_0").output.shape[-1])
        try:
            if self.kind == "keras":
                target = workdir / "model.keras"
                _, notes = quiet(model.save, str(target))
                loaded, load_notes = quiet(keras.models.load_model, str(target))
                call = lambda inputs: loaded(inputs, training=False)  # noqa: E731
                emitted = {"format": "keras", "file": target.name, "bytes": target.stat().st_size,
                           "dtype_policy": str(loaded.dtype_policy.name), "layers": [type(l).__name__ for l in loaded.layers]}
            else:
                import tensorflow as tf

                target = workdir / "savedmodel"
                _, notes = quiet(model.export, str(target), format="tf_saved_model")
                restored, load_notes = quiet(tf.saved_model.load, str(target))
                # the closure holds ``restored``: its variables die with it ("referencing variables which have
                # been deleted" otherwise)
                call = lambda inputs: restored.serve(inputs)  # noqa: E731
                emitted = {"format": "tf_saved_model", "file": target.name,
                           "signatures": sorted(restored.signatures.keys()),
                           "variables_dtypes": sorted({v.dtype.name for v in restored.variables})}
        except Exception as error:  # the tool refused or broke: a finding
            raise ConversionFailed(tool_message(error)) from None
        return Converted(run=keras_model_runner(call, config, slots, hidden, dtype), emitted=emitted,
                         notes=tuple(notes) + tuple(load_notes))


KERAS_SAVE_LOAD = KerasRoundTrip("keras")
KERAS_SAVEDMODEL = KerasRoundTrip("savedmodel")
