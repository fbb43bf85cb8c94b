"""This project's own ports between PyTorch, Keras and ONNX: ``reference.layouts`` through the adapters.

Each port extracts the source layer's canonical parameters (``adapters.get(source).extract``: the
source's packed weights through ``layouts.from_torch`` / ``from_keras`` / ``from_onnx``) and builds the
target with ``adapters.get(target).build`` (``layouts.to_torch`` / ``to_keras`` / ``to_onnx``). These
are the exact ports the README promises; the audit checks that they stay exact, and a pair that
cannot be exact is a row "refused" with the reason and the exact alternative, never a silent
approximation. What decides exactness (``reference/conventions.py``, ``reference/transforms.py``):

- PyTorch ``nn.GRU`` computes ``z_on_previous+reset_after`` with six biases; Keras ``reset_after=True``
  and ONNX ``linear_before_reset=1`` compute the same formula with the same six biases: exact both ways.
- Keras ``reset_after=False`` and ONNX ``linear_before_reset=0`` compute reset-before, which no
  ``nn.GRU`` weights can express (r multiplies ``h_prev`` before ``U_h``): refused towards torch.
- Keras ``reset_after=False`` has one bias per gate: an ONNX reset-before GRU's recurrent biases are
  folded into it by ``reference.fold_recurrent_biases`` (exact under reset-before).

Ports (registry ids): ``port-torch-keras``, ``port-torch-keras-torch`` (round trip), ``port-torch-onnx``,
``port-keras-torch``, ``port-keras-onnx``, ``port-onnx-torch``, ``port-onnx-keras``. ONNX targets run in
onnxruntime (float32 only: no float64 GRU, ``adapters/onnx_runtime.py`` finding 1); the others also in float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reference import fold_recurrent_biases

from ..base import ForwardResult
from .base import ConversionPath, ConversionRefused, Converted, missing_modules

RESET_BEFORE_TO_TORCH = (
    "torch.nn.GRU computes reset-after (r * (h_prev U_h + c_h)); a reset-before GRU (r multiplies h_prev before "
    "U_h) has no nn.GRU weights that compute it. Exact alternatives: keep it in Keras (reset_after=False), or "
    "port it to ONNX with linear_before_reset=0 (port-keras-onnx / the ONNX graph itself)"
)
FRAMEWORK_MODULES = {"torch": ("torch",), "keras": ("tensorflow", "keras"), "onnxruntime": ("onnx", "onnxruntime")}


@dataclass(frozen=True)
class Target:
    """Where one source configuration goes: a target adapter configuration, or a refusal with its reason.

    ``onnx_row`` builds an ONNX graph of that row (``adapters.onnx_runtime.Row`` fields as a dict) when the
    ONNX adapter has no configuration of that exact shape; ``fold`` folds the recurrent biases first
    (``reference.fold_recurrent_biases``, for a single-bias reset-before target)."""

    config: str | None = None
    onnx_row: dict | None = None
    fold: bool = False
    refused: str = ""


def _onnx_config(row_fields: dict):
    from adapters import onnx_runtime

    row = onnx_runtime.Row(name=f"GRU({', '.join(f'{k}={v!r}' for k, v in row_fields.items())})", **row_fields)
    return onnx_runtime._config("onnxruntime", row)  # the adapter's own config builder: same claims and layout text


class ExactPort(ConversionPath):
    """``source`` -> ``target`` (-> ``back``, for a round trip) through canonical parameters."""

    def __init__(self, path_id: str, source: str, target: str, targets: dict[str, Target], back: dict | None = None):
        self.id = path_id
        self.source = source
        self.target = target
        self.targets = targets
        self.back = back  # target config name -> source config name, for the round trip
        chain = f"{source} -> {target}" + (f" -> {source}" if back else "")
        self.title = f"gru-equivalence port {chain} (reference.layouts)"
        self.tool = "gru-equivalence reference.layouts + adapters"

    def unavailable_reason(self) -> str | None:
        return missing_modules(*FRAMEWORK_MODULES[self.source], *FRAMEWORK_MODULES[self.target])

    def versions(self) -> dict[str, str]:
        import adapters

        found = {}
        for name in (self.source, self.target):
            found.update(adapters.get(name).versions())
        return found

    def source_configs(self) -> tuple[str, ...]:
        return tuple(self.targets)

    def dtypes(self) -> tuple[str, ...]:
        return ("float32",) if "onnxruntime" in (self.source, self.target) else ("float32", "float64")

    def convert(self, layer, config, dtype, workdir: Path) -> Converted:
        import adapters

        target = self.targets.get(config.name)
        if target is None:
            raise ConversionRefused(f"{self.id} has no target for {config.label}; it ports: {', '.join(self.targets)}")
        if target.refused:
            raise ConversionRefused(target.refused)
        source_adapter, target_adapter = adapters.get(self.source), adapters.get(self.target)
        layers = source_adapter.extract(layer)
        target_config = (_onnx_config(target.onnx_row) if target.onnx_row
                         else target_adapter.configuration(target.config))
        if target.fold:
            layers = [[fold_recurrent_biases(params, target_config.claimed) for params in directions]
                      for directions in layers]
        built = target_adapter.build(target_config, layers, np.dtype(dtype))
        emitted = {"format": self.target, "config": target_config.name, "layout": target_config.layout,
                   "folded_recurrent_biases": target.fold}
        artifact = None
        if self.target == "onnxruntime":
            from .onnx_common import describe_onnx

            emitted.update(describe_onnx(built.model), format="onnx", config=target_config.name)
            artifact = built.model
        runner, notes = target_adapter, [f"target configuration: {target_config.label}"]
        if self.back:
            back_config = source_adapter.configuration(self.back[target_config.name])
            built = source_adapter.build(back_config, target_adapter.extract(built), np.dtype(dtype))
            runner = source_adapter
            notes.append(f"and back: {back_config.label}")
            emitted["round_trip"] = back_config.name
        if target.fold:
            notes.append("recurrent biases folded into the input biases (reference.fold_recurrent_biases; exact under "
                         "reset-before)")

        def run(x, h0=None, mask=None) -> ForwardResult:
            return runner.run(built, x, h0, mask)

        return Converted(run=run, emitted=emitted, notes=tuple(notes), artifact=artifact)


BIDI = "bidirectional"
TORCH_TO_KERAS = ExactPort("port-torch-keras", "torch", "keras", {
    "nn.GRU(batch_first=True)": Target("GRU(reset_after=True)"),
    "nn.GRU(num_layers=2, bidirectional=True)": Target("[Bidirectional(GRU), Bidirectional(GRU)]"),
    "nn.GRU(bias=False)": Target("GRU(reset_after=True, use_bias=False)"),
    "nn.GRU + PackedSequence": Target("GRU(reset_after=True) + mask"),
})
TORCH_KERAS_TORCH = ExactPort("port-torch-keras-torch", "torch", "keras", {
    "nn.GRU(batch_first=True)": Target("GRU(reset_after=True)"),
    "nn.GRU(num_layers=2, bidirectional=True)": Target("[Bidirectional(GRU), Bidirectional(GRU)]"),
    "nn.GRU(bias=False)": Target("GRU(reset_after=True, use_bias=False)"),
}, back={"GRU(reset_after=True)": "nn.GRU(batch_first=True)",
         "[Bidirectional(GRU), Bidirectional(GRU)]": "nn.GRU(num_layers=2, bidirectional=True)",
         "GRU(reset_after=True, use_bias=False)": "nn.GRU(bias=False)"})
TORCH_TO_ONNX = ExactPort("port-torch-onnx", "torch", "onnxruntime", {
    "nn.GRU(batch_first=True)": Target("GRU(linear_before_reset=1)"),
    "nn.GRU(num_layers=2, bidirectional=True)": Target(onnx_row={"linear_before_reset": 1, "direction": BIDI,
                                                                 "num_layers": 2}),
    "nn.GRU(bias=False)": Target("GRU(linear_before_reset=1) without B"),
    "nn.GRU + PackedSequence": Target(onnx_row={"linear_before_reset": 1, "masked": True}),
})
KERAS_TO_TORCH = ExactPort("port-keras-torch", "keras", "torch", {
    "GRU(reset_after=True)": Target("nn.GRU(batch_first=True)"),
    "GRU(reset_after=False)": Target(refused=RESET_BEFORE_TO_TORCH),
    "Bidirectional(GRU, merge_mode='concat')": Target("nn.GRU(bidirectional=True)"),
    "[Bidirectional(GRU), Bidirectional(GRU)]": Target("nn.GRU(num_layers=2, bidirectional=True)"),
    "GRU(reset_after=True, use_bias=False)": Target("nn.GRU(bias=False)"),
    "GRU(reset_after=True) + mask": Target("nn.GRU + PackedSequence"),
})
KERAS_TO_ONNX = ExactPort("port-keras-onnx", "keras", "onnxruntime", {
    "GRU(reset_after=True)": Target("GRU(linear_before_reset=1)"),
    "GRU(reset_after=False)": Target("GRU"),
    "Bidirectional(GRU, merge_mode='concat')": Target("GRU(direction='bidirectional', linear_before_reset=1)"),
    "[Bidirectional(GRU), Bidirectional(GRU)]": Target(onnx_row={"linear_before_reset": 1, "direction": BIDI,
                                                                 "num_layers": 2}),
    "GRU(reset_after=True, use_bias=False)": Target("GRU(linear_before_reset=1) without B"),
    "GRU(reset_after=True) + mask": Target(onnx_row={"linear_before_reset": 1, "masked": True}),
})
ONNX_TO_TORCH = ExactPort("port-onnx-torch", "onnxruntime", "torch", {
    "GRU(linear_before_reset=1)": Target("nn.GRU(batch_first=True)"),
    "GRU": Target(refused=RESET_BEFORE_TO_TORCH.replace("keep it in Keras (reset_after=False)",
                                                        "keep the ONNX graph (linear_before_reset=0)")),
    "GRU(direction='bidirectional', linear_before_reset=1)": Target("nn.GRU(bidirectional=True)"),
    "[GRU, GRU](linear_before_reset=1)": Target("nn.GRU(num_layers=2)"),
    "GRU(linear_before_reset=1) without B": Target("nn.GRU(bias=False)"),
})
ONNX_TO_KERAS = ExactPort("port-onnx-keras", "onnxruntime", "keras", {
    "GRU(linear_before_reset=1)": Target("GRU(reset_after=True)"),
    "GRU": Target("GRU(reset_after=False)", fold=True),
    "GRU(direction='bidirectional', linear_before_reset=1)": Target("Bidirectional(GRU, merge_mode='concat')"),
    "[GRU, GRU](linear_before_reset=1)": Target("[GRU, GRU]"),
    "GRU(linear_before_reset=1) without B": Target("GRU(reset_after=True, use_bias=False)"),
    "GRU + sequence_lens": Target("GRU(reset_after=False) + mask", fold=True),
})
