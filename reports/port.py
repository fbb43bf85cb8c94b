"""``gru-equiv port``: write a file's GRU in another framework's format, exactly, and prove it.

The source GRU is read (``adapters.formats``), its formula measured on its real weights
(``adapters.formats.confirm``), and written only where the target can hold that formula exactly:

- ``torch``: a ``state_dict`` (``.safetensors`` or ``.pt``) for ``nn.GRU`` (``nn.GRUCell`` for a cell):
  ``z_on_previous+reset_after`` only (``torch/nn/modules/rnn.py:1215-1218``: no reset-before switch),
  ``concat`` bidirectional merge only, no single reversed direction;
- ``keras``: a ``.keras`` model ``[x, h0 per layer and direction] -> [sequence, final states]`` of ``GRU``
  / ``Bidirectional(GRU)`` layers: ``reset_after=True`` holds reset-after with both biases;
  ``reset_after=False`` holds reset-before once the recurrent biases are folded into the input biases
  (``reference.fold_recurrent_biases``: exact under reset-before);
- ``onnx``: one ``GRU`` node per layer (``adapters.onnx_runtime.build_model``), ``linear_before_reset``
  1 or 0 as the formula says; non-default activations and clip are carried from an ONNX source.

``z_on_candidate`` becomes ``z_on_previous`` exactly by negating the update gate
(``reference.flip_update_weighting``). Anything else is refused with the reason and the exact
alternative. The written file is then **loaded back by the target framework** and compared, on probe
inputs and the user's, with the source run in its own framework: the max abs error of the outputs and
the final states and the verdict. The file is written to a temporary name beside ``--out`` and
renamed only when it verifies; an existing file is never replaced without ``force``.
"""

from __future__ import annotations

import importlib

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from adapters.formats import Confirmation, FormatError, FoundGRU, choose, confirm, open_file, own_forward
from adapters.formats.base import probe_inputs
from reference import Convention, flip_update_weighting, fold_recurrent_biases
from reference.compare import OUTPUT_AXES, compare_forward, difference, tolerance_for

TARGETS = {"torch": (".safetensors", ".pt", ".pth"), "keras": (".keras",), "onnx": (".onnx",)}
AFTER = Convention("z_on_previous", "after")
BEFORE = Convention("z_on_previous", "before")


class PortRefused(ValueError):
    """The port cannot be exact (or cannot be done as asked); the message gives the reason and the alternative."""


@dataclass
class Check:
    inputs: str                  # "probe (scale 1)" or the user's file
    outputs_error: float | None
    h_last_error: float | None
    passed: bool
    detail: str


@dataclass
class PortResult:
    source: Path
    source_format: str
    found: FoundGRU
    confirmation: Confirmation
    convention: Convention
    target: str
    out: Path
    target_description: str
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    def to_json(self) -> dict:
        return {
            "source": str(self.source), "source_format": self.source_format, "gru": self.found.to_json(),
            "confirmation": self.confirmation.to_json(), "convention": self.convention.id, "target": self.target,
            "out": str(self.out), "written": self.target_description, "verdict": "pass" if self.passed else "fail",
            "checks": [vars(check) for check in self.checks], "notes": list(self.notes),
        }

    def describe(self) -> str:
        lines = [f"{self.source} ({self.source_format}) GRU {self.found.location!r} -> {self.out} ({self.target})",
                 f"   formula: {self.convention.id} (measured: {self.confirmation.describe()})",
                 f"   written: {self.target_description}"]
        for check in self.checks:
            outputs = "-" if check.outputs_error is None else f"{check.outputs_error:.3g}"
            state = "-" if check.h_last_error is None else f"{check.h_last_error:.3g}"
            lines.append(f"   {check.inputs}: max abs error outputs {outputs}, final state {state}: "
                         f"{'pass' if check.passed else 'FAIL'}" + (f" ({check.detail})" if not check.passed else ""))
        lines += [f"   note: {note}" for note in self.notes]
        lines.append(f"verdict: {'pass' if self.passed else 'FAIL'}: the written file, loaded by {self.target}, "
                     f"{'computes' if self.passed else 'does NOT compute'} the source GRU's function")
        return "\n".join(lines)


# ----------------------------------------------------------------- what can be written exactly


