"""ONNX GRU -> OpenVINO and torch ``nn.GRU`` -> OpenVINO (``openvino.convert_model``, CPU plugin).

Each is compiled twice: with the CPU plugin's defaults, and with ``INFERENCE_PRECISION_HINT`` = f32
(``openvino.properties.hint.inference_precision``), the setting that forces full precision. The CPU
plugin's default inference precision is bf16 on CPUs with native bf16 (AVX512_BF16 / AMX) and f32
otherwise (OpenVINO CPU plugin documentation, "Inference Precision"; read back here from the compiled
model's ``INFERENCE_PRECISION_HINT``, so the row says what was used, not what the docs promise).
``emitted`` records both precisions, the CPU's flags that decide it (from ``/proc/cpuinfo``), and
``default_vs_f32`` (the largest difference between the two compilations on the probe). The audited
run is the *default* compilation: a default that silently lowers precision is the finding. ``versions()``
names the device class (``"bf16 cpu: AMD EPYC"`` where the default is bf16), so the expected results and the
baseline are kept per class of CPU. Measured on an AMD EPYC with avx512_bf16 (OpenVINO 2026.4.1): default bf16,
3.7e-3 to 5.1e-3 from the float32 source; the f32 hint gives the float32 result (1e-7).

ONNX sources: the ONNX adapter's layout-0 graphs (``adapters.onnx_runtime.build_model``; inputs ``X``,
``sequence_lens``, ``initial_h_{k}``). torch sources: the ``nn.GRU`` in the wrapper module of
``roundtrips.torch_wrapper`` converted with ``example_input`` (OpenVINO traces it through TorchScript).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..base import ForwardResult
from .base import ConversionFailed, ConversionPath, Converted, missing_modules
from .quantization import ONNX_CONFIGS, TORCH_CONFIGS
from .roundtrips import quiet, tool_message, torch_example, torch_wrapper

CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16")


def cpu_flags() -> dict[str, bool]:
    """The x86 flags that decide the CPU plugin's default precision (False where /proc/cpuinfo is absent)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {flag: False for flag in CPU_FLAGS}
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return {flag: flag in flags for flag in CPU_FLAGS}


def default_device(core) -> str:
    """``versions()["device"]`` of these paths: ``"cpu: <chip>"`` where the CPU plugin's default inference
    precision is f32, ``"<precision> cpu: <chip>"`` (``"bf16 cpu: AMD EPYC"``) where it is lower, so expected
    results and the baseline are kept per class of CPU (``adapters.base.device_class``). The plugin says which
    before any model is compiled: ``core.get_property("CPU", INFERENCE_PRECISION_HINT)``."""
    import openvino.properties.hint as hints

    precision = _type_name(core.get_property("CPU", hints.inference_precision))
    chip = core.get_property("CPU", "FULL_DEVICE_NAME")
    return f"cpu: {chip}" if precision == "f32" else f"{precision} cpu: {chip}"


def _type_name(precision) -> str:
    return precision.get_type_name() if hasattr(precision, "get_type_name") else str(precision)


def _compile(core, model, f32: bool):
    import openvino.properties.hint as hints

    config = {hints.inference_precision: "f32"} if f32 else {}
    compiled = core.compile_model(model, "CPU", config)
    return compiled, _type_name(compiled.get_property(hints.inference_precision))


