"""``assert_gru_equivalent``: one assertion for users' own test suites.

    from adapters import assert_gru_equivalent
    assert_gru_equivalent(my_port, torch_gru)             # raises AssertionError when they differ

``actual`` and ``expected`` may each be a torch ``nn.GRU``/``nn.GRUCell``, a Keras GRU layer (``GRU``,
``RNN(GRUCell)``, ``Bidirectional(GRU)``) or a Keras model holding exactly one of them, an ONNX
``InferenceSession`` or ``.onnx`` path (one GRU node), or a callable ``forward(x, h0) -> (outputs,
h_last)`` with ``x (batch, time, input)``, ``h0 (layers * directions, batch, hidden)`` (``(batch,
hidden)`` accepted for one slot). Frameworks are imported only when such an object is passed.

How each kind runs: a torch module through the ``torch`` adapter's ``run`` (the module itself, in
eval mode, untouched); a Keras layer or model, and an ONNX model, through their GRU's weights and
switches rebuilt by the same framework (``adapters.formats.own_layer``: a Keras layer inside a model has
no ``initial_state`` input nor ``return_state`` output to compare, an ONNX graph may have other nodes
around its GRU). The message follows ``torch.testing.assert_close``: how many elements differ, the
largest difference and where (batch, timestep, unit), the tolerance (``reference.compare``); then what
``actual`` computes instead, judged by ``reference.identify_observations`` on ``expected``'s weights
(or ``actual``'s, when only it has readable weights): its convention and any catalogued mistake with the fix.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from reference import Convention
from reference.compare import OUTPUT_AXES, STATE_AXES, difference, tolerance_for
from reference.identify import Observation, Structure, identify_observations

from .formats.base import FoundGRU, own_forward, probe_inputs


@dataclass
class _Side:
    label: str
    forward: Callable
    found: FoundGRU | None          # readable weights, when the object has them
    dtype: np.dtype | None
    accepts_mask: bool = False


def _module_of(value) -> str:
    return type(value).__module__ or ""


def _from_torch(value, label) -> _Side:
    import adapters

    adapter = adapters.get("torch")
    config = adapter.describe(value)
    layers = adapter.extract(value)
    found = FoundGRU(label, f"torch {type(value).__name__}", layers, "torch", Convention("z_on_previous", "after"),
                     "torch", "", config.bias, str(layers[0][0].dtype), {"cell": bool(config.option("cell"))})
    cell = bool(config.option("cell"))

    def forward(x, h0, mask=None):
        result = adapter.run(value.eval() if value.training else value, x, h0, None if cell else mask)
        return result.outputs, result.h_last

    return _Side(label, forward, found, layers[0][0].dtype, accepts_mask=not cell)


def _from_keras(value, label) -> _Side:
    import keras

    from .formats.keras_file import _from_layer, _keras_layers

    if isinstance(value, (keras.layers.RNN, keras.layers.Bidirectional)):
        layers = [(value.name, value)]
    else:
        layers = list(_keras_layers(value))
    if len(layers) != 1:
        raise TypeError(f"{label} is a Keras {type(value).__name__} holding {len(layers)} GRU layers "
                        f"({', '.join(name for name, _ in layers) or 'none'}); pass the one GRU layer to compare")
    found = _from_layer(*layers[0])
    return _Side(label, own_forward(found), found, found.dtype, accepts_mask=True)


def _from_onnx(value, label) -> _Side:
    import onnx

    from .formats.onnx_file import find_grus

    if isinstance(value, (str, bytes)) or hasattr(value, "__fspath__"):
        model = onnx.load(str(value))
    else:
        path = getattr(value, "_model_path", None)
        data = getattr(value, "_model_bytes", None)
        if data:
            model = onnx.load_from_string(data)
        elif path:
            model = onnx.load(path)
        else:
            raise TypeError(f"{label}: this InferenceSession does not expose its model; pass the .onnx path instead")
    found = find_grus(model, label)
    if len(found) != 1:
        raise TypeError(f"{label} holds {len(found)} GRU nodes; assert_gru_equivalent compares one GRU")
    found = found[0]
    return _Side(label, own_forward(found), found, found.dtype, accepts_mask=True)


def _as_side(value, label: str) -> _Side:
    module = _module_of(value)
    if module.startswith("torch"):
        from torch import nn

        if isinstance(value, (nn.GRU, nn.GRUCell)):
            return _from_torch(value, label)
    if module.startswith("keras") or module.startswith("tf_keras"):
        return _from_keras(value, label)
    if module.startswith("onnxruntime") or (isinstance(value, str) and value.lower().endswith(".onnx")) \
            or (hasattr(value, "__fspath__") and str(value).lower().endswith(".onnx")):
        return _from_onnx(value, label)
    if callable(value):
        try:
            accepts = "mask" in inspect.signature(value).parameters
        except (TypeError, ValueError):
            accepts = False
        return _Side(label, value, None, None, accepts)
    raise TypeError(f"{label} is {type(value).__name__} ({module}); expected a torch nn.GRU/nn.GRUCell, a Keras GRU "
                    f"layer or model, an ONNX InferenceSession or .onnx path, or forward(x, h0) -> (outputs, h_last)")


def _to_array(value, name):
    if value is None:
        return None
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    elif hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        value = value.numpy()
    return np.asarray(value, dtype=np.float64)


def _call(side: _Side, x, h0, mask):
    if side.dtype is not None:  # each framework object computes in its own precision
        x, h0 = x.astype(side.dtype), h0.astype(side.dtype)
    kwargs = {"mask": mask} if mask is not None and side.accepts_mask else {}
    try:
        result = side.forward(x, h0, **kwargs)
    except Exception as error:
        raise AssertionError(f"{side.label} failed to run on x {x.shape} {x.dtype}, h0 {h0.shape}: "
                             f"{type(error).__name__}: {error}") from error
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise TypeError(f"{side.label} returned {type(result).__name__}; expected (outputs, h_last)")
    outputs, h_last = _to_array(result[0], "outputs"), _to_array(result[1], "h_last")
    if h_last.ndim == 2:
        h_last = h_last[None]
    return outputs, h_last


def _diagnose(actual: _Side, expected: _Side, observed, x, h0, mask, dtype) -> str:
    base = expected.found or actual.found
    if base is None:
        return "neither side has readable weights, so what actual computes cannot be identified"
    whose = "expected's" if expected.found is not None else "its own"
    layers = tuple(tuple(p.astype(np.float64) for p in layer) for layer in base.layers)
    observation = Observation(layers=layers, x=x.astype(np.float64), h0=h0.astype(np.float64), mask=mask,
                              outputs=observed[0], h_last=observed[1])
    structure = Structure(merge=base.merge, masked_output="zero" if mask is not None else "carry",
                          reverse=base.reverse, reference_options=base.reference_options)
    try:
        result = identify_observations([observation], dtype, structure,
                                       expected=(expected.found.convention if expected.found else None), max_mistakes=2)
    except Exception as error:  # a shape mismatch between the sides: nothing to identify
        return f"what actual computes could not be identified ({type(error).__name__}: {error})"
    lines = [f"what actual computes instead (judged on {whose} weights):"]
    lines += ["  " + line for line in result.describe().splitlines()]
    return "\n".join(lines)


def assert_gru_equivalent(actual: Any, expected: Any, *, inputs=None, h0=None, mask=None, rtol=None, atol=None,
                          dtype=None) -> None:
    """Raise ``AssertionError`` unless ``actual`` and ``expected`` compute the same outputs and final states."""
    actual_side, expected_side = _as_side(actual, "actual"), _as_side(expected, "expected")
    reference_side = expected_side if expected_side.found is not None else actual_side
    known = [side.dtype for side in (actual_side, expected_side) if side.dtype is not None]
    # Two float64 objects are held to float64's tolerance; anything computed in float32 to float32's.
    dtype = np.dtype(dtype or (np.float64 if known and all(d == np.float64 for d in known) else np.float32))
    default_rtol, default_atol = tolerance_for(dtype)
    rtol = default_rtol if rtol is None else rtol
    atol = default_atol if atol is None else atol
    if inputs is None:
        if reference_side.found is None:
            raise ValueError("neither side has readable weights, so the input size is unknown: pass inputs=(batch, time, input) array")
        found = reference_side.found
        x, probe_h0 = probe_inputs(found.input_size, found.hidden_size, found.num_layers * found.directions, dtype, 0.5)
    else:
        x = np.asarray(inputs)
        if x.ndim != 3:
            raise ValueError(f"inputs has shape {x.shape}; pass (batch, time, input_size)")
        x = x.astype(dtype)
        probe_h0 = None
        if reference_side.found is not None:
            found = reference_side.found
            probe_h0 = np.zeros((found.num_layers * found.directions, x.shape[0], found.hidden_size), dtype)
    if h0 is not None:
        h0 = np.asarray(h0, dtype=dtype)
        h0 = h0[None] if h0.ndim == 2 else h0
    else:
        if probe_h0 is None:
            raise ValueError("neither side has readable weights, so h0's shape is unknown: pass h0=(layers*directions, batch, hidden)")
        h0 = probe_h0
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
    observed_actual = _call(actual_side, x.copy(), h0.copy(), mask)
    observed_expected = _call(expected_side, x.copy(), h0.copy(), mask)
    problems = []
    for name, axes, index in (("outputs", OUTPUT_AXES, 0), ("h_last", STATE_AXES, 1)):
        a, e = observed_actual[index], observed_expected[index]
        if a is None or e is None:
            continue
        if a.shape != e.shape:
            problems.append(f"{name}: actual has shape {a.shape}, expected {e.shape}")
            continue
        if mask is not None and name == "outputs":  # padding is framework-specific: compare real steps only
            a, e = np.where(mask[:, :, None], a, 0.0), np.where(mask[:, :, None], e, 0.0)
        gap = difference(name, a, e, axes, rtol, atol)
        if not gap.passed:
            problems.append(gap.describe())
    if not problems:
        return
    message = ["GRUs are not equivalent:", *[f"  {p}" for p in problems],
               _diagnose(actual_side, expected_side, observed_actual, x, h0, mask, dtype)]
    raise AssertionError("\n".join(message))
