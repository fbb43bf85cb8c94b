"""Conversion paths, found through one registry (mirrors ``adapters/__init__.py``).

``get(id)`` returns a usable ``ConversionPath`` or raises ``PathUnavailable`` with the reason (the
tool is not installed, its module failed to import, or the path says why it cannot run here);
``status()`` gives every registered path, usable or with its reason; ``available()`` the usable ones.
A missing tool is never an import error of this package: path modules import their tool lazily.
"""

from __future__ import annotations

import importlib
from functools import cache

from ..base import set_registry_line
from .base import ConversionFailed, ConversionPath, ConversionRefused, Converted

# id -> "module:ATTRIBUTE" defining the path object. One line per path.
REGISTRY: dict[str, str] = {
    "torch-onnx-script": "adapters.paths.torch_onnx:TORCHSCRIPT_PATH",
    "torch-onnx-dynamo": "adapters.paths.torch_onnx:DYNAMO_PATH",
    "keras-tf2onnx": "adapters.paths.tf2onnx_path:PATH",
    "onnx-onnx2tf": "adapters.paths.onnx2tf_path:PATH",
    "onnx-onnx2torch": "adapters.paths.onnx2torch_path:PATH",
    "port-torch-keras": "adapters.paths.exact_ports:TORCH_TO_KERAS",
    "port-torch-keras-torch": "adapters.paths.exact_ports:TORCH_KERAS_TORCH",
    "port-torch-onnx": "adapters.paths.exact_ports:TORCH_TO_ONNX",
    "port-keras-torch": "adapters.paths.exact_ports:KERAS_TO_TORCH",
    "port-keras-onnx": "adapters.paths.exact_ports:KERAS_TO_ONNX",
    "port-onnx-torch": "adapters.paths.exact_ports:ONNX_TO_TORCH",
    "port-onnx-keras": "adapters.paths.exact_ports:ONNX_TO_KERAS",
    "torch-jit-script": "adapters.paths.roundtrips:TORCH_SCRIPT",
    "torch-jit-trace": "adapters.paths.roundtrips:TORCH_TRACE",
    "torch-export": "adapters.paths.roundtrips:TORCH_EXPORT",
    "keras-save-load": "adapters.paths.roundtrips:KERAS_SAVE_LOAD",
    "keras-savedmodel": "adapters.paths.roundtrips:KERAS_SAVEDMODEL",
    "keras-tflite": "adapters.paths.litert_path:PATH",
    "onnx-openvino": "adapters.paths.openvino_path:ONNX_PATH",
    "torch-openvino": "adapters.paths.openvino_path:TORCH_PATH",
    "onnx-float16": "adapters.paths.float16_path:PATH",
    "torch-quantize-dynamic": "adapters.paths.quantization:TORCH_PATH",
    "onnx-quantize-dynamic": "adapters.paths.quantization:ONNX_PATH",
}


class PathUnavailable(RuntimeError):
    """The path cannot be used here; ``reason`` says why."""

    def __init__(self, path_id: str, reason: str):
        super().__init__(f"conversion path {path_id!r} is unavailable: {reason}")
        self.id = path_id
        self.reason = reason

    def __reduce__(self):
        # The default rebuilds from ``args`` (the message alone), which this __init__ cannot take: a worker's
        # PathUnavailable (reports.conversions, contained cells) must reach its caller as itself.
        return type(self), (self.id, self.reason)


@cache
def _load(path_id: str) -> ConversionPath | PathUnavailable:
    module_name, _, attribute = REGISTRY[path_id].partition(":")
    try:
        module = importlib.import_module(module_name)
        path = getattr(module, attribute or "PATH")
    except ImportError as error:
        return PathUnavailable(path_id, f"{error.name or error} is not installed ({error})")
    except Exception as error:  # a broken install must read as unavailable, not crash the audit
        return PathUnavailable(path_id, f"importing it failed: {type(error).__name__}: {error}")
    try:
        reason = path.unavailable_reason()
    except Exception as error:  # the check itself broke: that is the reason
        reason = f"checking the tool failed: {type(error).__name__}: {error}"
    return PathUnavailable(path_id, reason) if reason else path


def get(path_id: str) -> ConversionPath:
    if path_id not in REGISTRY:
        raise ValueError(f"unknown conversion path {path_id!r}; valid: {', '.join(REGISTRY)}")
    loaded = _load(path_id)
    if isinstance(loaded, PathUnavailable):
        raise loaded
    return loaded


def status() -> dict[str, ConversionPath | PathUnavailable]:
    """Every registered path, usable or with the reason it is unavailable."""
    return {path_id: _load(path_id) for path_id in REGISTRY}


def ensure_registered(path_id: str, registry_line: str) -> None:
    """``path_id`` reads ``registry_line`` ("module:ATTRIBUTE") here (``adapters.base.set_registry_line``)."""
    set_registry_line(REGISTRY, _load, path_id, registry_line)


def available() -> list[ConversionPath]:
    return [path for path in status().values() if isinstance(path, ConversionPath)]


__all__ = ["ConversionFailed", "ConversionPath", "ConversionRefused", "Converted", "PathUnavailable", "REGISTRY",
           "available", "ensure_registered", "get", "status"]
