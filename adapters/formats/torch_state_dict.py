"""PyTorch ``state_dict`` or checkpoint files (``.pt``/``.pth``/``.bin``), read only with
``torch.load(weights_only=True)``.

``weights_only=True`` unpickles tensors, primitive containers and a fixed allow-list only
(``torch/_weights_only_unpickler.py``); a file that needs anything else (a whole pickled
``nn.Module``, a custom class) raises ``pickle.UnpicklingError`` there, and is refused here with that
reason: this tool never unpickles arbitrary code. A checkpoint may nest the state dict
(``{"model_state_dict": {...}, "epoch": 3}``): nested dicts are flattened with dotted keys, so every
GRU is found by its parameter names (``{prefix}weight_ih_l{k}[_reverse]``, ``weight_hh_l{k}``,
``bias_ih_l{k}``, ``bias_hh_l{k}``, ``torch/nn/modules/rnn.py:1284-1292``; ``nn.GRUCell``:
``weight_ih``/``weight_hh``/``bias_ih``/``bias_hh``) and shapes (``weight_hh`` is ``(3H, H)``; an
LSTM's ``(4H, H)`` is not a GRU).
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .base import FormatError, FoundGRU, _Widened, find_in_named_arrays, mark_widened

import torch  # noqa: E402  (a missing torch makes this format unavailable, with the reason)


def flatten(value, prefix: str = "", out: dict | None = None) -> dict[str, np.ndarray]:
    out = {} if out is None else out
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        if tensor.dtype == torch.bfloat16:
            # NumPy has no bfloat16; widening is exact, and the GRU records what was stored
            out[prefix.rstrip(".")] = _Widened(tensor.float().numpy().copy(), "bfloat16")
            return out
        out[prefix.rstrip(".")] = tensor.numpy().copy()
    elif isinstance(value, dict):
        for key, item in value.items():
            flatten(item, f"{prefix}{key}.", out)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            flatten(item, f"{prefix}{index}.", out)
    return out


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        import re

        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        detail = f"it pickles {found.group(1)}" if found else ""
        raise FormatError(
            f"{path}: refused: it needs full unpickling, which can run arbitrary code ({detail or 'not a plain state_dict'}); "
            f"save model.state_dict() instead (torch.save(model.state_dict(), path)), or use .safetensors"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise FormatError(f"{path}: not a readable PyTorch file (corrupt or truncated?): {message[:160]}") from None
    arrays = flatten(loaded)
    if not arrays:
        raise FormatError(f"{path}: the PyTorch file holds no tensors ({type(loaded).__name__}); no GRU to find")
    return arrays


@dataclass(frozen=True)
class TorchStateDictFormat:
    name: str = "torch"
    library: str = f"torch {torch.__version__}"

    def read(self, path: Path, family: str) -> list[FoundGRU]:
        if family == "zip":
            try:
                with zipfile.ZipFile(path) as archive:
                    names = archive.namelist()
            except zipfile.BadZipFile as error:
                raise FormatError(f"{path}: corrupt zip archive ({error})") from None
            if not any(name.endswith("data.pkl") for name in names):
                raise FormatError(f"{path}: a zip archive without data.pkl is not a PyTorch file "
                                  f"(it holds {', '.join(names[:3])}{', ...' if len(names) > 3 else ''})")
        arrays = load_arrays(path)
        plain = {k: np.asarray(v) for k, v in arrays.items()}
        return mark_widened(arrays, find_in_named_arrays(plain))


FORMAT = TorchStateDictFormat()
