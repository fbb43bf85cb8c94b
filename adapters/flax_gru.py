"""Flax: ``flax.linen.GRUCell`` and ``flax.nnx.GRUCell``, each stepped alone over time (``lax.scan``),
through ``RNN`` (also ``reverse=True`` with and without ``keep_order``, and ``seq_lengths``) and
through ``Bidirectional(RNN(GRUCell), RNN(GRUCell))``; every class under JAX's defaults and again
inside ``jax.enable_x64(True)`` (rows ending " + x64"; the float64 policy is ``adapters.jax_common``).

Facts this module relies on, read in the installed flax 0.12.8 (``flax/linen/recurrent.py``,
``flax/nnx/nn/recurrent.py``) and measured (``tests/test_flax_gru.py``):

- The formula, both ``GRUCell`` docstrings (linen recurrent.py:511-514, nnx recurrent.py:599-602):
  ``r = sigma(W_ir x + b_ir + W_hr h)``, ``z = sigma(W_iz x + b_iz + W_hz h)``,
  ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, ``h' = (1 - z) * n + z * h``: z on previous,
  reset after. The code computes the same: linen recurrent.py:588-594, nnx recurrent.py:725-736.
- linen biases (recurrent.py:569-592): the input layers ``ir``/``iz``/``in`` are ``Dense(use_bias=True)``,
  the recurrent ``hr``/``hz`` have no bias ("input and recurrent layers are summed so only one needs a
  bias"), and ``hn`` has one (``dense_h(name='hn', use_bias=True)``, inside ``r * (...)``). Canonically:
  ``b_r``, ``b_z``, ``b_h`` and ``c_h``; no ``c_r``/``c_z`` (they would fold exactly into ``b_r``/``b_z``,
  ``reference.fold_recurrent_biases``). Kernels are ``(in, out)``: ``x @ kernel``, no transpose.
- nnx biases (recurrent.py:670-692): one fused ``dense_i = Linear(I, 3H, use_bias=True)`` with columns
  r|z|n and one fused ``dense_h = Linear(H, 3H, use_bias=False)``, and ``n = tanh(xi_n + r * hh_n)``
  (recurrent.py:733). So nnx holds ``b_r``, ``b_z``, ``b_h`` and **no** ``c_h``: the ``b_hn`` of its own
  docstring (recurrent.py:601) does not exist, unlike linen's. Finding (documentation): a linen or
  PyTorch GRU with a non-zero ``c_h`` cannot be ported into ``nnx.GRUCell`` (under reset-after ``c_h`` is
  scaled by r and does not fold); ``build`` refuses it. Reported upstream as google/flax#5594 (open).
- ``RNN`` (linen recurrent.py:882-1163, nnx recurrent.py:778-928) scans the cell over time; with
  ``reverse=True`` it flips the input with ``flip_sequences`` (linen :1088-1097, nnx :856-865) and
  returns outputs in processing order unless ``keep_order=True`` (linen :1149-1158, docstring :974-981):
  the adapter flips them back (the same ``flip_sequences``) so ``outputs[:, t]`` follows ``x[:, t]``.
  ``Bidirectional`` runs its backward RNN with ``reverse=True, keep_order=True`` and concatenates
  forward|backward (linen :1314-1340, nnx :1121-1146); its carry is ``(forward, backward)``.
- ``seq_lengths``: the scan does not mask. The returned carry is each sequence's state after its
  last valid step (``_select_last_carry`` on the carry history, linen :1138-1145, nnx :904-912), the
  same as carrying the state through the padding; ``reverse`` flips only each sequence's valid part,
  so the padding stays at the end and is consumed last (``flip_sequences`` docstring, linen :1186-1191).
  The outputs at padded steps are the cell's further steps on the padding inputs ("The output elements
  corresponding to padding elements are NOT zeroed out", linen :950): not zeros, not the carried state,
  not the previous output, so no ``masked_output`` mode of ``reference.gru_stack`` models them. The
  ``+ seq_lengths (carry)`` rows therefore compare the carry (``h_last``) only; the outputs at valid
  steps and the padded ones are measured in the tests.
- Precision: both cells take ``dtype``/``param_dtype`` (linen :550-551, nnx :643-644); a float64 request
  without ``jax_enable_x64`` yields float32 parameters and a float32 computation (JAX truncates with a
  UserWarning): the plain rows requested in float64 are a precision finding. The " + x64" rows build
  and run inside ``jax.enable_x64(True)`` and compute in float64.

Not a configuration here: ``flax.linen.MGUCell`` (recurrent.py:617-749; nnx has none). It is the
minimal gated unit: one gate ``f`` serves as both update and reset gate (recurrent.py:625-627). With
``reset_gate=True`` it is exactly a z-on-previous, reset-after GRU whose z and r parameters are tied
(``W_z = W_r``, ``U_z = U_r``, ``b_z = b_r``, ``c_z = c_r = 0``; measured in the tests), but the
comparison matrix's probes use independent z and r gates, which it cannot hold. With
``reset_gate=False`` (recurrent.py:636-639) the candidate has no reset at all (and ``hn`` no bias), a
formula none of the four conventions can express. Cells ``LSTMCell``, ``OptimizedLSTMCell``,
``SimpleCell`` and ``ConvLSTMCell`` are not GRUs.

A framework object here is a ``FlaxGRU`` (configuration, module, and for linen its variables) from
``build``; ``extract``/``describe``/``run`` also take a user's own ``nnx.GRUCell``/``nnx.RNN``/
``nnx.Bidirectional`` module, or a linen ``(module, variables)`` pair. Each forward pass is one
``jax.jit`` program per module structure, shapes and precision, compiled once per distinct program
content (``_execute``): XLA compilation is most of this adapter's time.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import warnings
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

import numpy as np

if importlib.util.find_spec("flax") is None:
    raise ImportError("the flax adapter needs Flax (pip install flax)", name="flax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import linen, nnx  # noqa: E402
from flax.linen import recurrent as linen_recurrent  # noqa: E402
from flax.nnx.nn import recurrent as nnx_recurrent  # noqa: E402

from reference import Convention, GRUParams, Layers, check_layers  # noqa: E402
from reference.params import check_dtype, check_float_array, describe_value  # noqa: E402

from . import jax_common  # noqa: E402
from .base import ALL_BIASES, Adapter, ForwardResult, LayerConfig, mask_lengths  # noqa: E402

CLAIMED = Convention("z_on_previous", "after")
FLAX_VERSION = importlib.metadata.version("flax")
LINEN_SOURCE = "flax/linen/recurrent.py"
NNX_SOURCE = "flax/nnx/nn/recurrent.py"
FORMULA = (r"r = \sigma(W_{ir} x + b_{ir} + W_{hr} h); z = \sigma(W_{iz} x + b_{iz} + W_{hz} h); "
           r"n = \tanh(W_{in} x + b_{in} + r * (W_{hn} h + b_{hn})); h' = (1 - z) * n + z * h")
CLAIM_SOURCES = {
    "linen": f"{LINEN_SOURCE}:511-514 (flax {FLAX_VERSION}), GRUCell docstring: {FORMULA}",
    "nnx": (f"{NNX_SOURCE}:599-602 (flax {FLAX_VERSION}), GRUCell docstring: {FORMULA} "
            f"(its b_hn does not exist: dense_h has use_bias=False, {NNX_SOURCE}:685-692)"),
}
BIASES = {"linen": ("b_z", "b_r", "b_h", "c_h"), "nnx": ("b_z", "b_r", "b_h")}
CELL_LAYOUTS = {
    "linen": ("params ir, iz, in: kernel (I, H) = W_r, W_z, W_h and bias (H,) = b_r, b_z, b_h; hr, hz: kernel "
              "(H, H) = U_r, U_z, no bias; hn: kernel (H, H) = U_h and bias (H,) = c_h (inside r * (...)); "
              "kernels are (in, out), x @ kernel (recurrent.py:569-592)"),
    "nnx": ("dense_i.kernel (I, 3H) columns r|z|n = W_r|W_z|W_h, dense_i.bias (3H,) b_r|b_z|b_h; dense_h.kernel "
            "(H, 3H) columns r|z|n = U_r|U_z|U_h, no bias (use_bias=False); x @ kernel (recurrent.py:670-692)"),
}
WRAPPERS = {
    ("linen", "cell"): "a (module, variables) pair, variables {'params': {...}} as above; carry h (N, H), "
                       "stepped over time with lax.scan",
    ("linen", "rnn"): "variables {'params': {'cell': {...}}}; initial_carry and carry h (N, H)",
    ("linen", "bidirectional"): "variables {'params': {'forward_rnn': {'cell': ...}, 'backward_rnn': {'cell': ...}}}; "
                                "carry (h_forward, h_backward), outputs concatenated forward|backward",
    ("nnx", "cell"): "carry h (N, H), stepped over time with lax.scan",
    ("nnx", "rnn"): "rnn.cell holds the weights; initial_carry and carry h (N, H)",
    ("nnx", "bidirectional"): "forward_rnn.cell and backward_rnn.cell; carry (h_forward, h_backward), outputs "
                              "concatenated forward|backward",
}
OUT_OF_ORDER = ("; reverse=True without keep_order returns outputs in processing order (recurrent.py docstring "
                "'returned in reverse order'): the adapter flips them back with flip_sequences")
MASKED_PADDING = (
    "seq_lengths: the carry is each sequence's state after its last valid step (_select_last_carry), as if carried "
    "through the padding; reverse=True flips only the valid part, so the padding is consumed last. The scan is not "
    "masked: outputs at padded steps are the cell's further steps on the padding inputs ('NOT zeroed out', "
    f"{LINEN_SOURCE}:950), which no masked_output mode models, so this row compares the carry only"
)


def _name(api: str, kind: str, reverse: bool, keep_order: bool, masked: bool, x64: bool) -> str:
    if kind == "cell":
        name = f"{api}.GRUCell"
    elif kind == "rnn":
        flags = (", reverse=True" if reverse else "") + (", keep_order=True" if keep_order else "")
        name = f"{api}.RNN(GRUCell{flags})"
    else:
        name = f"{api}.Bidirectional(RNN(GRUCell), RNN(GRUCell))"
    return name + (" + seq_lengths (carry)" if masked else "") + (" + x64" if x64 else "")


NNX_MISSING_BIAS = (
    "nnx.GRUCell's docstring gives the candidate as tanh(W_in x + b_in + r * (W_hn h + b_hn)) "
    "(flax/nnx/nn/recurrent.py:601, flax 0.12.8), but dense_h is built with use_bias=False (:686-687): the class "
    "has no b_hn (c_h), so a linen or PyTorch GRU with a non-zero c_h cannot be ported into it (google/flax#5594)"
)


def _config(api: str, kind: str, reverse: bool = False, keep_order: bool = False, masked: bool = False,
            x64: bool = False) -> LayerConfig:
    layout = f"{CELL_LAYOUTS[api]}; {WRAPPERS[api, kind]}"
    if reverse and not keep_order:
        layout += OUT_OF_ORDER
    return LayerConfig(
        framework="flax", name=_name(api, kind, reverse, keep_order, masked, x64), claimed=CLAIMED,
        bidirectional=kind == "bidirectional", reverse=reverse, masked=masked, returns_sequences=not masked,
        biases=BIASES[api], claim_source=CLAIM_SOURCES[api], layout=layout,
        padding=MASKED_PADDING if masked else "",
        options=(("api", api), ("kind", kind), ("keep_order", keep_order), ("x64", x64)),
        documentation_findings=(NNX_MISSING_BIAS,) if api == "nnx" else (),
    )


CONFIGURATIONS = tuple(
    config
    for api in ("linen", "nnx")
    for config in (
        _config(api, "cell"),
        _config(api, "rnn"),
        _config(api, "rnn", reverse=True, keep_order=True),
        _config(api, "rnn", reverse=True),
        _config(api, "rnn", masked=True),
        _config(api, "rnn", reverse=True, keep_order=True, masked=True),
        _config(api, "bidirectional"),
        _config(api, "bidirectional", masked=True),
        # What a user must do to get float64: every class again inside jax.enable_x64(True).
        _config(api, "cell", x64=True),
        _config(api, "rnn", x64=True),
        _config(api, "bidirectional", masked=True, x64=True),
    )
)


@dataclass(frozen=True, eq=False)
class FlaxGRU:
    """A Flax GRU as ``build`` made it: the real module (nnx: holding its parameters; linen: with its
    ``variables``), the configuration it computes and the dtype that was requested."""

    config: LayerConfig
    module: Any
    variables: Any
    dtype: np.dtype

    def __repr__(self) -> str:
        return f"FlaxGRU({self.config.name}, {type(self.module).__module__}.{type(self.module).__name__}, {self.dtype})"


# ----------------------------------------------------------------- framework objects <-> canonical parameters


class _Quiet:
    def __enter__(self):
        self._context = warnings.catch_warnings()
        self._context.__enter__()
        warnings.filterwarnings("ignore", message=r"Explicitly requested dtype .* is not available")

    def __exit__(self, *exc):
        return self._context.__exit__(*exc)


def _numpy(array) -> np.ndarray:
    return np.array(array)  # a copy, never a view of a JAX buffer


def _linen_cell_params(tree, where: str) -> GRUParams:
    try:
        p = {name: tree[name] for name in ("ir", "iz", "in", "hr", "hz", "hn")}
        unexpected = [f"{name}/bias" for name in ("hr", "hz") if "bias" in p[name]]
        if unexpected:
            raise ValueError(f"{where} has {', '.join(unexpected)}, which linen.GRUCell never creates")
        zero = np.zeros_like(_numpy(p["hn"]["bias"]))
        return GRUParams(
            W_z=_numpy(p["iz"]["kernel"]), W_r=_numpy(p["ir"]["kernel"]), W_h=_numpy(p["in"]["kernel"]),
            U_z=_numpy(p["hz"]["kernel"]), U_r=_numpy(p["hr"]["kernel"]), U_h=_numpy(p["hn"]["kernel"]),
            b_z=_numpy(p["iz"]["bias"]), b_r=_numpy(p["ir"]["bias"]), b_h=_numpy(p["in"]["bias"]),
            c_z=zero, c_r=zero, c_h=_numpy(p["hn"]["bias"]),
        )
    except (KeyError, TypeError) as error:
        keys = sorted(tree) if hasattr(tree, "keys") else describe_value(tree)
        raise ValueError(f"{where} is not a linen.GRUCell's parameters (missing {error}; it holds {keys})") from None


def _linen_cell_tree(params: GRUParams, dtype, x64: bool) -> dict:
    def j(array):
        return jax_common.as_jax(array, dtype, x64)

    return {
        "ir": {"kernel": j(params.W_r), "bias": j(params.b_r)},
        "iz": {"kernel": j(params.W_z), "bias": j(params.b_z)},
        "in": {"kernel": j(params.W_h), "bias": j(params.b_h)},
        "hr": {"kernel": j(params.U_r)},
        "hz": {"kernel": j(params.U_z)},
        "hn": {"kernel": j(params.U_h), "bias": j(params.c_h)},
    }


def _nnx_cell_params(cell) -> GRUParams:
    kernel_i, bias_i = _numpy(cell.dense_i.kernel[...]), _numpy(cell.dense_i.bias[...])
    kernel_h = _numpy(cell.dense_h.kernel[...])
    if getattr(cell.dense_h, "bias", None) is not None:
        raise ValueError("this nnx.GRUCell's dense_h has a bias, which flax 0.12.8 never creates; the adapter "
                         "does not know where it enters the formula")
    H = cell.hidden_features
    r, z, h = slice(0, H), slice(H, 2 * H), slice(2 * H, 3 * H)
    zero = np.zeros_like(bias_i[:H])
    return GRUParams(W_z=kernel_i[:, z], W_r=kernel_i[:, r], W_h=kernel_i[:, h],
                     U_z=kernel_h[:, z], U_r=kernel_h[:, r], U_h=kernel_h[:, h],
                     b_z=bias_i[z], b_r=bias_i[r], b_h=bias_i[h], c_z=zero, c_r=zero, c_h=zero)


def _nnx_cell(params: GRUParams, dtype, x64: bool):
    jdtype = jnp.float64 if np.dtype(dtype) == np.float64 else jnp.float32
    # Every parameter is overwritten below; zero initialisers only spare the orthogonal init's QR (seconds).
    zeros = nnx.initializers.zeros_init()
    cell = nnx.GRUCell(params.input_size, params.hidden_size, dtype=jdtype, param_dtype=jdtype, kernel_init=zeros,
                       recurrent_kernel_init=zeros, bias_init=zeros, rngs=nnx.Rngs(0))

    def j(*arrays):
        return jax_common.as_jax(np.concatenate(arrays, axis=-1), dtype, x64)

    cell.dense_i.kernel.set_value(j(params.W_r, params.W_z, params.W_h))
    cell.dense_i.bias.set_value(j(params.b_r, params.b_z, params.b_h))
    cell.dense_h.kernel.set_value(j(params.U_r, params.U_z, params.U_h))
    return cell


def _linen_params_root(variables):
    if hasattr(variables, "keys") and "params" in variables:
        return variables["params"]
    return variables


def _linen_cells(module, variables) -> list:
    root = _linen_params_root(variables)
    if isinstance(module, linen.GRUCell):
        return [(root, "params")]
    if isinstance(module, linen.RNN):
        return [(root["cell"], "params['cell']")]
    return [(root["forward_rnn"]["cell"], "params['forward_rnn']['cell']"),
            (root["backward_rnn"]["cell"], "params['backward_rnn']['cell']")]


def _nnx_cells(module) -> list:
    if isinstance(module, nnx.GRUCell):
        return [module]
    if isinstance(module, nnx.RNN):
        return [module.cell]
    return [module.forward_rnn.cell, module.backward_rnn.cell]


def _api_and_kind(module) -> tuple[str, str]:
    """Which class ``module`` is, or a TypeError naming what it is instead."""
    for api, lib in (("linen", linen), ("nnx", nnx)):
        if isinstance(module, lib.GRUCell):
            return api, "cell"
        if isinstance(module, lib.RNN):
            if not isinstance(module.cell, lib.GRUCell):
                raise TypeError(f"{api}.RNN runs a {type(module.cell).__name__}, not a {api}.GRUCell: this adapter "
                                f"measures GRU cells only")
            return api, "rnn"
        if isinstance(module, lib.Bidirectional):
            for side in ("forward_rnn", "backward_rnn"):
                rnn = getattr(module, side)
                if not isinstance(rnn, lib.RNN) or not isinstance(rnn.cell, lib.GRUCell):
                    raise TypeError(f"{api}.Bidirectional's {side} is {describe_value(rnn)}; expected {api}.RNN(GRUCell)")
            merge = linen_recurrent._concatenate if api == "linen" else nnx_recurrent._concatenate
            if module.merge_fn is not merge:
                shown = getattr(module.merge_fn, "__name__", None) or describe_value(module.merge_fn)
                raise TypeError(f"{api}.Bidirectional has merge_fn {shown}; only the default "
                                f"concatenation (forward|backward) maps onto the reference")
            return api, "bidirectional"
    raise TypeError(
        f"expected a FlaxGRU from adapters.get('flax').build, an nnx.GRUCell / nnx.RNN(GRUCell) / "
        f"nnx.Bidirectional module, or a linen (module, variables) pair; got {describe_value(module)}"
    )


def _check_cells_are_plain(api: str, cells) -> None:
    """A cell with another gate or candidate activation computes another formula than the docstring's."""
    for cell in cells:
        for attribute, default in (("gate_fn", linen.sigmoid if api == "linen" else nnx.sigmoid),
                                   ("activation_fn", linen.tanh if api == "linen" else nnx.tanh)):
            function = getattr(cell, attribute)
            if function is not default:
                shown = getattr(function, "__name__", None) or describe_value(function)
                raise TypeError(f"{api}.GRUCell has {attribute}={shown}; this "
                                f"adapter maps only the default sigmoid gates and tanh candidate onto the reference")


