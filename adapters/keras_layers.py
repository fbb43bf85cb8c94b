"""Keras 3 on the TensorFlow backend: ``GRU`` (``reset_after`` True/False, ``use_bias``,
``go_backwards``, ``return_sequences``, ``return_state``, ``initial_state``, masking),
``Bidirectional(GRU)`` with each merge mode, stacked GRUs (a list of layers, applied in order), and
``GRUCell`` inside ``RNN``.

Facts this module relies on, from ``keras/src/layers/rnn/gru.py`` and ``rnn.py`` (Keras 3.15):
``kernel (I, 3H)`` and ``recurrent_kernel (H, 3H)`` hold columns z, r, h; ``bias`` is
``(2, 3H)`` (input row, recurrent row) when ``reset_after=True`` and ``(3H,)`` otherwise;
``h = z * h_tm1 + (1 - z) * hh`` with the candidate's reset after or before the recurrent
matmul as ``reset_after`` says. ``go_backwards`` returns the outputs in processing (reversed)
order; a masked step repeats the previous output (zeros before the first real step, while the
state starts at ``initial_state``) unless ``zero_output_for_mask``, which ``Bidirectional``
forces on when it returns sequences.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's start-up banner is noise in a report

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from reference import Convention, GRUParams, Layers, check_layers, layouts  # noqa: E402

from .base import Adapter, ForwardResult, LayerConfig, mask_lengths  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        f"the keras adapter needs the TensorFlow backend, but KERAS_BACKEND={keras.backend.backend()!r}",
        name="keras[tensorflow backend]",
    )

# The GRUCell docstring: reset_after=False is "before", True is "after"; both blend z on the previous state.
CLAIMED = {True: Convention("z_on_previous", "after"), False: Convention("z_on_previous", "before")}
DTYPES = ("float32", "float64")


def pin_numerics() -> None:
    # TF32 matmuls on Ampere+ GPUs would round float32 inputs to 10 mantissa bits.
    tf.config.experimental.enable_tensor_float_32_execution(False)


def _dtype_name(dtype) -> str:
    name = np.dtype(dtype).name
    if name not in DTYPES:
        raise ValueError(f"dtype {name} is not supported; use float32 or float64")
    return name


def _config(name: str, reset_after: bool = True, kind: str = "GRU", **fields) -> LayerConfig:
    options = (("kind", kind), ("reset_after", reset_after), *fields.pop("options", ()))
    fields.setdefault("masked_output", "previous_output")
    return LayerConfig(
        framework="keras", name=name, claimed=CLAIMED[reset_after], options=options,
        separate_recurrent_bias=reset_after, **fields,
    )


def _rnn_layers(layer) -> list:
    """The recurrent layers of ``layer`` in order: itself, or a list's / Sequential's layers.

    A stack is a list of layers applied in order; each must be built with ``return_state=True``
    to be run here (a ``Sequential`` cannot hold such layers, so it can be extracted, not run).
    """
    if isinstance(layer, (list, tuple, keras.Sequential)):
        inner = layer.layers if isinstance(layer, keras.Sequential) else list(layer)
        inner = [sub for sub in inner if not isinstance(sub, keras.layers.InputLayer)]
        if not inner:
            raise ValueError("the stack holds no layers")
        for sub in inner:
            if not isinstance(sub, (keras.layers.RNN, keras.layers.Bidirectional)):
                raise TypeError(f"a GRU stack may hold only GRU/RNN/Bidirectional layers, found {type(sub).__name__}")
        return inner
    if isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional)):
        return [layer]
    raise TypeError(
        f"expected keras.layers.GRU, RNN(GRUCell), Bidirectional(GRU) or a list of them, got {type(layer).__name__}"
    )


def _gru_cell(rnn) -> keras.layers.GRUCell:
    cell = rnn.cell
    if not isinstance(cell, keras.layers.GRUCell):
        raise TypeError(f"{rnn.name} wraps a {type(cell).__name__}, not a GRUCell")
    if keras.activations.serialize(cell.activation) != "tanh" or keras.activations.serialize(
        cell.recurrent_activation
    ) != "sigmoid":
        raise ValueError(
            f"{rnn.name} uses activation={keras.activations.serialize(cell.activation)!r}, "
            f"recurrent_activation={keras.activations.serialize(cell.recurrent_activation)!r}; the conventions "
            f"compared here are defined with tanh and sigmoid"
        )
    return cell


def _directions(layer) -> list:
    """The RNN layer(s) holding one layer's weights: [forward] or [forward, backward]."""
    if isinstance(layer, keras.layers.Bidirectional):
        return [layer.forward_layer, layer.backward_layer]
    return [layer]