def _port_convention(found: FoundGRU, confirmation: Confirmation, notes: list[str]) -> Convention:
    if confirmation.matched is not None:
        if found.convention is not None and confirmation.matched != found.convention:
            notes.append(f"the format implies {found.convention.id}, but its framework computes "
                         f"{confirmation.matched.id} on these weights; the port keeps what it computes")
        return confirmation.matched
    if found.convention is not None and confirmation.verdict == "ambiguous" and confirmation.errors:
        notes.append(f"the measurement could not separate the conventions ({confirmation.reason}); "
                     f"ported as the format's {found.convention.id}")
        return found.convention
    raise PortRefused(f"the formula of GRU {found.location!r} is unknown ({confirmation.describe()}); "
                      f"nothing can be ported exactly without it")


def _canonical(found: FoundGRU, convention: Convention, notes: list[str]):
    """Layers under a z_on_previous convention (flipping the update gate exactly when needed)."""
    layers = [list(layer) for layer in found.layers]
    if convention.update == "z_on_candidate":
        layers = [[flip_update_weighting(p) for p in layer] for layer in layers]
        notes.append("z_on_candidate became z_on_previous exactly by negating the update gate "
                     "(reference.flip_update_weighting)")
        convention = Convention("z_on_previous", convention.reset)
    return layers, convention


def _refuse_unportable(found: FoundGRU, target: str, convention: Convention) -> None:
    if found.reference_options and target != "onnx":
        raise PortRefused(f"GRU {found.location!r} uses non-default activations or clip, which {target} cannot hold; "
                          f"--to onnx keeps them exactly")
    if found.directions == 2 and found.merge != "concat" and target != "keras":
        raise PortRefused(f"GRU {found.location!r} merges its directions with {found.merge!r}; {target} concatenates "
                          f"them only; --to keras keeps merge_mode={found.merge!r} exactly")
    if target == "torch":
        if convention.reset == "before":
            raise PortRefused(
                f"GRU {found.location!r} computes {convention.id}, and torch.nn.GRU always computes reset after "
                f"(r * (h U_h + c_h)), so no state_dict holds it exactly; exact alternatives: --to onnx "
                f"(linear_before_reset=0) or --to keras (reset_after=False)")
        if found.reverse:
            raise PortRefused(f"GRU {found.location!r} runs backwards only (go_backwards/direction='reverse'); "
                              f"torch.nn.GRU has no such switch; --to onnx (direction='reverse') or --to keras "
                              f"(go_backwards=True) hold it exactly")


# ----------------------------------------------------------------- writing and reading back, per target


