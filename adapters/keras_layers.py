"""Keras 3 GRU layers: ``GRU`` (``reset_after`` True/False, ``use_bias``, ``go_backwards``,
``return_sequences``, ``return_state``, ``initial_state``, masking), ``Bidirectional(GRU)`` with each
merge mode, stacked GRUs (a list of layers, applied in order), and ``GRUCell`` inside ``RNN``.

The code is backend-neutral (``keras.ops`` and NumPy only). In the suite's own process it serves
the ``keras`` adapter, Keras on TensorFlow; ``adapters.keras_backends`` runs the same code in worker
processes started with ``KERAS_BACKEND=jax`` / ``torch`` (``keras-jax``, ``keras-torch``), where it
loads only because those workers say so (``WORKER_BACKEND_VARIABLE``).

Facts this module relies on, from ``keras/src/layers/rnn/gru.py`` and ``rnn.py`` (Keras 3.15.1):
``kernel (I, 3H)`` and ``recurrent_kernel (H, 3H)`` hold columns z, r, h (``gru.py:207-211``,
``:266``); ``bias`` is ``(2, 3H)`` (input row, recurrent row) when ``reset_after=True`` and ``(3H,)``
otherwise (``gru.py:164-171``); ``h = z * h_tm1 + (1 - z) * hh`` (``gru.py:296``) with the
candidate's reset after (``:287``) or before (``:289-291``) the recurrent matmul as ``reset_after``
says (docstring ``:55-57``). ``go_backwards`` returns the outputs in processing (reversed) order;
a masked step repeats the previous output (zeros before the first real step, while the state
starts at ``initial_state``) unless ``zero_output_for_mask``, which ``Bidirectional`` forces on when
it returns sequences (``bidirectional.py:137-143``); the JAX backend differs here (see
``keras_backends``). A ``stateful=True`` layer starts from, and overwrites, its stored state
(``rnn.py:382-384``, ``:438-442``).

What this adapter refuses, before Keras sees anything: layers that are not GRUs (the class is
named), activations that do not *compute* tanh and sigmoid (each is evaluated on a fixed grid,
whatever its name), stateful layers, unbuilt layers, and ``run()`` arguments of the wrong shape or
dtype (``adapters.base.check_run_inputs``).
"""

from __future__ import annotations

import os
import sys

from .keras_backends import (
    WORKER_BACKEND_VARIABLE, check_parameters, configurations_for, keras_config,
)
from .base import check_run_inputs  # noqa: E402

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's start-up banner is noise in a report
if os.environ.get(WORKER_BACKEND_VARIABLE, "tensorflow") != "tensorflow":
    # A JAX or torch worker computes nothing with TensorFlow, yet Keras imports it (3 s) as soon as it
    # serialises a layer, as Bidirectional's constructor does, only to ask whether an object is a
    # tf.TensorShape (keras/src/saving/serialization_lib.py:217, via utils/module_utils.py:19-27).
    sys.modules.setdefault("tensorflow", None)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from reference import GRUParams, Layers, layouts  # noqa: E402

from .base import Adapter, ForwardResult, LayerConfig  # noqa: E402

BACKEND = keras.backend.backend()
if BACKEND != "tensorflow" and os.environ.get(WORKER_BACKEND_VARIABLE) != BACKEND:
    raise ImportError(
        f"the keras adapter runs Keras on TensorFlow in this process, but Keras was loaded with the "
        f"{BACKEND!r} backend (KERAS_BACKEND={os.environ.get('KERAS_BACKEND')!r}); the keras-jax and keras-torch "
        f"adapters run the other backends in worker processes",
        name="keras[tensorflow backend]",
    )

# Where each activation is compared with the function the conventions are defined with: both tails,
# the steep middle and points near zero, in float32 (fine enough to tell hard_sigmoid, a scaled
# tanh or a function merely named "tanh" apart, coarse enough to accept any backend's rounding).
ACTIVATION_GRID = np.concatenate([np.linspace(-8.0, 8.0, 33), [-0.3, -0.01, 0.01, 0.3]]).astype(np.float32)
ACTIVATION_ATOL = 1e-6
REQUIRED_ACTIVATIONS = {
    "activation": ("tanh", np.tanh),
    "recurrent_activation": ("sigmoid", lambda v: 1.0 / (1.0 + np.exp(-v))),
}


