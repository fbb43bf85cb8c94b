"""The audit of one ONNX file against the GRU it should compute, and the verdict rules every path shares.

``audit_onnx(model_or_path, source_layers, convention, ...)`` runs an ONNX model (a path, bytes or an
``onnx.ModelProto``; never changed) with onnxruntime on a probe made from ``source_layers`` (the
canonical parameters the file is supposed to hold, e.g. ``adapters.get("torch").extract(model)``), and
judges its outputs with ``reference.identify.identify_observations`` against the four conventions and
the mistake catalogue (``reference.mistakes``), ``convention`` being the formula the source computes.
The answer (``OnnxAudit``) gives a verdict, the mistakes it names with their fixes, the precision it
computed at, its error against the source's formula, and what the file holds (``describe_onnx``: GRU
nodes and their attributes, or an unrolled Loop/Scan).

Verdicts (``judge``), each a separate answer, shared with the conversion audit (``reports/conversions.py``):

- ``exact``: the source's formula, at the requested precision;
- ``precision only``: the source's formula, at a coarser precision (``reference.precision``);
- ``formula changed``: another convention fits (the flip is named, with its fix), or nothing fits and
  no catalogued mistake explains it, or the answer is ambiguous;
- ``mistake named``: no convention fits, a catalogued mistake (or pair) explains the numbers, named with its fix.

Known tampering and what the audit names (``tests/test_onnx_audit.py`` plants each in a real export):
``linear_before_reset`` flipped -> "reset placement flipped"; gate blocks of W/R/B permuted -> "input
weights: z<->r" (W only), "all gate blocks: z<->r" (W, R and B); the recurrent half of ``B`` zeroed ->
"recurrent biases c_z, c_r, c_h absent"; ``direction`` forward <-> reverse -> "time reversed".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from reference import Convention, as_convention, tolerance_for
from reference.identify import Identification, Observation, Structure, identify_observations

from .onnx_common import OnnxIO, describe_onnx, load_model, onnx_runner, ort_session

VERDICTS = ("exact", "precision only", "formula changed", "mistake named", "failed", "refused", "unavailable")


def judge(identification: Identification, expected: Convention) -> tuple[str, str]:
    """``(verdict, one line of detail)`` for an identification against the formula the source computes."""
    matched = identification.matched
    precision = identification.precision
    if matched is not None and matched == expected:
        if precision is not None and precision.lower_than_requested:
            return "precision only", precision.describe()
        return "exact", f"computes {matched.id}, as the source"
    if matched is not None:
        names = "; ".join(d.name for d in identification.diagnosis) or "convention changed"
        return "formula changed", f"computes {matched.id} where the source computes {expected.id} ({names})"
    if identification.diagnosis:
        best = identification.diagnosis[0]
        return "mistake named", f"{best.name} (under {best.convention.id}; max abs error {best.error:.2g})"
    if identification.ambiguous:
        return "formula changed", "ambiguous: " + ", ".join(c.id for c in identification.candidates) + " all fit"
    best = min(identification.errors.values()) if identification.errors else float("nan")
    return "formula changed", f"matches no convention (nearest misses by {best:.2g}) and no catalogued mistake explains it"


def fixes(identification: Identification | None) -> list[dict]:
    """The diagnosed mistakes, most likely first: ``{"mistakes": [...], "fixes": [...], "convention", "error"}``."""
    if identification is None:
        return []
    return [diagnosis.to_json() for diagnosis in identification.diagnosis]


@dataclass
class OnnxAudit:
    """What ``audit_onnx`` found. ``names``: the named mistakes of the best diagnosis (empty when exact)."""

    verdict: str
    detail: str
    expected: Convention
    identification: Identification
    emitted: dict
    error_vs_expected: float  # max abs error against the source formula on the probe
    notes: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        if not self.identification.diagnosis:
            return []
        return [mistake.name for mistake in self.identification.diagnosis[0].mistakes]

    @property
    def fixes(self) -> list[str]:
        if not self.identification.diagnosis:
            return []
        return [mistake.fix for mistake in self.identification.diagnosis[0].mistakes]

    def describe(self) -> str:
        lines = [f"verdict: {self.verdict}: {self.detail}"]
        for diagnosis in self.identification.diagnosis[:3]:
            lines.append("  " + diagnosis.describe().replace("\n", "\n  "))
        lines.append(f"  error against {self.expected.id}: {self.error_vs_expected:.3g}")
        attributes = self.emitted.get("gru_attributes") or []
        lines.append(f"  file: {self.emitted.get('ops')}; GRU attributes: {attributes}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"verdict": self.verdict, "detail": self.detail, "expected": self.expected.id,
                "matched": self.identification.matched.id if self.identification.matched else None,
                "names": self.names, "fixes": self.fixes, "diagnosis": fixes(self.identification),
                "precision": self.identification.precision.to_json() if self.identification.precision else None,
                "error_vs_expected": self.error_vs_expected, "emitted": self.emitted, "notes": self.notes}


def infer_io(model, directions: int) -> OnnxIO:
    """Guess how ``model``'s graph inputs and outputs relate to x, h0, mask and the result.

    Inputs (initializers excluded): the first float input of rank 3 is ``x``; other float inputs are the
    initial states, in order; an integer input of rank 1 takes the lengths, a bool one of rank 2 the mask.
    ``x`` is time-major when it feeds a ``GRU`` node of ``layout=0`` directly (this project's graphs),
    batch-major otherwise (exporters put a Transpose in front). Outputs: the first one is the sequence
    (rank 4: a GRU's raw ``Y``), the rest the final states. Pass ``io`` to ``audit_onnx`` when this guess
    does not fit your file.
    """
    from onnx import TensorProto

    model = load_model(model)
    initializers = {tensor.name for tensor in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    floats = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16)
    rank = lambda value: len(value.type.tensor_type.shape.dim)  # noqa: E731
    element = lambda value: value.type.tensor_type.elem_type  # noqa: E731
    float_inputs = [v for v in inputs if element(v) in floats]
    if not float_inputs:
        raise ValueError(f"the model has no float graph input to take x; its inputs: {[v.name for v in inputs]}")
    x = next((v for v in float_inputs if rank(v) == 3), float_inputs[0])
    states = tuple(v.name for v in float_inputs if v.name != x.name)
    lengths = next((v.name for v in inputs if element(v) in (TensorProto.INT32, TensorProto.INT64) and rank(v) == 1), None)
    lengths_dtype = "int64"
    if lengths:
        lengths_dtype = "int32" if element(next(v for v in inputs if v.name == lengths)) == TensorProto.INT32 else "int64"
    mask = next((v.name for v in inputs if element(v) == TensorProto.BOOL and rank(v) == 2), None)
    time_major = any(node.op_type == "GRU" and node.input and node.input[0] == x.name for node in model.graph.node)
    outputs = list(model.graph.output)
    if not outputs:
        raise ValueError("the model has no graph output")
    sequence, finals = outputs[0], outputs[1:]
    if not finals:  # only a state comes out
        sequence, finals = None, outputs
    sequence_layout = "batch_time"
    if sequence is not None and rank(sequence) == 4:
        sequence_layout = "onnx_gru"
    elif time_major:
        sequence_layout = "time_batch"
    return OnnxIO(x_name=x.name, outputs_name=sequence.name if sequence is not None else None,
                  h_last_names=tuple(v.name for v in finals), h0_names=states, lengths_name=lengths,
                  lengths_dtype=lengths_dtype, mask_name=mask, x_layout="time_batch" if time_major else "batch_time",
                  outputs_layout=sequence_layout)


def audit_probe(layers, dtype, seed: int = 0, batch: int = 3, time: int = 7, masked: bool = False):
    """``(x, h0, mask)`` for ``layers``: unit-variance inputs, a non-zero initial state (zero cannot tell the
    reset placements apart) and, when ``masked``, right-padded lengths full / about half / one step."""
    rng = np.random.default_rng([seed, 1])
    input_size = layers[0][0].input_size
    slots = sum(len(layer) for layer in layers)
    x = rng.normal(size=(batch, time, input_size)).astype(dtype)
    h0 = rng.uniform(-0.8, 0.8, size=(slots, batch, layers[0][0].hidden_size)).astype(dtype)
    mask = None
    if masked:
        lengths = np.maximum(1, np.array([time, (time + 1) // 2, 1] * batch)[:batch])
        mask = np.arange(time)[None, :] < lengths[:, None]
    return x, h0, mask


def audit_onnx(model_or_path, source_layers, convention, *, dtype=np.float32, structure: Structure | None = None,
               io: OnnxIO | None = None, masked: bool = False, seed: int = 0, max_mistakes: int = 2) -> OnnxAudit:
    """Audit an ONNX GRU file against the GRU it should compute (see the module docstring).

    ``source_layers``: ``layers[l][d]`` canonical ``GRUParams`` (layer ``l``, direction ``d``) the file is
    supposed to compute with; ``convention``: the formula the source computes (a ``Convention`` or its
    id, e.g. ``"z_on_previous+reset_after"`` for PyTorch). ``structure``: how the stack is assembled
    (``reference.identify.Structure``: merge, padding semantics, reverse); ``io``: how the graph's inputs
    and outputs map (default ``infer_io``); ``masked``: also feed right-padded lengths.
    """
    from reference import check_layers

    model = load_model(model_or_path)
    expected = as_convention(convention)
    try:
        num_layers, directions = check_layers(source_layers, (structure or Structure()).merge)
    except (TypeError, ValueError) as error:
        raise ValueError(f"source_layers: {error}; pass layers[l][d] of reference.GRUParams, e.g. "
                         f"adapters.get('torch').extract(module)") from None
    dtype = np.dtype(dtype)
    tolerance_for(dtype)  # float32 or float64, or a clear error
    structure = structure or Structure(masked_output="zero" if masked else "carry")
    io = io or infer_io(model, directions)
    layers = [[params.astype(dtype.name) for params in layer] for layer in source_layers]
    x, h0, mask = audit_probe(layers, dtype, seed=seed, masked=masked)
    run = onnx_runner(model, io, session=ort_session(model))
    observed = run(x, h0 if io.h0_names else None, mask)
    observation = Observation(tuple(tuple(layer) for layer in layers), x, h0 if io.h0_names else None, mask,
                              observed.outputs, observed.h_last)
    identification = identify_observations([observation], dtype, structure, expected=expected,
                                           max_mistakes=max_mistakes)
    verdict, detail = judge(identification, expected)
    notes = []
    if not io.h0_names:
        notes.append("the file has no initial-state input: judged from zeros")
    return OnnxAudit(verdict, detail, expected, identification, describe_onnx(model),
                     float(identification.errors.get(expected, np.nan)), notes)


__all__ = ["OnnxAudit", "VERDICTS", "audit_onnx", "audit_probe", "fixes", "infer_io", "judge"]