def _unwrap(layer) -> tuple[LayerConfig, Any, Any, np.dtype]:
    """``(config, module, variables, requested dtype)`` of a FlaxGRU, an nnx module or a linen pair."""
    if isinstance(layer, FlaxGRU):
        return layer.config, layer.module, layer.variables, layer.dtype
    if isinstance(layer, tuple) and len(layer) == 2 and isinstance(layer[0], linen.Module):
        module, variables = layer
    elif isinstance(layer, linen.Module):
        raise TypeError(f"got a linen {type(layer).__name__} without its variables: a linen module holds no "
                        f"parameters; pass (module, variables), variables as returned by module.init")
    else:
        module, variables = layer, None
    api, kind = _api_and_kind(module)
    if api == "linen":
        cells = [module] if kind == "cell" else (
            [module.cell] if kind == "rnn" else [module.forward_rnn.cell, module.backward_rnn.cell])
        _check_cells_are_plain(api, cells)
        leaves = jax.tree_util.tree_leaves(_linen_params_root(variables))
    else:
        _check_cells_are_plain(api, _nnx_cells(module))
        leaves = [_nnx_cells(module)[0].dense_i.kernel[...]]
    if not leaves:
        raise ValueError(f"the {api} {type(module).__name__}'s variables hold no arrays")
    dtype = np.dtype(leaves[0].dtype)
    reverse = kind == "rnn" and bool(module.reverse)
    keep_order = kind == "rnn" and bool(module.keep_order)
    config = _config(api, kind, reverse=reverse, keep_order=keep_order and reverse, x64=dtype == np.float64)
    return config, module, variables, dtype