def _torch_write(found, layers, dtype, path: Path) -> str:
    import torch

    import adapters
    adapter = adapters.get("torch")
    cell = bool(found.options.get("cell"))
    from dataclasses import replace

    config = replace(adapter.configuration("nn.GRUCell" if cell else "nn.GRU(batch_first=True)"),
                     num_layers=found.num_layers, bidirectional=found.directions == 2, bias=found.has_bias,
                     biases=None if found.has_bias else ())
    module = adapter.build(config, layers, dtype)
    state = {k: v.detach().clone().contiguous() for k, v in module.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    what = "nn.GRUCell" if cell else (f"nn.GRU(input_size={found.input_size}, hidden_size={found.hidden_size}, "
                                      f"num_layers={found.num_layers}, bias={found.has_bias}, "
                                      f"bidirectional={found.directions == 2}, batch_first=True)")
    return f"a state_dict ({', '.join(sorted(state))[:120]}) for {what}"


def _torch_read(found, dtype, path: Path):
    import torch

    import adapters

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    torch_dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[np.dtype(dtype)]
    if found.options.get("cell"):
        module = torch.nn.GRUCell(found.input_size, found.hidden_size, bias=found.has_bias, dtype=torch_dtype)
    else:
        module = torch.nn.GRU(found.input_size, found.hidden_size, num_layers=found.num_layers, bias=found.has_bias,
                              bidirectional=found.directions == 2, batch_first=True, dtype=torch_dtype)
    module.load_state_dict(state, strict=True)
    adapter = adapters.get("torch")
    return lambda x, h0: (lambda r: (r.outputs, r.h_last))(adapter.run(module.eval(), x, h0))


def _keras_write(found, layers, convention, dtype, path: Path) -> str:
    """A plain Keras model ``x -> sequence`` of GRU / Bidirectional(GRU) layers (return_sequences=True), so
    ``keras.saving.load_model(path)(x)`` is the GRU's output sequence, as ``nn.GRU``'s ``output``."""
    import keras

    import adapters
    from reference import layouts

    adapters.get("keras")  # Keras on TensorFlow, in this process
    reset_after = convention.reset == "after"
    if not reset_after:
        layers = [[fold_recurrent_biases(p, convention) for p in layer] for layer in layers]
    name = np.dtype(dtype).name
    x = keras.Input((None, found.input_size), dtype=name, name="x")
    sequence, built = x, []
    for index, layer in enumerate(layers):
        gru = keras.layers.GRU(found.hidden_size, return_sequences=True, reset_after=reset_after,
                               use_bias=found.has_bias, go_backwards=found.reverse, dtype=name, name=f"gru_{index}")
        if found.directions == 2:
            gru = keras.layers.Bidirectional(gru, merge_mode=found.merge, dtype=name, name=f"bidirectional_{index}")
        sequence = gru(sequence)
        rnns = [gru.forward_layer, gru.backward_layer] if found.directions == 2 else [gru]
        for rnn, params in zip(rnns, layer):
            rnn.set_weights([w.astype(name) for w in layouts.to_keras(params, reset_after=reset_after,
                                                                       use_bias=found.has_bias)])
        built.append(gru)
    keras.Model(x, sequence, name="ported_gru").save(str(path))
    return (f"a Keras model x (batch, time, {found.input_size}) -> output sequence, of {found.num_layers} "
            f"{'Bidirectional(GRU)' if found.directions == 2 else 'GRU'} layer(s) named "
            f"{', '.join(layer.name for layer in built)}, reset_after={reset_after}, use_bias={found.has_bias}"
            + (", go_backwards=True" if found.reverse else "") + "; each layer also takes initial_state=")


def _keras_read(found, dtype, path: Path):
    """Run the loaded file's own layers, each with its initial state; the final states are read off the
    sequences (a Keras GRU's output at a step is its state; a Bidirectional concat puts the backward
    direction's final state at step 0)."""
    import keras

    model = keras.saving.load_model(str(path), compile=False, safe_mode=True)
    recurrent = [layer for layer in model.layers if isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional))]
    hidden, directions = found.hidden_size, found.directions

    def forward(x, h0):
        sequence, finals = keras.ops.convert_to_tensor(x), []
        for index, layer in enumerate(recurrent):
            initial = [keras.ops.convert_to_tensor(h0[index * directions + d]) for d in range(directions)]
            sequence = layer(sequence, initial_state=initial)
            out = keras.ops.convert_to_numpy(sequence)
            if directions == 2:
                if found.merge == "concat":
                    finals += [out[:, -1, :hidden], out[:, 0, hidden:]]
            else:
                finals.append(out[:, -1])
        outputs = keras.ops.convert_to_numpy(sequence)
        if found.reverse:
            outputs = outputs[:, ::-1]  # go_backwards returns processing order; align with the input
        h_last = np.stack(finals) if finals else None
        return np.ascontiguousarray(outputs), h_last

    def plain(x):
        """The model as a user calls it: ``model(x)``, zero initial state."""
        outputs = keras.ops.convert_to_numpy(model(x))
        return np.ascontiguousarray(outputs[:, ::-1] if found.reverse else outputs)

    forward.plain = plain
    return forward


def _onnx_write(found, layers, convention, dtype, path: Path) -> str:
    import onnx

    from adapters.formats.base import _onnx_row
    from adapters.onnx_runtime import build_model
    from dataclasses import replace

    row = replace(_onnx_row(found), linear_before_reset=int(convention.reset == "after"), layout=0)
    model = build_model(row, [[p.astype(dtype) for p in layer] for layer in layers], np.dtype(dtype).name)
    onnx.save(model, str(path))
    return (f"an ONNX model (opset {model.opset_import[0].version}) of {found.num_layers} GRU node(s), "
            f"linear_before_reset={row.linear_before_reset}, direction={row.direction!r}; inputs X [T, B, I], "
            f"sequence_lens, initial_h_k; outputs Y, Y_h_k")


