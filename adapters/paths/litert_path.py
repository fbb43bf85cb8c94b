"""Keras 3 GRU -> TFLite/LiteRT with ``tf.lite.TFLiteConverter.from_keras_model`` -> the TFLite interpreter.

Converted twice: with the converter's defaults (the audited row) and with ``optimizations =
[tf.lite.Optimize.DEFAULT]`` (dynamic-range quantization: int8 weights), whose largest difference from
the default conversion on the probe is recorded in ``emitted["optimize_default_vs_plain"]``. Run with
``ai_edge_litert.interpreter.Interpreter`` when installed, else ``tf.lite.Interpreter``. The source is the
functional model of ``roundtrips.keras_model`` (inputs ``x``, ``h0_{slot}``, ``mask``); float32 only
(TFLite's builtin kernels are float32/int8). The interpreter's input shapes are fixed at conversion,
so each converted model is resized to the probe's shapes with ``resize_tensor_input``; a converter or
interpreter that refuses is a 'conversion failed' row with its own message.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..base import ForwardResult
from .base import ConversionFailed, ConversionPath, Converted, missing_modules
from .roundtrips import KERAS_CONFIGS, keras_model, quiet, tool_message


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai_edge_litert"
    except Exception:
        import tensorflow as tf

        return tf.lite.Interpreter, "tf.lite"


class LiteRtPath(ConversionPath):
    id = "keras-tflite"
    title = "tf.lite.TFLiteConverter.from_keras_model -> LiteRT interpreter"
    source = "keras"
    tool = "tf.lite.TFLiteConverter"
    full_precision_setting = "leave converter.optimizations empty (tf.lite.Optimize.DEFAULT quantizes weights to int8)"

    def unavailable_reason(self) -> str | None:
        return missing_modules("tensorflow", "keras")

    def versions(self) -> dict[str, str]:
        import tensorflow as tf

        found = {"tensorflow": tf.__version__}
        try:
            import ai_edge_litert

            found["ai_edge_litert"] = getattr(ai_edge_litert, "__version__", "installed")
        except Exception:
            pass
        return found

    def source_configs(self) -> tuple[str, ...]:
        return KERAS_CONFIGS

    def _convert(self, model, optimize: bool, target: Path) -> bytes:
        import tensorflow as tf

        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if optimize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        flat, _ = quiet(converter.convert)
        target.write_bytes(flat)
        return flat

    def convert(self, layer, config, dtype, workdir: Path) -> Converted:
        if np.dtype(dtype) != np.float32:
            raise ConversionFailed(f"TFLite computes float32; the source is {np.dtype(dtype).name}")
        try:
            model = keras_model(layer, config, "float32")
            plain = self._convert(model, False, workdir / "gru.tflite")
            optimized = self._convert(model, True, workdir / "gru.optimized.tflite")
        except Exception as error:  # the converter refused or broke: a finding
            raise ConversionFailed(tool_message(error)) from None
        Interpreter, which = _interpreter_class()
        slots = config.num_layers * config.directions
        emitted = {"format": "tflite", "bytes": len(plain), "bytes_optimized": len(optimized), "interpreter": which}

        def runner(flat: bytes):
            def run(x, h0=None, mask=None) -> ForwardResult:
                x = np.asarray(x, np.float32)
                batch, time = x.shape[:2]
                hidden = None
                interpreter = Interpreter(model_content=flat)
                details = interpreter.get_input_details()
                by_name = {}
                for detail in details:
                    name = detail["name"].split(":")[0].removeprefix("serving_default_")
                    by_name[name] = detail
                values = {"x": x}
                for slot in range(slots):
                    hidden = by_name[f"h0_{slot}"]["shape"][-1]
                    values[f"h0_{slot}"] = np.zeros((batch, hidden), np.float32) if h0 is None else \
                        np.ascontiguousarray(h0[slot], np.float32)
                if config.masked:
                    values["mask"] = np.ones((batch, time), bool) if mask is None else np.asarray(mask, bool)
                for name, value in values.items():
                    interpreter.resize_tensor_input(by_name[name]["index"], value.shape)
                interpreter.allocate_tensors()
                for name, value in values.items():
                    interpreter.set_tensor(by_name[name]["index"], value.astype(by_name[name]["dtype"]))
                interpreter.invoke()
                outputs = {d["name"]: interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()}
                # output names follow the Identity layers' names (StatefulPartitionedCall:<i> in signature order)
                signature = interpreter.get_signature_runner()
                del signature
                ordered = sorted(outputs.items(), key=lambda item: item[0])
                named = _match_outputs(ordered, config, slots, batch, time)
                sequence = named.get("outputs")
                return ForwardResult(None if sequence is None else np.ascontiguousarray(sequence, np.float32),
                                     np.stack([named[f"h_last_{slot}"] for slot in range(slots)]))

            return run

        run_plain, run_optimized = runner(plain), runner(optimized)

        def run(x, h0=None, mask=None) -> ForwardResult:
            result = run_plain(x, h0, mask)
            try:
                other = run_optimized(x, h0, mask)
                emitted["optimize_default_vs_plain"] = float(np.abs(other.h_last - result.h_last).max())
            except Exception as error:
                emitted["optimize_default_vs_plain"] = f"failed: {tool_message(error)}"
            return result

        return Converted(run=run, emitted=emitted, notes=(f"run with {which}",))


def _match_outputs(ordered, config, slots: int, batch: int, time: int) -> dict:
    """Assign the interpreter's outputs to ``outputs`` / ``h_last_{slot}`` through the signature runner's
    names when present, else by shape and order (the sequence is the only rank-3 output)."""
    named = {}
    for name, value in ordered:
        for wanted in ["outputs"] + [f"h_last_{slot}" for slot in range(slots)]:
            if name.endswith(wanted) or f"{wanted}:" in name:
                named[wanted] = value
    if len(named) == slots + (1 if config.returns_sequences else 0):
        return named
    states = [value for _, value in ordered if value.ndim == 2]
    sequences = [value for _, value in ordered if value.ndim == 3]
    named = {f"h_last_{slot}": state for slot, state in enumerate(states)}
    if sequences:
        named["outputs"] = sequences[0]
    return named


PATH = LiteRtPath()
