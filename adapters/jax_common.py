"""What every JAX-based adapter (Flax, Haiku, Equinox) shares: how float64 is asked for.

JAX computes in float32 unless ``jax_enable_x64`` is on (``jax/_src/config.py``: ``enable_x64``
defaults to False; ``jnp.asarray`` of a float64 array then returns float32 with a UserWarning).
A user who asks for float64 without that flag silently gets float32, so the adapters run each
class twice: under JAX's defaults (what users get; a float64 request shows as a precision finding)
and, in configurations marked ``x64=True``, inside ``jax.enable_x64(True)``, which restores float64.
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
    import jaxlib

    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__}
