"""A GRU found in a saved file, as data, and how to run it in the framework that wrote it.

Every format module (``adapters.formats.*``) reads a file into ``FoundGRU`` records: where the GRU
sits in the file, its layers x directions as canonical ``reference.GRUParams`` (through
``reference.layouts``, so the packing is read once, bit-exactly), the bias layout, the convention
the format implies, and ``framework`` + ``options``: enough to rebuild the same layer in its own
framework (``own_forward``) and measure what it computes on the file's real weights (``confirm``).

The conventions each format implies (``reference/conventions.py``):

- PyTorch ``nn.GRU``/``nn.GRUCell``: ``z_on_previous+reset_after`` whatever the weights (the docstring's
  equations, ``torch/nn/modules/rnn.py:1215-1218``);
- Keras ``GRU(reset_after=True)``: ``z_on_previous+reset_after``, ``reset_after=False``: ``+reset_before``
  (``keras/src/layers/rnn/gru.py:287-291``); the bias shape records it, ``(2, 3H)`` or ``(3H,)``
  (``gru.py:164-171``); a bias-free weights-only file does not record it;
- ONNX ``GRU``: ``linear_before_reset=1``: reset after, ``0`` (the default): reset before
  (``onnx/defs/doc_strings.cc:88-89``).

``confirm`` does not trust the format: it runs the framework itself with the file's weights on probe
inputs and judges the outputs against all four conventions (``reference.identify_observations``). A
trained GRU may saturate its gates (a saturated gate is 0 or 1 in every convention), so the probe is
retried with the inputs and initial state scaled down (valid: a GRU's formula does not depend on the
input's scale, only how well a probe separates the formulas does); if no scale separates them the
verdict is ``ambiguous`` with the reason, never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from reference import Convention, GRUParams
from reference.compare import SEPARATION_FACTOR, compare_forward
from reference.forward import gru_stack
from reference.identify import Identification, Observation, Structure, identify_observations

# Probe inputs for a real model: scaled down until the conventions separate (see the module docstring).
PROBE_SCALES = (1.0, 0.5, 0.25, 0.1, 0.03)
PROBE_BATCH, PROBE_TIME = 3, 7


class FormatError(ValueError):
    """A file that cannot be inspected (corrupt, truncated, empty, unsafe, GRU-free, ...): one line, the reason."""


@dataclass
class FoundGRU:
    """One GRU in a file. ``layers[l][d]``: layer ``l``, direction ``d`` (0 forward, 1 backward)."""

    location: str                     # its name or path inside the file
    kind: str                         # what the file holds, e.g. "torch nn.GRU", "keras Bidirectional(GRU)"
    layers: list[list[GRUParams]]
    framework: str                    # the adapter that runs it: "torch", "keras" or "onnxruntime"
    convention: Convention | None     # what the format implies; None when the file does not record it
    convention_source: str            # why (the attribute or the class)
    bias_layout: str                  # the biases as stored
    has_bias: bool
    stored_dtype: str
    options: dict[str, Any] = field(default_factory=dict)  # framework switches: reverse, ONNX attributes, cell
    notes: list[str] = field(default_factory=list)

    @property
    def input_size(self) -> int:
        return self.layers[0][0].input_size

    @property
    def hidden_size(self) -> int:
        return self.layers[0][0].hidden_size

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def directions(self) -> int:
        return len(self.layers[0])

    @property
    def dtype(self) -> np.dtype:
        return self.layers[0][0].dtype

    @property
    def reverse(self) -> bool:
        return bool(self.options.get("reverse", False))

    @property
    def reference_options(self) -> tuple:
        return tuple(self.options.get("reference_options", ()))

    def structure(self) -> Structure:
        return Structure(merge=self.merge, reverse=self.reverse, reference_options=self.reference_options)

    @property
    def merge(self) -> str:
        return self.options.get("merge", "concat")

    def reference(self, x, h0, convention) -> tuple[np.ndarray, np.ndarray]:
        """The float64 reference of this GRU's parameters under ``convention``."""
        return gru_stack(x, [list(layer) for layer in self.layers], convention, h0=h0, reverse=self.reverse,
                         merge=self.merge, dtype=np.float64, **dict(self.reference_options))

    def to_json(self) -> dict:
        return {
            "location": self.location, "kind": self.kind, "framework": self.framework,
            "input_size": self.input_size, "hidden_size": self.hidden_size, "num_layers": self.num_layers,
            "directions": self.directions, "reverse": self.reverse, "dtype": self.stored_dtype,
            "bias": self.has_bias, "bias_layout": self.bias_layout,
            "implied_convention": self.convention.id if self.convention else None,
            "convention_source": self.convention_source, "notes": list(self.notes),
        }


