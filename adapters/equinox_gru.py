"""Equinox: ``eqx.nn.GRUCell`` (``use_bias=True`` / ``False``) stepped over time by ``jax.lax.scan``
(also ``reverse=True``) and over the batch by ``jax.vmap``, the use its docstring shows.

Equinox has no GRU layer, no bidirectional or stacked wrapper and no masking: only the cell, which
takes one unbatched step, ``cell(input (I,), hidden (H,)) -> hidden (H,)``. ``build`` returns an
``EquinoxGRU``: the real ``eqx.nn.GRUCell`` (an immutable pytree, weights replaced with
``eqx.tree_at``), the configuration and the requested dtype. ``extract``, ``describe`` and ``run``
also take a bare ``eqx.nn.GRUCell`` of your own (run forward over time).

Facts this module relies on, from ``equinox/nn/_rnn.py`` (equinox 0.13.8):

- the documentation states no formula: the docstring (``_rnn.py:15-34``, and the API page built
  from it) says only "A single step of a Gated Recurrent Unit (GRU)" and shows the ``lax.scan``
  example. The claim recorded here is therefore the code, ``GRUCell.__call__`` ``_rnn.py:104-109``:
  ``igates = split(weight_ih @ input + bias, 3)``, ``hgates = split(weight_hh @ hidden, 3)``,
  ``reset = sigmoid(igates[0] + hgates[0])``, ``inp = sigmoid(igates[1] + hgates[1])``,
  ``new = tanh(igates[2] + reset * (hgates[2] + bias_n))``, ``return new + inp * (hidden - new)``,
  that is ``h = z * h_prev + (1 - z) * new``: z on the previous state, reset after (PyTorch's);
- layout, ``_rnn.py:69-78``: ``weight_ih (3H, I)`` and ``weight_hh (3H, H)`` rows r|z|n (PyTorch's
  order), ``bias (3H,)`` b_r|b_z|b_n added to the input projection, ``bias_n (H,)`` the recurrent
  candidate bias inside the reset product (c_h). There is no recurrent bias for r and z: c_r and
  c_z must be zero (they fold exactly into b_r and b_z: a PyTorch GRU ports as
  ``bias = bias_ih + [bias_hh[:2H], 0]``, ``bias_n = bias_hh[2H:]``). ``use_bias=False`` sets both
  to None and adds 0 (``_rnn.py:101-103``);
- the ``use_bias`` argument is documented as "Whether to add on a bias after each update"
  (``_rnn.py:58``); the biases are added inside the gates, before the update, never after it;
- ``dtype`` (``_rnn.py:59-61``): "Defaults to either float32 or float64 depending on whether JAX
  is in 64-bit mode". ``GRUCell(dtype=jnp.float64)`` without 64-bit mode warns ("Explicitly
  requested dtype float64 is not available") and holds float32 weights.

Precision (``adapters.jax_common``): without ``jax_enable_x64`` a float64 request computes in float32;
the rows without ``+ x64`` show what users get, the ``+ x64`` rows run inside
``jax.enable_x64(True)`` and compute in float64.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import warnings
from dataclasses import dataclass
from functools import cache

import numpy as np

if importlib.util.find_spec("equinox") is None:
    raise ImportError("the equinox adapter needs equinox (pip install equinox)", name="equinox")

import equinox as eqx  # noqa: E402
import jax  # noqa: E402

from reference import Convention, GRUParams, Layers, layouts  # noqa: E402
from reference.params import INPUT_BIASES, describe_value  # noqa: E402

from . import jax_common  # noqa: E402
from .base import ALL_BIASES, Adapter, ForwardResult, LayerConfig, check_layer_structure  # noqa: E402
from .base import check_run_inputs as shared_check_run_inputs  # noqa: E402

EQUINOX_VERSION = importlib.metadata.version("equinox")
DTYPES = ("float32", "float64")
SOURCE = f"equinox/nn/_rnn.py (equinox {EQUINOX_VERSION})"
CLAIMED = Convention("z_on_previous", "after")
CLAIM_SOURCE = (
    f"{SOURCE}:104-109, GRUCell.__call__ (the docstring, :15-34, states no formula; the code is the only claim): "
    f"'reset = jnn.sigmoid(igates[0] + hgates[0])', 'inp = jnn.sigmoid(igates[1] + hgates[1])', "
    f"'new = jnn.tanh(igates[2] + reset * (hgates[2] + bias_n))', 'return new + inp * (hidden - new)'"
)
BIASED_LAYOUT = (
    "weight_ih (3H, I) rows r|z|n, weight_hh (3H, H) rows r|z|n, bias (3H,) input b_r|b_z|b_n, bias_n (H,) the "
    "recurrent candidate bias c_h inside r * (...) (_rnn.py:69-78); no c_r, c_z (fold them into b_r, b_z)"
)
UNBIASED_LAYOUT = "weight_ih (3H, I) rows r|z|n, weight_hh (3H, H) rows r|z|n; bias and bias_n are None (use_bias=False)"
SCAN_NOTE = ("; jax.vmap over the batch of jax.lax.scan(step, h0, xs{reverse}) over time: outputs aligned with the "
             "input time axis, h_last the state after the last step processed; no masking")
EQX_BIASES = INPUT_BIASES + ("c_h",)
X64_SUFFIX = " + x64"
NO_MASK = ("eqx.nn.GRUCell scanned by jax.lax.scan has no notion of padding (no mask or sequence lengths), so "
           "{name} runs every step; run it without a mask")
NOT_AVAILABLE_WARNING = ".*requested.* is not available.*"  # JAX, when float64 is asked for without x64


USE_BIAS_DOC = (
    "eqx.nn.GRUCell documents use_bias as \"Whether to add on a bias after each update\" (equinox/nn/_rnn.py:58), "
    "but its biases are added inside the gates, before the update (:104-109); its docstring states no formula"
)


def _config(name: str, use_bias: bool = True, reverse: bool = False, x64: bool = False) -> LayerConfig:
    layout = (BIASED_LAYOUT if use_bias else UNBIASED_LAYOUT) + SCAN_NOTE.format(
        reverse=", reverse=True" if reverse else "")
    return LayerConfig(
        framework="equinox", name=name + (X64_SUFFIX if x64 else ""), claimed=CLAIMED, bias=use_bias,
        biases=EQX_BIASES if use_bias else (), reverse=reverse, claim_source=CLAIM_SOURCE, layout=layout,
        options=(("use_bias", use_bias), ("x64", x64)), documentation_findings=(USE_BIAS_DOC,),
    )


CONFIGURATIONS = (
    _config("eqx.nn.GRUCell + lax.scan"),
    _config("eqx.nn.GRUCell(use_bias=False) + lax.scan", use_bias=False),
    _config("eqx.nn.GRUCell + lax.scan(reverse=True)", reverse=True),
    # The fix for JAX's float32 default (jax_common): the same cell, inside jax.enable_x64(True).
    _config("eqx.nn.GRUCell + lax.scan", x64=True),
    _config("eqx.nn.GRUCell(use_bias=False) + lax.scan(reverse=True)", use_bias=False, reverse=True, x64=True),
)


# ----------------------------------------------------------------- the layout, both ways


def to_equinox(params: GRUParams, use_bias: bool = True) -> dict[str, np.ndarray]:
    """``{"weight_ih", "weight_hh"[, "bias", "bias_n"]}``; biases the cell cannot hold are refused."""
    holds = EQX_BIASES if use_bias else ()
    nonzero = [name for name in ALL_BIASES if name not in holds and np.any(getattr(params, name) != 0)]
    if nonzero:
        if use_bias:
            fix = ("c_z and c_r are added to the gate pre-activations like b_z and b_r, so they fold exactly: "
                   "params.replace(b_z=params.b_z + params.c_z, b_r=params.b_r + params.c_r, "
                   "c_z=np.zeros_like(params.c_z), c_r=np.zeros_like(params.c_r))")
        else:
            fix = "use an eqx.nn.GRUCell with use_bias=True, or zero the biases deliberately if that is the model you want"
        raise ValueError(
            f"non-zero biases {', '.join(nonzero)}, which eqx.nn.GRUCell(use_bias={use_bias}) cannot hold (it keeps "
            f"{'bias = b_r|b_z|b_n and bias_n = c_h' if use_bias else 'no biases'}, _rnn.py:104-108); {fix}"
        )
    torch_layout = layouts.to_torch(params, bias=True)
    packed = {"weight_ih": torch_layout["weight_ih"], "weight_hh": torch_layout["weight_hh"]}
    if use_bias:
        hidden = params.hidden_size
        packed["bias"] = torch_layout["bias_ih"]
        packed["bias_n"] = torch_layout["bias_hh"][2 * hidden:]
    return packed


def from_equinox(weight_ih, weight_hh, bias=None, bias_n=None) -> GRUParams:
    """Canonical parameters of one ``eqx.nn.GRUCell`` from its arrays (NumPy); no biases: zeros."""
    weight_ih, weight_hh = np.asarray(weight_ih), np.asarray(weight_hh)
    if (bias is None) != (bias_n is None):
        raise ValueError("give both bias and bias_n (use_bias=True), or neither (use_bias=False)")
    if bias is None:
        return layouts.from_torch(weight_ih, weight_hh)
    bias_n = np.asarray(bias_n)
    hidden = weight_hh.shape[-1]
    if bias_n.shape != (hidden,):
        raise ValueError(f"bias_n has shape {bias_n.shape}; expected (hidden_size,) = ({hidden},)")
    recurrent = np.concatenate([np.zeros(2 * hidden, bias_n.dtype), bias_n])
    return layouts.from_torch(weight_ih, weight_hh, np.asarray(bias), recurrent)


# ----------------------------------------------------------------- the scan


@cache
def _scan(reverse: bool):
    """The jitted forward of a cell over ``x (batch, time, I)`` from ``h0 (batch, H)``; retraces per shape,
    dtype and x64 mode, compiles once per (reverse, structure)."""

    def forward(cell, x, h0):
        def sequence(xs, h):
            def step(state, x_t):
                state = cell(x_t, state)
                return state, state

            h_last, outputs = jax.lax.scan(step, h, xs, reverse=reverse)
            return outputs, h_last

        return jax.vmap(sequence)(x, h0)

    return eqx.filter_jit(forward)


@dataclass(frozen=True, eq=False)
class EquinoxGRU:
    """An ``eqx.nn.GRUCell`` and how it is scanned; ``dtype`` is the requested one, ``cell`` holds what JAX
    made of it (float32 for float64 without x64)."""

    config: LayerConfig
    cell: eqx.nn.GRUCell
    dtype: str

    def __repr__(self) -> str:
        return (f"EquinoxGRU({self.config.name}, input_size={self.cell.input_size}, "
                f"hidden_size={self.cell.hidden_size}, dtype={self.dtype})")


def _dtype_name(dtype) -> str:
    try:
        name = np.dtype(dtype).name
    except TypeError:
        raise TypeError(f"dtype {describe_value(dtype)} is not a NumPy dtype; use np.float32 or np.float64") from None
    if name not in DTYPES:
        raise ValueError(f"dtype {name} is not supported; use float32 or float64")
    return name


def _wrap(layer) -> EquinoxGRU:
    """An ``EquinoxGRU``, or a bare user cell read as the forward, non-x64 configuration of its kind."""
    if isinstance(layer, EquinoxGRU):
        return layer
    if isinstance(layer, eqx.nn.GRUCell):
        name = _dtype_name(layer.weight_ih.dtype)
        # A float64 cell exists only in 64-bit mode, so it runs there.
        base = "eqx.nn.GRUCell + lax.scan" if layer.use_bias else "eqx.nn.GRUCell(use_bias=False) + lax.scan"
        config = _config(base, use_bias=layer.use_bias, x64=name == "float64")
        return EquinoxGRU(config, layer, name)
    raise TypeError(f"expected an eqx.nn.GRUCell or an EquinoxGRU from adapters.get('equinox').build, "
                    f"got {describe_value(layer)}")


def check_run_inputs(x, h0, mask, *, what: str, input_size: int, hidden_size: int, dtype: str):
    """``(x, h0)`` as NumPy arrays, or an error naming the bad argument and the fix; a mask is refused."""
    if mask is not None:
        raise ValueError(NO_MASK.format(name=what))
    x, h0, _ = shared_check_run_inputs(x, h0, None, what=what, input_size=input_size, hidden_size=hidden_size,
                                       slots=1, dtype=dtype)
    return x, h0


class EquinoxAdapter(Adapter):
    name = "equinox"

    def versions(self) -> dict[str, str]:
        return {"equinox": EQUINOX_VERSION, **jax_common.versions()}

    def configurations(self) -> list[LayerConfig]:
        return list(CONFIGURATIONS)

    # ------------------------------------------------------------- building and extracting

    def build(self, config: LayerConfig, layers: Layers, dtype) -> EquinoxGRU:
        if not isinstance(config, LayerConfig):
            raise TypeError(f"config is {describe_value(config)}; expected a LayerConfig: "
                            f"adapters.get('equinox').configuration(name)")
        if config.framework != self.name:
            raise ValueError(f"{config.label} is not an equinox configuration; use "
                             f"adapters.get('equinox').configuration(name)")
        check_layer_structure(config, layers)
        name = _dtype_name(dtype)
        use_bias = bool(config.option("use_bias"))
        (params,), = layers
        try:
            packed = to_equinox(params.astype(name), use_bias=use_bias)
        except ValueError as error:
            raise ValueError(f"{config.label}: layers[0][0] has {error}") from None
        x64 = bool(config.option("x64"))
        with jax_common.precision_context(x64), warnings.catch_warnings():
            # What a user writes, GRUCell(..., dtype=jnp.float64); without x64 JAX warns and makes float32.
            warnings.filterwarnings("ignore", message=NOT_AVAILABLE_WARNING)
            # The real constructor, traced abstractly (no random initialisation to compute and then discard).
            cell = eqx.filter_eval_shape(eqx.nn.GRUCell, params.input_size, params.hidden_size, use_bias=use_bias,
                                         dtype=np.dtype(name), key=jax.random.PRNGKey(0))
            shapes = {key: getattr(cell, key) for key in packed}
            held = {key: jax_common.as_jax(array, name, x64) for key, array in packed.items()}
            names = list(held)
            cell = eqx.tree_at(lambda c: [getattr(c, key) for key in names], cell, [held[key] for key in names])
        for key, array in packed.items():  # exact, at the precision JAX gave, in the constructor's shape and dtype
            loaded = np.asarray(getattr(cell, key))
            if (loaded.shape, loaded.dtype) != (shapes[key].shape, shapes[key].dtype) \
                    or not np.array_equal(loaded, array.astype(loaded.dtype)):
                raise RuntimeError(f"{config.label}: {key} was not loaded exactly (the constructor makes "
                                   f"{shapes[key].dtype}{shapes[key].shape}, loaded {loaded.dtype}{loaded.shape})")
        return EquinoxGRU(config, cell, name)

    def extract(self, layer) -> list[list[GRUParams]]:
        """Canonical parameters of an ``EquinoxGRU`` or an ``eqx.nn.GRUCell`` (copies, in the cell's dtype)."""
        cell = _wrap(layer).cell
        arrays = [np.array(getattr(cell, key)) for key in ("weight_ih", "weight_hh")]
        if cell.use_bias:
            arrays += [np.array(cell.bias), np.array(cell.bias_n)]
        return [[from_equinox(*arrays)]]

    def describe(self, layer) -> LayerConfig:
        return _wrap(layer).config

    # ------------------------------------------------------------- running

    def run(self, layer, x, h0=None, mask=None) -> ForwardResult:
        layer = _wrap(layer)
        cell, config = layer.cell, layer.config
        x, h0 = check_run_inputs(x, h0, mask, what=config.label, input_size=cell.input_size,
                                 hidden_size=cell.hidden_size, dtype=layer.dtype)
        if h0 is None:
            h0 = np.zeros((1, x.shape[0], cell.hidden_size), layer.dtype)
        x64 = bool(config.option("x64"))
        with jax_common.precision_context(x64):
            outputs, h_last = _scan(config.reverse)(cell, jax_common.as_jax(x, layer.dtype, x64),
                                                    jax_common.as_jax(h0[0], layer.dtype, x64))
            outputs, h_last = np.asarray(outputs), np.asarray(h_last)
        return ForwardResult(outputs, h_last[None])


    # ------------------------------------------------------------- differentiating

    def gradients(self, layer, x, h0=None, mask=None, d_outputs=None, d_h_last=None):
        """``jax.grad`` of ``sum(outputs * d_outputs) + sum(h_last * d_h_last)`` through the scan ``run``
        executes, with respect to the cell (an ``eqx.nn.GRUCell`` pytree), ``x`` and ``h0``.

        The gradient is a ``GRUCell`` of gradients, read back by the same ``extract`` that reads the weights
        (``from_equinox``): ``weight_ih``/``weight_hh`` rows r|z|n give dW_*/dU_*, ``bias`` (added to the input
        projection) db_r|db_z|db_h, ``bias_n`` (inside the reset product) dc_h; c_z and c_r, which the cell
        lacks, are zeros (not compared); ``use_bias=False``: every bias gradient is zero. ``h0=None``
        differentiates at zeros. Without ``jax_enable_x64`` a float64 request is differentiated in float32.
        """
        from reference.backward import StackGradients

        layer = _wrap(layer)
        cell, config = layer.cell, layer.config
        x, h0 = check_run_inputs(x, h0, mask, what=config.label, input_size=cell.input_size,
                                 hidden_size=cell.hidden_size, dtype=layer.dtype)
        if h0 is None:
            h0 = np.zeros((1, x.shape[0], cell.hidden_size), layer.dtype)
        expected = {"d_outputs": (x.shape[0], x.shape[1], cell.hidden_size), "d_h_last": h0.shape}
        for name, value in (("d_outputs", d_outputs), ("d_h_last", d_h_last)):
            if value is not None and np.shape(value) != expected[name]:
                raise ValueError(f"{name} has shape {np.shape(value)}; it weights an array of shape {expected[name]}")
        x64 = bool(config.option("x64"))
        with jax_common.precision_context(x64):
            d_cell, dx, dh0 = jax_common.loss_gradients(
                _stacked_scan, (cell, jax_common.as_jax(x, layer.dtype, x64), jax_common.as_jax(h0, layer.dtype, x64)),
                {"reverse": config.reverse}, (0, 1, 2), d_outputs, d_h_last, layer.dtype, x64)
        return StackGradients(self.extract(EquinoxGRU(config, d_cell, layer.dtype)), dx, dh0)


def _stacked_scan(cell, x, h0, *, reverse: bool):
    """``run``'s program with ``h0``/``h_last`` as ``(1, batch, hidden)``: the scan ``_scan(reverse)`` jits."""
    outputs, h_last = _scan(reverse)(cell, x, h0[0])
    return outputs, h_last[None]


ADAPTER = EquinoxAdapter()