@lru_cache(maxsize=64)
def _linen_init_shapes(module, input_size: int, x64: bool):
    """The shapes of the parameters Flax's own ``module.init`` creates (traced abstractly, once)."""
    if isinstance(module, linen.GRUCell):
        arguments = (jax.ShapeDtypeStruct((1, module.features), jnp.float32),
                     jax.ShapeDtypeStruct((1, input_size), jnp.float32))
    else:
        arguments = (jax.ShapeDtypeStruct((1, 1, input_size), jnp.float32),)
    expected = jax.eval_shape(module.init, jax.random.key(0), *arguments)
    return jax.tree_util.tree_map(lambda a: a.shape, expected)


# ----------------------------------------------------------------- the programs, compiled once per structure


def _scan_cell(step, h0, x):
    h_last, outputs = jax.lax.scan(step, h0, jnp.swapaxes(x, 0, 1))
    return jnp.swapaxes(outputs, 0, 1), h_last[None]


def _after_rnn(carry, outputs, lengths, kind: str, realign: bool):
    if kind == "bidirectional":
        return outputs, jnp.stack(carry)
    if realign:  # processing order back to input order; flip_sequences is its own inverse
        outputs = linen_recurrent.flip_sequences(outputs, lengths, num_batch_dims=1, time_major=False)
    return outputs, carry[None]


