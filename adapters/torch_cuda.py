"""PyTorch on a CUDA GPU: ``nn.GRU`` through cuDNN and ``nn.GRUCell`` through cuBLAS, with torch's own
TF32 defaults and with TF32 turned off.

Everything but the device is ``adapters.torch_nn`` (same layouts, same checks, same gradients); what
this module adds is *which arithmetic* the GPU uses for float32, the one thing that differs:

- ``torch/include/ATen/Context.h:501`` (torch 2.13.0): ``bool allow_tf32_cudnn = true;`` and
  ``:553`` ``{{Float32Backend::CUDA, Float32Op::RNN}, Float32Precision::DEFAULT}``: cuDNN's RNN
  kernels may use TF32 tensor cores (10 explicit mantissa bits instead of 23) for float32 unless
  ``torch.backends.cudnn.allow_tf32 = False``; float64 is never affected;
- ``Context.h:496-499``: ``float32_matmul_precision`` is ``HIGHEST`` unless the environment sets
  ``TORCH_ALLOW_TF32_CUBLAS_OVERRIDE``, so plain matmuls (``nn.GRUCell``'s two ``linear`` calls,
  ``torch/nn/modules/rnn.py``, ``GRUCell.forward`` -> ``_VF.gru_cell``) stay IEEE float32 unless the
  user calls ``torch.set_float32_matmul_precision("high")`` (one configuration here does).

Each configuration names the switches it runs under (``options["numerics"]``); ``run`` and
``gradients`` set them for the call only and restore the caller's values afterwards, so measuring
never changes the process's settings. On a machine without a CUDA device the registry lists this
adapter as unavailable with the reason; nothing else depends on a GPU.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace

import torch

from reference import Layers

from .base import FrameworkUnavailable, LayerConfig
from .torch_nn import TorchAdapter

if not torch.cuda.is_available():
    build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
    raise FrameworkUnavailable(
        f"no CUDA device: torch {torch.__version__} ({build}) reports torch.cuda.is_available() = False"
    )

DEVICE = torch.device("cuda")

# The switches each configuration runs under; None leaves torch's default (or the caller's setting).
TORCH_DEFAULTS: dict[str, bool | str | None] = {}
TF32_OFF = {"cudnn.allow_tf32": False, "matmul.allow_tf32": False}
MATMUL_HIGH = {"float32_matmul_precision": "high"}


def _read_switches() -> dict[str, bool | str]:
    return {
        "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }


def _write_switches(switches: dict) -> None:
    if "float32_matmul_precision" in switches:
        torch.set_float32_matmul_precision(switches["float32_matmul_precision"])
    if "cudnn.allow_tf32" in switches:
        torch.backends.cudnn.allow_tf32 = switches["cudnn.allow_tf32"]
    if "matmul.allow_tf32" in switches:
        torch.backends.cuda.matmul.allow_tf32 = switches["matmul.allow_tf32"]


@contextmanager
def numerics(switches: dict):
    """Run with ``switches`` set, then put back exactly what the caller had."""
    saved = _read_switches()
    try:
        _write_switches(switches)
        yield
    finally:
        _write_switches(saved)


class TorchCudaAdapter(TorchAdapter):
    name = "torch-cuda"

    def versions(self) -> dict[str, str]:
        return {
            "torch": torch.__version__,
            "cuda": str(torch.version.cuda),
            "cudnn": str(torch.backends.cudnn.version()),
            "gpu": torch.cuda.get_device_name(0),
        }

    def configurations(self) -> list[LayerConfig]:
        cpu = {config.name: config for config in super().configurations()}
        rows = [
            ("nn.GRU(batch_first=True)", "nn.GRU(batch_first=True) [cuDNN, torch defaults]", TORCH_DEFAULTS),
            ("nn.GRU(batch_first=True)", "nn.GRU(batch_first=True) [cuDNN, allow_tf32=False]", TF32_OFF),
            ("nn.GRU(num_layers=2, bidirectional=True)", "nn.GRU(num_layers=2, bidirectional=True) [cuDNN]", TORCH_DEFAULTS),
            ("nn.GRU + PackedSequence", "nn.GRU + PackedSequence [cuDNN]", TORCH_DEFAULTS),
            ("nn.GRUCell", "nn.GRUCell [cuBLAS, torch defaults]", TORCH_DEFAULTS),
            ("nn.GRUCell", "nn.GRUCell [cuBLAS, float32_matmul_precision='high']", MATMUL_HIGH),
        ]
        return [
            replace(cpu[base], framework=self.name, name=name,
                    options=cpu[base].options + (("numerics", tuple(switches.items())),))
            for base, name, switches in rows
        ]

    def build(self, config: LayerConfig, layers: Layers, dtype) -> torch.nn.Module:
        module = super().build(config, layers, dtype).to(DEVICE)
        # The module is ours (built here), so it may carry the switches its configuration runs under.
        module.gru_equiv_numerics = dict(config.option("numerics", ()))
        return module

    def run(self, layer, x, h0=None, mask=None):
        with numerics(getattr(layer, "gru_equiv_numerics", {})):
            return super().run(layer, x, h0, mask)

    def gradients(self, layer, x, h0=None, mask=None, d_outputs=None, d_h_last=None):
        with numerics(getattr(layer, "gru_equiv_numerics", {})):
            return super().gradients(layer, x, h0, mask, d_outputs, d_h_last)


ADAPTER = TorchCudaAdapter()
