"""A plain ``.npz`` of named arrays, read with ``numpy.load(allow_pickle=False)`` (an object array,
which would need unpickling, is refused). GRUs are found by PyTorch, Keras or ONNX names and shapes
(``adapters.formats.base.find_in_named_arrays``)."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .base import FormatError, FoundGRU, find_in_named_arrays


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except ValueError as error:
        if "pickle" in str(error).lower():
            raise FormatError(f"{path}: refused: an array in it needs unpickling (object dtype), which can run "
                              f"arbitrary code; save plain float arrays (np.savez(path, **arrays))") from None
        raise FormatError(f"{path}: not a readable .npz ({error})") from None
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise FormatError(f"{path}: not a readable .npz (corrupt or truncated?): {error}") from None


@dataclass(frozen=True)
class NpzFormat:
    name: str = "npz"

    def read(self, path: Path, family: str) -> list[FoundGRU]:
        arrays = load_arrays(path)
        if not arrays:
            raise FormatError(f"{path}: the .npz holds no arrays; no GRU to find")
        return find_in_named_arrays(arrays)


FORMAT = NpzFormat()