def _initial_carry(h0, kind: str):
    if h0 is None:
        return None
    return (h0[0], h0[1]) if kind == "bidirectional" else h0[0]


@partial(jax.jit, static_argnames=("module", "kind", "realign"))
def _linen_program(variables, x, h0, lengths, *, module, kind, realign):
    if kind == "cell":
        if h0 is None:
            h0 = module.initialize_carry(jax.random.key(0), x[:, 0].shape)[None]
        return _scan_cell(lambda h, x_t: module.apply(variables, h, x_t), h0[0], x)
    carry, outputs = module.apply(variables, x, initial_carry=_initial_carry(h0, kind), seq_lengths=lengths,
                                  return_carry=True, time_major=False)
    return _after_rnn(carry, outputs, lengths, kind, realign)


@partial(jax.jit, static_argnames=("graphdef", "kind", "realign"))
def _nnx_program(state, x, h0, lengths, *, graphdef, kind, realign):
    module = nnx.merge(graphdef, state)
    if kind == "cell":
        if h0 is None:
            h0 = module.initialize_carry(x[:, 0].shape, rngs=nnx.Rngs(0))[None]
        return _scan_cell(lambda h, x_t: module(h, x_t), h0[0], x)
    carry, outputs = module(x, initial_carry=_initial_carry(h0, kind), seq_lengths=lengths, return_carry=True,
                            time_major=False)
    return _after_rnn(carry, outputs, lengths, kind, realign)


