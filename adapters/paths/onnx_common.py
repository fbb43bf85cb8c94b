"""ONNX helpers every ONNX-producing path shares: load, describe, and run with onnxruntime.

- ``load_model(model_or_path)``: an ``onnx.ModelProto`` from a ModelProto, a path or serialized bytes,
  or an error naming the bad value;
- ``describe_onnx(model)``: what a tool wrote, JSON-able: op counts (sub-graphs of Loop/Scan/If
  included), every GRU node's attributes (defaults of the GRU-22 schema filled in:
  ``onnx/defs/rnn/defs.cc`` of onnx 1.23.2, ``linear_before_reset`` 0, ``direction`` "forward",
  ``layout`` 0), whether the recurrence was unrolled into ``Loop``/``Scan`` instead of a ``GRU`` node,
  and the dtype of the weights (the GRU's ``W`` initializer, else the commonest float initializer);
- ``OnnxIO`` + ``onnx_runner(model, io)``: a ``run(x, h0=None, mask=None) -> ForwardResult`` over an
  ``onnxruntime.InferenceSession`` (CPU provider, one thread: deterministic, and the machine is
  shared) that lays the source's NumPy inputs out the way the graph wants them and the graph's outputs
  back into the source adapter's shapes (outputs ``(batch, time, features)``, ``h_last``
  ``(layers * directions, batch, hidden)``).

The GRU attribute defaults are read from the schema at run time (``onnx.defs.get_schema("GRU")``), so
they follow the installed onnx; ``gru_attributes`` always lists the four that decide the formula.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..base import ForwardResult

LOOP_OPS = ("Loop", "Scan")
RECURRENT_OPS = ("GRU", "LSTM", "RNN")
DECIDING_ATTRIBUTES = ("linear_before_reset", "direction", "hidden_size", "layout")
FALLBACK_DEFAULTS = {"linear_before_reset": 0, "direction": "forward", "layout": 0}  # defs.cc:54-92 (onnx 1.23.2)


def load_model(model_or_path):
    """``model_or_path`` as an ``onnx.ModelProto``: a ModelProto (used as is, never changed), a path
    (str or ``pathlib.Path``) to a ``.onnx`` file, or its serialized bytes."""
    import onnx

    if isinstance(model_or_path, onnx.ModelProto):
        return model_or_path
    if isinstance(model_or_path, (bytes, bytearray)):
        try:
            return onnx.load_from_string(bytes(model_or_path))
        except Exception as error:
            raise ValueError(f"the bytes given are not a serialized ONNX model ({type(error).__name__}: {error})") from None
    if isinstance(model_or_path, (str, Path)):
        path = Path(model_or_path)
        if not path.is_file():
            raise FileNotFoundError(f"no ONNX file at {str(path)!r}; pass the path of a .onnx file or an onnx.ModelProto")
        try:
            return onnx.load(str(path))
        except Exception as error:
            raise ValueError(f"{str(path)!r} is not a readable ONNX model ({type(error).__name__}: {error})") from None
    raise TypeError(f"expected an onnx.ModelProto, a path to a .onnx file or its bytes, got {type(model_or_path).__name__}")


def _all_nodes(graph):
    """Every node of ``graph`` and of the sub-graphs its Loop/Scan/If nodes carry."""
    from onnx import AttributeProto

    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.type == AttributeProto.GRAPH:
                yield from _all_nodes(attribute.g)
            elif attribute.type == AttributeProto.GRAPHS:
                for sub in attribute.graphs:
                    yield from _all_nodes(sub)


def _gru_defaults() -> dict:
    try:
        from onnx import defs, helper

        schema = defs.get_schema("GRU")
        defaults = {}
        for name in FALLBACK_DEFAULTS:
            attribute = schema.attributes[name]
            if attribute.default_value.name:
                defaults[name] = helper.get_attribute_value(attribute.default_value)
            else:
                defaults[name] = FALLBACK_DEFAULTS[name]
        return {k: v.decode() if isinstance(v, bytes) else v for k, v in defaults.items()}
    except Exception:  # an onnx without the schema API: the documented defaults
        return dict(FALLBACK_DEFAULTS)


def gru_nodes(model) -> list:
    """The ``GRU`` nodes of ``model``'s main graph, in graph order."""
    return [node for node in load_model(model).graph.node if node.op_type == "GRU"]


