"""What every framework adapter provides, and the configuration record they share."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reference import Convention, Layers
from reference.params import INPUT_BIASES, RECURRENT_BIASES, describe_value

ALL_BIASES = INPUT_BIASES + RECURRENT_BIASES

PADDING_SEMANTICS = {
    "carry": "padded steps keep the state; the output there repeats the carried state",
    "zero": "padded steps keep the state; the output there is zeros",
    "previous_output": "padded steps keep the state; the output repeats the previous output (zeros before the first real step)",
}


@dataclass(frozen=True)
class LayerConfig:
    """One way of building a framework's GRU layer, as data.

    ``name`` is the user-facing label (also the pytest id). ``options`` holds the
    framework-specific switches the adapter reads (``batch_first``, ``reset_after``, ...).
    ``separate_recurrent_bias=False`` marks a single-bias layout (recurrent biases must be zero).
    ``masked`` asks for variable-length inputs; ``reverse`` runs a single direction backwards; ``merge`` and ``masked_output`` say how the
    framework combines directions and what it outputs at padded steps (see ``reference.gru_stack``).

    What a reader needs to port by hand, and where the claim comes from:
    ``biases`` names the canonical biases the class holds (``b_*`` input, ``c_*`` recurrent; None
    derives it from ``bias`` / ``separate_recurrent_bias``); absent ones are zero in every probe.
    ``claim_source`` is the file and line of the framework's own source (docstring or code) that
    states ``claimed``; ``layout`` the gate order and shapes of its weights; ``padding`` its
    variable-length semantics in words (derived from ``masked_output`` when empty).
    ``reference_options`` are extra keyword arguments of ``reference.gru_stack`` that the class
    needs modelled (another gate or candidate activation, a clip), as ``(name, value)`` pairs.
    ``documentation_findings`` are places where the framework's documentation and its behaviour
    disagree on something other than the formula (a bias the docstring names but the class lacks, a
    wrong shape, a self-contradiction), each with its evidence (the source line, and what runs).
    """

    framework: str
    name: str
    claimed: Convention
    num_layers: int = 1
    bidirectional: bool = False
    bias: bool = True
    separate_recurrent_bias: bool = True
    masked: bool = False
    reverse: bool = False
    merge: str = "concat"
    masked_output: str = "carry"
    returns_sequences: bool = True
    options: tuple[tuple[str, Any], ...] = field(default=())
    biases: tuple[str, ...] | None = None
    claim_source: str = ""
    layout: str = ""
    padding: str = ""
    reference_options: tuple[tuple[str, Any], ...] = field(default=())
    documentation_findings: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        unknown = set(self.biases or ()) - set(ALL_BIASES)
        if unknown:
            raise ValueError(f"{self.label}: unknown bias name(s) {sorted(unknown)}; valid: {', '.join(ALL_BIASES)}")

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)

    @property
    def bias_fields(self) -> tuple[str, ...]:
        """The canonical biases this class holds, in ``ALL_BIASES`` order."""
        if self.biases is not None:
            return tuple(name for name in ALL_BIASES if name in self.biases)
        if not self.bias:
            return ()
        return ALL_BIASES if self.separate_recurrent_bias else INPUT_BIASES

    def holdable(self, layers):
        """``layers`` with every bias this class lacks set to zero: the parameters it can hold."""
        absent = [name for name in ALL_BIASES if name not in self.bias_fields]
        if not absent:
            return [list(layer) for layer in layers]
        return [[p.replace(**{name: np.zeros_like(getattr(p, name)) for name in absent}) for p in layer]
                for layer in layers]

    @property
    def framework_class(self) -> str:
        """The class this configuration exercises, read off its name: ``nn.GRU(batch_first=True)`` is
        ``nn.GRU``, ``RNN(GRUCell(reset_after=True))`` is ``RNN(GRUCell)``, ``[GRU, GRU]`` is ``GRU``."""
        match = re.match(r"^\[?([\w.]+)(?:\(([A-Z][\w.]*)(?=[(),]))?", self.name)
        if not match:
            return self.name
        outer, inner = match.groups()
        return f"{outer}({inner})" if inner else outer

    @property
    def padding_semantics(self) -> str:
        if self.padding:
            return self.padding
        if not self.masked:
            return "not exercised (no variable-length input in this configuration)"
        return PADDING_SEMANTICS[self.masked_output]

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def label(self) -> str:
        return f"{self.framework}:{self.name}"


def set_registry_line(registry: dict[str, str], load, name: str, line: str) -> None:
    """Make ``registry[name]`` read ``line`` here, as it does in the process that asks: a worker process measuring
    for its caller finds an adapter or conversion path the caller registered itself (a test's). ``load`` is the
    registry's cached loader, cleared when a line changes."""
    if registry.get(name) != line:
        registry[name] = line
        load.cache_clear()


def device_class(versions: dict[str, str]) -> str:
    """Where a measurement was made, as a class of machine: the part of ``versions()["device"]`` before its
    colon (``"gpu: NVIDIA H200"`` -> ``"gpu"``; ``"bf16 cpu: AMD EPYC"`` -> ``"bf16 cpu"``), ``"cpu"`` where an
    adapter or path names no device. Results that depend on the hardware (TF32 on a GPU, a runtime's bf16
    default on a CPU with native bf16) are expected, and baselined, per device class."""
    return versions.get("device", "cpu").split(":")[0]


@dataclass(frozen=True)
class ForwardResult:
    """A framework's forward pass as NumPy arrays.

    ``outputs``: ``(batch, time, features)`` aligned with the input time axis (None when the
    layer returns no sequence); ``h_last``: ``(layers * directions, batch, hidden)``.
    """

    outputs: np.ndarray | None
    h_last: np.ndarray


class FrameworkUnavailable(RuntimeError):
    """Raised while an adapter module is imported when its framework is installed but cannot run here
    (no GPU, for instance); the registry lists the adapter as unavailable with ``reason``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class GradientsUnavailable(RuntimeError):
    """The adapter cannot differentiate its layer (e.g. ONNX Runtime has no autodiff); ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Adapter(ABC):
    """Ports canonical parameters into a real framework layer and back, and runs it on NumPy input."""

    name: str = ""

    @abstractmethod
    def versions(self) -> dict[str, str]:
        """Library versions that decide what this adapter computes."""

    @abstractmethod
    def configurations(self) -> list[LayerConfig]:
        """Every configuration this adapter builds, with the convention its documentation claims."""

    @abstractmethod
    def build(self, config: LayerConfig, layers: Layers, dtype) -> Any:
        """A new framework object computing ``config`` with exactly these parameters, in ``dtype``."""

    @abstractmethod
    def extract(self, layer: Any) -> Layers:
        """Canonical parameters of an existing framework object, copied (the object is untouched)."""

    @abstractmethod
    def describe(self, layer: Any) -> LayerConfig:
        """The configuration of an existing framework object."""

    @abstractmethod
    def run(self, layer: Any, x: np.ndarray, h0: np.ndarray | None = None, mask: np.ndarray | None = None) -> ForwardResult:
        """Forward pass of ``layer`` on ``x (batch, time, input)``; ``h0 (layers*dirs, batch, hidden)``;
        ``mask (batch, time)`` bool, right-padded."""

    def unavailable_reason(self) -> str | None:
        """Why this adapter cannot run here although its module imported (one module serving several
        adapters, each needing another backend); None when it can. The registry lists it unavailable."""
        return None

    def gradients(self, layer: Any, x: np.ndarray, h0: np.ndarray | None, mask: np.ndarray | None,
                  d_outputs: np.ndarray | None, d_h_last: np.ndarray | None):
        """The framework's own gradients of ``sum(outputs * d_outputs) + sum(h_last * d_h_last)``, as a
        ``reference.backward.StackGradients`` in canonical form: ``layers[l][d]`` a ``GRUParams`` of
        gradients (a bias the class lacks: zeros), ``x (batch, time, input)`` and ``h0`` in ``run``'s
        shapes. ``outputs`` and ``h_last`` are what ``run`` returns (outputs aligned with the input
        time axis); ``d_outputs`` is None for a layer that returns no sequence. ``layer`` is never changed.

        Raises ``GradientsUnavailable`` (with the reason) where the framework has no autodiff or the
        adapter does not implement it; that is the default.
        """
        raise GradientsUnavailable(f"the {self.name or type(self).__name__} adapter does not compute gradients")

    def configuration(self, name: str) -> LayerConfig:
        for config in self.configurations():
            if config.name == name:
                return config
        valid = ", ".join(c.name for c in self.configurations())
        raise ValueError(f"{self.name} has no configuration {name!r}; valid: {valid}")


def check_layer_structure(config: LayerConfig, layers: Layers) -> None:
    """The stack has ``config``'s number of layers and directions."""
    from reference import check_layers

    num_layers, directions = check_layers(layers, config.merge)
    if (num_layers, directions) != (config.num_layers, config.directions):
        raise ValueError(
            f"{config.label} needs {config.num_layers} layer(s) x {config.directions} direction(s), "
            f"the parameters have {num_layers} x {directions}"
        )


def check_run_inputs(x, h0, mask, *, input_size: int, hidden_size: int, slots: int, dtype: str, what: str):
    """``(x, h0, mask)`` as arrays, or an error naming the bad argument and the fix.

    ``x (batch, time, input_size)`` in the layer's ``dtype``; ``h0 (slots, batch, hidden_size)`` with
    ``slots`` = layers x directions; ``mask (batch, time)`` bool, right-padded; all finite. Shared by
    every adapter that runs from NumPy, so a bad argument reads the same whichever framework it meets.
    """
    if hasattr(x, "detach") or not isinstance(x, (np.ndarray, list, tuple)):
        raise TypeError(f"x is {describe_value(x)}; pass a NumPy array (batch, time, {input_size})")
    x = np.asarray(x)
    if x.ndim != 3:
        hint = " (one sequence: x[None])" if x.ndim == 2 else ""
        raise ValueError(
            f"x has shape {x.shape} (rank {x.ndim}); {what} takes x as (batch, time, input_size) = "
            f"(batch, time, {input_size}){hint}"
        )
    if x.shape[2] != input_size:
        raise ValueError(
            f"x has {x.shape[2]} features per step (shape {x.shape}), but {what} has input_size={input_size} "
            f"(its kernel is ({input_size}, 3H)); pass x of shape ({x.shape[0]}, {x.shape[1]}, {input_size})"
        )
    if 0 in x.shape[:2]:
        raise ValueError(f"x has shape {x.shape}: batch and time must be at least 1")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"x has dtype {x.dtype}; pass floating-point input: x.astype(np.{dtype})")
    if x.dtype.name != dtype:
        raise TypeError(f"x has dtype {x.dtype} but the layer computes in {dtype}; pass x.astype(np.{dtype})")
    _check_finite("x", x)
    batch, time = x.shape[:2]
    if h0 is not None:
        h0 = np.asarray(h0)
        expected = (slots, batch, hidden_size)
        if h0.shape != expected:
            hint = " (for one layer and direction: h0[None])" if h0.shape == expected[1:] else ""
            raise ValueError(
                f"h0 has shape {h0.shape}; {what} needs (layers * directions, batch, hidden) = {expected}{hint}"
            )
        if not np.issubdtype(h0.dtype, np.floating):
            raise TypeError(f"h0 has dtype {h0.dtype}; pass h0.astype(np.{dtype})")
        _check_finite("h0", h0)
        h0 = h0.astype(dtype, copy=False)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != (batch, time):
            raise ValueError(f"mask has shape {mask.shape}; it must be (batch, time) = {(batch, time)}, like x's first two axes")
        if mask.dtype != np.bool_:
            raise TypeError(f"mask has dtype {mask.dtype}; pass a bool array (True at real steps): mask.astype(bool)")
        mask_lengths(mask)  # Keras takes any mask, but only right padding compares with the other frameworks
    return x, h0, mask