def _nnx_split_program(params, rest, x, h0, lengths, *, graphdef, kind, realign):
    """``_nnx_program`` with the state split into its ``nnx.Param`` leaves (differentiated) and the rest (the
    cells' RNG counters and keys, integers that ``jax.grad`` cannot take)."""
    module = nnx.merge(graphdef, params, rest)
    if kind == "cell":
        return _scan_cell(lambda h, x_t: module(h, x_t), h0[0], x)
    carry, outputs = module(x, initial_carry=_initial_carry(h0, kind), seq_lengths=lengths, return_carry=True,
                            time_major=False)
    return _after_rnn(carry, outputs, lengths, kind, realign)


_EXECUTABLES: dict = {}  # (program, static arguments, argument structure and shapes, x64) -> compiled
_BY_CONTENT: dict = {}  # (argument structure, lowered program text) -> compiled
_CACHE_LIMIT = 256


def _execute(program, args: tuple, statics: dict):
    """``program(*args, **statics)``, compiled once per distinct program *content*.

    ``jax.jit`` caches by the static arguments, so a float64 request without x64 (a module with
    ``dtype=float64`` that computes in float32) and a float32 one compile the same XLA program twice;
    XLA compilation dominates the adapter's time (about 0.5 s a program here). Keyed by the lowered
    program's text, each distinct program compiles once, and exactly that executable runs.
    """
    leaves, treedef = jax.tree_util.tree_flatten(args)
    signature = tuple((leaf.shape, str(leaf.dtype)) for leaf in leaves)
    key = (program, tuple(sorted(statics.items(), key=lambda item: item[0])), treedef, signature,
           bool(jax.config.jax_enable_x64))
    compiled = _EXECUTABLES.get(key)
    if compiled is None:
        lowered = program.lower(*args, **statics)
        content = (treedef, lowered.as_text())
        compiled = _BY_CONTENT.get(content)
        if compiled is None:
            compiled = lowered.compile()
        if len(_EXECUTABLES) >= _CACHE_LIMIT:
            _EXECUTABLES.clear()
            _BY_CONTENT.clear()
        _EXECUTABLES[key] = _BY_CONTENT[content] = compiled
    return compiled(*args)


