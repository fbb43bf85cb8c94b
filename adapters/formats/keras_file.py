"""Keras files: a ``.keras`` model, a legacy ``.h5`` model, or weights only (``.weights.h5``, an ``.h5``
without ``model_config``).

Whole models are loaded with ``keras.saving.load_model(path, compile=False, safe_mode=True)``
(``safe_mode`` refuses to deserialise a ``Lambda``'s bytecode; ``keras/src/saving/saving_api.py``
passes it to ``saving_lib.load_model`` for ``.keras`` and ``legacy_h5_format.load_model_from_hdf5`` for
``.h5``), then every ``GRU``, ``RNN(GRUCell)`` and ``Bidirectional`` of them is found by layer type,
through nested models, and read with the ``keras`` adapter (``extract``/``describe``: the layer's own
``reset_after``, ``use_bias``, ``go_backwards``, ``merge_mode``).

Weights-only files are read with ``h5py`` (no code runs) and searched by name and shape: Keras 3
writes ``layers/<name>/cell/vars/0..2`` (kernel, recurrent kernel, bias; inspected on files written
by Keras 3.15.1), ``Bidirectional`` as ``forward_layer``/``backward_layer``; tf.keras writes
``.../kernel:0`` etc. Without the configuration, ``reset_after`` is read off the bias shape
(``(2, 3H)`` or ``(3H,)``, ``keras/src/layers/rnn/gru.py:164-171``) and ``go_backwards`` is unknown
(assumed False, with a note).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from reference import Convention

from . import FormatUnavailable
from .base import FormatError, FoundGRU, find_in_named_arrays


def _h5_arrays(handle) -> dict[str, np.ndarray]:
    arrays = {}

    def visit(name, item):
        if isinstance(item, h5py.Dataset) and item.shape != () and item.dtype.kind == "f":
            arrays[name] = item[()]

    handle.visititems(visit)
    return arrays


def _weights_only(path: Path, note: str = "") -> list[FoundGRU]:
    try:
        with h5py.File(path, "r") as handle:
            arrays = _h5_arrays(handle)
    except (OSError, ValueError) as error:
        raise FormatError(f"{path}: not a readable HDF5 file (corrupt or truncated?): {error}") from None
    found = find_in_named_arrays(arrays)
    for gru in found:
        if gru.framework == "keras":
            gru.notes.append(note or "weights only (no layer configuration): go_backwards is not recorded, assumed False")
    return found


def _config_layers(config, out=None) -> dict[str, dict]:
    """Layer name -> its config, for every GRU / RNN / Bidirectional in a saved model configuration (JSON)."""
    out = {} if out is None else out
    if isinstance(config, dict):
        name = config.get("class_name")
        inner = config.get("config", {})
        if name in ("GRU", "RNN", "Bidirectional") and isinstance(inner, dict) and "name" in inner:
            out[inner["name"]] = {"class_name": name, **inner}
        for value in config.values():
            _config_layers(value, out)
    elif isinstance(config, list):
        for value in config:
            _config_layers(value, out)
    return out


def _gru_switches(config: dict) -> dict:
    """reset_after, go_backwards, use_bias, activations and merge mode of a GRU's saved configuration."""
    if config["class_name"] == "Bidirectional":
        inner = config.get("layer", {}).get("config", {})
        return {**_gru_switches({"class_name": "GRU", **inner}), "merge": config.get("merge_mode") or "concat",
                "go_backwards": False}
    if config["class_name"] == "RNN":
        config = {**config, **config.get("cell", {}).get("config", {})}
    return {"reset_after": bool(config.get("reset_after", True)), "go_backwards": bool(config.get("go_backwards", False)),
            "use_bias": bool(config.get("use_bias", True)), "activation": config.get("activation", "tanh"),
            "recurrent_activation": config.get("recurrent_activation", "sigmoid")}


def _apply_config(found: list[FoundGRU], configs: dict[str, dict], why: str) -> list[FoundGRU]:
    """Weights found by name, corrected by the layer configuration saved beside them."""
    for gru in found:
        parts = [part for part in gru.location.split("/") if part not in ("model_weights", "layers")]
        name = next((part for part in parts if part in configs), None)
        gru.notes.append(why)
        if gru.framework != "keras" or name is None:
            continue
        switches = _gru_switches(configs[name])
        gru.location = name
        reset_after = switches["reset_after"]
        gru.options.update(reset_after=reset_after, reverse=switches["go_backwards"] and gru.directions == 1)
        if "merge" in switches:
            gru.options["merge"] = switches["merge"]
        gru.convention = Convention("z_on_previous", "after" if reset_after else "before")
        gru.convention_source = f"reset_after={reset_after} in the saved layer configuration"
        gru.notes[:] = [note for note in gru.notes if "does not record reset_after" not in note and "go_backwards is not" not in note]
        for role, wanted in (("activation", "tanh"), ("recurrent_activation", "sigmoid")):
            if switches.get(role) not in (wanted, None):
                gru.notes.append(f"{role}={switches[role]!r}, not {wanted!r}: the four conventions assume {wanted}")
    return found


def _from_saved_config(path: Path, config_json: str, weights_path: Path, why: str) -> list[FoundGRU]:
    import json

    try:
        configs = _config_layers(json.loads(config_json))
    except ValueError as error:
        raise FormatError(f"{path}: its model configuration is not valid JSON ({error})") from None
    return _apply_config(_weights_only(weights_path), configs, why)


