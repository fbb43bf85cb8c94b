"""``.onnx`` models: every ``GRU`` node whose ``W``, ``R`` (and ``B``) are initializers or ``Constant`` nodes.

Read with ``onnx.load`` (protobuf and, for external data, the raw files beside it: no code runs). The convention comes
from the node's ``linear_before_reset`` attribute (``onnx/defs/doc_strings.cc:88-89``: 0, the default,
is reset before; 1 reset after); ``direction``, ``activations``, ``activation_alpha``/``_beta`` and
``clip`` are kept so the node is rebuilt exactly (``adapters.onnx_runtime.build_model``) and confirmed
by onnxruntime (a float64 model on its weights rounded to float32, said so: onnxruntime has no float64 GRU).

GRU nodes chained as a stack (one node's ``Y`` reaching the next node's ``X`` through only
``Transpose``/``Reshape``/``Squeeze``/``Unsqueeze``/``Identity``/``Dropout``, as ``torch.onnx.export`` writes
a ``num_layers=2`` ``nn.GRU``: ``Y [T, D, B, H]`` -> ``X [T, B, D*H]``) with the same attributes are one
GRU with several layers, so a stacked GRU ports back as one ``nn.GRU``; the locations say which nodes.

A model whose recurrence was unrolled into ``Loop``/``Scan`` bodies has no ``GRU`` node: recognising a
GRU in an arbitrary loop body is not attempted, and the error says so (naming the loops found).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import helper, numpy_helper

from reference import Convention, layouts

from .base import FormatError, FoundGRU, as_float


def _attributes(node) -> dict:
    return {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}


def _all_nodes(graph, path=""):
    for node in graph.node:
        yield path, node
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(attribute.g, f"{path}{node.name or node.op_type}/")


def load_model(path: Path) -> onnx.ModelProto:
    try:
        return onnx.load(str(path), load_external_data=True)  # data files beside it: plain bytes, no code
    except Exception as error:
        raise FormatError(f"{path}: not a readable ONNX model (corrupt or truncated?): "
                          f"{str(error).splitlines()[0][:160] if str(error) else type(error).__name__}") from None


def find_grus(model: onnx.ModelProto, path) -> list[FoundGRU]:
    constants = {}
    tensors = [(t.name, t) for t in model.graph.initializer]
    tensors += [(node.output[0], attribute.t) for node in model.graph.node if node.op_type == "Constant"
                for attribute in node.attribute if attribute.name == "value"]
    for name, tensor in tensors:
        try:
            constants[name] = numpy_helper.to_array(tensor)
        except Exception as error:  # external data (not followed), or a corrupt tensor
            constants[name] = FormatError(f"{path}: tensor {name!r} cannot be read "
                                          f"({'stored as external data, not followed' if tensor.data_location else error})")
    found, loops = [], []
    for scope, node in _all_nodes(model.graph):
        if node.op_type in ("Loop", "Scan"):
            loops.append(f"{node.op_type} {node.name or '(unnamed)'}")
        if node.op_type != "GRU" or node.domain not in ("", "ai.onnx"):
            continue
        location = scope + (node.name or node.output[-1] or f"GRU #{len(found)}")
        names = list(node.input) + [""] * (6 - len(node.input))
        arrays = {}
        notes: list[str] = []
        for slot, key in ((1, "W"), (2, "R"), (3, "B")):
            if not names[slot]:
                continue
            if names[slot] not in constants:
                raise FormatError(f"{path}: GRU node {location!r}: {key} ({names[slot]!r}) is computed at run time, "
                                  f"not an initializer; only constant weights can be inspected")
            if isinstance(constants[names[slot]], FormatError):
                raise constants[names[slot]]
            arrays[key] = as_float(names[slot], constants[names[slot]], notes)
        attributes = _attributes(node)
        attributes = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attributes.items()}
        if "activations" in attributes:
            attributes["activations"] = [a.decode() if isinstance(a, bytes) else a for a in attributes["activations"]]
        direction = attributes.get("direction", "forward")
        try:
            row = [layouts.from_onnx(arrays["W"], arrays["R"], arrays.get("B"), direction=d)
                   for d in range(arrays["R"].shape[0])]
        except (TypeError, ValueError, KeyError) as error:
            raise FormatError(f"{path}: GRU node {location!r}: {error}") from None
        lbr = int(attributes.get("linear_before_reset", 0))
        options = {"reverse": direction == "reverse", "onnx_attributes": attributes}
        if attributes.get("layout", 0):
            notes.append("layout=1 (batch-major) only moves axes; confirmed with layout=0, which onnxruntime runs")
        extra = [k for k in ("activations", "clip") if k in attributes]
        if extra:
            from adapters.onnx_runtime import reference_options

            from .base import _onnx_row

            probe = FoundGRU(location, "", [row], "onnxruntime", None, "", "", "B" in arrays, "", options)
            options["reference_options"] = reference_options(_onnx_row(probe))
            notes.append(f"non-default {', '.join(extra)}: {attributes.get('activations', '')} "
                         f"{attributes.get('clip', '')}".strip())
        found.append(FoundGRU(
            location=location, kind=f"ONNX GRU node (direction={direction})", layers=[row], framework="onnxruntime",
            convention=Convention("z_on_previous", "after" if lbr else "before"),
            convention_source=f"linear_before_reset={lbr} (onnx/defs/doc_strings.cc:{89 if lbr else 88})",
            bias_layout="B [dirs, 6H] = Wb[zrh] | Rb[zrh]" if "B" in arrays else "none (B omitted: zero biases)",
            has_bias="B" in arrays, stored_dtype=str(arrays["R"].dtype), options=options, notes=notes,
        ))
    found = _chain(model, found)
    if not found and loops:
        raise FormatError(f"{path}: no GRU node; the model has {', '.join(loops[:3])}: a GRU unrolled into "
                          f"Loop/Scan is not recognised (re-export it with the ONNX GRU operator)")
    return found


PASS_THROUGH = ("Transpose", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Dropout")


def _chain(model: onnx.ModelProto, found: list[FoundGRU]) -> list[FoundGRU]:
    """Merge GRU nodes that feed each other (top-level graph only) into stacked GRUs."""
    nodes = {node.name or node.output[-1]: node for node in model.graph.node if node.op_type == "GRU"}
    producer = {output: node for node in model.graph.node for output in node.output if output}
    by_location = {gru.location: gru for gru in found}

    def feeding_gru(node):
        tensor = node.input[0]
        for _ in range(8):
            source = producer.get(tensor)
            if source is None:
                return None
            if source.op_type == "GRU":
                return (source.name or source.output[-1]) if source.output[0] == tensor else None
            if source.op_type not in PASS_THROUGH:
                return None
            tensor = source.input[0]
        return None

    def same(a: FoundGRU, b: FoundGRU) -> bool:
        keys = ("linear_before_reset", "direction", "activations", "activation_alpha", "activation_beta", "clip")
        attributes = [{k: g.options["onnx_attributes"].get(k) for k in keys} for g in (a, b)]
        return (attributes[0] == attributes[1] and a.hidden_size == b.hidden_size and a.has_bias == b.has_bias
                and b.input_size == a.directions * a.hidden_size and a.dtype == b.dtype)

    follows = {}
    for location, node in nodes.items():
        before = feeding_gru(node)
        if before in by_location and location in by_location and same(by_location[before], by_location[location]):
            follows[before] = location
    heads = [gru for gru in found if gru.location not in follows.values()]
    merged = []
    for head in heads:
        chain, location = [head], head.location
        while location in follows:
            location = follows[location]
            chain.append(by_location[location])
        if len(chain) > 1:
            head.layers = [layer for gru in chain for layer in gru.layers]
            head.notes.append(f"{len(chain)} GRU nodes chained as a stack: {', '.join(g.location for g in chain)}")
            head.location = "+".join(g.location for g in chain)
            head.kind = head.kind.replace("ONNX GRU node", f"ONNX GRU nodes x{len(chain)}")
        merged.append(head)
    return merged


@dataclass(frozen=True)
class OnnxFormat:
    name: str = "onnx"

    def read(self, path: Path, family: str) -> list[FoundGRU]:
        return find_grus(load_model(path), path)


FORMAT = OnnxFormat()
