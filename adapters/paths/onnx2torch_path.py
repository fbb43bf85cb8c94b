"""ONNX -> PyTorch with ``onnx2torch.convert``, the result run with torch.

Unavailable in this environment, for a measured reason: onnx2torch imports torchvision
(``onnx2torch/node_converters/roialign.py`` and ``nms.py`` import ``torchvision``), and the only
torchvision wheels that install here (0.28, 0.29) fail to load with torch 2.13.0+cpu ("operator
torchvision::nms does not exist", raised while registering torchvision's C++ operators), so onnx2torch
is deliberately not installed. Where it is installed and imports, the path converts the ONNX adapter's
graphs with ``onnx2torch.convert(model)`` (a ``torch.fx.GraphModule``) and runs it on the graph's
inputs (``X [T, B, I]``, ``sequence_lens``, ``initial_h_{k}``) in graph order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..base import ForwardResult
from .base import ConversionFailed, ConversionPath, Converted, missing_modules

TORCHVISION_REASON = ("onnx2torch is not installed: it imports torchvision, and the only torchvision wheels available "
                      "here (0.28, 0.29) fail to load with torch 2.13.0+cpu (\"operator torchvision::nms does not "
                      "exist\"), measured")


class Onnx2TorchPath(ConversionPath):
    id = "onnx-onnx2torch"
    title = "onnx2torch.convert(ONNX GRU) -> torch.fx.GraphModule"
    source = "onnxruntime"
    tool = "onnx2torch"

    def unavailable_reason(self) -> str | None:
        if missing_modules("onnx2torch"):
            return TORCHVISION_REASON
        try:
            import onnx2torch  # noqa: F401
        except Exception as error:  # torchvision's operator registration fails at import
            return f"onnx2torch fails to import: {type(error).__name__}: {error}"
        return missing_modules("torch", "onnx")

    def versions(self) -> dict[str, str]:
        import onnx
        import onnx2torch
        import torch

        return {"onnx2torch": getattr(onnx2torch, "__version__", "unknown"), "torch": torch.__version__,
                "onnx": onnx.__version__}

    def source_configs(self) -> tuple[str, ...]:
        return ("GRU(linear_before_reset=1)", "GRU", "GRU(direction='bidirectional')", "GRU + sequence_lens")

    def convert(self, layer, config, dtype, workdir: Path) -> Converted:
        import onnx2torch
        import torch

        try:
            module = onnx2torch.convert(layer.model).eval()
        except Exception as error:
            raise ConversionFailed(f"{type(error).__name__}: {' '.join(str(error).split())[:600]}") from None
        graph_inputs = [value.name for value in layer.model.graph.input]
        graph_outputs = [value.name for value in layer.model.graph.output]

        def run(x, h0=None, mask=None) -> ForwardResult:
            batch, time = x.shape[:2]
            state = np.zeros((config.num_layers * config.directions, batch, layer.hidden_size), x.dtype) if h0 is None else h0
            feeds = {"X": x.transpose(1, 0, 2), "sequence_lens": (np.full(batch, time) if mask is None
                                                                   else mask.sum(axis=1)).astype(np.int32)}
            for index in range(config.num_layers):
                feeds[f"initial_h_{index}"] = state[index * config.directions:(index + 1) * config.directions]
            with torch.no_grad():
                results = module(*(torch.from_numpy(np.ascontiguousarray(feeds[name])) for name in graph_inputs))
            results = results if isinstance(results, (list, tuple)) else [results]
            produced = dict(zip(graph_outputs, (r.numpy() for r in results)))
            h_last = np.concatenate([produced[f"Y_h_{k}"] for k in range(config.num_layers)])
            y = produced.get("Y")
            outputs = None if y is None else np.ascontiguousarray(y.transpose(2, 0, 1, 3).reshape(batch, time, -1))
            return ForwardResult(outputs, h_last)

        return Converted(run=run, emitted={"format": "torch.fx", "modules": sorted({type(m).__name__ for m in
                                                                                    module.modules()})})


PATH = Onnx2TorchPath()
