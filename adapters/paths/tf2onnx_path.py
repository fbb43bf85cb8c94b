"""Keras 3 (TensorFlow backend) model -> ONNX with ``tf2onnx.convert.from_keras`` -> onnxruntime.

The source layer (``adapters.get("keras").build``: a ``keras.layers.GRU`` / ``Bidirectional``, or a
list of them for a stack, each with ``return_state=True``) is wrapped the way a user wraps it for
export: a functional ``keras.Model`` whose inputs are ``x (batch, time, input)``, one initial state per
direction and layer ``(batch, hidden)`` and, for masked configurations, ``mask (batch, time)`` bool, and
whose outputs are the sequence and every final state. Nothing of the source layer is changed: the
model reuses the layer objects (a functional model only records calls), and ``from_keras``
(``tf2onnx/convert.py:477``) traces it into a concrete ``tf.function`` (``_get_concrete_function``, :509).

What tf2onnx 1.17 writes for a Keras 3 GRU is measured, not assumed: its GRU rewriters
(``tf2onnx/rewriter/gru_rewriter.py``, ``gru_tf2_rewriter.py``) match the TF1/tf.keras 2 ``while``
loop patterns; Keras 3's TensorFlow backend runs a GRU through cuDNN only (``keras/src/backend/tensorflow/
rnn.py:449``, ``gru``: ``NotImplementedError`` unless ``cudnn_ok``) and otherwise through its generic
``tf.while_loop`` (``rnn``, :6), which the rewriters do not fuse (measured): on CPU the export is an
unrolled ONNX ``Loop`` (recorded as ``emitted["unrolled"]``), exact in float32 and float64.

Source configurations: ``GRU(reset_after=True)`` (1 layer, first), ``GRU(reset_after=False)``,
``Bidirectional(GRU, merge_mode='concat')``, ``[Bidirectional(GRU), Bidirectional(GRU)]``,
``GRU(reset_after=True, use_bias=False)``, ``GRU(reset_after=True) + mask``; float32 and float64 (the
Loop's MatMul/Sigmoid/Tanh run in float64 in onnxruntime).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np

from .base import ConversionFailed, ConversionPath, Converted, missing_modules
from .onnx_common import OnnxIO, describe_onnx, onnx_runner

OPSET = 17
SOURCE_CONFIGS = (
    "GRU(reset_after=True)",
    "GRU(reset_after=False)",
    "Bidirectional(GRU, merge_mode='concat')",
    "[Bidirectional(GRU), Bidirectional(GRU)]",
    "GRU(reset_after=True, use_bias=False)",
    "GRU(reset_after=True) + mask",
)


def keras_export_model(layer, config, dtype):
    """A functional ``keras.Model`` over the source layer(s): inputs ``x``, ``h0_{slot}`` (and ``mask``),
    outputs ``outputs`` (when the last layer returns sequences) and ``h_last_{slot}``, one per direction
    and layer in ``(layers * directions)`` order. Shared with other Keras export paths."""
    import keras

    subs = layer if isinstance(layer, list) else [layer]
    directions = 2 if config.bidirectional else 1
    first_cell = _cell(subs[0])
    x = keras.Input((None, int(first_cell.kernel.shape[0])), dtype=dtype, name="x")
    states = [keras.Input((first_cell.units,), dtype=dtype, name=f"h0_{slot}")
              for slot in range(len(subs) * directions)]
    mask = keras.Input((None,), dtype="bool", name="mask") if config.masked else None
    sequence, finals = x, []
    for index, sub in enumerate(subs):
        initial = states[index * directions : (index + 1) * directions]
        output, *sub_states = sub(sequence, initial_state=initial, mask=mask)
        finals += sub_states
        sequence = output
    # dtype=dtype: an Identity layer under the default float32 policy would cast float64 results to float32
    outputs = ([keras.layers.Identity(name="outputs", dtype=dtype)(sequence)] if config.returns_sequences else []) + [
        keras.layers.Identity(name=f"h_last_{slot}", dtype=dtype)(state) for slot, state in enumerate(finals)
    ]
    inputs = [x, *states] + ([mask] if mask is not None else [])
    return keras.Model(inputs, outputs, name="gru_export")


def _cell(sub):
    import keras

    rnn = sub.forward_layer if isinstance(sub, keras.layers.Bidirectional) else sub
    return rnn.cell


class Tf2OnnxPath(ConversionPath):
    id = "keras-tf2onnx"
    title = "tf2onnx.convert.from_keras(Keras 3 model) -> onnxruntime"
    source = "keras"
    tool = "tf2onnx"

    def unavailable_reason(self) -> str | None:
        return missing_modules("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime")

    def versions(self) -> dict[str, str]:
        import keras
        import onnx
        import onnxruntime
        import tensorflow as tf
        import tf2onnx

        return {"tf2onnx": tf2onnx.__version__, "tensorflow": tf.__version__, "keras": keras.__version__,
                "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}

    def source_configs(self) -> tuple[str, ...]:
        return SOURCE_CONFIGS

    def dtypes(self) -> tuple[str, ...]:
        return ("float32", "float64")

    def convert(self, layer, config, dtype, workdir: Path) -> Converted:
        import tf2onnx

        dtype = np.dtype(dtype)
        try:
            model = keras_export_model(layer, config, dtype.name)
        except Exception as error:
            raise ConversionFailed(f"wrapping the layer in a keras.Model failed: {type(error).__name__}: {error}") from None
        target = workdir / f"{self.id}.onnx"
        stdout, stderr = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), \
                    warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                proto, _ = tf2onnx.convert.from_keras(model, opset=OPSET, output_path=str(target))
        except Exception as error:  # the converter refused or broke: a finding
            raise ConversionFailed(f"{type(error).__name__}: {' '.join(str(error).split())[:600]}") from None
        notes = tuple(sorted({f"{w.category.__name__}: {str(w.message).splitlines()[0][:200]}" for w in caught}))
        notes += (f"exported with opset {OPSET}; the model's inputs: x, one initial state per layer and direction"
                  + (", mask (bool)" if config.masked else ""),)
        emitted = describe_onnx(proto)
        slots = config.num_layers * config.directions
        io_map = OnnxIO(
            x_name=_graph_name(proto, "x"), outputs_name=_graph_name(proto, "outputs", output=True)
            if config.returns_sequences else None,
            h_last_names=tuple(_graph_name(proto, f"h_last_{slot}", output=True) for slot in range(slots)),
            h0_names=tuple(_graph_name(proto, f"h0_{slot}") for slot in range(slots)),
            mask_name=_graph_name(proto, "mask") if config.masked else None,
        )
        return Converted(run=onnx_runner(proto, io_map), emitted=emitted, notes=notes, artifact=proto)


def _graph_name(proto, wanted: str, output: bool = False) -> str:
    """The graph input/output tf2onnx made of the Keras tensor ``wanted`` (it may add a ``:0`` suffix)."""
    values = proto.graph.output if output else proto.graph.input
    for value in values:
        if value.name == wanted or value.name.split(":")[0] == wanted:
            return value.name
    names = [value.name for value in values]
    raise ConversionFailed(f"tf2onnx wrote no graph {'output' if output else 'input'} for {wanted!r}; it wrote {names}")


PATH = Tf2OnnxPath()