def _onnx_read(found, convention, dtype, path: Path):
    import onnx

    import adapters
    from adapters.formats.base import _onnx_row
    from adapters.onnx_runtime import OnnxGRU, _config
    from dataclasses import replace

    name = "onnxruntime" if np.dtype(dtype) == np.float32 else "onnx-reference"
    adapter = adapters.get(name)
    row = replace(_onnx_row(found), linear_before_reset=int(convention.reset == "after"), layout=0)
    gru = OnnxGRU(_config(name, row), np.dtype(dtype).name, onnx.load(str(path)), found.input_size, found.hidden_size)
    return lambda x, h0: (lambda r: (r.outputs, r.h_last))(adapter.run(gru, x, h0))


# ----------------------------------------------------------------- the command's logic


def check_out_path(out, target: str, force: bool) -> Path:
    if target not in TARGETS:
        raise PortRefused(f"unknown target {target!r}; valid: {', '.join(TARGETS)}")
    if out is None or str(out).strip() == "":
        raise PortRefused(f"--out is empty; give a file path ending in {' or '.join(TARGETS[target])}")
    path = Path(os.path.expanduser(str(out)))
    if not str(path).lower().endswith(TARGETS[target]):
        raise PortRefused(f"--out {str(out)!r}: a {target} port is written as {' or '.join(TARGETS[target])}; "
                          f"give --out with one of those extensions")
    if path.is_dir():
        raise PortRefused(f"--out {str(out)!r} is a directory; give a file path inside it")
    if path.exists() and not force:
        raise PortRefused(f"--out {str(out)!r} exists; pass --force to overwrite it")
    if not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    return path


def load_user_inputs(path, found: FoundGRU, dtype) -> np.ndarray:
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise PortRefused(f"--inputs {str(path)!r}: not a readable .npy array ({error})") from None
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[2] != found.input_size or 0 in x.shape:
        raise PortRefused(f"--inputs {str(path)!r} has shape {x.shape}; expected (batch, time, {found.input_size}) "
                          f"or (time, {found.input_size})")
    if x.dtype.kind != "f" or not np.all(np.isfinite(x)):
        raise PortRefused(f"--inputs {str(path)!r} must hold finite floats (dtype {x.dtype})")
    return x.astype(dtype)


# What loading the written file back needs, per target (the port is verified in the target framework).
TARGET_MODULES = {"torch": ("torch", "[torch]"), "keras": ("keras", "[tensorflow]"), "onnx": ("onnx", "[onnx]")}


def _require_target_framework(target: str) -> None:
    """The target framework imports here, or the port is refused before any work, saying what is missing."""
    if target not in TARGET_MODULES:
        return  # check_out_path names the valid targets
    module, extra = TARGET_MODULES[target]
    try:
        importlib.import_module(module)
    except Exception as error:  # ImportError, or a framework that fails on import (Keras without its backend)
        raise PortRefused(
            f"--to {target} writes a file that is verified by loading it in {module}, which cannot be imported here "
            f"({type(error).__name__}: {error}); install it (pip install -e '.{extra}') or choose another target"
        ) from None