def pin_numerics() -> None:
    """Keep float32 matmuls at float32 on GPUs (TF32 would round their inputs to 10 mantissa bits)."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(False)
    elif BACKEND == "torch":
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    elif BACKEND == "jax":
        import jax

        jax.config.update("jax_default_matmul_precision", "highest")


def _layer_name(layer) -> str:
    return f"{type(layer).__name__} layer {getattr(layer, 'name', '?')!r}"


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
                raise TypeError(
                    f"a GRU stack may hold only GRU/RNN/Bidirectional layers, found {type(sub).__name__} "
                    f"({getattr(sub, 'name', '?')!r})"
                )
        return inner
    if isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional)):
        return [layer]
    raise TypeError(
        f"expected keras.layers.GRU, RNN(GRUCell), Bidirectional(GRU) or a list of them, got {type(layer).__name__}"
        + (f" ({layer.name!r})" if isinstance(layer, keras.layers.Layer) else "")
    )


def _check_activation(rnn, role: str, function) -> None:
    wanted, exact = REQUIRED_ACTIVATIONS[role]
    label = getattr(function, "__name__", type(function).__name__)
    try:
        observed = keras.ops.convert_to_numpy(function(keras.ops.convert_to_tensor(ACTIVATION_GRID)))
        observed = np.asarray(observed, dtype=np.float64).reshape(ACTIVATION_GRID.shape)
    except Exception as error:
        raise ValueError(
            f"{_layer_name(rnn)}: {role}={label!r} could not be evaluated elementwise on a float32 vector "
            f"({type(error).__name__}: {error}); the conventions compared here use {wanted}"
        ) from None
    expected = exact(ACTIVATION_GRID.astype(np.float64))
    deviation = np.abs(observed - expected)
    deviation[~np.isfinite(deviation)] = np.inf
    if deviation.max() > ACTIVATION_ATOL:
        worst = int(np.argmax(deviation))
        raise ValueError(
            f"{_layer_name(rnn)}: {role}={label!r} does not compute {wanted}: at x = {ACTIVATION_GRID[worst]:g} it "
            f"gives {observed[worst]:.6g} where {wanted} gives {expected[worst]:.6g}; the conventions compared here "
            f"are defined with tanh and sigmoid, so rebuild the layer with {role}={wanted!r}"
        )


def _gru_cell(rnn) -> keras.layers.GRUCell:
    cell = rnn.cell
    if not isinstance(cell, keras.layers.GRUCell):
        hint = " (keras.layers.GRU is the GRU)" if type(rnn) is not keras.layers.RNN else ""
        raise TypeError(f"{_layer_name(rnn)} wraps a {type(cell).__name__}, not a GRUCell{hint}")
    _check_activation(rnn, "activation", cell.activation)
    _check_activation(rnn, "recurrent_activation", cell.recurrent_activation)
    return cell


def _directions(layer) -> list:
    """The RNN layer(s) holding one layer's weights: [forward] or [forward, backward]."""
    if isinstance(layer, keras.layers.Bidirectional):
        return [layer.forward_layer, layer.backward_layer]
    return [layer]


def _check_built(sub) -> None:
    if not sub.built or any(not rnn.cell.built for rnn in _directions(sub)):
        raise ValueError(
            f"{_layer_name(sub)} is not built, so it has no weights yet: call it once on an input (layer(x)) "
            f"or build it with layer.build((None, None, input_size))"
        )


def _check_stateless(sub) -> None:
    stateful = [rnn for rnn in _directions(sub) if rnn.stateful]
    if stateful:
        raise ValueError(
            f"{_layer_name(stateful[0])} is stateful=True: it starts each call from the state its previous call "
            f"left (layer.states) and overwrites that state, so running it here would change your layer and "
            f"its outputs depend on what ran before. Compare a stateful=False copy instead (extract(layer) "
            f"copies the weights, build(...) makes the layer), or call layer.reset_states() and pass "
            f"initial_state explicitly in your own code"
        )