class OpenVinoPath(ConversionPath):
    tool = "openvino.convert_model + CPU plugin"
    full_precision_setting = "core.compile_model(model, 'CPU', {openvino.properties.hint.inference_precision: 'f32'})"

    def __init__(self, source: str):
        self.source = source
        self.id = f"{'onnx' if source == 'onnxruntime' else 'torch'}-openvino"
        self.title = (f"openvino.convert_model({'ONNX file' if source == 'onnxruntime' else 'nn.GRU'}) -> "
                      "compile_model(CPU, defaults)")

    def unavailable_reason(self) -> str | None:
        return missing_modules("openvino", *(("onnx",) if self.source == "onnxruntime" else ("torch",)))

    def versions(self) -> dict[str, str]:
        import openvino

        found = {"openvino": openvino.__version__, "device": default_device(openvino.Core())}
        if self.source == "torch":
            import torch

            found["torch"] = torch.__version__
        return found

    def source_configs(self) -> tuple[str, ...]:
        return ONNX_CONFIGS if self.source == "onnxruntime" else TORCH_CONFIGS

    def convert(self, layer, config, dtype, workdir: Path) -> Converted:
        import openvino as ov

        dtype = np.dtype(dtype)
        try:
            if self.source == "onnxruntime":
                import onnx

                source = workdir / "gru.onnx"
                onnx.save(layer.model, str(source))
                model, notes = quiet(ov.convert_model, str(source))
            else:
                wrapper = torch_wrapper(layer, config.masked)
                slots = layer.num_layers * (2 if layer.bidirectional else 1)
                x = np.zeros((2, 3, layer.input_size), dtype)
                mask = np.array([[True] * 3, [True, True, False]]) if config.masked else None
                example = torch_example(layer, x, np.zeros((slots, 2, layer.hidden_size), dtype), mask)
                model, notes = quiet(ov.convert_model, wrapper, example_input=example)
            core = ov.Core()
            compiled, precision = _compile(core, model, f32=False)
            compiled_f32, precision_f32 = _compile(core, model, f32=True)
        except Exception as error:  # the tool refused or broke: a finding
            raise ConversionFailed(tool_message(error)) from None
        ops: dict[str, int] = {}
        for op in model.get_ordered_ops():
            ops[op.get_type_name()] = ops.get(op.get_type_name(), 0) + 1
        emitted = {"format": "openvino IR (in memory)", "ops": dict(sorted(ops.items())),
                   "inference_precision_default": precision, "inference_precision_f32": precision_f32,
                   "cpu_flags": cpu_flags()}
        run_default = self._runner(compiled, layer, config)
        run_f32 = self._runner(compiled_f32, layer, config)
        state = {}

        def run(x, h0=None, mask=None) -> ForwardResult:
            result = run_default(x, h0, mask)
            full = run_f32(x, h0, mask)
            gaps = [np.abs(result.h_last - full.h_last).max()]
            if result.outputs is not None:
                gaps.append(np.abs(result.outputs - full.outputs).max())
            state["default_vs_f32"] = float(max(gaps))
            emitted["default_vs_f32"] = state["default_vs_f32"]  # the audit reads emitted after running
            return result

        notes = tuple(notes) + (f"compiled for CPU with the plugin's defaults (inference precision {precision}); "
                                f"the f32 hint gives {precision_f32}",)
        return Converted(run=run, emitted=emitted, notes=notes)

    def _runner(self, compiled, layer, config):
        if self.source == "onnxruntime":
            row = config.option("row")
            names = {port.get_any_name() for port in compiled.inputs}

            def run(x, h0=None, mask=None) -> ForwardResult:
                x = np.asarray(x)
                batch, time = x.shape[:2]
                slots = config.num_layers * config.directions
                h0 = np.zeros((slots, batch, layer.hidden_size), x.dtype) if h0 is None else np.asarray(h0)
                feeds = {"X": np.ascontiguousarray(x.transpose(1, 0, 2))}
                if "sequence_lens" in names:
                    feeds["sequence_lens"] = (np.full(batch, time) if mask is None else np.asarray(mask).sum(1)).astype(np.int32)
                for k in range(config.num_layers):
                    if f"initial_h_{k}" in names:
                        feeds[f"initial_h_{k}"] = np.ascontiguousarray(h0[k * config.directions:(k + 1) * config.directions])
                results = compiled(feeds)
                by_name = {port.get_any_name(): value for port, value in results.items()}
                finals = np.concatenate([by_name[f"Y_h_{k}"] for k in range(config.num_layers)])
                outputs = None
                if row.returns_sequences:
                    y = by_name["Y"]
                    outputs = np.ascontiguousarray(y.transpose(2, 0, 1, 3).reshape(batch, time, -1))
                return ForwardResult(outputs, np.ascontiguousarray(finals))

            return run

        slots = layer.num_layers * (2 if layer.bidirectional else 1)

        def run(x, h0=None, mask=None) -> ForwardResult:
            x = np.asarray(x)
            batch, time = x.shape[:2]
            h0 = np.zeros((slots, batch, layer.hidden_size), x.dtype) if h0 is None else np.asarray(h0, x.dtype)
            arguments = [a.numpy() for a in torch_example(layer, x, h0, mask if config.masked else None)]
            if config.masked and mask is None:
                arguments[2] = np.full(batch, time, np.int64)
            results = compiled(arguments)
            outputs, h_n = (np.asarray(results[port]) for port in compiled.outputs[:2])
            if not layer.batch_first:
                outputs = outputs.transpose(1, 0, 2)
            return ForwardResult(np.ascontiguousarray(outputs), np.ascontiguousarray(h_n))

        return run


ONNX_PATH = OpenVinoPath("onnxruntime")
TORCH_PATH = OpenVinoPath("torch")
