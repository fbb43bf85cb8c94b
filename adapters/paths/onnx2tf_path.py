"""ONNX -> TensorFlow with ``onnx2tf.convert``, the result run with TensorFlow (tf_keras).

The source is this project's ONNX GRU graph (``adapters.get("onnxruntime").build``: an ``OnnxGRU``
whose ``model`` has inputs ``X [T, B, I]``, ``sequence_lens [B]``, ``initial_h_{k} [D, B, H]`` and
outputs ``Y [T, D, B, H]``, ``Y_h_{k}``), saved to ``workdir`` and converted by
``onnx2tf.convert(input_onnx_file_path=..., non_verbose=True, disable_model_save=True)``, which returns
a ``tf_keras`` functional model (``onnx2tf/onnx2tf.py:65``, ``convert(...) -> tf_keras.Model``, :125).
onnx2tf rebuilds the GRU from TensorFlow ops (``onnx2tf/ops/GRU.py``); whether it keeps the formula,
``linear_before_reset``, both directions, the biases and ``sequence_lens`` is what the audit measures.

onnx2tf ends the process with ``sys.exit(1)`` on some errors (``onnx2tf/onnx2tf.py:539-634``); ``SystemExit`` is
therefore caught and reported as a failed conversion with what it printed. The outputs of the
returned model follow the ONNX graph's outputs in order (checked by name count, measured).

Source configurations: the ONNX adapter's ``GRU`` (1 layer, first), ``GRU(linear_before_reset=1)``,
``GRU(direction='bidirectional')``, ``[GRU, GRU](direction='bidirectional')``,
``GRU(linear_before_reset=1) without B`` and ``GRU + sequence_lens``. Findings (onnx2tf 1.28.8, measured):
a GRU without ``B`` fails with ``KeyError: ''`` (``onnx2tf/ops/GRU.py:482``: the omitted optional input is looked
up by its empty name; ``sequence_lens`` and ``initial_h`` have a ``name != ''`` guard, :485-493); ``sequence_lens``
is read (:485) but used only in the debug record (:926), so padded steps update the state ("mask ignored").
Float32 only (the ONNX source cannot run float64 in onnxruntime, ``adapters/onnx_runtime.py`` finding 1).
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

import numpy as np

from ..base import ForwardResult
from .base import ConversionFailed, ConversionPath, Converted, missing_modules

KEEP_SHAPE_NOTE = ("converted with keep_shape_absolutely_input_names=<every graph input>: without it onnx2tf 1.28.8 "
                   "transposes the time-major X as if it were channels-first and the build fails in "
                   "onnx2tf/ops/GRU.py:223 ('Dimensions must be equal, but are 4 and 5'), measured")

SOURCE_CONFIGS = (
    "GRU",
    "GRU(linear_before_reset=1)",
    "GRU(direction='bidirectional')",
    "[GRU, GRU](direction='bidirectional')",
    "GRU(linear_before_reset=1) without B",
    "GRU + sequence_lens",
)


def tf_model_account(model) -> dict:
    """What onnx2tf produced, JSON-able: the tf_keras layers by type and the weight dtypes."""
    from collections import Counter

    kinds = Counter(type(layer).__name__ for layer in model.layers)
    dtypes = sorted({np.dtype(w.dtype.as_numpy_dtype).name for w in model.weights}) if model.weights else []
    return {"format": "tf_keras", "layers": dict(sorted(kinds.items())), "weights_dtype": ", ".join(dtypes) or None,
            "inputs": [t.name for t in model.inputs], "outputs": [t.name for t in model.outputs]}


def _import_onnx2tf():
    """``onnx2tf``, without the side effect of its import on this process: it sets
    ``os.environ["TF_USE_LEGACY_KERAS"] = "1"`` (``onnx2tf/onnx2tf.py:25``), which would switch every later
    first use of TensorFlow's lazy Keras names (``tf.compat.v1.nn.rnn_cell.GRUCell``, ...) to Keras 2."""
    before = os.environ.get("TF_USE_LEGACY_KERAS")
    try:
        import onnx2tf
    finally:
        if before is None:
            os.environ.pop("TF_USE_LEGACY_KERAS", None)
        else:
            os.environ["TF_USE_LEGACY_KERAS"] = before
    return onnx2tf