def port_file(source, target: str, out, *, inputs=None, force: bool = False, name: str | None = None,
              dtype=None) -> PortResult:
    """Read, refuse or write, load back and compare. ``FormatError``/``PortRefused`` for what cannot be done.

    ``dtype`` (``"float32"``/``"float64"``) writes in that precision instead of the source's; the source is
    then run in it too, so the comparison measures the port, not the rounding."""
    if dtype is not None and str(dtype) not in ("float32", "float64"):
        raise PortRefused(f"--dtype {dtype!r} is not supported; valid: float32, float64")
    _require_target_framework(target)
    out = check_out_path(out, target, force)
    source_format, found = open_file(source)
    found = choose(found, name, source)
    notes: list[str] = []
    confirmation = confirm(found)
    convention = source_convention = _port_convention(found, confirmation, notes)
    layers, convention = _canonical(found, convention, notes)
    _refuse_unportable(found, target, convention)
    if dtype is not None:
        dtype = np.dtype(str(dtype))
        if dtype != found.dtype:
            notes.append(f"written in {dtype.name} as asked (the source holds {found.dtype.name})")
    else:
        dtype = np.dtype(np.float32) if found.dtype == np.float32 else np.dtype(np.float64)
        if target == "onnx" and dtype == np.float64:
            notes.append("written in float64, exactly; onnxruntime 1.32 cannot run a float64 GRU (onnx.reference "
                         "verified it): pass --dtype float32 for a model onnxruntime runs")
    user_x = None if inputs is None else load_user_inputs(inputs, found, dtype)
    temporary = out.with_name(f".{out.stem}.partial{''.join(out.suffixes) or out.suffix}")
    if "".join(out.suffixes).endswith(".keras"):
        temporary = out.with_name(f".partial-{out.name}")
    try:
        if target == "torch":
            written = _torch_write(found, layers, dtype, temporary)
            target_forward = _torch_read(found, dtype, temporary)
        elif target == "keras":
            written = _keras_write(found, layers, convention, dtype, temporary)
            target_forward = _keras_read(found, dtype, temporary)
        else:
            written = _onnx_write(found, layers, convention, dtype, temporary)
            target_forward = _onnx_read(found, convention, dtype, temporary)
        result = PortResult(Path(source), source_format, found, confirmation, convention, target, out, written,
                            notes=notes)
        runs_itself = confirmation.verdict in ("confirmed", "differs") and not (
            found.reference_options and dtype == np.float64)  # onnx.reference ignores activations and clip
        source_forward = own_forward(found, dtype) if runs_itself else None
        slots = found.num_layers * found.directions
        cases = [(f"probe inputs (scale {confirmation.input_scale:g})",
                  probe_inputs(found.input_size, found.hidden_size, slots, dtype, confirmation.input_scale, seed=1))]
        if user_x is not None:
            cases.append((f"your inputs {inputs} (h0 = 0)",
                          (user_x, np.zeros((slots, user_x.shape[0], found.hidden_size), dtype))))
        for label, (x, h0) in cases:
            actual = target_forward(x, h0)
            if source_forward is not None:
                expected = source_forward(x, h0)
                label += f", against the source run in {found.framework}"
            else:
                expected = found.reference(x, h0, source_convention)
                label += f", against the reference ({source_convention.id})"
            if actual[1] is None:  # a non-concat Bidirectional's output hides its final states
                rtol, atol = tolerance_for(dtype)
                gap = difference("outputs", actual[0], np.asarray(expected[0]), OUTPUT_AXES, rtol, atol)
                result.checks.append(Check(label, gap.max_abs, None, gap.passed, gap.describe()))
                continue
            gaps = compare_forward(actual[0], actual[1], np.asarray(expected[0]), np.asarray(expected[1]), dtype)
            result.checks.append(Check(
                label, None if gaps.outputs is None else gaps.outputs.max_abs, gaps.h_last.max_abs,
                gaps.passed, gaps.describe()))
        plain = getattr(target_forward, "plain", None)
        if plain is not None:  # the saved model called on x alone, as a user would
            x, _ = cases[0][1]
            zeros = np.zeros((slots, x.shape[0], found.hidden_size), dtype)
            expected = source_forward(x, zeros) if source_forward is not None else found.reference(x, zeros, source_convention)
            rtol, atol = tolerance_for(dtype)
            gap = difference("outputs", plain(x), np.asarray(expected[0]), OUTPUT_AXES, rtol, atol)
            result.checks.append(Check("the saved model called as model(x) (h0 = 0)", gap.max_abs, None, gap.passed,
                                       gap.describe()))
        if result.passed:
            os.replace(temporary, out)
        else:
            notes.append(f"verification failed: nothing was written to {out}")
        return result
    finally:
        if temporary.exists():
            temporary.unlink()


def write_report(result: PortResult, directory: Path) -> Path:
    from jinja2 import Environment, PackageLoader, select_autoescape

    environment = Environment(loader=PackageLoader("reports", "templates"), autoescape=select_autoescape(["html", "j2"]))
    page = environment.get_template("port.html.j2").render(result=result, data=result.to_json())
    path = Path(directory) / "port.html"
    path.write_text(page, encoding="utf-8")
    return path


__all__ = ["FormatError", "PortRefused", "PortResult", "port_file", "write_report"]
