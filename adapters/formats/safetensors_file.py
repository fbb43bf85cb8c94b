"""``.safetensors`` files: named tensors with a JSON header and no code at all (``safetensors.numpy.load_file``).

GRUs are found by parameter names and shapes as in a PyTorch state dict (the usual content of a
``.safetensors`` file), or by Keras/ONNX names (``adapters.formats.base.find_in_named_arrays``).
bfloat16 tensors (no NumPy dtype) are read through torch when it is installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

import safetensors  # noqa: F401  (a missing package makes this format unavailable, with the reason)
from safetensors.numpy import load_file

from .base import FormatError, FoundGRU, _Widened, find_in_named_arrays, mark_widened


def load_arrays(path: Path) -> dict:
    try:
        return load_file(str(path))
    except Exception as error:  # SafetensorError (header), TypeError (bfloat16 has no NumPy dtype)
        if "bfloat16" in str(error) or "BF16" in str(error):
            try:
                from safetensors.torch import load_file as load_torch

                return {k: _Widened(v.float().numpy(), str(v.dtype).removeprefix("torch."))
                        for k, v in load_torch(str(path)).items()}
            except Exception as inner:
                error = inner
        raise FormatError(f"{path}: not a readable safetensors file (corrupt or truncated?): "
                          f"{str(error).splitlines()[0][:160] if str(error) else type(error).__name__}") from None


@dataclass(frozen=True)
class SafetensorsFormat:
    name: str = "safetensors"

    def read(self, path: Path, family: str) -> list[FoundGRU]:
        arrays = load_arrays(path)
        if not arrays:
            raise FormatError(f"{path}: the safetensors file holds no tensors; no GRU to find")
        plain = {k: np.asarray(v) if isinstance(v, _Widened) else v for k, v in arrays.items()}
        return mark_widened(arrays, find_in_named_arrays(plain))


FORMAT = SafetensorsFormat()
