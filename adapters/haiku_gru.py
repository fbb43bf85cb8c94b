"""Haiku: ``hk.GRU`` unrolled by ``hk.dynamic_unroll`` (batch- or time-major, ``reverse=True``) and
``hk.static_unroll``, stacked as ``hk.DeepRNN([GRU, GRU])``, and wrapped in ``hk.ResetCore``.

Haiku is transform-based: a module exists only inside a function given to ``hk.transform``, and
its weights live outside it, in a params mapping. So the "framework object" ``build`` returns is a
``HaikuGRU``: the transformed forward function (``apply(params, x, h0, should_reset=None)``), the
params mapping it runs with (``{"layer_k": {"w_i", "w_h", "b"}}`` as JAX arrays), the configuration
and the requested dtype. ``extract`` reads such an object, or a params mapping of your own (every
entry holding exactly ``w_i``, ``w_h``, ``b`` is one layer, in the mapping's order).

Facts this module relies on, from ``haiku/_src/recurrent.py`` (dm-haiku 0.0.17):

- the formula, ``GRU`` docstring recurrent.py:541-546: ``z_t = sigma(W_iz x_t + W_hz h_{t-1} + b_z)``,
  ``r_t = sigma(W_ir x_t + W_hr h_{t-1} + b_r)``, ``a_t = tanh(W_ia x_t + W_ha (r_t . h_{t-1}) + b_a)``,
  ``h_t = (1 - z_t) . h_{t-1} + z_t . a_t``: z on the candidate, reset before (Chung et al. 2014, the
  paper it cites at :534). ``GRU.__call__`` computes the same: ``a_h = jnp.matmul(r * state, w_h_a)``
  (:590), ``next_state = (1 - z) * state + z * a`` (:593). The docstring's prose (:548) calls
  ``z_t`` and ``r_t`` "reset and update gates", in that order; its formulas (and the code) make z the
  update gate and r the reset gate;
- layout, recurrent.py:575-581: ``w_i (I, 3H)`` and ``w_h (H, 3H)`` columns z|r|a, ``b (3H,)`` b_z|b_r|b_a,
  one bias added outside the reset product (:587, :591): input biases only (recurrent biases fold
  into it exactly under reset-before). This is Keras' ``reset_after=False`` layout
  (``reference.layouts.to_keras(params, reset_after=False)`` gives ``[w_i, w_h, b]``). Parameters take
  the input's dtype (``hk.get_parameter(..., inputs.dtype)``, :575-579);
- ``dynamic_unroll`` (recurrent.py:150-221) is a ``scan`` over time with ``time_major`` and
  ``reverse`` ("Equivalent to reversing the time dimension in both inputs and outputs", :178-181):
  the outputs stay aligned with the input time axis and the final state is the one after step 0.
  Neither unroll takes a mask or sequence lengths: no configuration here is masked, and ``run``
  refuses a mask;
- ``DeepRNN`` (:794-809; ``_DeepRNN.__call__`` :756-785) feeds each core's output to the next at
  every step; its state is a tuple with one entry per core, and its output the last core's;
  ``deep_rnn_with_skip_connections`` (:812) feeds layer k > 0 with ``concat(x, output_{k-1})`` and
  outputs all layers' outputs concatenated, which ``reference.gru_stack`` does not model: no row
  here (``tests/test_haiku_gru.py`` measures it against the reference by hand);
- ``ResetCore`` (:628-724) replaces the state by the core's ``initial_state`` (zeros, cast to the
  state's dtype, :720-723) wherever ``should_reset`` is True, before the step: a reset restarts from
  zeros, not from the ``h0`` given to the unroll. With ``should_reset`` all False it is the bare GRU
  (its row); ``HaikuGRU.transformed.apply`` takes ``should_reset`` for other uses;
- ``GRU.initial_state`` (:596-600) is ``jnp.zeros([hidden_size])`` in JAX's default dtype, not the
  parameters': under ``jax_enable_x64`` a float32 GRU started from it returns float64 (the float32
  pre-activations meet a float64 state). ``run`` with ``h0=None`` starts from zeros in the layer's
  own dtype instead.

Precision (``adapters.jax_common``): without ``jax_enable_x64`` a float64 request computes in float32
(parameters and input are cast to float32 by ``jnp.asarray``); the rows without ``+ x64`` show what
users get, the ``+ x64`` rows run inside ``jax.enable_x64(True)`` and compute in float64.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

if importlib.util.find_spec("haiku") is None:
    raise ImportError("the haiku adapter needs dm-haiku (pip install dm-haiku)", name="dm-haiku")

import haiku as hk  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from reference import Convention, GRUParams, Layers, layouts  # noqa: E402
from reference.params import INPUT_BIASES, describe_value  # noqa: E402

from . import jax_common  # noqa: E402
from .base import ALL_BIASES, Adapter, ForwardResult, LayerConfig, check_layer_structure  # noqa: E402
from .base import check_run_inputs as shared_check_run_inputs  # noqa: E402

HAIKU_VERSION = importlib.metadata.version("dm-haiku")
DTYPES = ("float32", "float64")
SOURCE = f"haiku/_src/recurrent.py (dm-haiku {HAIKU_VERSION})"
CLAIMED = Convention("z_on_candidate", "before")
CLAIM_SOURCE = (
    f"{SOURCE}:541-546, GRU docstring: z_t = \\sigma(W_{{iz}} x_t + W_{{hz}} h_{{t-1}} + b_z); "
    f"r_t = \\sigma(W_{{ir}} x_t + W_{{hr}} h_{{t-1}} + b_r); "
    f"a_t = \\tanh(W_{{ia}} x_t + W_{{ha}} (r_t \\bigodot h_{{t-1}}) + b_a); "
    f"h_t = (1 - z_t) \\bigodot h_{{t-1}} + z_t \\bigodot a_t (code :590 'a_h = jnp.matmul(r * state, w_h_a)', "
    f":593 'next_state = (1 - z) * state + z * a')"
)
GRU_LAYOUT = (
    "params['layer_k']: w_i (I, 3H) columns z|r|a, w_h (H, 3H) columns z|r|a, b (3H,) b_z|b_r|b_a "
    "(recurrent.py:575-581; Keras' reset_after=False layout); one bias, added outside the reset product: "
    "recurrent biases c_* fold into it exactly (reference.fold_recurrent_biases)"
)
X64_SUFFIX = " + x64"
UNROLL_NOTE = ("{unroll}: outputs aligned with the input time axis, h_last = the state after the last "
               "step processed{reverse}; no masking (no sequence lengths in hk.dynamic_unroll / hk.static_unroll)")
NO_MASK = (
    "hk.dynamic_unroll and hk.static_unroll take no mask or sequence lengths (recurrent.py:87, :150), so "
    "{name} runs every step of every sequence; run it without a mask (cut or pad sequences yourself)"
)


GATE_NAMES_SWAPPED = (
    "hk.GRU's docstring prose calls z_t and r_t \"reset and update gates\" (haiku/_src/recurrent.py:548), but its "
    "equations and the code (:590, :593) make z the update gate and r the reset gate; the equations are right"
)


def _config(name: str, kind: str = "GRU", unroll: str = "dynamic", time_major: bool = False,
            x64: bool = False, **fields) -> LayerConfig:
    num_layers = fields.get("num_layers", 1)
    layout = GRU_LAYOUT
    if kind == "DeepRNN":
        layout += (f"; hk.DeepRNN of {num_layers} GRUs named layer_0..layer_{num_layers - 1}, layer k > 0 has I = H; "
                   f"state a tuple (h_layer0, h_layer1, ...), output the last layer's")
    if kind == "ResetCore":
        layout += "; hk.ResetCore(GRU) adds no parameters (should_reset all False in this row)"
    reverse = fields.get("reverse", False)
    layout += "; " + UNROLL_NOTE.format(
        unroll=f"hk.{unroll}_unroll(time_major={time_major}{', reverse=True' if reverse else ''})",
        reverse=" (step 0 when reverse=True)" if reverse else "")
    options = (("kind", kind), ("unroll", unroll), ("time_major", time_major), ("x64", x64))
    return LayerConfig(
        documentation_findings=(GATE_NAMES_SWAPPED,),
        framework="haiku", name=name + (X64_SUFFIX if x64 else ""), claimed=CLAIMED, biases=INPUT_BIASES,
        separate_recurrent_bias=False, claim_source=CLAIM_SOURCE, layout=layout, options=options, **fields,
    )


CONFIGURATIONS = (
    _config("hk.GRU + dynamic_unroll"),
    _config("hk.GRU + dynamic_unroll(time_major=True)", time_major=True),
    _config("hk.GRU + dynamic_unroll(reverse=True)", reverse=True),
    _config("hk.GRU + static_unroll", unroll="static"),
    _config("hk.DeepRNN([GRU, GRU]) + dynamic_unroll", kind="DeepRNN", num_layers=2),
    _config("hk.ResetCore(GRU) + dynamic_unroll", kind="ResetCore"),
    # The fix for JAX's float32 default (jax_common): the same classes, inside jax.enable_x64(True).
    _config("hk.GRU + dynamic_unroll", x64=True),
    _config("hk.DeepRNN([GRU, GRU]) + dynamic_unroll(reverse=True)", kind="DeepRNN", num_layers=2, reverse=True,
            x64=True),
)


# ----------------------------------------------------------------- the layout, both ways


def to_haiku(params: GRUParams) -> dict[str, np.ndarray]:
    """``{"w_i", "w_h", "b"}`` of one ``hk.GRU``; non-zero recurrent biases are refused (fold them first)."""
    nonzero = [name for name in ("c_z", "c_r", "c_h") if np.any(getattr(params, name) != 0)]
    if nonzero:
        raise ValueError(
            f"recurrent biases {', '.join(nonzero)} are non-zero, and hk.GRU holds a single bias b (3H,) added "
            f"outside the reset product (recurrent.py:587, :591). Under its reset-before formula they fold into "
            f"b exactly: reference.fold_recurrent_biases(params, '{CLAIMED.id}') first"
        )
    w_i, w_h, b = layouts.to_keras(params, reset_after=False, use_bias=True)
    return {"w_i": w_i, "w_h": w_h, "b": b}


def from_haiku(w_i, w_h, b) -> GRUParams:
    """Canonical parameters of one ``hk.GRU`` from its ``w_i``, ``w_h``, ``b`` (NumPy arrays)."""
    return layouts.from_keras(np.asarray(w_i), np.asarray(w_h), np.asarray(b), reset_after=False)


# ----------------------------------------------------------------- the transformed function


@cache
def _transformed(kind: str, unroll: str, time_major: bool, reverse: bool, num_layers: int, hidden_size: int):
    """``(hk.Transformed, jitted apply)`` for one structure; jit retraces per shape, dtype and x64 mode."""

    def forward(x, h0, should_reset=None):
        # x (batch, time, input), h0 (layers, batch, hidden): the adapter's convention, whatever the unroll's.
        if kind == "DeepRNN":
            core = hk.DeepRNN([hk.GRU(hidden_size, name=f"layer_{k}") for k in range(num_layers)])
            state = tuple(h0[k] for k in range(num_layers))
        else:
            core = hk.GRU(hidden_size, name="layer_0")
            state = h0[0]
        inputs = jnp.swapaxes(x, 0, 1) if time_major else x
        if kind == "ResetCore":
            core = hk.ResetCore(core)
            if should_reset is None:
                should_reset = jnp.zeros(x.shape[:2], bool)
            inputs = (inputs, jnp.swapaxes(should_reset, 0, 1) if time_major else should_reset)
        if unroll == "static":
            outputs, final = hk.static_unroll(core, inputs, state, time_major=time_major)
        else:
            outputs, final = hk.dynamic_unroll(core, inputs, state, time_major=time_major, reverse=reverse)
        outputs = jnp.swapaxes(outputs, 0, 1) if time_major else outputs
        return outputs, jnp.stack(final) if kind == "DeepRNN" else final[None]

    transformed = hk.without_apply_rng(hk.transform(forward))
    return transformed, jax.jit(transformed.apply)


@dataclass(frozen=True, eq=False)
class HaikuGRU:
    """A transformed Haiku GRU and the params it runs with: ``transformed.apply(params, x, h0)`` gives
    ``(outputs (batch, time, hidden), h_last (layers, batch, hidden))``; ``dtype`` is the requested one,
    ``params`` hold what JAX made of it (float32 for float64 without x64)."""

    config: LayerConfig
    transformed: Any
    params: Any
    dtype: str
    input_size: int
    hidden_size: int

    def __repr__(self) -> str:
        return (f"HaikuGRU({self.config.name}, input_size={self.input_size}, hidden_size={self.hidden_size}, "
                f"dtype={self.dtype})")

    @property
    def x64(self) -> bool:
        return bool(self.config.option("x64"))

    @property
    def compute_dtype(self) -> np.dtype:
        return np.dtype(self.params["layer_0"]["w_i"].dtype)

    def jitted(self):
        options = self.config
        return _transformed(options.option("kind"), options.option("unroll"), options.option("time_major"),
                            options.reverse, options.num_layers, self.hidden_size)[1]


def _dtype_name(dtype) -> str:
    try:
        name = np.dtype(dtype).name
    except TypeError:
        raise TypeError(f"dtype {describe_value(dtype)} is not a NumPy dtype; use np.float32 or np.float64") from None
    if name not in DTYPES:
        raise ValueError(f"dtype {name} is not supported; use float32 or float64")
    return name


def _check_layer(layer) -> HaikuGRU:
    if isinstance(layer, HaikuGRU):
        return layer
    if isinstance(layer, Mapping):
        raise TypeError(
            "got a Haiku params mapping: it holds the weights but not how they are unrolled. Read it with "
            "adapters.get('haiku').extract(params), then build a configuration with adapters.get('haiku').build"
        )
    raise TypeError(f"expected a HaikuGRU from adapters.get('haiku').build, got {describe_value(layer)}")


def check_run_inputs(x, h0, mask, *, what: str, input_size: int, hidden_size: int, slots: int, dtype: str):
    """``(x, h0)`` as NumPy arrays, or an error naming the bad argument and the fix; a mask is refused."""
    if mask is not None:
        raise ValueError(NO_MASK.format(name=what))
    x, h0, _ = shared_check_run_inputs(x, h0, None, what=what, input_size=input_size, hidden_size=hidden_size,
                                       slots=slots, dtype=dtype)
    return x, h0


class HaikuAdapter(Adapter):
    name = "haiku"

    def versions(self) -> dict[str, str]:
        return {"dm-haiku": HAIKU_VERSION, **jax_common.versions()}

    def configurations(self) -> list[LayerConfig]:
        return list(CONFIGURATIONS)

    # ------------------------------------------------------------- building and extracting

    def build(self, config: LayerConfig, layers: Layers, dtype) -> HaikuGRU:
        if not isinstance(config, LayerConfig):
            raise TypeError(f"config is {describe_value(config)}; expected a LayerConfig: "
                            f"adapters.get('haiku').configuration(name)")
        if config.framework != self.name:
            raise ValueError(f"{config.label} is not a haiku configuration; use adapters.get('haiku').configuration(name)")
        check_layer_structure(config, layers)
        name = _dtype_name(dtype)
        absent = [bias for bias in ALL_BIASES if bias not in config.bias_fields]
        packed = {}
        for index, (params,) in enumerate(layers):
            nonzero = [bias for bias in absent if np.any(getattr(params, bias) != 0)]
            if nonzero:
                raise ValueError(
                    f"layers[{index}][0] has non-zero biases {', '.join(nonzero)}, which {config.label} cannot hold "
                    f"(hk.GRU keeps one bias b = b_z|b_r|b_a, recurrent.py:579). Under its reset-before formula they "
                    f"fold into b exactly: reference.fold_recurrent_biases(params, '{CLAIMED.id}') first"
                )
            packed[f"layer_{index}"] = to_haiku(params.astype(name))
        first = layers[0][0]
        transformed, _ = _transformed(config.option("kind"), config.option("unroll"), config.option("time_major"),
                                      config.reverse, config.num_layers, first.hidden_size)
        x64 = bool(config.option("x64"))
        with jax_common.precision_context(x64):
            held = {module: {key: jax_common.as_jax(array, name, x64) for key, array in weights.items()}
                    for module, weights in packed.items()}
        for module, weights in packed.items():  # exact, at the precision JAX gave
            for key, array in weights.items():
                loaded = np.asarray(held[module][key])
                if not np.array_equal(loaded, array.astype(loaded.dtype)):
                    raise RuntimeError(f"{config.label}: params[{module!r}][{key!r}] was not loaded exactly")
        return HaikuGRU(config, transformed, held, name, first.input_size, first.hidden_size)

    def extract(self, layer) -> list[list[GRUParams]]:
        """Canonical parameters of a ``HaikuGRU``, or of a Haiku params mapping (copies, in its dtype)."""
        if isinstance(layer, HaikuGRU):
            params = layer.params
        elif isinstance(layer, Mapping):
            params = layer
        else:
            raise TypeError(f"expected a HaikuGRU or a Haiku params mapping, got {describe_value(layer)}")
        modules = [(module, weights) for module, weights in params.items()
                   if isinstance(weights, Mapping) and set(weights) == {"w_i", "w_h", "b"}]
        if not modules:
            found = {module: sorted(weights) if isinstance(weights, Mapping) else describe_value(weights)
                     for module, weights in params.items()}
            raise ValueError(f"no hk.GRU parameters (a module holding exactly w_i, w_h, b) in this mapping: {found}")
        extracted = []
        for module, weights in modules:
            try:
                extracted.append([from_haiku(*(np.array(weights[key]) for key in ("w_i", "w_h", "b")))])
            except (TypeError, ValueError) as error:
                raise type(error)(f"params[{module!r}]: {error}") from None
        return extracted

    def describe(self, layer) -> LayerConfig:
        return _check_layer(layer).config

    # ------------------------------------------------------------- running

    def run(self, layer, x, h0=None, mask=None) -> ForwardResult:
        layer = _check_layer(layer)
        x, h0 = check_run_inputs(x, h0, mask, what=layer.config.label, input_size=layer.input_size,
                                 hidden_size=layer.hidden_size, slots=layer.config.num_layers, dtype=layer.dtype)
        if h0 is None:
            # Zeros in the layer's dtype: hk.GRU.initial_state is in JAX's default dtype (see the module docstring).
            h0 = np.zeros((layer.config.num_layers, x.shape[0], layer.hidden_size), layer.dtype)
        with jax_common.precision_context(layer.x64):
            outputs, h_last = layer.jitted()(layer.params, jax_common.as_jax(x, layer.dtype, layer.x64),
                                             jax_common.as_jax(h0, layer.dtype, layer.x64))
            outputs, h_last = np.asarray(outputs), np.asarray(h_last)
        return ForwardResult(outputs if layer.config.returns_sequences else None, h_last)


    # ------------------------------------------------------------- differentiating

    def gradients(self, layer, x, h0=None, mask=None, d_outputs=None, d_h_last=None):
        """``jax.grad`` of ``sum(outputs * d_outputs) + sum(h_last * d_h_last)`` through the jitted
        ``transformed.apply`` that ``run`` executes, with respect to the params mapping, ``x`` and ``h0``.

        The gradient is a params mapping of the same structure, read back by the same ``extract`` that reads
        the weights (``from_haiku``, Keras' reset_after=False layout): ``w_i``/``w_h`` columns z|r|a give
        dW_*/dU_*. hk.GRU's single bias ``b`` (added outside the reset product, recurrent.py:587, :591) maps to
        the input biases: its gradient is db_z|db_r|db_h; the recurrent biases it lacks are zeros (not
        compared). Under reset-before b_* and c_* enter the same pre-activation, so the reference's dc_*
        equals db_*: a port that folds c_* into b loses nothing. ``h0=None`` differentiates at zeros, as ``run``
        starts. Without ``jax_enable_x64`` a float64 request is differentiated in float32, as it runs.
        """
        from reference.backward import StackGradients

        layer = _check_layer(layer)
        x, h0 = check_run_inputs(x, h0, mask, what=layer.config.label, input_size=layer.input_size,
                                 hidden_size=layer.hidden_size, slots=layer.config.num_layers, dtype=layer.dtype)
        if h0 is None:
            h0 = np.zeros((layer.config.num_layers, x.shape[0], layer.hidden_size), layer.dtype)
        time_steps = x.shape[1]
        expected = {"d_outputs": (x.shape[0], time_steps, layer.hidden_size), "d_h_last": h0.shape}
        for name, value in (("d_outputs", d_outputs), ("d_h_last", d_h_last)):
            if value is not None and np.shape(value) != expected[name]:
                raise ValueError(f"{name} has shape {np.shape(value)}; it weights an array of shape {expected[name]}")
        with jax_common.precision_context(layer.x64):
            d_params, dx, dh0 = jax_common.loss_gradients(
                layer.jitted(), (layer.params, jax_common.as_jax(x, layer.dtype, layer.x64),
                                 jax_common.as_jax(h0, layer.dtype, layer.x64)), {}, (0, 1, 2),
                d_outputs if layer.config.returns_sequences else None, d_h_last, layer.dtype, layer.x64)
        return StackGradients(self.extract(d_params), dx, dh0)


ADAPTER = HaikuAdapter()
