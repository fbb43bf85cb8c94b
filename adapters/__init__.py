"""Framework adapters, found through one registry.

``get(name)`` returns a loaded adapter or raises ``AdapterUnavailable`` with the reason
(the framework is not installed, or failed to import); ``available()`` lists what loads.
A missing framework is never an import error of this package.
"""

from __future__ import annotations

import importlib
from functools import cache

from .base import Adapter, ForwardResult, FrameworkUnavailable, LayerConfig, mask_lengths, set_registry_line

# name -> module defining ``ADAPTER`` (or ``module:ATTRIBUTE`` when one module serves several);
# the framework is imported only when the adapter is asked for. One line per framework.
REGISTRY: dict[str, str] = {
    "torch": "adapters.torch_nn",
    "keras": "adapters.keras_layers",
    "keras-jax": "adapters.keras_backends:JAX_ADAPTER",
    "keras-torch": "adapters.keras_backends:TORCH_ADAPTER",
    "tf-legacy": "adapters.tf_legacy",
    "onnxruntime": "adapters.onnx_runtime",
    "onnx-reference": "adapters.onnx_runtime:REFERENCE_ADAPTER",
    "flax": "adapters.flax_gru",
    "haiku": "adapters.haiku_gru",
    "equinox": "adapters.equinox_gru",
    "paddle": "adapters.paddle_gru",
    "torch-cuda": "adapters.torch_cuda",  # a GPU's arithmetic (TF32); unavailable without a CUDA device
}


from .testing import assert_gru_equivalent  # noqa: E402  (NumPy only: frameworks load when used)


class AdapterUnavailable(RuntimeError):
    """The adapter's framework cannot be used here; ``reason`` says why."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"adapter {name!r} is unavailable: {reason}")
        self.name = name
        self.reason = reason


@cache
def _load(name: str) -> Adapter | AdapterUnavailable:
    module_name, _, attribute = REGISTRY[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except FrameworkUnavailable as error:  # installed, but cannot run here (no GPU, ...)
        return AdapterUnavailable(name, error.reason)
    except ImportError as error:
        return AdapterUnavailable(name, f"{error.name or error} is not installed ({error})")
    except Exception as error:  # a broken install must read as unavailable, not crash the suite
        return AdapterUnavailable(name, f"importing it failed: {type(error).__name__}: {error}")
    adapter = getattr(module, attribute or "ADAPTER")
    reason = adapter.unavailable_reason()
    return AdapterUnavailable(name, reason) if reason else adapter


def get(name: str) -> Adapter:
    if name not in REGISTRY:
        raise ValueError(f"unknown framework {name!r}; valid: {', '.join(REGISTRY)}")
    loaded = _load(name)
    if isinstance(loaded, AdapterUnavailable):
        raise loaded
    return loaded


def status() -> dict[str, Adapter | AdapterUnavailable]:
    """Every registered adapter, loaded or with the reason it is unavailable."""
    return {name: _load(name) for name in REGISTRY}


def ensure_registered(name: str, registry_line: str) -> None:
    """``name`` reads ``registry_line`` ("module" or "module:ATTRIBUTE") here (``base.set_registry_line``)."""
    set_registry_line(REGISTRY, _load, name, registry_line)


def available() -> list[Adapter]:
    return [adapter for adapter in status().values() if isinstance(adapter, Adapter)]


__all__ = ["assert_gru_equivalent", "Adapter", "AdapterUnavailable", "ForwardResult", "LayerConfig", "REGISTRY", "available", "ensure_registered", "get", "mask_lengths", "status"]