class KerasAdapter(Adapter):
    name = "keras"

    def versions(self) -> dict[str, str]:
        return {"keras": keras.__version__, "tensorflow": tf.__version__}

    def configurations(self) -> list[LayerConfig]:
        configs = []
        for reset_after in (True, False):
            tag = f"reset_after={reset_after}"
            configs += [
                _config(f"GRU({tag})", reset_after),
                _config(f"GRU({tag}, use_bias=False)", reset_after, bias=False),
                _config(f"GRU({tag}) + mask", reset_after, masked=True),
                _config(f"RNN(GRUCell({tag}))", reset_after, kind="RNN(GRUCell)"),
            ]
        configs += [
            _config("GRU(go_backwards=True)", reverse=True),
            _config("GRU(go_backwards=True) + mask", reverse=True, masked=True),
            _config("GRU(return_sequences=False)", returns_sequences=False),
            _config("[GRU, GRU]", num_layers=2),
            _config("[GRU, GRU](reset_after=False)", False, num_layers=2),
            *[
                _config(f"Bidirectional(GRU, merge_mode={merge!r})", bidirectional=True, merge=merge,
                        masked_output="zero")
                for merge in ("concat", "sum", "ave", "mul")
            ],
            _config("Bidirectional(GRU) + mask", bidirectional=True, masked=True, masked_output="zero"),
            _config("[Bidirectional(GRU), Bidirectional(GRU)]", num_layers=2, bidirectional=True,
                    masked_output="zero"),
        ]
        return configs

    # ------------------------------------------------------------- building and extracting

    def build(self, config: LayerConfig, layers: Layers, dtype):
        num_layers, directions = check_layers(layers, config.merge)
        if (num_layers, directions) != (config.num_layers, config.directions):
            raise ValueError(
                f"{config.label} needs {config.num_layers} layer(s) x {config.directions} direction(s), "
                f"the parameters have {num_layers} x {directions}"
            )
        dtype = _dtype_name(dtype)
        reset_after = config.option("reset_after", True)
        built = []
        for layer_params in layers:
            input_size = layer_params[0].input_size
            layer = self._new_layer(config, layer_params[0].hidden_size, dtype, reset_after)
            layer.build((None, None, input_size))
            for rnn, params in zip(_directions(layer), layer_params):
                weights = layouts.to_keras(params, reset_after=reset_after, use_bias=config.bias)
                rnn.set_weights([w.astype(dtype) for w in weights])
            built.append(layer)
        return built[0] if num_layers == 1 else built

    @staticmethod
    def _new_layer(config: LayerConfig, units: int, dtype: str, reset_after: bool):
        common = dict(return_sequences=config.returns_sequences, return_state=True, go_backwards=config.reverse, dtype=dtype)
        if config.option("kind") == "RNN(GRUCell)":
            cell = keras.layers.GRUCell(units, reset_after=reset_after, use_bias=config.bias, dtype=dtype)
            return keras.layers.RNN(cell, **common)
        gru = keras.layers.GRU(units, reset_after=reset_after, use_bias=config.bias, **common)
        if config.bidirectional:
            return keras.layers.Bidirectional(gru, merge_mode=config.merge, dtype=dtype)
        return gru

    def extract(self, layer) -> list[list[GRUParams]]:
        stack = []
        for sub in _rnn_layers(layer):
            directions = []
            for rnn in _directions(sub):
                cell = _gru_cell(rnn)
                weights = [np.array(w, copy=True) for w in cell.get_weights()]
                kernel, recurrent_kernel, *bias = weights
                directions.append(
                    layouts.from_keras(kernel, recurrent_kernel, bias[0] if bias else None, reset_after=cell.reset_after)
                )
            stack.append(directions)
        return stack

    def describe(self, layer) -> LayerConfig:
        subs = _rnn_layers(layer)
        first = subs[0]
        bidirectional = isinstance(first, keras.layers.Bidirectional)
        rnn = _directions(first)[0]
        cell = _gru_cell(rnn)
        kind = "GRU" if isinstance(rnn, keras.layers.GRU) else "RNN(GRUCell)"
        zero_output = (first.return_sequences if bidirectional else rnn.zero_output_for_mask)
        return _config(
            f"{type(layer).__name__}({type(first).__name__}, units={cell.units}, reset_after={cell.reset_after}, layers={len(subs)}, "
            f"bidirectional={bidirectional})",
            cell.reset_after, kind=kind, num_layers=len(subs), bidirectional=bidirectional, bias=cell.use_bias,
            reverse=bool(rnn.go_backwards) and not bidirectional,
            merge=first.merge_mode if bidirectional else "concat",
            masked_output="zero" if zero_output else "previous_output",
            returns_sequences=bool(_directions(subs[-1])[0].return_sequences),
        )

    # ------------------------------------------------------------- running

    def run(self, layer, x, h0=None, mask=None) -> ForwardResult:
        subs = _rnn_layers(layer)
        x = np.asarray(x)
        if x.dtype.name != subs[0].compute_dtype:
            raise TypeError(
                f"x has dtype {x.dtype} but the layer computes in {subs[0].compute_dtype}; "
                f"pass x.astype(np.{subs[0].compute_dtype})"
            )
        if mask is not None:
            mask_lengths(mask)  # Keras accepts any mask, but only right padding matches the other frameworks
            mask = tf.constant(np.asarray(mask, dtype=bool))
        finals = []
        slot = 0
        sequence = tf.constant(x)
        for index, sub in enumerate(subs):
            rnns = _directions(sub)
            initial = None
            if h0 is not None:
                initial = [tf.constant(np.asarray(h0[slot + d], dtype=x.dtype)) for d in range(len(rnns))]
            slot += len(rnns)
            result = sub(sequence, initial_state=initial, mask=mask)
            sequence, states = self._split_result(sub, rnns, result)
            finals += states
            if index < len(subs) - 1 and sequence is None:
                raise ValueError(f"layer {sub.name} returns no sequence but feeds another layer; set return_sequences=True")
        outputs = None
        if sequence is not None and rnns[0].return_sequences:
            outputs = np.array(sequence)
            if rnns[0].go_backwards and not isinstance(subs[-1], keras.layers.Bidirectional):
                outputs = outputs[:, ::-1]  # go_backwards returns processing order; align with the input
            outputs = np.ascontiguousarray(outputs)
        return ForwardResult(outputs, np.stack([np.array(s) for s in finals]))

    @staticmethod
    def _split_result(sub, rnns, result):
        """(output sequence or None, final state per direction) from one layer's call result."""
        if not rnns[0].return_state:
            if rnns[0].return_sequences:
                raise ValueError(f"layer {sub.name} returns neither its state nor its last output alone; "
                                 f"build it with return_state=True so the final state can be compared")
            return None, [result]
        output, *states = result
        if not rnns[0].return_sequences:
            return None, states
        return output, states


pin_numerics()
ADAPTER = KerasAdapter()