def gru_attributes(node) -> dict:
    """The node's attributes as plain Python values, the schema's defaults filled in for the deciding ones."""
    from onnx import helper

    values = dict(_gru_defaults())
    for attribute in node.attribute:
        value = helper.get_attribute_value(attribute)
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, list):
            value = [v.decode() if isinstance(v, bytes) else v for v in value]
        values[attribute.name] = value
    return values


def _initializer_dtypes(model) -> dict[str, str]:
    from onnx import helper

    found = {}
    for tensor in model.graph.initializer:
        try:
            found[tensor.name] = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).name
        except Exception:
            found[tensor.name] = str(tensor.data_type)
    return found


def describe_onnx(model_or_path) -> dict:
    """What the tool wrote, JSON-able (see the module docstring)."""
    model = load_model(model_or_path)
    ops = Counter(node.op_type for node in _all_nodes(model.graph))
    grus = [node for node in model.graph.node if node.op_type == "GRU"]
    dtypes = _initializer_dtypes(model)
    weights_dtype = None
    if grus and len(grus[0].input) > 1 and grus[0].input[1] in dtypes:
        weights_dtype = dtypes[grus[0].input[1]]
    elif dtypes:
        floats = Counter(d for d in dtypes.values() if d.startswith(("float", "bfloat")))
        weights_dtype = floats.most_common(1)[0][0] if floats else None
    opsets = {entry.domain or "ai.onnx": entry.version for entry in model.opset_import}
    return {
        "format": "onnx",
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "opset": opsets.get("ai.onnx"),
        "ops": dict(sorted(ops.items())),
        "gru_nodes": len(grus),
        "gru_attributes": [{key: value for key, value in gru_attributes(node).items()} for node in grus],
        "unrolled": not grus and any(op in ops for op in LOOP_OPS),
        "loops": {op: ops[op] for op in LOOP_OPS if op in ops},
        "weights_dtype": weights_dtype,
        "inputs": [value.name for value in model.graph.input if value.name not in dtypes],
        "outputs": [value.name for value in model.graph.output],
    }


def summarize_emitted(emitted: dict) -> str:
    """One line for a table cell: "2 x GRU(linear_before_reset=1, direction=bidirectional)" or "unrolled: Loop x 1"."""
    if emitted.get("format") != "onnx":
        if emitted.get("config"):
            return f"{emitted['format']} {emitted['config']}" + (f" -> {emitted['round_trip']}" if emitted.get("round_trip") else "")
        if isinstance(emitted.get("layers"), dict):
            top = sorted(emitted["layers"].items(), key=lambda item: -item[1])[:4]
            return f"{emitted['format']}: " + ", ".join(f"{kind} x {n}" for kind, n in top)
        return ", ".join(f"{k}={v}" for k, v in emitted.items() if isinstance(v, (str, int, float, bool)))
    if emitted.get("gru_attributes"):
        attributes = emitted["gru_attributes"]
        first = attributes[0]
        text = f"GRU(linear_before_reset={first.get('linear_before_reset')}, direction={first.get('direction')})"
        return (f"{len(attributes)} x " if len(attributes) > 1 else "") + text + f", weights {emitted.get('weights_dtype')}"
    if emitted.get("unrolled"):
        return "unrolled: " + ", ".join(f"{op} x {n}" for op, n in emitted["loops"].items())
    top = sorted(emitted.get("ops", {}).items(), key=lambda item: -item[1])[:4]
    return "no GRU node: " + ", ".join(f"{op} x {n}" for op, n in top)


# ----------------------------------------------------------------- running with onnxruntime


@dataclass(frozen=True)
class OnnxIO:
    """How a graph's inputs and outputs relate to the source's ``x``, ``h0``, ``mask`` and result.

    Layouts: ``x_layout`` "batch_time" (B, T, I) or "time_batch" (T, B, I); ``state_layout`` "slots_batch"
    (L*D, B, H) or "batch_slots" (B, L*D, H); ``outputs_layout`` "batch_time" (B, T, F), "time_batch"
    (T, B, F), or "onnx_gru" (the GRU node's Y: [T, D, B, H]). ``h0_names`` / ``h_last_names`` list one
    name per layer when the graph splits the state by layer (concatenated in order). ``lengths_name``
    takes the mask's lengths (int ``lengths_dtype``); ``mask_name`` takes the mask itself. A state input
    of rank 2 takes one slot's ``(batch, hidden)``; a state output of rank 2 is one slot.
    """

    x_name: str
    outputs_name: str | None
    h_last_names: tuple[str, ...]
    h0_names: tuple[str, ...] = ()
    lengths_name: str | None = None
    lengths_dtype: str = "int32"
    mask_name: str | None = None
    mask_dtype: str = "bool"
    x_layout: str = "batch_time"
    state_layout: str = "slots_batch"
    outputs_layout: str = "batch_time"