def _keras_layers(model, prefix=""):
    """(path, layer) for every GRU-holding recurrent layer, through nested models."""
    import keras

    for layer in getattr(model, "layers", []):
        path = f"{prefix}{layer.name}"
        if isinstance(layer, keras.layers.Bidirectional) or isinstance(layer, keras.layers.RNN):
            cell = (layer.forward_layer if isinstance(layer, keras.layers.Bidirectional) else layer).cell
            if isinstance(cell, keras.layers.GRUCell):
                yield path, layer
        elif getattr(layer, "layers", None):
            yield from _keras_layers(layer, f"{path}/")


def _from_layer(path: str, layer) -> FoundGRU:
    import keras

    import adapters

    adapter = adapters.get("keras")
    try:
        layers = adapter.extract(layer)
    except (TypeError, ValueError) as error:
        raise FormatError(f"GRU layer {path!r}: {error}") from None
    bidirectional = isinstance(layer, keras.layers.Bidirectional)
    rnn = layer.forward_layer if bidirectional else layer
    cell = rnn.cell
    reset_after = bool(cell.reset_after)
    kind = "keras Bidirectional(GRU)" if bidirectional else ("keras GRU" if isinstance(rnn, keras.layers.GRU)
                                                           else "keras RNN(GRUCell)")
    notes = []
    options = {"reset_after": reset_after, "reverse": bool(rnn.go_backwards) and not bidirectional}
    if bidirectional:
        options["merge"] = layer.merge_mode or "concat"
        if layer.merge_mode is None:
            notes.append("merge_mode=None returns the directions unmerged; confirmed with concat")
    return FoundGRU(
        location=path, kind=kind, layers=layers, framework="keras",
        convention=Convention("z_on_previous", "after" if reset_after else "before"),
        convention_source=f"reset_after={reset_after} (keras/src/layers/rnn/gru.py:287-291)",
        bias_layout=("(2, 3H): input row, recurrent row" if reset_after else "(3H,) input only")
        if cell.use_bias else "none (use_bias=False)",
        has_bias=bool(cell.use_bias), stored_dtype=str(np.dtype(cell.kernel.dtype)), options=options, notes=notes,
    )


def load_keras_model(path: Path):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import adapters

    try:
        adapters.get("keras")  # Keras on TensorFlow, in this process (the keras adapter's backend check)
    except adapters.AdapterUnavailable as unavailable:
        raise FormatUnavailable("keras", f"reading and confirming a Keras file needs Keras on TensorFlow: "
                                         f"{unavailable.reason}") from None
    import keras

    return keras.saving.load_model(str(path), compile=False, safe_mode=True)


@dataclass(frozen=True)
class KerasFormat:
    name: str = "keras"

    def read(self, path: Path, family: str) -> list[FoundGRU]:
        suffix = path.name.lower()
        if suffix.endswith(".keras") and family != "zip":
            raise FormatError(f"{path}: a .keras file is a zip archive, but this one is not (corrupt or misnamed)")
        if suffix.endswith((".h5", ".hdf5")) and family != "hdf5":
            raise FormatError(f"{path}: an .h5 file is HDF5, but this one is not (corrupt or misnamed)")
        if family == "hdf5":
            try:
                with h5py.File(path, "r") as handle:
                    whole_model = "model_config" in handle.attrs
            except (OSError, ValueError) as error:
                raise FormatError(f"{path}: not a readable HDF5 file (corrupt or truncated?): {error}") from None
            if not whole_model:
                return _weights_only(path)
        else:
            try:
                with zipfile.ZipFile(path) as archive:
                    names = archive.namelist()
                    if "config.json" not in names:
                        raise FormatError(f"{path}: a zip without config.json is not a .keras model")
            except zipfile.BadZipFile as error:
                raise FormatError(f"{path}: corrupt zip archive ({error})") from None
        try:
            model = load_keras_model(path)
        except (FormatError, FormatUnavailable):
            raise
        except Exception as error:
            message = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
            # Keras cannot rebuild the model (a tf.keras 2 argument such as time_major, a custom or unsafe
            # layer): read the saved configuration and the weights as data instead, which runs no code.
            why = f"Keras {self._keras_version()} cannot rebuild the whole model ({message[:120]}); read as data"
            fallback = self._as_data(path, family, why)
            if fallback:
                return fallback
            if "safe_mode" in str(error) or "lambda" in str(error).lower():
                raise FormatError(f"{path}: refused: loading it needs safe_mode=False (it deserialises code): "
                                  f"{message}") from None
            raise FormatError(f"{path}: Keras cannot load it (corrupt, truncated, or a custom layer?): {message}") from None
        return [_from_layer(name, layer) for name, layer in _keras_layers(model)]


    @staticmethod
    def _keras_version() -> str:
        import keras

        return keras.__version__

    @staticmethod
    def _as_data(path: Path, family: str, why: str) -> list[FoundGRU]:
        import tempfile

        try:
            if family == "hdf5":
                with h5py.File(path, "r") as handle:
                    config = handle.attrs["model_config"]
                config = config.decode() if isinstance(config, bytes) else str(config)
                return _from_saved_config(path, config, path, why)
            with zipfile.ZipFile(path) as archive, tempfile.TemporaryDirectory() as scratch:
                if "model.weights.h5" not in archive.namelist():
                    return []
                weights = Path(archive.extract("model.weights.h5", scratch))
                return _from_saved_config(path, archive.read("config.json").decode(), weights, why)
        except (OSError, KeyError, zipfile.BadZipFile, UnicodeDecodeError):
            return []


FORMAT = KerasFormat()
