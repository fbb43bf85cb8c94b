"""Saved-file formats, found through one registry (mirrors ``adapters.REGISTRY``).

``open_file(path)`` detects the format by content *and* extension, reads every GRU in the file
into ``FoundGRU`` records (``adapters.formats.base``), and raises ``FormatError`` (one line, the
reason) for a corrupt, truncated, empty, unsafe, wrong-extension or GRU-free file. A format whose
library is missing is unavailable with the reason (``status()``), never an import error here.
"""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import Path

from .base import Confirmation, FormatError, FoundGRU, confirm, own_forward, own_layer

# name -> module defining ``FORMAT``; the library is imported only when the format is asked for. One line per format.
REGISTRY: dict[str, str] = {
    "torch": "adapters.formats.torch_state_dict",
    "safetensors": "adapters.formats.safetensors_file",
    "keras": "adapters.formats.keras_file",
    "onnx": "adapters.formats.onnx_file",
    "npz": "adapters.formats.npz_file",
}

# Which extensions each format owns (checked before any library is imported; ".weights.h5" ends in ".h5").
EXTENSIONS: dict[str, tuple[str, ...]] = {
    "torch": (".pt", ".pth", ".bin"),
    "safetensors": (".safetensors",),
    "keras": (".keras", ".h5", ".hdf5"),
    "onnx": (".onnx",),
    "npz": (".npz",),
}


class FormatUnavailable(RuntimeError):
    def __init__(self, name: str, reason: str):
        super().__init__(f"the {name} format is unavailable: {reason}")
        self.name, self.reason = name, reason


@cache
def _load(name: str):
    try:
        module = importlib.import_module(REGISTRY[name])
    except ImportError as error:
        return FormatUnavailable(name, f"{error.name or error} is not installed ({error})")
    except Exception as error:  # a broken install reads as unavailable
        return FormatUnavailable(name, f"importing it failed: {type(error).__name__}: {error}")
    return module.FORMAT


def get(name: str):
    if name not in REGISTRY:
        raise ValueError(f"unknown format {name!r}; valid: {', '.join(REGISTRY)}")
    loaded = _load(name)
    if isinstance(loaded, FormatUnavailable):
        raise loaded
    return loaded


def status() -> dict:
    return {name: _load(name) for name in REGISTRY}


def format_for_extension(path: Path) -> str | None:
    suffix = path.suffix.lower()
    for name, extensions in EXTENSIONS.items():
        if suffix in extensions:
            return name
    return None


def sniff(head: bytes) -> str:
    """What the first bytes say the file is (a content family, not yet a format)."""
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if len(head) >= 9 and int.from_bytes(head[:8], "little") < 100_000_000 and head[8:9] == b"{":
        return "safetensors"
    if head[:1] == b"\x80":
        return "pickle"
    return "other"


# content family -> the formats that may hold it
CONTENT = {"zip": ("torch", "keras", "npz"), "hdf5": ("keras",), "safetensors": ("safetensors",),
           "pickle": ("torch",), "other": ("onnx",)}

DESCRIBED = {"zip": "a zip archive", "hdf5": "an HDF5 file", "safetensors": "a safetensors file",
             "pickle": "a legacy (non-zip) PyTorch pickle", "other": "no known container (ONNX is protobuf)"}


def open_file(path) -> tuple[str, list[FoundGRU]]:
    """``(format name, every GRU in the file)``, or ``FormatError`` saying why not."""
    path = Path(path)
    if not path.exists():
        raise FormatError(f"{path}: no such file")
    if path.is_dir():
        raise FormatError(f"{path} is a directory; give a model file ({', '.join(e for es in EXTENSIONS.values() for e in es)})")
    by_extension = format_for_extension(path)
    if by_extension is None:
        accepted = ", ".join(e for es in EXTENSIONS.values() for e in es)
        raise FormatError(f"{path}: unknown extension {path.suffix or '(none)'!r}; accepted: {accepted}")
    try:
        with path.open("rb") as handle:
            head = handle.read(64)
    except OSError as error:
        raise FormatError(f"{path}: cannot read it ({error.strerror or error})") from None
    if not head:
        raise FormatError(f"{path} is empty (0 bytes): nothing to inspect")
    family = sniff(head)
    if by_extension not in CONTENT[family]:
        raise FormatError(f"{path}: the extension {path.suffix!r} says {by_extension}, but the content is "
                          f"{DESCRIBED[family]}; the file is corrupt or misnamed (rename it to what it holds)")
    try:
        found = get(by_extension).read(path, family)
    except FormatUnavailable as error:
        raise FormatError(f"{path}: {error}") from None
    if not found:
        raise FormatError(f"{path}: no GRU found in this {by_extension} file")
    return by_extension, found


def choose(found: list[FoundGRU], name: str | None, path) -> FoundGRU:
    """The one GRU a command works on: the only one, or the one named ``name``."""
    names = [gru.location for gru in found]
    if name is None:
        if len(found) == 1:
            return found[0]
        raise FormatError(f"{path} holds {len(found)} GRUs ({', '.join(names)}); choose one with --name")
    for gru in found:
        if gru.location == name:
            return gru
    raise FormatError(f"{path} has no GRU named {name!r}; valid: {', '.join(names)}")


__all__ = ["Confirmation", "EXTENSIONS", "FormatError", "FormatUnavailable", "FoundGRU", "REGISTRY", "choose",
           "confirm", "get", "open_file", "own_forward", "own_layer", "status"]
