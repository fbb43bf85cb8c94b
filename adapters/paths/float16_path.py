"""ONNX GRU -> float16 with ``onnxconverter_common.float16.convert_float_to_float16`` -> onnxruntime.

The ONNX adapter's GRU graph (``adapters.onnx_runtime.build_model``) is converted the two ways users do:
``keep_io_types=True`` (inputs and outputs stay float32, Cast nodes are inserted at the boundary) is the
audited one, since the source is fed float32. ``convert_float_to_float16`` (onnxconverter-common 1.16,
``onnxconverter_common/float16.py``) converts every float initializer and value to float16 unless its
op is in ``DEFAULT_OP_BLOCK_LIST`` (``float16.py:140``), which holds only ONNX-ML operators: ``GRU`` is
converted, so the GRU node runs on float16 ``X``, ``W``, ``R``, ``B``, ``initial_h``.

What onnxruntime then does is measured: its CPU provider has a float16 GRU kernel or not, and a
session that cannot load is a 'conversion failed' row with onnxruntime's own message. When it runs, the
precision verdict compares the result with ``reference.precision``'s float16 model (every tensor
stored in float16). The setting that restores full precision: leave the GRU in float32 with
``op_block_list=[..., "GRU"]`` (``convert_float_to_float16(model, keep_io_types=True,
op_block_list=DEFAULT_OP_BLOCK_LIST + ["GRU"])``); ``emitted["gru_blocked_variant"]`` records what that gives.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import ConversionFailed, ConversionPath, Converted, missing_modules
from .quantization import ONNX_CONFIGS, onnx_gru_io
from .roundtrips import quiet, tool_message


class Float16Path(ConversionPath):
    id = "onnx-float16"
    title = "onnxconverter_common.float16.convert_float_to_float16(keep_io_types=True) -> onnxruntime"
    source = "onnxruntime"
    tool = "onnxconverter_common.float16"
    full_precision_setting = "convert_float_to_float16(..., op_block_list=DEFAULT_OP_BLOCK_LIST + ['GRU'])"

    def unavailable_reason(self) -> str | None:
        return missing_modules("onnx", "onnxruntime", "onnxconverter_common")

    def versions(self) -> dict[str, str]:
        import onnx
        import onnxconverter_common
        import onnxruntime

        return {"onnxconverter_common": onnxconverter_common.__version__, "onnxruntime": onnxruntime.__version__,
                "onnx": onnx.__version__}

    def source_configs(self) -> tuple[str, ...]:
        return ONNX_CONFIGS

    def convert(self, layer, config, dtype, workdir: Path) -> Converted:
        import onnx
        from onnxconverter_common import float16

        from .onnx_common import describe_onnx, onnx_runner

        io_map = onnx_gru_io(config)
        source = onnx.ModelProto()
        source.CopyFrom(layer.model)  # the tool may edit its input: hand it a copy, never the user's model
        try:
            converted, notes = quiet(float16.convert_float_to_float16, source, keep_io_types=True)
        except Exception as error:  # the tool refused or broke: a finding
            raise ConversionFailed(tool_message(error)) from None
        onnx.save(converted, str(workdir / "gru.fp16.onnx"))
        emitted = describe_onnx(converted)
        blocked = onnx.ModelProto()
        blocked.CopyFrom(layer.model)
        try:
            blocked, _ = quiet(float16.convert_float_to_float16, blocked, keep_io_types=True,
                               op_block_list=list(float16.DEFAULT_OP_BLOCK_LIST) + ["GRU"])
            emitted["gru_blocked_variant"] = {"weights_dtype": describe_onnx(blocked)["weights_dtype"]}
        except Exception as error:
            emitted["gru_blocked_variant"] = {"failed": tool_message(error)}
        try:
            run = onnx_runner(converted, io_map)
        except Exception as error:  # onnxruntime cannot load the float16 graph: a finding
            raise ConversionFailed(f"onnxruntime cannot load the float16 graph: {tool_message(error)}") from None
        return Converted(run=run, emitted=emitted, notes=tuple(notes), artifact=converted)


PATH = Float16Path()
