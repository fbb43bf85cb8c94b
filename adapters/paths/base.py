"""What every conversion path provides: the fixed interface between the audit and each tool.

A *conversion path* is something a user does to a GRU that should not change what it computes:
export it to ONNX, convert ONNX to TensorFlow, port it by hand with ``reference.layouts``, save and
load it. Each path is one small module behind one registry line (``adapters/paths/__init__.py``);
the audit (``reports/conversions.py``) builds the source layer with ``adapters.get(path.source)``,
converts it with the real tool, runs source and result on the same probe and judges the result.

Outcomes a path can have, each a distinct row of the audit:

- ``unavailable_reason()`` is not None: the tool is not installed (or cannot load), with the reason;
- ``convert`` raises ``ConversionFailed``: the tool refused or broke, ``str()`` is the tool's message
  (a finding: "conversion failed: <message>");
- ``convert`` raises ``ConversionRefused``: this project's own port refuses a pair that cannot be
  exact, with the reason and the exact alternative (a "refused" row);
- ``convert`` returns ``Converted``: its ``run`` is judged against the source and the reference.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..base import ForwardResult, LayerConfig


class ConversionFailed(RuntimeError):
    """The tool refused or broke; ``str()`` is the tool's own message. A row "conversion failed: <message>", a finding."""


class ConversionRefused(RuntimeError):
    """This project's port refuses a pair that cannot be exact; ``str()`` gives the reason and the exact alternative."""


@dataclass(frozen=True)
class Converted:
    """What a tool produced, ready to run on NumPy input.

    ``run(x, h0=None, mask=None) -> adapters.ForwardResult`` in the SOURCE adapter's shapes: outputs
    ``(batch, time, features)`` aligned with the input time axis (None if no sequence), ``h_last``
    ``(layers * directions, batch, hidden)``; x and h0 in the source dtype.
    ``emitted``: a JSON-able account of what the tool wrote, e.g. ``{"format": "onnx", "ops": {"GRU": 2},
    "gru_attributes": [{"linear_before_reset": 1, "direction": "bidirectional", "hidden_size": 5,
    "layout": 0}], "weights_dtype": "float32", "unrolled": False}`` (``onnx_common.describe_onnx``).
    ``notes``: anything the reader must know (a setting used, a warning the tool printed).
    ``artifact``: the produced object itself when the audit can use it further (an ``onnx.ModelProto``
    for ONNX outputs: the tamper audit reads it); never serialised.
    """

    run: Callable[..., ForwardResult]
    emitted: dict
    notes: tuple[str, ...] = ()
    artifact: Any = field(default=None, compare=False, repr=False)


class ConversionPath(ABC):
    """One way of converting a GRU with a real tool (or this project's own port), judged by the audit."""

    id: str = ""  # registry key, short, CLI-friendly: "torch-onnx-script", "keras-tflite", ...
    title: str = ""  # what the user does: "torch.onnx.export(dynamo=False) -> onnxruntime"
    source: str = ""  # registry name of the source adapter: "torch", "keras" or "onnxruntime"
    tool: str = ""  # the tool under audit, e.g. "torch.onnx (TorchScript exporter)"
    full_precision_setting: str = ""  # the setting that restores full precision if the tool has one, else ""

    @abstractmethod
    def versions(self) -> dict[str, str]:
        """The libraries that decide the result (imported lazily; call only when available)."""

    def unavailable_reason(self) -> str | None:
        """None when usable here; else why not (import the tool lazily inside)."""
        return None

    @abstractmethod
    def source_configs(self) -> tuple[str, ...]:
        """Names of the source adapter's configurations this path takes, the "1 layer" one first."""

    def dtypes(self) -> tuple[str, ...]:
        """The dtypes the path is audited in: float32, plus float64 where the path keeps it."""
        return ("float32",)

    @abstractmethod
    def convert(self, layer: Any, config: LayerConfig, dtype: np.dtype, workdir: Path) -> Converted:
        """Convert ``layer`` (``adapters.get(self.source).build(config, probe.layers, dtype)``) with the tool.

        Never mutate ``layer``; write files only under ``workdir``. Raise ``ConversionFailed`` with the
        tool's message when the tool refuses or breaks, ``ConversionRefused`` for a port that cannot be exact.
        """

    def describe(self) -> dict:
        return {"id": self.id, "title": self.title, "source": self.source, "tool": self.tool,
                "full_precision_setting": self.full_precision_setting}


def missing_modules(*names: str) -> str | None:
    """"<name> is not installed" for the first module of ``names`` that cannot be found, else None.

    Uses ``importlib.util.find_spec``: nothing is imported, so asking is cheap and cannot crash."""
    import importlib.util

    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return f"{name} is not installed (pip install {name.split('.')[0]})"
    return None


__all__ = ["ConversionFailed", "ConversionPath", "ConversionRefused", "Converted", "ForwardResult", "missing_modules"]