def ort_session(model_or_bytes):
    """An ``onnxruntime.InferenceSession`` on the CPU provider, one thread, errors as exceptions."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 4
    data = model_or_bytes if isinstance(model_or_bytes, (bytes, str)) else model_or_bytes.SerializeToString()
    return onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def ort_message(error: Exception) -> str:
    """onnxruntime's own message without its '[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION :' prefix."""
    text = str(error).strip()
    return text.split(" : ", 3)[-1] if text.startswith("[ONNXRuntimeError]") else text


def _state_in(h0: np.ndarray, layout: str) -> np.ndarray:
    return np.ascontiguousarray(h0 if layout == "slots_batch" else h0.transpose(1, 0, 2))


def onnx_runner(model_or_path, io: OnnxIO, session=None) -> Callable[..., ForwardResult]:
    """``run(x, h0=None, mask=None) -> ForwardResult`` for ``model`` through onnxruntime (see ``OnnxIO``).

    A graph input the caller has no value for (h0 None, no mask) is left out only when the graph lets
    it be optional; otherwise zeros (h0) or full lengths (mask) are fed, which is what leaving it out means.
    """
    model = load_model(model_or_path)
    session = session or ort_session(model)
    graph_inputs = {value.name: len(value.shape) for value in session.get_inputs()}

    def run(x: np.ndarray, h0: np.ndarray | None = None, mask: np.ndarray | None = None) -> ForwardResult:
        x = np.asarray(x)
        batch, time = x.shape[:2]
        feeds = {io.x_name: np.ascontiguousarray(x if io.x_layout == "batch_time" else x.transpose(1, 0, 2))}
        if io.h0_names:
            slots = len(io.h0_names)
            if h0 is None:
                raise ValueError("this graph takes an initial state; pass h0 (zeros if you have none)")
            per_layer = np.split(np.asarray(h0), slots) if slots > 1 else [np.asarray(h0)]
            for name, state in zip(io.h0_names, per_layer):
                if name in graph_inputs:
                    # a graph input of rank 2 takes one slot's state (batch, hidden): one name per slot
                    feeds[name] = np.ascontiguousarray(state[0]) if graph_inputs[name] == 2 else \
                        _state_in(state, io.state_layout)
        if io.lengths_name and io.lengths_name in graph_inputs:
            lengths = np.full(batch, time) if mask is None else np.asarray(mask).sum(axis=1)
            feeds[io.lengths_name] = lengths.astype(io.lengths_dtype)
        if io.mask_name and io.mask_name in graph_inputs:
            full = np.ones((batch, time), bool) if mask is None else np.asarray(mask)
            feeds[io.mask_name] = full.astype(io.mask_dtype)
        wanted = ([io.outputs_name] if io.outputs_name else []) + list(io.h_last_names)
        try:
            results = dict(zip(wanted, session.run(wanted, feeds)))
        except Exception as error:
            raise RuntimeError(f"onnxruntime cannot run the converted graph: {ort_message(error)}") from None
        finals = [results[name] for name in io.h_last_names]
        # a rank-2 output is one slot (batch, hidden); rank 3 follows state_layout
        h_last = np.concatenate([f[None] if f.ndim == 2 else f if io.state_layout == "slots_batch"
                                 else f.transpose(1, 0, 2) for f in finals])
        outputs = None
        if io.outputs_name:
            y = results[io.outputs_name]
            if io.outputs_layout == "onnx_gru":
                y = y.transpose(2, 0, 1, 3).reshape(batch, y.shape[0], -1)
            elif io.outputs_layout == "time_batch":
                y = y.transpose(1, 0, 2)
            outputs = np.ascontiguousarray(y)
        return ForwardResult(outputs, np.ascontiguousarray(h_last))

    return run


__all__ = ["OnnxIO", "describe_onnx", "gru_attributes", "gru_nodes", "load_model", "onnx_runner", "ort_message",
           "ort_session", "summarize_emitted"]