# ----------------------------------------------------------------- running it in its own framework


def _onnx_row(found: FoundGRU):
    from adapters.onnx_runtime import BIDI, Row

    attributes = found.options.get("onnx_attributes", {})
    half = 2 if found.directions == 2 else 1  # a bidirectional node lists each direction's values (defs.cc:94-108)
    return Row(
        name=f"GRU at {found.location}", linear_before_reset=int(attributes.get("linear_before_reset", 0)),
        direction=BIDI if found.directions == 2 else ("reverse" if found.reverse else "forward"),
        num_layers=found.num_layers, bias=found.has_bias,
        activations=tuple(attributes.get("activations", ()))[:2],
        activation_alpha=tuple(attributes.get("activation_alpha", ()))[: len(attributes.get("activation_alpha", ())) // half],
        activation_beta=tuple(attributes.get("activation_beta", ()))[: len(attributes.get("activation_beta", ())) // half],
        clip=attributes.get("clip"),
    )


def own_layer(found: FoundGRU, dtype=None, reset_after: bool | None = None):
    """``(adapter, layer)``: the file's own framework holding exactly the file's weights, in ``dtype``
    (default: the stored precision). ``reset_after`` overrides the Keras switch (for a file that does not record it)."""
    import adapters

    dtype = np.dtype(dtype or found.dtype)
    layers = [[params.astype(dtype) for params in layer] for layer in found.layers]
    if found.framework == "torch":
        adapter = adapters.get("torch")
        base = "nn.GRUCell" if found.options.get("cell") else "nn.GRU(batch_first=True)"
        config = adapter.configuration(base)
        from dataclasses import replace

        config = replace(config, num_layers=found.num_layers, bidirectional=found.directions == 2,
                         bias=found.has_bias, biases=None if found.has_bias else ())
        return adapter, adapter.build(config, layers, dtype)
    if found.framework == "keras":
        from adapters.keras_backends import keras_config

        adapter = adapters.get("keras")
        after = found.options.get("reset_after") if reset_after is None else reset_after
        config = keras_config(adapter.name, "tensorflow", f"keras GRU at {found.location}", bool(after),
                              bidirectional=found.directions == 2, bias=found.has_bias, reverse=found.reverse,
                              merge=found.merge)
        return adapter, adapter.build(config, layers, dtype)
    if found.framework == "onnxruntime":
        from adapters.onnx_runtime import _config

        # onnxruntime has no float64 GRU (adapters/onnx_runtime.py, finding 1): onnx.reference runs those.
        name = "onnxruntime" if dtype == np.float32 else "onnx-reference"
        adapter = adapters.get(name)
        return adapter, adapter.build(_config(name, _onnx_row(found)), layers, dtype)
    raise ValueError(f"no framework runs {found.kind} ({found.framework!r})")


def own_forward(found: FoundGRU, dtype=None, reset_after: bool | None = None) -> Callable:
    adapter, layer = own_layer(found, dtype, reset_after)

    def forward(x, h0, mask=None):
        result = adapter.run(layer, x, h0, mask)
        return result.outputs, result.h_last

    return forward


# ----------------------------------------------------------------- confirming the convention numerically


@dataclass
class Confirmation:
    """What the file's own framework computes on the file's weights."""

    verdict: str                      # "confirmed", "differs", "ambiguous" or "not run"
    matched: Convention | None
    margin: float
    tolerance: float
    input_scale: float
    errors: dict[str, float]
    reason: str
    identification: Identification | None = None
    framework: str = ""

    def describe(self) -> str:
        text = f"{self.verdict}"
        if self.matched:
            text += f": computes {self.matched.id}"
        if self.verdict in ("confirmed", "differs", "ambiguous"):
            text += (f" (runner-up misses by {self.margin:.3g} x tolerance {self.tolerance:g}; "
                     f"probe input scale {self.input_scale:g}; ran {self.framework})")
        if self.reason:
            text += f"; {self.reason}"
        return text

    def to_json(self) -> dict:
        return {"verdict": self.verdict, "matched": self.matched.id if self.matched else None, "margin": self.margin,
                "tolerance": self.tolerance, "input_scale": self.input_scale, "errors": self.errors,
                "reason": self.reason, "framework": self.framework,
                "diagnosis": [d.to_json() for d in self.identification.diagnosis] if self.identification else []}


def probe_inputs(input_size: int, hidden_size: int, slots: int, dtype, scale: float = 1.0, seed: int = 0):
    rng = np.random.default_rng([seed, 11])
    x = (scale * rng.normal(size=(PROBE_BATCH, PROBE_TIME, input_size))).astype(dtype)
    h0 = (scale * rng.uniform(-0.8, 0.8, size=(slots, PROBE_BATCH, hidden_size))).astype(dtype)
    return x, h0


def confirm(found: FoundGRU, forward: Callable | None = None) -> Confirmation:
    """Run the file's own framework on its weights and judge the outputs against the four conventions."""
    # onnxruntime has no float64 GRU (adapters/onnx_runtime.py, finding 1): a float64 ONNX model is run by
    # onnxruntime on its weights rounded to float32 (said in the reason), the runtime the file is meant for.
    dtype = np.dtype(np.float32) if found.framework == "onnxruntime" else found.dtype
    framework = found.framework
    rounded = found.framework == "onnxruntime" and found.dtype != np.float32
    if found.convention is None and found.framework == "keras" and forward is None:
        # The weights alone do not say which Keras layer they belong to: nothing to run.
        return Confirmation("ambiguous", None, 0.0, 0.0, 1.0, {}, found.notes[-1] if found.notes else
                            "the file does not record the convention", framework="")
    try:
        forward = forward or own_forward(found, dtype)
    except Exception as error:  # the framework refuses the weights or is missing: say so, do not guess
        return Confirmation("not run", None, 0.0, 0.0, 1.0, {}, f"{found.framework}: {type(error).__name__}: {error}")
    params = [[p.astype(dtype) for p in layer] for layer in found.layers]
    layers64 = tuple(tuple(p.astype(np.float64) for p in layer) for layer in params)
    slots = found.num_layers * found.directions
    best = None
    for scale in PROBE_SCALES:
        x, h0 = probe_inputs(found.input_size, found.hidden_size, slots, dtype, scale)
        try:
            outputs, h_last = forward(x, h0)
        except Exception as error:
            return Confirmation("not run", None, 0.0, 0.0, scale, {}, f"{framework} failed: {type(error).__name__}: {error}",
                                framework=framework)
        observation = Observation(layers=layers64, x=x.astype(np.float64), h0=h0.astype(np.float64), mask=None,
                                  outputs=None if outputs is None else np.asarray(outputs, np.float64),
                                  h_last=np.asarray(h_last, np.float64))
        result = identify_observations([observation], dtype, found.structure(), expected=found.convention,
                                       max_mistakes=1)
        candidate = (result, scale)
        if result.matched is not None:
            best = candidate
            break
        if best is None or (result.candidates and not best[0].candidates):
            best = candidate
    result, scale = best
    errors = {c.id: e for c, e in result.errors.items()}
    if result.matched is not None:
        same = found.convention is None or result.matched == found.convention
        reason = "" if same else f"the format implies {found.convention.id}"
        if rounded:
            reason = (reason + "; " if reason else "") + "onnxruntime has no float64 GRU: run on the weights rounded to float32"
        if scale != 1.0:
            reason = (reason + "; " if reason else "") + f"inputs scaled by {scale:g} so the gates do not saturate"
        return Confirmation("confirmed" if same else "differs", result.matched, result.margin, result.tolerance, scale,
                            errors, reason, result, framework)
    if result.candidates:
        reason = (f"{', '.join(c.id for c in result.candidates)} all fit within tolerance and the runner-up misses by only "
                  f"{result.margin:.3g} x tolerance (< {SEPARATION_FACTOR:g}) at every input scale tried "
                  f"({', '.join(f'{s:g}' for s in PROBE_SCALES)}): these weights (saturated or degenerate gates) "
                  f"cannot tell the conventions apart")
        return Confirmation("ambiguous", None, result.margin, result.tolerance, scale, errors, reason, result, framework)
    diagnosis = f"; diagnosis: {result.diagnosis[0].name}" if result.diagnosis else ""
    return Confirmation("differs", None, result.margin, result.tolerance, scale, errors,
                        f"no convention fits the framework's output (nearest misses by {result.margin:.3g} x tolerance)"
                        f"{diagnosis}", result, framework)


def compare_runs(actual, expected, dtype):
    """``reference.compare_forward`` of two ``(outputs, h_last)`` pairs."""
    return compare_forward(actual[0], actual[1], expected[0], expected[1], dtype)


# ----------------------------------------------------------------- finding GRUs among named arrays


class _Widened(np.ndarray):
    """A bfloat16 tensor widened to float32 (exact), remembering what the file stored."""

    def __new__(cls, array, stored: str):
        widened = np.asarray(array).view(cls)
        widened.stored = stored
        return widened


def mark_widened(arrays: dict, found: list[FoundGRU]) -> list[FoundGRU]:
    stored = sorted({getattr(a, "stored", "") for a in arrays.values()} - {""})
    for gru in found:
        if stored:
            gru.stored_dtype = "/".join(stored)
            gru.notes.append(f"the file stores {'/'.join(stored)} tensors; widened to float32 (exactly) to run them")
    return found


def as_float(name: str, array: np.ndarray, notes: list[str]) -> np.ndarray:
    """float32/float64 as stored; float16/bfloat16 widened to float32 (exact), with a note."""
    array = np.asarray(array)
    if array.dtype.kind == "f" and array.dtype.itemsize in (4, 8):
        return array
    if array.dtype.kind == "f" or array.dtype.name == "bfloat16":
        notes.append(f"{name} is stored in {array.dtype}; widened to float32 (exactly) to run it")
        return array.astype(np.float32)
    raise FormatError(f"{name} has dtype {array.dtype}, not floating point; a GRU's weights are floats")


def _torch_groups(arrays: dict[str, np.ndarray]) -> list[FoundGRU]:
    import re

    from reference import layouts

    found = []
    pattern = re.compile(r"^(?P<prefix>.*?)weight_hh(?P<suffix>_l(?P<layer>\d+)(?P<rev>_reverse)?)?$")
    prefixes: dict[str, dict] = {}
    for key, array in arrays.items():
        match = pattern.match(key)
        if not match or np.ndim(array) != 2:
            continue
        rows, hidden = np.shape(array)
        if rows != 3 * hidden:
            continue  # LSTM (4H) or vanilla RNN (H): not a GRU
        entry = prefixes.setdefault(match["prefix"], {"cell": match["suffix"] is None, "slots": {}})
        layer = int(match["layer"] or 0)
        entry["slots"][(layer, 1 if match["rev"] else 0)] = match["suffix"] or ""
    for prefix, entry in sorted(prefixes.items()):
        notes: list[str] = []
        slots = entry["slots"]
        num_layers = max(layer for layer, _ in slots) + 1
        directions = 2 if any(d for _, d in slots) else 1
        missing = [f"{prefix}weight_hh_l{k}{'_reverse' if d else ''}" for k in range(num_layers)
                   for d in range(directions) if (k, d) not in slots]
        if missing:
            raise FormatError(f"the GRU {prefix.rstrip('.') or '(top level)'!r} is incomplete: {missing[0]} is missing")
        layers, has_bias = [], None
        for k in range(num_layers):
            row = []
            for d in range(directions):
                suffix = slots[(k, d)]
                names = [f"{prefix}{n}{suffix}" for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                if names[0] not in arrays:
                    raise FormatError(f"{names[1]} has no {names[0]} beside it: the file is not a complete GRU")
                tensors = [as_float(n, arrays[n], notes) if n in arrays else None for n in names]
                biased = tensors[2] is not None and tensors[3] is not None
                has_bias = biased if has_bias is None else has_bias
                try:
                    row.append(layouts.from_torch(*tensors[:2], *(tensors[2:] if biased else (None, None))))
                except (TypeError, ValueError) as error:
                    raise FormatError(f"{prefix}*{suffix}: {error}") from None
            layers.append(row)
        kind = "torch nn.GRUCell" if entry["cell"] else "torch nn.GRU"
        found.append(FoundGRU(
            location=prefix.rstrip(".") or "(top level)", kind=kind, layers=layers, framework="torch",
            convention=Convention("z_on_previous", "after"),
            convention_source=f"{kind.split()[-1]} always computes reset after (torch/nn/modules/rnn.py:1215-1218)",
            bias_layout="bias_ih, bias_hh (3H,) rows r|z|n" if has_bias else "none (bias=False)",
            has_bias=bool(has_bias), stored_dtype=str(np.asarray(arrays[prefix + "weight_hh" + slots[(0, 0)]]).dtype),
            options={"cell": entry["cell"]}, notes=notes,
        ))
    return found


KERAS_NAMES = (("kernel", "recurrent_kernel", "bias"), ("vars/0", "vars/1", "vars/2"))


def _keras_groups(arrays: dict[str, np.ndarray]) -> list[FoundGRU]:
    """Keras weights by name: ``.../kernel``, ``.../recurrent_kernel``, ``.../bias`` (``:0`` suffixes of
    tf.keras allowed), or Keras 3's ``.../cell/vars/0..2``; a ``forward_*``/``backward_*`` pair is one
    bidirectional GRU."""
    from reference import layouts

    plain = {key.removesuffix(":0"): value for key, value in arrays.items()}
    cells = {}
    for key, array in plain.items():
        for kernel_name, recurrent_name, bias_name in KERAS_NAMES:
            if key == recurrent_name or key.endswith("/" + recurrent_name):
                prefix = key[: len(key) - len(recurrent_name)]
                shape = np.shape(array)
                if len(shape) == 2 and shape[1] == 3 * shape[0] and prefix + kernel_name in plain:
                    cells[prefix] = (prefix + kernel_name, key, prefix + bias_name)
    found = []
    used = set()
    for prefix in sorted(cells):
        if prefix in used:
            continue
        if any(b in prefix and prefix.replace(b, a, 1) in cells
               for a, b in (("forward_layer", "backward_layer"), ("forward_", "backward_"))):
            continue  # picked up with its forward partner
        partner = None
        for a, b in (("forward_layer", "backward_layer"), ("forward_", "backward_")):
            if a in prefix:
                other = prefix.replace(a, b, 1)
                if other in cells:
                    partner = other
        group = [prefix] + ([partner] if partner else [])
        used.update(group)
        notes: list[str] = []
        row, reset_after, has_bias = [], None, False
        for member in group:
            kernel_key, recurrent_key, bias_key = cells[member]
            bias = plain.get(bias_key)
            kernel = as_float(kernel_key, plain[kernel_key], notes)
            recurrent = as_float(recurrent_key, plain[recurrent_key], notes)
            if bias is not None:
                bias = as_float(bias_key, bias, notes)
                has_bias = True
                reset_after = np.ndim(bias) == 2
            try:
                row.append(layouts.from_keras(kernel, recurrent, bias, reset_after=bool(reset_after) if bias is not None
                                              else True))
            except (TypeError, ValueError) as error:
                raise FormatError(f"{member}: {error}") from None
        location = prefix.rstrip("/").removesuffix("/cell").removesuffix("/vars")
        if partner:
            location = prefix.split("forward_")[0].rstrip("/") or location
        if reset_after is None:
            notes.append("the file holds no bias and no layer configuration, so it does not record reset_after; "
                         "the formula cannot be read off it")
            convention, source = None, "not recorded (bias-free weights without the layer's configuration)"
        else:
            convention = Convention("z_on_previous", "after" if reset_after else "before")
            source = f"bias of shape {'(2, 3H)' if reset_after else '(3H,)'}: reset_after={reset_after} (keras/src/layers/rnn/gru.py:164-171)"
        found.append(FoundGRU(
            location=location, kind="keras Bidirectional(GRU)" if partner else "keras GRU", layers=[row],
            framework="keras", convention=convention, convention_source=source,
            bias_layout=("(2, 3H): input row, recurrent row" if reset_after else "(3H,) input only") if has_bias else "none",
            has_bias=has_bias, stored_dtype=str(np.asarray(plain[cells[prefix][1]]).dtype),
            options={"reset_after": reset_after}, notes=notes,
        ))
    return found


def _onnx_groups(arrays: dict[str, np.ndarray]) -> list[FoundGRU]:
    from reference import layouts

    found = []
    for key, array in arrays.items():
        name = key.rsplit("/", 1)[-1].rsplit(".", 1)[-1]
        if name != "R" or np.ndim(array) != 3 or array.shape[1] != 3 * array.shape[2]:
            continue
        prefix = key[: len(key) - 1]
        if prefix + "W" not in arrays:
            continue
        notes: list[str] = []
        W, R = as_float(prefix + "W", arrays[prefix + "W"], notes), as_float(key, array, notes)
        B = arrays.get(prefix + "B")
        B = None if B is None else as_float(prefix + "B", B, notes)
        try:
            row = [layouts.from_onnx(W, R, B, direction=d) for d in range(R.shape[0])]
        except (TypeError, ValueError) as error:
            raise FormatError(f"{key}: {error}") from None
        notes.append("plain W/R/B arrays do not record linear_before_reset; the formula cannot be read off them")
        found.append(FoundGRU(
            location=prefix.rstrip("/.") or "(top level)", kind="ONNX GRU tensors (W, R, B)", layers=[row],
            framework="onnxruntime", convention=None, convention_source="not recorded (no linear_before_reset attribute)",
            bias_layout="B [dirs, 6H] input then recurrent" if B is not None else "none", has_bias=B is not None,
            stored_dtype=str(R.dtype), options={}, notes=notes,
        ))
    return found


def find_in_named_arrays(arrays: dict[str, np.ndarray]) -> list[FoundGRU]:
    """Every GRU among named arrays, recognised by PyTorch, Keras or ONNX names and shapes."""
    return _torch_groups(arrays) + _keras_groups(arrays) + _onnx_groups(arrays)
