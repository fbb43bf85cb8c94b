"""What every JAX-based adapter (Flax, Haiku, Equinox) shares: how float64 is asked for.

JAX computes in float32 unless ``jax_enable_x64`` is on (``jax/_src/config.py``: ``enable_x64``
defaults to False; ``jnp.asarray`` of a float64 array then returns float32 with a UserWarning).
A user who asks for float64 without that flag silently gets float32, so the adapters run each
class twice: under JAX's defaults (what users get; a float64 request shows as a precision finding)
and, in configurations marked ``x64=True``, inside ``jax.enable_x64(True)``, which restores float64.

Where JAX runs also matters: "by default, JAX leans toward speed: float32 dot products may be computed
with reduced-precision arithmetic internally (bfloat16 on TPU, TF32 on recent GPUs)" (JAX's "Matmul
precision" page, docs.jax.dev/en/latest/201/precision.html; ``jax_default_matmul_precision`` chooses
otherwise). Whether a given dot is rounded is XLA's choice per program, so ``versions()`` names the
device and the measurement, not an assumption, says which rows were rounded.
"""

from __future__ import annotations

import contextlib
import warnings

import jax
import numpy as np

X64_FIX = "turn on float64 with jax.config.update('jax_enable_x64', True) or JAX_ENABLE_X64=1"


def precision_context(x64: bool):
    """``jax.enable_x64(True)`` for an x64 configuration, JAX's defaults otherwise."""
    return jax.enable_x64(True) if x64 else contextlib.nullcontext()


def as_jax(array, dtype, x64: bool):
    """``array`` as a JAX array of ``dtype``: float64 only under x64, as JAX itself decides."""
    with warnings.catch_warnings():
        # JAX warns that float64 is unavailable without x64; the precision verdict reports it instead.
        warnings.filterwarnings("ignore", message=".*requested in .* is not available.*")
        return jax.numpy.asarray(np.asarray(array), dtype=np.dtype(dtype))


def versions() -> dict[str, str]:
    """The versions, and where JAX computes: a GPU may round float32 matmuls to TF32 where a CPU does not."""
    import jaxlib

    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "device": device()}


def device() -> str:
    """``"cpu"``, or the backend and the chip (``"gpu: NVIDIA H200"``) JAX runs the adapters' programs on."""
    backend = jax.default_backend()
    return backend if backend == "cpu" else f"{backend}: {jax.devices()[0].device_kind}"


# ----------------------------------------------------------------- gradients through jax.grad


def _loss_gradients(args, d_outputs, d_h_last, *, program, statics, argnums):
    """``jax.grad`` of ``sum(outputs * d_outputs) + sum(h_last * d_h_last)`` with respect to ``args[i]``
    for ``i`` in ``argnums``, where ``(outputs, h_last) = program(*args, **dict(statics))``."""

    def loss(*differentiable):
        full = list(args)
        for index, value in zip(argnums, differentiable):
            full[index] = value
        outputs, h_last = program(*full, **dict(statics))
        total = jax.numpy.zeros((), h_last.dtype)
        if d_outputs is not None:
            total = total + jax.numpy.sum(outputs * d_outputs.astype(outputs.dtype))
        if d_h_last is not None:
            total = total + jax.numpy.sum(h_last * d_h_last.astype(h_last.dtype))
        return total

    return jax.grad(loss, argnums=tuple(range(len(argnums))))(*(args[index] for index in argnums))


# One compiled program per (forward program, its static arguments, argument shapes, x64 mode): jit's own
# cache, keyed by the static arguments, which are the forward's program and its (hashable) statics.
loss_gradients_program = jax.jit(_loss_gradients, static_argnames=("program", "statics", "argnums"))


def loss_gradients(program, args: tuple, statics: dict, argnums: tuple[int, ...], d_outputs, d_h_last,
                   dtype, x64: bool):
    """The gradients of the adapters' loss through JAX's own autodiff (``jax.grad``, reverse mode), as
    the pytrees of ``args[i]`` (``i`` in ``argnums``) holding NumPy copies.

    ``program`` is the adapter's own forward (the very function ``run`` executes), so what is
    differentiated is what was measured. The loss weights are cast as the arguments are (``as_jax``):
    without x64 a float64 request is differentiated in float32, exactly as it runs.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*requested in .* is not available.*")
        weights = [None if w is None else as_jax(w, dtype, x64) for w in (d_outputs, d_h_last)]
        found = loss_gradients_program(args, *weights, program=program,
                                       statics=tuple(sorted(statics.items(), key=lambda item: item[0])),
                                       argnums=tuple(argnums))
        return jax.tree_util.tree_map(np.array, found)