class Onnx2TfPath(ConversionPath):
    id = "onnx-onnx2tf"
    title = "onnx2tf.convert(ONNX GRU) -> TensorFlow (tf_keras model)"
    source = "onnxruntime"
    tool = "onnx2tf"

    def unavailable_reason(self) -> str | None:
        return missing_modules("onnx2tf", "tensorflow", "tf_keras", "onnx")

    def versions(self) -> dict[str, str]:
        import onnx
        import tensorflow as tf

        onnx2tf = _import_onnx2tf()

        return {"onnx2tf": onnx2tf.__version__, "tensorflow": tf.__version__, "onnx": onnx.__version__}

    def source_configs(self) -> tuple[str, ...]:
        return SOURCE_CONFIGS

    def convert(self, layer, config, dtype, workdir: Path) -> Converted:
        import onnx

        onnx2tf = _import_onnx2tf()

        source_path = workdir / "source.onnx"
        onnx.save(layer.model, str(source_path))
        graph_inputs = [value.name for value in layer.model.graph.input]
        output = io.StringIO()
        try:
            with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output), \
                    warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                model = onnx2tf.convert(input_onnx_file_path=str(source_path), output_folder_path=str(workdir / "tf"),
                                        non_verbose=True, disable_model_save=True,
                                        keep_shape_absolutely_input_names=graph_inputs)
        except SystemExit as exit_:
            tail = " ".join(output.getvalue().split())[-500:]
            raise ConversionFailed(f"onnx2tf exited (sys.exit({exit_.code})); it printed: {tail}") from None
        except Exception as error:
            raise ConversionFailed(f"{type(error).__name__}: {' '.join(str(error).split())[:600]}") from None
        graph_outputs = [value.name for value in layer.model.graph.output]
        model_inputs = [tensor.name.split(":")[0] for tensor in model.inputs]
        if sorted(model_inputs) != sorted(graph_inputs) or len(model.outputs) != len(graph_outputs):
            raise ConversionFailed(f"onnx2tf's model has inputs {model_inputs} and {len(model.outputs)} outputs; "
                                   f"the ONNX graph has inputs {graph_inputs} and outputs {graph_outputs}")
        notes = tuple(sorted({f"{w.category.__name__}: {str(w.message).splitlines()[0][:200]}" for w in caught}))
        notes += (KEEP_SHAPE_NOTE,)
        emitted = tf_model_account(model)
        emitted["source_onnx_ops"] = dict(sorted({n.op_type: 1 for n in layer.model.graph.node}.items()))

        def run(x, h0=None, mask=None) -> ForwardResult:
            batch, time = x.shape[:2]
            feeds = {"X": np.ascontiguousarray(x.transpose(1, 0, 2))}
            directions = config.directions
            state = np.zeros((config.num_layers * directions, batch, layer.hidden_size), x.dtype) if h0 is None else h0
            for index in range(config.num_layers):
                feeds[f"initial_h_{index}"] = np.ascontiguousarray(state[index * directions:(index + 1) * directions])
            lengths = np.full(batch, time) if mask is None else np.asarray(mask).sum(axis=1)
            feeds["sequence_lens"] = lengths.astype(np.int32)
            results = model([feeds[name] for name in model_inputs], training=False)
            results = [np.asarray(r) for r in (results if isinstance(results, (list, tuple)) else [results])]
            produced = dict(zip(graph_outputs, results))
            h_last = np.concatenate([produced[f"Y_h_{k}"] for k in range(config.num_layers)])
            outputs = None
            if "Y" in produced:
                y = produced["Y"]  # [T, D, B, H]
                outputs = np.ascontiguousarray(y.transpose(2, 0, 1, 3).reshape(batch, y.shape[0], -1))
            return ForwardResult(outputs, np.ascontiguousarray(h_last))

        return Converted(run=run, emitted=emitted, notes=notes, artifact=model)


PATH = Onnx2TfPath()