# ----------------------------------------------------------------- the adapter


class FlaxAdapter(Adapter):
    name = "flax"

    def versions(self) -> dict[str, str]:
        return {"flax": FLAX_VERSION, **jax_common.versions()}

    def configurations(self) -> list[LayerConfig]:
        return list(CONFIGURATIONS)

    def build(self, config: LayerConfig, layers: Layers, dtype) -> FlaxGRU:
        if not isinstance(config, LayerConfig) or config.framework != "flax":
            raise TypeError(f"config is {describe_value(config)}; expected one of adapters.get('flax').configurations()")
        num_layers, directions = check_layers(layers, config.merge)
        if (num_layers, directions) != (config.num_layers, config.directions):
            raise ValueError(
                f"{config.label} needs {config.num_layers} layer(s) x {config.directions} direction(s), "
                f"the parameters have {num_layers} x {directions}"
            )
        dtype = check_dtype(dtype)
        api, kind, x64 = config.option("api"), config.option("kind"), config.option("x64")
        absent = [name for name in ALL_BIASES if name not in config.bias_fields]
        for direction, params in enumerate(layers[0]):
            nonzero = [name for name in absent if np.any(getattr(params, name) != 0)]
            if nonzero:
                way_out = ("c_z and c_r fold exactly into b_z and b_r (reference.fold_recurrent_biases); "
                           if api == "linen" else
                           "c_z and c_r fold exactly into b_z and b_r; c_h does not (it is scaled by r): use "
                           "linen.GRUCell, whose hn layer holds it; ")
                raise ValueError(
                    f"layers[0][{direction}] has non-zero biases {', '.join(nonzero)}, which {config.label} cannot "
                    f"hold (it keeps only {', '.join(config.bias_fields)}); {way_out}or zero them deliberately if "
                    f"that is the model you want"
                )
        jdtype = jnp.float64 if dtype == np.float64 else jnp.float32
        with jax_common.precision_context(x64), _Quiet():
            if api == "linen":
                cell = partial(linen.GRUCell, features=layers[0][0].hidden_size, dtype=jdtype, param_dtype=jdtype)
                trees = [_linen_cell_tree(params, dtype, x64) for params in layers[0]]
                if kind == "cell":
                    module, root = cell(), trees[0]
                elif kind == "rnn":
                    module = linen.RNN(cell(), reverse=config.reverse, keep_order=config.option("keep_order"))
                    root = {"cell": trees[0]}
                else:
                    module = linen.Bidirectional(linen.RNN(cell()), linen.RNN(cell()))
                    root = {"forward_rnn": {"cell": trees[0]}, "backward_rnn": {"cell": trees[1]}}
                variables = {"params": root}
                self._check_linen_structure(module, variables, layers[0][0].input_size)
            else:
                cells = [_nnx_cell(params, dtype, x64) for params in layers[0]]
                if kind == "cell":
                    module = cells[0]
                elif kind == "rnn":
                    module = nnx.RNN(cells[0], reverse=config.reverse, keep_order=config.option("keep_order"))
                else:
                    module = nnx.Bidirectional(nnx.RNN(cells[0]), nnx.RNN(cells[1]))
                variables = None
        layer = FlaxGRU(config, module, variables, dtype)
        self._check_holds_exactly(layer, layers)
        return layer

    @staticmethod
    def _check_linen_structure(module, variables, input_size: int) -> None:
        """Our parameter tree has the very structure and shapes Flax's own ``init`` creates."""
        shapes = _linen_init_shapes(module, input_size, bool(jax.config.jax_enable_x64))
        ours = jax.tree_util.tree_map(lambda a: a.shape, variables)
        if shapes != ours:
            raise RuntimeError(f"Flax {FLAX_VERSION} builds {type(module).__name__} with parameters {shapes}; the "
                               f"adapter wrote {ours}: the layout changed, update adapters/flax_gru.py")

    def _check_holds_exactly(self, layer: FlaxGRU, layers: Layers) -> None:
        """Read the weights back from the framework object: bit for bit what was asked (in what JAX holds:
        float32 for a float64 request without x64)."""
        held = self.extract(layer)[0]
        for direction, (ours, theirs) in enumerate(zip(layers[0], held, strict=True)):
            wanted = ours.astype(theirs.dtype)
            if not wanted.identical(theirs):
                raise RuntimeError(f"{layer.config.label}: the built module does not hold layers[0][{direction}] "
                                   f"exactly: {wanted.first_difference(theirs)}")

    def extract(self, layer) -> list[list[GRUParams]]:
        """Canonical parameters (copies) of a FlaxGRU, an nnx GRU module or a linen ``(module, variables)`` pair."""
        config, module, variables, _ = _unwrap(layer)
        if config.option("api") == "linen":
            return [[_linen_cell_params(tree, where) for tree, where in _linen_cells(module, variables)]]
        return [[_nnx_cell_params(cell) for cell in _nnx_cells(module)]]

    def describe(self, layer) -> LayerConfig:
        return _unwrap(layer)[0]

    def run(self, layer, x, h0=None, mask=None) -> ForwardResult:
        config, module, variables, dtype = _unwrap(layer)
        api, kind, x64 = config.option("api"), config.option("kind"), config.option("x64")
        input_size, hidden = self._sizes(api, module, variables)
        x = check_float_array("x", x)
        if x.dtype != dtype:
            raise TypeError(f"x has dtype {x.dtype} but the layer was built for {dtype}; pass x.astype(np.{dtype})")
        if x.ndim != 3 or x.shape[2] != input_size or 0 in x.shape:
            raise ValueError(f"x has shape {x.shape}; expected (batch, time, input_size={input_size}), none empty")
        if h0 is not None:
            h0 = check_float_array("h0", h0, (config.directions, x.shape[0], hidden))
            if h0.dtype != dtype:
                raise TypeError(f"h0 has dtype {h0.dtype} but the layer was built for {dtype}; pass h0.astype(np.{dtype})")
        lengths = None
        if mask is not None:
            if kind == "cell":
                raise ValueError(f"{api}.GRUCell has no notion of padding; run it without a mask, or through "
                                 f"{api}.RNN(GRUCell) with seq_lengths")
            if np.shape(mask) != x.shape[:2]:
                raise ValueError(f"mask has shape {np.shape(mask)}; expected (batch, time) = {x.shape[:2]}")
            lengths = mask_lengths(mask)
        realign = kind == "rnn" and config.reverse and not config.option("keep_order")
        with jax_common.precision_context(x64), _Quiet():
            jx = jax_common.as_jax(x, dtype, x64)
            jh0 = None if h0 is None else jax_common.as_jax(h0, dtype, x64)
            jlengths = None if lengths is None else jnp.asarray(lengths, jnp.int32)
            if api == "linen":
                outputs, h_last = _execute(_linen_program, (variables, jx, jh0, jlengths),
                                           {"module": module, "kind": kind, "realign": realign})
            else:
                graphdef, state = nnx.split(module)
                outputs, h_last = _execute(_nnx_program, (state, jx, jh0, jlengths),
                                           {"graphdef": graphdef, "kind": kind, "realign": realign})
            outputs, h_last = _numpy(outputs), _numpy(h_last)
        return ForwardResult(outputs if config.returns_sequences else None, h_last)

    def gradients(self, layer, x, h0=None, mask=None, d_outputs=None, d_h_last=None):
        """``jax.grad`` of ``sum(outputs * d_outputs) + sum(h_last * d_h_last)`` through the very program ``run``
        executes (``_linen_program`` / the nnx one), with respect to the parameters, ``x`` and ``h0``.

        linen: the gradient is a variables tree of the module's own structure, read back into canonical
        ``GRUParams`` by the same ``_linen_cell_params`` that reads the weights (ir/iz/in kernels and biases,
        hr/hz kernels, hn kernel and bias = c_h); c_z and c_r, which linen lacks, are zeros. nnx: the
        gradient of the ``nnx.Param`` state is merged into a module of gradients and read by the same
        ``_nnx_cell_params`` (dense_i columns r|z|n, dense_h columns r|z|n); the class has no recurrent bias,
        so c_* are zeros. Those zeros are not compared (``config.bias_fields``). ``h0=None`` differentiates at
        zero initial states (what ``run`` starts from). With ``seq_lengths`` the rows compare the carry only
        (``returns_sequences=False``: ``d_outputs`` is None). Without ``jax_enable_x64`` a float64 request is
        differentiated in float32, as it runs. Nothing of ``layer`` is changed (JAX arrays are immutable).
        """
        from reference.backward import StackGradients

        config, module, variables, dtype = _unwrap(layer)
        api, kind, x64 = config.option("api"), config.option("kind"), config.option("x64")
        forward = self.run(layer, x, h0, mask)  # the same argument checks, and the shapes of what is weighted
        if d_outputs is not None and forward.outputs is not None and np.shape(d_outputs) != forward.outputs.shape:
            raise ValueError(f"d_outputs has shape {np.shape(d_outputs)}; the outputs are {forward.outputs.shape}")
        if d_h_last is not None and np.shape(d_h_last) != forward.h_last.shape:
            raise ValueError(f"d_h_last has shape {np.shape(d_h_last)}; h_last is {forward.h_last.shape}")
        x = np.asarray(x)
        if h0 is None:
            h0 = np.zeros(forward.h_last.shape, dtype)
        lengths = None if mask is None else mask_lengths(mask)
        realign = kind == "rnn" and config.reverse and not config.option("keep_order")
        d_outputs = d_outputs if config.returns_sequences else None
        with jax_common.precision_context(x64), _Quiet():
            jx, jh0 = jax_common.as_jax(x, dtype, x64), jax_common.as_jax(h0, dtype, x64)
            jlengths = None if lengths is None else jnp.asarray(lengths, jnp.int32)
            if api == "linen":
                d_variables, dx, dh0 = jax_common.loss_gradients(
                    _linen_program, (variables, jx, jh0, jlengths),
                    {"module": module, "kind": kind, "realign": realign}, (0, 1, 2), d_outputs, d_h_last, dtype, x64)
                cells = [_linen_cell_params(tree, where) for tree, where in _linen_cells(module, d_variables)]
            else:
                graphdef, params, rest = nnx.split(module, nnx.Param, ...)
                d_params, dx, dh0 = jax_common.loss_gradients(
                    _nnx_split_program, (params, rest, jx, jh0, jlengths),
                    {"graphdef": graphdef, "kind": kind, "realign": realign}, (0, 2, 3), d_outputs, d_h_last,
                    dtype, x64)
                cells = [_nnx_cell_params(cell) for cell in _nnx_cells(nnx.merge(graphdef, d_params, rest))]
        return StackGradients([cells], dx, dh0)

    @staticmethod
    def _sizes(api: str, module, variables) -> tuple[int, int]:
        """``(input_size, hidden_size)`` read off the framework object."""
        if api == "linen":
            tree = _linen_cells(module, variables)[0][0]
            return tuple(tree["ir"]["kernel"].shape)
        cell = _nnx_cells(module)[0]
        return cell.in_features, cell.hidden_features


ADAPTER = FlaxAdapter()