class KerasAdapter(Adapter):
    """Keras 3 layers on this process's backend, under ``framework``'s name."""

    def __init__(self, framework: str):
        self.name = framework

    def versions(self) -> dict[str, str]:
        found = {"keras": keras.__version__}
        if BACKEND == "tensorflow":
            import tensorflow as tf

            found["tensorflow"] = tf.__version__
        elif BACKEND == "jax":
            import jax
            import jaxlib

            found.update(jax=jax.__version__, jaxlib=jaxlib.__version__)
        else:
            import torch

            found["torch"] = torch.__version__
        return found

    def configurations(self) -> list[LayerConfig]:
        return configurations_for(self.name, BACKEND)

    # ------------------------------------------------------------- building and extracting

    def build(self, config: LayerConfig, layers: Layers, dtype):
        dtype = check_parameters(config, layers, dtype)
        reset_after = config.option("reset_after", True)
        built = []
        for layer_params in layers:
            layer = self._new_layer(config, layer_params[0].hidden_size, dtype, reset_after)
            layer.build((None, None, layer_params[0].input_size))
            for rnn, params in zip(_directions(layer), layer_params):
                weights = layouts.to_keras(params, reset_after=reset_after, use_bias=config.bias)
                rnn.set_weights([w.astype(dtype) for w in weights])
            built.append(layer)
        return built[0] if len(built) == 1 else built

    @staticmethod
    def _new_layer(config: LayerConfig, units: int, dtype: str, reset_after: bool):
        common = dict(return_sequences=config.returns_sequences, return_state=True, go_backwards=config.reverse, dtype=dtype)
        # set_weights replaces every weight; zeros spare the random (orthogonal: a QR) initialisers, which
        # JAX would compile anew for every shape and dtype.
        cell_options = dict(reset_after=reset_after, use_bias=config.bias, kernel_initializer="zeros",
                            recurrent_initializer="zeros", bias_initializer="zeros")
        if config.option("kind") == "RNN(GRUCell)":
            cell = keras.layers.GRUCell(units, dtype=dtype, **cell_options)
            return keras.layers.RNN(cell, **common)
        gru = keras.layers.GRU(units, **cell_options, **common)
        if config.bidirectional:
            return keras.layers.Bidirectional(gru, merge_mode=config.merge, dtype=dtype)
        return gru

    def extract(self, layer) -> list[list[GRUParams]]:
        stack = []
        for sub in _rnn_layers(layer):
            for rnn in _directions(sub):
                _gru_cell(rnn)  # a non-GRU cell is named before "not built" would hide it
            _check_built(sub)
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
        return keras_config(
            self.name, BACKEND,
            f"{type(layer).__name__}({type(first).__name__}, units={cell.units}, reset_after={cell.reset_after}, "
            f"layers={len(subs)}, bidirectional={bidirectional})",
            cell.reset_after, kind="GRU" if isinstance(rnn, keras.layers.GRU) else "RNN(GRUCell)",
            zero_output=first.return_sequences if bidirectional else rnn.zero_output_for_mask,
            num_layers=len(subs), bidirectional=bidirectional, bias=cell.use_bias,
            reverse=bool(rnn.go_backwards) and not bidirectional,
            merge=first.merge_mode if bidirectional else "concat",
            returns_sequences=bool(_directions(subs[-1])[0].return_sequences),
        )

    # ------------------------------------------------------------- running

    def run(self, layer, x, h0=None, mask=None) -> ForwardResult:
        subs = self._runnable(layer)
        cells = [_directions(sub)[0].cell for sub in subs]
        x, h0, mask = check_run_inputs(
            x, h0, mask, input_size=int(cells[0].kernel.shape[0]), hidden_size=cells[0].units,
            slots=sum(len(_directions(sub)) for sub in subs), dtype=subs[0].compute_dtype,
            what=" -> ".join(_layer_name(sub) for sub in subs),
        )
        if mask is not None:
            mask = keras.ops.convert_to_tensor(mask)
        finals = []
        slot = 0
        sequence = keras.ops.convert_to_tensor(x)
        for sub in subs:
            rnns = _directions(sub)
            initial = None
            if h0 is not None:
                initial = [keras.ops.convert_to_tensor(h0[slot + d]) for d in range(len(rnns))]
            slot += len(rnns)
            output, *states = sub(sequence, initial_state=initial, mask=mask)
            finals += states
            sequence = output
        outputs = None
        last = _directions(subs[-1])[0]
        if last.return_sequences:
            outputs = keras.ops.convert_to_numpy(sequence)
            if last.go_backwards and not isinstance(subs[-1], keras.layers.Bidirectional):
                outputs = outputs[:, ::-1]  # go_backwards returns processing order; align with the input
            outputs = np.ascontiguousarray(outputs)
        return ForwardResult(outputs, np.stack([keras.ops.convert_to_numpy(s) for s in finals]))

    def gradients(self, layer, x, h0=None, mask=None, d_outputs=None, d_h_last=None):
        """``tf.GradientTape`` of ``sum(outputs * d_outputs) + sum(h_last * d_h_last)`` (Keras on TensorFlow only).

        ``outputs``/``h_last`` are what ``run`` returns (``go_backwards`` outputs flipped back to input
        order). The tape watches each cell's ``kernel``, ``recurrent_kernel`` and ``bias``, ``x`` and the
        initial states; the weights' gradients map to canonical ``GRUParams`` through ``layouts.from_keras``
        (a linear map). ``reset_after=False`` holds one bias ``(3H,)``: its gradient is that of ``b_*``,
        and ``c_*``, which the layout lacks, are returned as zeros (``compare_gradients`` does not compare
        them: they are not in the configuration's ``bias_fields``). ``use_bias=False``: all biases zero.
        ``h0=None`` differentiates at zero initial states. Nothing of ``layer`` is changed.
        """
        from .base import GradientsUnavailable

        if BACKEND != "tensorflow":
            raise GradientsUnavailable(f"gradients are measured for Keras on TensorFlow only, not {BACKEND!r}")
        import tensorflow as tf

        from reference.backward import StackGradients

        subs = self._runnable(layer)
        cells = [_directions(sub)[0].cell for sub in subs]
        slots = sum(len(_directions(sub)) for sub in subs)
        x, h0, mask = check_run_inputs(
            x, h0, mask, input_size=int(cells[0].kernel.shape[0]), hidden_size=cells[0].units,
            slots=slots, dtype=subs[0].compute_dtype, what=" -> ".join(_layer_name(sub) for sub in subs),
        )
        dtype = subs[0].compute_dtype
        if h0 is None:
            h0 = np.zeros((slots, x.shape[0], cells[0].units), dtype)
        mask_t = None if mask is None else tf.convert_to_tensor(mask)
        x_t = tf.convert_to_tensor(x)
        h0_t = tf.convert_to_tensor(h0)
        variables = []  # (kernel, recurrent_kernel, bias or None) per (layer, direction)
        for sub in subs:
            for rnn in _directions(sub):
                cell = rnn.cell
                variables.append((cell.kernel, cell.recurrent_kernel, cell.bias if cell.use_bias else None))
        watched = [v for triple in variables for v in triple if v is not None]
        with tf.GradientTape() as tape:
            tape.watch(x_t)
            tape.watch(h0_t)
            finals, slot, sequence = [], 0, x_t
            for sub in subs:
                rnns = _directions(sub)
                initial = [h0_t[slot + d] for d in range(len(rnns))]
                slot += len(rnns)
                output, *states = sub(sequence, initial_state=initial, mask=mask_t)
                finals += states
                sequence = output
            loss = tf.zeros((), dtype)
            last = _directions(subs[-1])[0]
            if d_outputs is not None and last.return_sequences:
                outputs = sequence
                if last.go_backwards and not isinstance(subs[-1], keras.layers.Bidirectional):
                    outputs = tf.reverse(outputs, axis=[1])
                loss += tf.reduce_sum(outputs * tf.convert_to_tensor(d_outputs, dtype))
            if d_h_last is not None:
                loss += tf.reduce_sum(tf.stack(finals) * tf.convert_to_tensor(d_h_last, dtype))
        found = tape.gradient(loss, [x_t, h0_t, *watched], unconnected_gradients=tf.UnconnectedGradients.ZERO)
        dx, dh0, *weight_grads = [np.asarray(g) for g in found]
        grads = iter(weight_grads)
        canonical = []
        for sub in subs:
            directions = []
            for rnn in _directions(sub):
                kernel, recurrent_kernel, bias = next(grads), next(grads), next(grads) if rnn.cell.use_bias else None
                directions.append(layouts.from_keras(kernel, recurrent_kernel, bias, reset_after=rnn.cell.reset_after))
            canonical.append(directions)
        return StackGradients(canonical, dx, dh0)

    @staticmethod
    def _runnable(layer) -> list:
        """The stack's layers, once every one is checked runnable here; errors say which and how to fix it."""
        subs = _rnn_layers(layer)
        width = None
        for index, sub in enumerate(subs):
            _check_built(sub)
            _check_stateless(sub)
            rnns = _directions(sub)
            cells = [_gru_cell(rnn) for rnn in rnns]
            if isinstance(sub, keras.layers.Bidirectional) and sub.merge_mode not in ("concat", "sum", "ave", "mul"):
                raise ValueError(f"{_layer_name(sub)} has merge_mode={sub.merge_mode!r}; compare it with one of "
                                 f"'concat', 'sum', 'ave', 'mul' (None returns the directions unmerged)")
            if not rnns[0].return_state:
                raise ValueError(f"{_layer_name(sub)} was built with return_state=False; build it with "
                                 f"return_state=True so its final state can be compared")
            if index < len(subs) - 1 and not rnns[0].return_sequences:
                raise ValueError(f"{_layer_name(sub)} returns no sequence but feeds another layer; "
                                 f"set return_sequences=True")
            if cells[0].units != _directions(subs[0])[0].cell.units:
                raise ValueError(
                    f"the stack's layers have different hidden sizes ({[_directions(s)[0].cell.units for s in subs]}); "
                    f"one (layers * directions, batch, hidden) state cannot hold them: compare each layer separately"
                )
            input_size = int(cells[0].kernel.shape[0])
            if width is not None and input_size != width:
                raise ValueError(f"{_layer_name(sub)} takes {input_size} features, but the layer before it "
                                 f"outputs {width}")
            merged = cells[0].units * (2 if isinstance(sub, keras.layers.Bidirectional) and sub.merge_mode == "concat" else 1)
            width = merged
        return subs


pin_numerics()
ADAPTER = KerasAdapter("keras" if BACKEND == "tensorflow" else f"keras-{BACKEND}")