def _check_finite(name: str, array: np.ndarray) -> None:
    bad = ~np.isfinite(array)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} holds {int(bad.sum())} non-finite value(s), the first {array[where]} at index {where}; "
            f"replace NaN/inf before comparing GRUs"
        )


def check_build_layers(config: LayerConfig, layers: Layers, holds: str = "") -> None:
    """What every ``build`` checks first: the stack's structure is ``config``'s, and no bias the class
    lacks is non-zero (it would be dropped silently). ``holds`` says where the class keeps what it has."""
    check_layer_structure(config, layers)
    absent = [name for name in ALL_BIASES if name not in config.bias_fields]
    for index, layer in enumerate(layers):
        for direction, params in enumerate(layer):
            nonzero = [name for name in absent if np.any(getattr(params, name) != 0)]
            if nonzero:
                kept = ", ".join(config.bias_fields) or "no biases"
                raise ValueError(
                    f"layers[{index}][{direction}] has non-zero biases {', '.join(nonzero)}, which {config.label} "
                    f"cannot hold (it keeps only {kept}{holds}); use a configuration with those biases, "
                    f"reference.fold_recurrent_biases where the fold is exact, or zero them deliberately"
                )


def mask_lengths(mask: np.ndarray) -> np.ndarray:
    """Sequence lengths of a right-padded mask; an error names the first row that is not."""
    mask = np.asarray(mask, dtype=bool)
    lengths = mask.sum(axis=1)
    expected = np.arange(mask.shape[1])[None, :] < lengths[:, None]
    bad_rows = np.nonzero((mask != expected).any(axis=1))[0]
    if bad_rows.size:
        row = int(bad_rows[0])
        raise ValueError(
            f"mask row {row} is {mask[row].astype(int).tolist()}: frameworks take variable lengths as "
            f"right padding (True then False); reorder the sequence or split it"
        )
    if (lengths == 0).any():
        raise ValueError(f"mask row {int(np.argmin(lengths))} has no valid step; every sequence needs length >= 1")
    return lengths
