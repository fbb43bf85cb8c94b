"""Keras 3 on the JAX and the torch backends, each in its own worker process; and what every Keras
backend shares without importing Keras: the configuration table, its claims and layouts, and the
checks of ``run()``'s arguments.

Keras 3 picks its backend once per process, at import (``keras/src/backend/config.py``: the
``KERAS_BACKEND`` environment variable, read when ``keras`` is first imported), and the suite's own
process already runs Keras on TensorFlow (the ``keras`` adapter). So ``keras-jax`` and
``keras-torch`` never import Keras here: ``build()`` validates the parameters with NumPy and returns
a picklable ``IsolatedKerasLayer`` (configuration + parameters + dtype); ``run()`` and ``extract()``
send it to one long-lived worker per backend (``adapters.isolation``, started with
``KERAS_BACKEND=jax`` / ``torch``), which builds the real layer there with the very code of
``adapters.keras_layers`` and runs or reads it in the same call.

What differs between backends, read in the installed Keras 3.15.1 and measured
(``tests/test_keras_backends.py``):

- The formula is one piece of code, ``GRUCell.call`` (``keras/src/layers/rnn/gru.py:182-298``),
  except where a backend takes ``GRU.inner_loop``'s fast path (``gru.py:547-597``, ``backend.gru``):
  without a mask and with ``reset_after=True``, JAX runs its own ``lax.scan``
  (``keras/src/backend/jax/rnn.py:470-529``: ``hh = activation(x_h + r * h_h)``, ``:520``;
  ``h_new = z * h + (1 - z) * hh``, ``:522``) and torch on CPU its ``_fallback_gru``
  (``keras/src/backend/torch/rnn.py:909-957``: ``:949-950``, the same two lines). TensorFlow's
  ``backend.gru`` is cuDNN only (``keras/src/backend/tensorflow/rnn.py:449-500``).
- Padding: TensorFlow (``tensorflow/rnn.py:171-174``) and torch (``torch/rnn.py:251-253``, ``:306``)
  repeat the previous *output* at a masked step, zeros before the first real step. JAX repeats the
  previous *state* (``jax/rnn.py:164-166``: "Assume the first state is the previous output."), so
  with ``go_backwards=True`` and right padding, whose padded steps come first, JAX outputs ``h0``
  there where the others output zeros. ``Bidirectional`` forces zeros on every backend
  (``keras/src/layers/rnn/bidirectional.py:137-143``).
- Precision: JAX computes in float32 unless ``jax_enable_x64`` is on; a Keras layer built with
  ``dtype="float64"`` then reports ``compute_dtype == "float64"`` while its weights and outputs are
  float32. The ``keras-jax`` table keeps the plain rows (what users get: the precision verdict
  reports it) and adds rows marked ``x64`` that build and run inside ``jax.enable_x64(True)``.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass

import numpy as np

from reference import Convention, GRUParams, Layers, layouts
from reference.params import INPUT_BIASES, RECURRENT_BIASES

from . import isolation
from .base import Adapter, ForwardResult, LayerConfig, check_layer_structure, check_run_inputs

if importlib.util.find_spec("keras") is None:
    raise ImportError("keras is not installed", name="keras")

DTYPES = ("float32", "float64")
KERAS_VERSION = importlib.metadata.version("keras")
# Set in a worker's environment together with KERAS_BACKEND: adapters.keras_layers then serves that
# backend instead of refusing to load (in the suite's own process Keras must be TensorFlow).
WORKER_BACKEND_VARIABLE = "GRU_EQUIV_KERAS_WORKER_BACKEND"

# The GRUCell docstring (gru.py:55-57) and GRU's (gru.py:442-444): reset_after=False is "before",
# True is "after"; both blend z on the previous state (gru.py:296).
CLAIMED = {True: Convention("z_on_previous", "after"), False: Convention("z_on_previous", "before")}
_GRU_PY = f"keras/src/layers/rnn/gru.py:{{line}} (keras {KERAS_VERSION})"
CLAIM_SOURCES = {
    True: (
        _GRU_PY.format(line=287) + ': "recurrent_h = r * recurrent_h", recurrent_h being '
        '"ops.matmul(h_tm1, self.recurrent_kernel)" + recurrent_bias (:270-272), then '
        '"h = z * h_tm1 + (1 - z) * hh" (:296); the reset_after docstring (:55-57): '
        '"False = \\"before\\", True = \\"after\\" (default and cuDNN compatible)"'
    ),
    False: (
        _GRU_PY.format(line=289) + ': "recurrent_h = ops.matmul(r * h_tm1, self.recurrent_kernel[:, 2 * self.units :])", '
        'then "h = z * h_tm1 + (1 - z) * hh" (:296); the reset_after docstring (:55-57): '
        '"False = \\"before\\", True = \\"after\\""'
    ),
}
BACKEND_FAST_PATHS = {
    "jax": f"keras/src/backend/jax/rnn.py:520-522 (keras {KERAS_VERSION}): "
           '"hh = activation(x_h + r * h_h)", "h_new = z * h + (1 - z) * hh"',
    "torch": f"keras/src/backend/torch/rnn.py:949-950 (keras {KERAS_VERSION}): "
             '"hh = activation(x_h + r * h_h)", "h = z * h + (1.0 - z) * hh"',
}
JAX_CARRY_PADDING = (
    "padded steps keep the state; the output repeats the previous state, not the previous output "
    f"(keras/src/backend/jax/rnn.py:164-166, keras {KERAS_VERSION}): the same after a real step, but "
    "h0, not zeros, at padded steps processed before the first real one (go_backwards with right padding)"
)


def dtype_name(dtype) -> str:
    name = np.dtype(dtype).name
    if name not in DTYPES:
        raise ValueError(f"dtype {name} is not supported; use float32 or float64")
    return name


# ----------------------------------------------------------------- the configuration table


def keras_layout(reset_after: bool, bias: bool, num_layers: int, bidirectional: bool, merge: str) -> str:
    weights = "kernel (I, 3H) columns z|r|h; recurrent_kernel (H, 3H) columns z|r|h; "
    if not bias:
        weights += "no bias (use_bias=False)"
    elif reset_after:
        weights += "bias (2, 3H): row 0 input b_z|b_r|b_h, row 1 recurrent c_z|c_r|c_h"
    else:
        weights += "bias (3H,) input b_z|b_r|b_h only (no recurrent bias)"
    if bidirectional:
        weights = f"forward_layer and backward_layer each: {weights}"
    if num_layers > 1:
        width = "2H (concat)" if bidirectional and merge == "concat" else "H"
        weights = f"a list of {num_layers} layers, each: {weights}; layer k > 0 has I = {width}"
    return f"get_weights() = [kernel, recurrent_kernel{', bias' if bias else ''}]: {weights}"


def _biases(reset_after: bool, bias: bool) -> tuple[str, ...]:
    if not bias:
        return ()
    return INPUT_BIASES + RECURRENT_BIASES if reset_after else INPUT_BIASES


def masked_output_for(backend: str, zero_output: bool) -> str:
    if zero_output:
        return "zero"
    return "carry" if backend == "jax" else "previous_output"


def keras_config(framework: str, backend: str, name: str, reset_after: bool = True, kind: str = "GRU",
            x64: bool = False, zero_output: bool | None = None, **fields) -> LayerConfig:
    """One configuration; ``zero_output`` (default: Bidirectional's forced ``zero_output_for_mask``)
    and ``backend`` decide what a masked step outputs."""
    bias = fields.get("bias", True)
    bidirectional = fields.get("bidirectional", False)
    masked_output = masked_output_for(backend, zero_output=bidirectional if zero_output is None else zero_output)
    claim_source = CLAIM_SOURCES[reset_after]
    uses_fast_path = (kind == "GRU" and reset_after and not fields.get("masked", False) and backend in BACKEND_FAST_PATHS)
    if uses_fast_path:
        claim_source += f"; this row runs the backend's own GRU loop, {BACKEND_FAST_PATHS[backend]}"
    options = (("kind", kind), ("reset_after", reset_after)) + ((("x64", True),) if x64 else ())
    return LayerConfig(
        framework=framework, name=name, claimed=CLAIMED[reset_after], options=options,
        separate_recurrent_bias=reset_after, masked_output=masked_output,
        padding=JAX_CARRY_PADDING if masked_output == "carry" and fields.get("masked") else "",
        biases=_biases(reset_after, bias), claim_source=claim_source,
        layout=keras_layout(reset_after, bias, fields.get("num_layers", 1), bidirectional, fields.get("merge", "concat")),
        **fields,
    )


def configurations_for(framework: str, backend: str) -> list[LayerConfig]:
    """The Keras configurations, the same on every backend; ``backend`` decides padding and fast paths."""
    def config(*args, **fields):
        return keras_config(framework, backend, *args, **fields)

    configs = []
    for reset_after in (True, False):
        tag = f"reset_after={reset_after}"
        configs += [
            config(f"GRU({tag})", reset_after),
            config(f"GRU({tag}, use_bias=False)", reset_after, bias=False),
            config(f"GRU({tag}) + mask", reset_after, masked=True),
            config(f"RNN(GRUCell({tag}))", reset_after, kind="RNN(GRUCell)"),
        ]
    configs += [
        config("GRU(go_backwards=True)", reverse=True),
        config("GRU(go_backwards=True) + mask", reverse=True, masked=True),
        config("GRU(return_sequences=False)", returns_sequences=False),
        config("[GRU, GRU]", num_layers=2),
        config("[GRU, GRU](reset_after=False)", False, num_layers=2),
        *[config(f"Bidirectional(GRU, merge_mode={merge!r})", bidirectional=True, merge=merge)
          for merge in ("concat", "sum", "ave", "mul")],
        config("Bidirectional(GRU) + mask", bidirectional=True, masked=True),
        config("[Bidirectional(GRU), Bidirectional(GRU)]", num_layers=2, bidirectional=True),
    ]
    if backend == "jax":
        # The fix for JAX's float32 default, measured on JAX's own GRU loop and on Keras' masked, generic one.
        configs += [
            config("GRU(reset_after=True) + x64", True, x64=True),
            config("Bidirectional(GRU) + mask + x64", bidirectional=True, masked=True, x64=True),
        ]
    return configs


def check_parameters(config: LayerConfig, layers: Layers, dtype) -> str:
    """Refuse parameters ``config`` cannot hold, in NumPy, before any framework sees them; the dtype name."""
    check_layer_structure(config, layers)
    name = dtype_name(dtype)
    for layer in layers:
        for params in layer:
            layouts.to_keras(params, reset_after=config.option("reset_after", True), use_bias=config.bias)
    return name


# ----------------------------------------------------------------- run()'s arguments, in our words


# ----------------------------------------------------------------- the adapters for other backends


@dataclass(frozen=True, eq=False)
class IsolatedKerasLayer:
    """A Keras layer to be built in a worker process: what ``build()`` of ``keras-jax`` / ``keras-torch``
    returns (a Keras object cannot leave the process whose backend made it). The parameters are
    ``GRUParams`` (read-only copies), so the description cannot change after validation."""

    config: LayerConfig
    layers: tuple[tuple[GRUParams, ...], ...]
    dtype: str

    @property
    def input_size(self) -> int:
        return self.layers[0][0].input_size

    @property
    def hidden_size(self) -> int:
        return self.layers[0][0].hidden_size


class IsolatedKerasAdapter(Adapter):
    """Keras 3 on ``backend``, run in a worker with ``KERAS_BACKEND=backend``."""

    def __init__(self, backend: str, backend_packages: tuple[str, ...]):
        self.backend = backend
        self.name = f"keras-{backend}"
        self.backend_packages = backend_packages
        self.env = {"KERAS_BACKEND": backend, WORKER_BACKEND_VARIABLE: backend}

    def versions(self) -> dict[str, str]:
        found = {"keras": KERAS_VERSION}
        for package in self.backend_packages:
            try:
                found[package] = importlib.metadata.version(package)
            except importlib.metadata.PackageNotFoundError:
                found[package] = "not installed"
        return found

    def configurations(self) -> list[LayerConfig]:
        return configurations_for(self.name, self.backend)

    def start(self) -> None:
        """Start this backend's worker now, importing Keras there in the background."""
        self._check_installed()
        isolation.start(self.env, preload=("adapters.keras_layers",))

    def unavailable_reason(self) -> str | None:
        missing = [p for p in self.backend_packages if importlib.util.find_spec(p) is None]
        if missing:
            return f"{', '.join(missing)} is not installed (Keras 3's {self.name.removeprefix('keras-')} backend runs on it)"
        return None

    def _check_installed(self) -> None:
        reason = self.unavailable_reason()
        if reason:
            raise RuntimeError(f"{self.name} cannot run: {reason}")

    def _call(self, function: str, *args):
        self._check_installed()
        return isolation.call(f"adapters.keras_backends:{function}", *args, env=self.env)

    # ------------------------------------------------------------- building and extracting

    def build(self, config: LayerConfig, layers: Layers, dtype) -> IsolatedKerasLayer:
        if config.framework != self.name:
            raise ValueError(f"{config.label} is not a {self.name} configuration; use {self.name}.configuration(name)")
        name = check_parameters(config, layers, dtype)
        self.start()  # the first run() then finds Keras imported, or importing
        frozen = tuple(tuple(params.astype(np.dtype(name)) for params in layer) for layer in layers)
        return IsolatedKerasLayer(config, frozen, name)

    def _spec(self, layer) -> IsolatedKerasLayer:
        if not isinstance(layer, IsolatedKerasLayer):
            raise TypeError(
                f"{self.name} takes what its build() returns (IsolatedKerasLayer), got {type(layer).__name__}: a Keras "
                f"layer lives in the process whose backend made it. Port its weights instead: "
                f"adapters.get('keras').extract(layer) in that process, then {self.name}.build(config, layers, dtype)"
            )
        if layer.config.framework != self.name:
            raise ValueError(f"this layer was built by {layer.config.framework}, not {self.name}")
        return layer

    def extract(self, layer) -> list[list[GRUParams]]:
        """What the layer built on this backend holds, read back from it in the worker."""
        return self._call("extract_in_worker", self._spec(layer))

    def describe(self, layer) -> LayerConfig:
        return self._spec(layer).config

    # ------------------------------------------------------------- running

    def run(self, layer, x, h0=None, mask=None) -> ForwardResult:
        spec = self._spec(layer)
        x, h0, mask = check_run_inputs(
            x, h0, mask, input_size=spec.input_size, hidden_size=spec.hidden_size,
            slots=spec.config.num_layers * spec.config.directions, dtype=spec.dtype, what=spec.config.label,
        )
        return self._call("run_in_worker", spec, x, h0, mask)

    def gradients(self, layer, x, h0=None, mask=None, d_outputs=None, d_h_last=None):
        """The gradients of ``sum(outputs * d_outputs) + sum(h_last * d_h_last)`` through this backend's own
        autodiff, computed in the worker (``gradients_in_worker``: ``jax.grad`` on keras-jax, torch autograd
        on keras-torch, each over ``stateless_call`` of the real Keras layer) and shipped back as NumPy
        ``StackGradients``. See ``gradients_in_worker`` for how the weights' gradients map back."""
        spec = self._spec(layer)
        x, h0, mask = check_run_inputs(
            x, h0, mask, input_size=spec.input_size, hidden_size=spec.hidden_size,
            slots=spec.config.num_layers * spec.config.directions, dtype=spec.dtype, what=spec.config.label,
        )
        return self._call("gradients_in_worker", spec, x, h0, mask, d_outputs, d_h_last)


JAX_ADAPTER = IsolatedKerasAdapter("jax", ("jax", "jaxlib"))
TORCH_ADAPTER = IsolatedKerasAdapter("torch", ("torch",))


# ----------------------------------------------------------------- the worker side (KERAS_BACKEND set)


_COMPILATION_CACHE: list[str] = []


def _worker_adapter():
    from . import keras_layers  # Keras on this worker's backend

    if keras_layers.BACKEND == "jax" and not _COMPILATION_CACHE:
        _share_jax_compilations()
    return keras_layers.ADAPTER


def _share_jax_compilations() -> None:
    """Let identical XLA programs compile once per worker.

    Eager Keras on JAX compiles every ``lax.scan`` it runs (0.1-0.4 s each here), because JAX caches
    compilations by the traced function's identity, and each layer call traces a new one. The same
    program recurs across rows (float32 and float64 without x64, the merge modes' directions, a
    GRU's and an RNN(GRUCell)'s generic loop); JAX's compilation cache, keyed by the program's
    content, compiles it once: in the suite's persistent cache when the command turned it on
    (``adapters.compilation_cache``: then across runs too), else in a directory private to this worker
    and removed with it.
    """
    import atexit
    import shutil
    import tempfile

    import jax

    if jax.config.jax_compilation_cache_dir:
        _COMPILATION_CACHE.append(jax.config.jax_compilation_cache_dir)
        return
    directory = tempfile.mkdtemp(prefix="gru-equiv-keras-jax-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _COMPILATION_CACHE.append(directory)


def _precision(spec: IsolatedKerasLayer):
    if spec.config.option("x64"):
        import jax

        return jax.enable_x64(True)
    return contextlib.nullcontext()


def run_in_worker(spec: IsolatedKerasLayer, x, h0, mask) -> ForwardResult:
    """Build ``spec`` with this worker's backend and run it, in one call."""
    adapter = _worker_adapter()
    with _precision(spec):
        layer = adapter.build(spec.config, [list(layer) for layer in spec.layers], spec.dtype)
        return adapter.run(layer, x, h0, mask)


def extract_in_worker(spec: IsolatedKerasLayer) -> list[list[GRUParams]]:
    adapter = _worker_adapter()
    with _precision(spec):
        return adapter.extract(adapter.build(spec.config, [list(layer) for layer in spec.layers], spec.dtype))


def gradients_in_worker(spec: IsolatedKerasLayer, x, h0, mask, d_outputs, d_h_last):
    """Build ``spec`` with this worker's backend and differentiate it with that backend's own autodiff.

    The forward is ``run``'s (each layer of the stack called with its initial states and the mask;
    ``go_backwards`` outputs flipped back to input order), but through ``Layer.stateless_call``
    (``keras/src/layers/layer.py:1089``), which takes the trainable variables' values as arguments, so
    the backend differentiates with respect to them without touching the layer: ``jax.grad`` on JAX,
    ``torch.autograd.grad`` on torch (leaf tensors cloned from the variables, ``requires_grad``).
    Each cell's ``kernel``, ``recurrent_kernel`` and ``bias`` are found among the layer's
    ``trainable_variables`` by identity and their gradients map to canonical ``GRUParams`` through
    ``layouts.from_keras``, the code that maps the weights: ``reset_after=False`` holds one bias
    ``(3H,)``, added with the input projection (``gru.py:164-171``), whose gradient is that of ``b_*``;
    the ``c_*`` it lacks are zeros (not compared); ``use_bias=False``: all biases zero. ``h0=None``
    differentiates at zero initial states. On JAX without x64 a float64 layer computes, and is
    differentiated, in float32 (its variables are float32); the gradients come back in that dtype.
    """
    import keras

    from reference.backward import StackGradients

    from . import keras_layers

    adapter = _worker_adapter()
    backend = keras_layers.BACKEND
    with _precision(spec):
        layer = adapter.build(spec.config, [list(layer) for layer in spec.layers], spec.dtype)
        subs = adapter._runnable(layer)
        rnns = [keras_layers._directions(sub) for sub in subs]
        units = rnns[0][0].cell.units
        dtype = np.dtype(keras.ops.convert_to_numpy(rnns[0][0].cell.kernel.value).dtype)
        if h0 is None:
            h0 = np.zeros((sum(len(r) for r in rnns), x.shape[0], units), dtype)
        last = rnns[-1][0]
        weigh_outputs = d_outputs is not None and last.return_sequences
        flip = last.go_backwards and not isinstance(subs[-1], keras.layers.Bidirectional)

        def loss(values, x_value, h0_value):
            sequence, finals, slot = x_value, [], 0
            mask_value = None if mask is None else keras.ops.convert_to_tensor(mask)
            for sub, directions, sub_values in zip(subs, rnns, values):
                initial = [h0_value[slot + d] for d in range(len(directions))]
                slot += len(directions)
                (output, *states), _ = sub.stateless_call(
                    sub_values, [v.value for v in sub.non_trainable_variables], sequence,
                    initial_state=initial, mask=mask_value)
                finals += states
                sequence = output
            total = keras.ops.sum(keras.ops.stack(finals) * keras.ops.convert_to_tensor(d_h_last.astype(dtype))) \
                if d_h_last is not None else keras.ops.zeros((), dtype.name)
            if weigh_outputs:
                outputs = keras.ops.flip(sequence, axis=1) if flip else sequence
                total = total + keras.ops.sum(outputs * keras.ops.convert_to_tensor(d_outputs.astype(dtype)))
            return total

        values = [[v.value for v in sub.trainable_variables] for sub in subs]
        if backend == "jax":
            import jax

            d_values, dx, dh0 = jax.grad(loss, argnums=(0, 1, 2))(values, jax.numpy.asarray(x, dtype),
                                                                 jax.numpy.asarray(h0, dtype))
            to_numpy = np.array
        elif backend == "torch":
            import torch

            leaves = [[value.detach().clone().requires_grad_(True) for value in sub_values] for sub_values in values]
            x_t = torch.tensor(np.asarray(x, dtype), requires_grad=True)
            h0_t = torch.tensor(np.asarray(h0, dtype), requires_grad=True)
            flat = [leaf for sub_leaves in leaves for leaf in sub_leaves]
            with torch.enable_grad():
                found = torch.autograd.grad(loss(leaves, x_t, h0_t), [x_t, h0_t, *flat], allow_unused=True)
            found = [torch.zeros_like(t) if g is None else g for g, t in zip(found, [x_t, h0_t, *flat])]
            dx, dh0, rest = found[0], found[1], iter(found[2:])
            d_values = [[next(rest) for _ in sub_leaves] for sub_leaves in leaves]
            to_numpy = lambda t: t.detach().cpu().numpy().copy()  # noqa: E731
        else:
            raise RuntimeError(f"gradients_in_worker serves the jax and torch backends, not {backend!r}")
        canonical = []
        for sub, directions, sub_grads in zip(subs, rnns, d_values):
            variables = sub.trainable_variables

            def gradient_of(variable, variables=variables, sub_grads=sub_grads):
                index = next(i for i, v in enumerate(variables) if v is variable)
                return to_numpy(sub_grads[index])

            canonical.append([
                layouts.from_keras(gradient_of(rnn.cell.kernel), gradient_of(rnn.cell.recurrent_kernel),
                                   gradient_of(rnn.cell.bias) if rnn.cell.use_bias else None,
                                   reset_after=rnn.cell.reset_after)
                for rnn in directions
            ])
        return StackGradients(canonical, to_numpy(dx), to_numpy(dh0))


def versions_in_worker() -> dict[str, str]:
    """The versions the worker's imported modules report (the parent reads package metadata instead)."""
    return _worker_adapter().versions()
