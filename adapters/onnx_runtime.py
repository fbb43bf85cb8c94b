"""ONNX: the ``GRU`` operator, run by two independent implementations of one specification.

``ADAPTER`` (registry name ``onnxruntime``) runs the graphs with ``onnxruntime.InferenceSession``
on the ``CPUExecutionProvider``; ``REFERENCE_ADAPTER`` (``onnx-reference``) runs the very same
graphs with ``onnx.reference.ReferenceEvaluator``, the Python implementation shipped with onnx.
One graph builder (``build_model``) serves both: from canonical parameters through
``reference.layouts.to_onnx`` it writes one ``GRU`` node per layer, the weights as initializers;
stacked layers are chained nodes, the ``Y [T, D, B, H]`` of a layer turned into the next layer's
``X [T, B, D * H]`` by ``Transpose(perm=[0, 2, 1, 3])`` + ``Reshape([0, 0, -1])`` (forward units
first; with ``layout=1``, ``Y [B, T, D, H]`` needs the ``Reshape`` only). The graph's outputs are
the last layer's raw ``Y`` and every layer's ``Y_h``; ``run`` reorders them to ``(batch, time,
features)`` and ``(layers * directions, batch, hidden)``.

Neither has gradients: onnxruntime's inference sessions and the reference evaluator compute forward
passes only, so these adapters measure the forward formula alone (``gradients`` raises
``GradientsUnavailable`` saying so).

Facts from the specification as installed (onnx 1.23.2, ``onnx/defs``):

- the formula, ``doc_strings.cc:84-90`` (the GRU-14/22 doc, used by ``rnn/defs.cc:225``):
  ``zt = f(Xt*(Wz^T) + Ht-1*(Rz^T) + Wbz + Rbz)``, ``rt = f(...)``,
  ``ht = g(Xt*(Wh^T) + (rt (.) Ht-1)*(Rh^T) + Rbh + Wbh)`` when ``linear_before_reset = 0`` (line 88:
  reset before), ``ht = g(Xt*(Wh^T) + (rt (.) (Ht-1*(Rh^T) + Rbh)) + Wbh)`` otherwise (line 89:
  reset after), ``Ht = (1 - zt) (.) ht + zt (.) Ht-1`` (line 90: z on previous); defaults
  f = Sigmoid, g = Tanh (line 84); the activation functions, lines 66-82 (``reference.activations``);
- layout, ``rnn/defs.cc:241-273``: ``W [D, 3H, I]``, ``R [D, 3H, H]`` rows z|r|h, ``B [D, 6H]`` =
  ``Wb[zrh] | Rb[zrh]``, optional (zero when absent); ``layout`` (defs.cc:80-92): 0 is
  ``X [T, B, I]``, ``Y [T, D, B, H]``, ``initial_h``/``Y_h [D, B, H]``, 1 is ``X [B, T, I]``,
  ``Y [B, T, D, H]``, ``[B, D, H]``; ``activations`` (defs.cc:226-233) 2 names, or 4 when
  bidirectional (the rows repeat f, g for the reverse direction); ``activation_alpha``/``_beta``
  (defs.cc:94-108) "consumed in the order of activation functions", defaults "the same as of
  corresponding ONNX operators"; ``clip`` (defs.cc:109-115) "applied to the input of activations".
  FLOAT attributes are float32, so every alpha, beta and clip here is exact in float32;
- ``sequence_lens`` (defs.cc:127-136): "lengths of the sequences in a batch", nothing more: the
  specification does not say what ``Y`` holds past a sequence's end nor which state ``Y_h`` is; the
  conformance case named ``test_gru_seq_length`` (``onnx/backend/test/case/node/gru.py:238-276``)
  does not pass ``sequence_lens`` at all.

onnxruntime 1.32.0 (a compiled wheel: the sources cited are ``onnxruntime/core/providers/cpu/rnn/``
of the onnxruntime repository, and the messages quoted are the wheel's own):

- ``deep_cpu_gru.cc``, ``UniDirectionalGru::Compute``: ``Ht = (1 - zt) ht + zt Ht-1``; clip is applied
  by ``clip_add_bias`` to the complete input of each activation: z's and r's pre-activations with both
  biases, and the candidate's after ``rt (.) (Ht-1 Rh^T + Rbh)`` is formed (reset-after) - exactly the
  specification's "input of activations", which ``reference.gru(clip=...)`` models (a rival reading
  that clips ``Ht-1 Rh^T + Rbh`` before the reset gate multiplies it misses by > 100 tolerances);
  the reset and candidate sigmoid/tanh use a rational approximation (``rnn_helpers.cc``,
  ``gru_reset_gate_sigmoid``, ``gru_output_gate_tanh``): measured max abs error <= 3.4e-7 on the
  matrix probe, float32 rounding;
- with ``sequence_lens``, steps past a sequence's length output zeros and ``Y_h`` is the state after
  its last valid step; ``direction='reverse'`` reverses each sequence within its own length
  (``ReverseSequence``): measured, this is ``masked_output="zero"``;
- activation alpha/beta (``rnn_helpers.cc``, ``NormalizeActivationArgumentAndGetAlphaBetaCount``): each
  function takes the next value only if it has that parameter (Sigmoid consumes none), and the
  defaults (``NameToArgDefaultsMap``) are LeakyRelu 0.01, HardSigmoid 0.2/0.5, Elu 1.0, every other 0;
- float64 and ``layout=1`` are not computed at all; see the findings.

Findings (onnx 1.23.2, onnxruntime 1.32.0, CPU):

1. onnxruntime registers its CPU GRU kernel for double but refuses to run it: every float64 graph
   fails at ``run`` with "GRU operator does not support double yet" (``DeepCpuGruOp::Compute``,
   ``deep_cpu_gru.cc``). Every onnxruntime float64 row therefore fails to run (no silent float32).
2. onnxruntime does not implement ``layout=1``: the session fails to load with "Batchwise recurrent
   operations (layout == 1) are not supported" (``deep_cpu_gru.h:56``, quoted by the wheel).
3. ``onnx.reference`` ignores ``sequence_lens``, ``activations``, ``activation_alpha``,
   ``activation_beta`` and ``clip``: ``CommonGRU._run`` takes them as unused arguments
   (``onnx/reference/ops/op_gru.py:142-147``, ``# noqa: ARG002``; "TODO: support overridden
   attributes", line 153) and always computes Sigmoid/Tanh (``f``/``g``, op_gru.py:17-21) over the
   full padded length. Its rows with any of these attributes compute another function than the
   specification (masked rows: diagnosed as "mask ignored"); without them it matches the
   specification, in float32 and in float64 (max abs error 4e-16). The two runtimes therefore
   disagree on every graph using these attributes; onnxruntime follows the specification there.
4. onnxruntime's default alpha is 0 for ThresholdedRelu and Affine, where the operators the GRU's
   attribute text refers to say 1.0 (``ThresholdedRelu``, ``onnx/defs/math/defs.cc:309``; the
   experimental ``Affine``): ``activations=['Sigmoid', 'ThresholdedRelu']`` misses the specification
   by 0.81 and matches ``ThresholdedRelu(alpha=0)`` to 1.6e-7 (``tests/test_onnx_runtime.py``).
   The cause is ``onnxruntime/core/providers/cpu/rnn/rnn_helpers.cc``: ``NameToArgDefaultsMap`` holds
   defaults for LeakyRelu, HardSigmoid and Elu only, and ``NormalizeActivationArgumentAndGetAlphaBetaCount``
   sets an absent alpha or beta of any other activation to 0. ``identify`` names it: the catalogue's
   "absent activation parameters read as 0".

Precision: onnxruntime computes float32 at float32 precision; float64 not at all (finding 1).
``onnx.reference`` computes float64 graphs in float64.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any

import numpy as np

for _module, _package in (("onnx", "onnx"), ("onnxruntime", "onnxruntime")):
    if importlib.util.find_spec(_module) is None:
        raise ImportError(f"the ONNX adapters need {_package} (pip install onnx onnxruntime)", name=_package)

import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from reference import Convention, GRUParams, Layers, layouts  # noqa: E402
from reference.activations import ONNX_DEFAULTS, onnx_activation  # noqa: E402
from reference.params import check_float_array, describe_value  # noqa: E402

from .base import ALL_BIASES, Adapter, ForwardResult, LayerConfig, check_build_layers, mask_lengths  # noqa: E402

try:  # the gradients interface of adapters.base (absent from older trees)
    from .base import GradientsUnavailable  # noqa: E402
except ImportError:  # pragma: no cover
    GradientsUnavailable = NotImplementedError

OPSET = 22  # GRU-22 is the newest GRU schema of onnx 1.23.2 (onnx/defs/rnn/defs.cc:221-223)
IR_VERSION = 10  # the IR of opset 22, which onnxruntime 1.32 loads
ELEMENT_TYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}
DTYPES = ("float32", "float64")
CPU = "CPUExecutionProvider"

DOC = "onnx/defs/doc_strings.cc"
SPEC_EQUATIONS = (
    "zt = f(Xt*(Wz^T) + Ht-1*(Rz^T) + Wbz + Rbz); rt = f(Xt*(Wr^T) + Ht-1*(Rr^T) + Wbr + Rbr); {ht}; "
    "Ht = (1 - zt) (.) ht + zt (.) Ht-1 (Default: f=Sigmoid, g=Tanh)"
)
CLAIM_BEFORE = (
    f"{DOC}:84-90 (onnx 1.23.2), GRU operator doc, linear_before_reset = 0 (line 88): "
    + SPEC_EQUATIONS.format(ht="ht = g(Xt*(Wh^T) + (rt (.) Ht-1)*(Rh^T) + Rbh + Wbh)")
)
CLAIM_AFTER = (
    f"{DOC}:84-90 (onnx 1.23.2), GRU operator doc, linear_before_reset != 0 (line 89): "
    + SPEC_EQUATIONS.format(ht="ht = g(Xt*(Wh^T) + (rt (.) (Ht-1*(Rh^T) + Rbh)) + Wbh)")
)
LAYOUT_TEXT = (
    "one GRU node per layer: W [D, 3H, I] rows z|r|h (W_z|W_r|W_h transposed), R [D, 3H, H] rows z|r|h, "
    "B [D, 6H] = b_z|b_r|b_h|c_z|c_r|c_h (onnx/defs/rnn/defs.cc:241-273; reference.layouts.to_onnx); "
    "direction 1 is the reverse one; {shapes}; layer k > 0 reads the previous Y as {chain}"
)
SHAPES = {
    0: "layout=0: X [T, B, I], Y [T, D, B, H], initial_h / Y_h [D, B, H]",
    1: "layout=1: X [B, T, I], Y [B, T, D, H], initial_h / Y_h [B, D, H]",
}
CHAIN = {
    0: "Transpose(perm=[0, 2, 1, 3]) + Reshape([0, 0, -1]): [T, B, D*H], forward units first",
    1: "Reshape([0, 0, -1]): [B, T, D*H], forward units first",
}
ORT_PADDING = ("sequence_lens: padded steps output zeros, Y_h is the state after each sequence's last valid "
               "step; reverse reads each sequence backwards from its own end (measured; the spec says nothing)")
REFERENCE_PADDING = ("sequence_lens is ignored (onnx/reference/ops/op_gru.py:142): padded steps are computed "
                     "like real ones, Y_h is the state after the padding")


# ----------------------------------------------------------------- the configuration table


@dataclass(frozen=True)
class Row:
    """One configuration as ONNX node attributes and graph structure (shared by both adapters)."""

    name: str
    linear_before_reset: int = 0
    direction: str = "forward"
    layout: int = 0
    num_layers: int = 1
    bias: bool = True
    masked: bool = False
    returns_sequences: bool = True
    activations: tuple[str, ...] = ()
    activation_alpha: tuple[float, ...] = ()
    activation_beta: tuple[float, ...] = ()
    clip: float | None = None


BIDI = "bidirectional"
ROWS = (
    Row("GRU"),
    Row("GRU(linear_before_reset=1)", linear_before_reset=1),
    Row("GRU(direction='reverse')", direction="reverse"),
    Row("GRU(direction='reverse', linear_before_reset=1)", linear_before_reset=1, direction="reverse"),
    Row("GRU(direction='bidirectional')", direction=BIDI),
    Row("GRU(direction='bidirectional', linear_before_reset=1)", linear_before_reset=1, direction=BIDI),
    Row("GRU(layout=1)", layout=1),
    Row("GRU(layout=1, direction='bidirectional', linear_before_reset=1)", linear_before_reset=1, direction=BIDI,
        layout=1),
    Row("GRU(linear_before_reset=1) without B", linear_before_reset=1, bias=False),
    Row("[GRU, GRU](linear_before_reset=1)", linear_before_reset=1, num_layers=2),
    Row("[GRU, GRU](direction='bidirectional')", direction=BIDI, num_layers=2),
    Row("GRU + sequence_lens", masked=True),
    Row("GRU(direction='reverse', linear_before_reset=1) + sequence_lens", linear_before_reset=1,
        direction="reverse", masked=True),
    Row("GRU(layout=1) + sequence_lens", layout=1, masked=True),
    Row("[GRU, GRU](direction='bidirectional') + sequence_lens", direction=BIDI, num_layers=2, masked=True),
    Row("GRU(direction='bidirectional', linear_before_reset=1) + sequence_lens, Y_h only", linear_before_reset=1,
        direction=BIDI, masked=True, returns_sequences=False),
    Row("GRU(activations=['HardSigmoid', 'Tanh'])", activations=("HardSigmoid", "Tanh")),
    Row("GRU(activations=['Sigmoid', 'Relu'], linear_before_reset=1)", linear_before_reset=1,
        activations=("Sigmoid", "Relu")),
    Row("GRU(activations=['HardSigmoid', 'ScaledTanh'], activation_alpha=[0.25, 1.5], activation_beta=[0.375, 0.75], "
        "direction='bidirectional', linear_before_reset=1)", linear_before_reset=1, direction=BIDI,
        activations=("HardSigmoid", "ScaledTanh"), activation_alpha=(0.25, 1.5), activation_beta=(0.375, 0.75)),
    Row("GRU(activations=['HardSigmoid', 'Affine'], activation_alpha=[0.25, 0.5], activation_beta=[0.375, 0.125], "
        "clip=0.75)", activations=("HardSigmoid", "Affine"), activation_alpha=(0.25, 0.5),
        activation_beta=(0.375, 0.125), clip=0.75),
    Row("GRU(activations=['Sigmoid', 'LeakyRelu'])", activations=("Sigmoid", "LeakyRelu")),
    Row("GRU(activations=['Sigmoid', 'Elu'], linear_before_reset=1)", linear_before_reset=1,
        activations=("Sigmoid", "Elu")),
    Row("GRU(activations=['Softsign', 'Softplus'])", activations=("Softsign", "Softplus")),
    Row("GRU(activations=['Sigmoid', 'ThresholdedRelu'])", activations=("Sigmoid", "ThresholdedRelu")),
    Row("GRU(clip=0.75)", clip=0.75),
    Row("GRU(linear_before_reset=1, clip=0.75)", linear_before_reset=1, clip=0.75),
    Row("GRU(direction='reverse', activations=['HardSigmoid', 'Tanh'], clip=1.5) + sequence_lens", direction="reverse",
        activations=("HardSigmoid", "Tanh"), clip=1.5, masked=True),
)


# onnx.reference ignores activations, their alpha/beta and clip (finding 3): each such row fails the
# same way there, and an unexplained row costs ~10 s per dtype in reference.identify's search of
# mistake pairs. Its table keeps one row carrying all of them as the evidence (the tests show each
# attribute ignored on its own).
REFERENCE_EVIDENCE = ("GRU(activations=['HardSigmoid', 'Affine'], activation_alpha=[0.25, 0.5], "
                      "activation_beta=[0.375, 0.125], clip=0.75)")


def node_activations(row: Row) -> list[tuple[str, dict[str, float]]]:
    """``(name, {alpha/beta})`` for f and g, consuming ``activation_alpha``/``_beta`` in the order of
    the activations, each function taking only the parameters it has (onnxruntime's reading of
    defs.cc:94-108; no row here gives a list this reading and a positional one would split differently)."""
    if not row.activations:
        return []
    alphas, betas = list(row.activation_alpha), list(row.activation_beta)
    resolved = []
    for name in row.activations:
        takes = ONNX_DEFAULTS.get(name, {})
        given = {}
        if "alpha" in takes and alphas:
            given["alpha"] = alphas.pop(0)
        if "beta" in takes and betas:
            given["beta"] = betas.pop(0)
        resolved.append((name, given))
    return resolved


def reference_options(row: Row) -> tuple[tuple[str, Any], ...]:
    """What ``reference.gru_stack`` needs beyond the convention to compute the row as the spec says."""
    options = []
    if row.activations:
        (f_name, f_args), (g_name, g_args) = node_activations(row)
        f, g = onnx_activation(f_name, **f_args), onnx_activation(g_name, **g_args)
        if f_name != "Sigmoid":
            options.append(("gate_activation", f))
        if g_name != "Tanh":
            options.append(("candidate_activation", g))
    if row.clip is not None:
        options.append(("clip", row.clip))
    return tuple(options)


def _config(framework: str, row: Row) -> LayerConfig:
    bidirectional = row.direction == BIDI
    claim = CLAIM_AFTER if row.linear_before_reset else CLAIM_BEFORE
    attributes = [f"linear_before_reset={row.linear_before_reset}"]
    if row.activations:
        spelled = ", ".join(f"{name}({', '.join(f'{k}={v:g}' for k, v in args.items())})" if args else name
                            for name, args in node_activations(row))
        attributes.append(f"activations f, g = {spelled} (defaults from reference.activations)")
    if row.clip is not None:
        attributes.append(f"clip={row.clip:g} (on every activation's input)")
    padding = ""
    if row.masked:
        padding = REFERENCE_PADDING if framework == "onnx-reference" else ORT_PADDING
    return LayerConfig(
        framework=framework, name=row.name,
        claimed=Convention("z_on_previous", "after" if row.linear_before_reset else "before"),
        num_layers=row.num_layers, bidirectional=bidirectional, bias=row.bias,
        biases=ALL_BIASES if row.bias else (), masked=row.masked, reverse=row.direction == "reverse",
        masked_output="zero", returns_sequences=row.returns_sequences,
        options=(("row", row),),
        claim_source=f"{claim}; {'; '.join(attributes)}",
        layout=LAYOUT_TEXT.format(shapes=SHAPES[row.layout], chain=CHAIN[row.layout]) + ("" if row.bias else
                                                                                     "; B omitted (zero biases)"),
        padding=padding,
        reference_options=reference_options(row),
    )


# ----------------------------------------------------------------- the graph builder


def _node_attributes(row: Row, hidden_size: int) -> dict[str, Any]:
    attributes = {"hidden_size": hidden_size, "direction": row.direction, "layout": row.layout,
                  "linear_before_reset": row.linear_before_reset}
    directions = 2 if row.direction == BIDI else 1
    if row.activations:
        attributes["activations"] = list(row.activations) * directions
    if row.activation_alpha:
        attributes["activation_alpha"] = list(row.activation_alpha) * directions
    if row.activation_beta:
        attributes["activation_beta"] = list(row.activation_beta) * directions
    if row.clip is not None:
        attributes["clip"] = row.clip
    return attributes


def _value_info(name: str, element_type: int, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, element_type, shape)


def build_model(row: Row, layers: Layers, dtype, with_h0: bool = True, with_lengths: bool = True) -> onnx.ModelProto:
    """The ONNX model computing ``row`` with exactly ``layers`` (already in ``dtype``).

    Graph inputs: ``X``, then ``initial_h_{k}`` per layer (when ``with_h0``) and ``sequence_lens [B]``
    int32 (when ``with_lengths``; every node reads it); outputs: ``Y`` (the last layer's, unless the
    row returns no sequence) and ``Y_h_{k}`` per layer. Weights are initializers ``W_{k}``, ``R_{k}``,
    ``B_{k}`` (no ``B`` when the row has none: the node's input is left empty).
    """
    element_type = ELEMENT_TYPES[np.dtype(dtype)]
    hidden = layers[0][0].hidden_size
    directions = len(layers[0])
    attributes = _node_attributes(row, hidden)
    time_batch = ["seq_length", "batch_size"] if row.layout == 0 else ["batch_size", "seq_length"]
    state_shape = [directions, "batch_size", hidden] if row.layout == 0 else ["batch_size", directions, hidden]
    inputs = [_value_info("X", element_type, [*time_batch, layers[0][0].input_size])]
    outputs, nodes, initializers = [], [], []
    if with_lengths:
        inputs.append(_value_info("sequence_lens", TensorProto.INT32, ["batch_size"]))
    layer_input = "X"
    for index, layer in enumerate(layers):
        packed = layouts.to_onnx(list(layer))
        for key in ("W", "R", "B") if row.bias else ("W", "R"):
            initializers.append(numpy_helper.from_array(packed[key], name=f"{key}_{index}"))
        if with_h0:
            inputs.append(_value_info(f"initial_h_{index}", element_type, state_shape))
        last = index == len(layers) - 1
        y_name = "" if last and not row.returns_sequences else ("Y" if last else f"Y_{index}")
        nodes.append(helper.make_node(
            "GRU",
            [layer_input, f"W_{index}", f"R_{index}", f"B_{index}" if row.bias else "",
             "sequence_lens" if with_lengths else "", f"initial_h_{index}" if with_h0 else ""],
            [y_name, f"Y_h_{index}"], name=f"gru_{index}", **attributes,
        ))
        outputs.append(_value_info(f"Y_h_{index}", element_type, state_shape))
        if not last:
            if index == 0:
                initializers.append(numpy_helper.from_array(np.array([0, 0, -1], np.int64), name="features_shape"))
            source = y_name
            if row.layout == 0:
                source = f"Y_{index}_time_batch"
                nodes.append(helper.make_node("Transpose", [y_name], [source], perm=[0, 2, 1, 3],
                                              name=f"transpose_{index}"))
            layer_input = f"X_{index + 1}"
            nodes.append(helper.make_node("Reshape", [source, "features_shape"], [layer_input],
                                          name=f"reshape_{index}"))
    if row.returns_sequences:
        y_shape = ["seq_length", directions, "batch_size", hidden] if row.layout == 0 else \
            ["batch_size", "seq_length", directions, hidden]
        outputs.insert(0, _value_info("Y", element_type, y_shape))
    graph = helper.make_graph(nodes, f"gru_equivalence_{row.name}", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                              producer_name="gru-equivalence")
    onnx.checker.check_model(model)
    return model


# ----------------------------------------------------------------- the framework object


@dataclass(frozen=True, eq=False)
class OnnxGRU:
    """A built ONNX GRU: ``model`` (full signature: ``X``, ``sequence_lens``, ``initial_h_{k}``) plus
    what ``run`` needs to lay out inputs and outputs. Save it with ``onnx.save(gru.model, path)``."""

    config: LayerConfig
    dtype: str
    model: onnx.ModelProto
    input_size: int
    hidden_size: int
    _sessions: dict = field(default_factory=dict, repr=False)

    @property
    def row(self) -> Row:
        return self.config.option("row")

    def __repr__(self) -> str:
        return (f"OnnxGRU({self.config.name}, input_size={self.input_size}, hidden_size={self.hidden_size}, "
                f"dtype={self.dtype})")

    def variant(self, with_h0: bool, with_lengths: bool) -> onnx.ModelProto:
        """The model with the optional graph inputs it is run with (absent ones left empty on the nodes)."""
        if with_h0 and with_lengths:
            return self.model
        return build_model(self.row, _extract_model(self.model), self.dtype, with_h0, with_lengths)


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer}


def _extract_model(model: onnx.ModelProto) -> list[list[GRUParams]]:
    """Canonical parameters of every ``GRU`` node of ``model``, in graph order (copies)."""
    constants = _initializers(model)
    layers = []
    for node in model.graph.node:
        if node.op_type != "GRU":
            continue
        names = list(node.input) + [""] * (4 - len(node.input))
        arrays = {}
        for slot, key in ((1, "W"), (2, "R"), (3, "B")):
            name = names[slot]
            if not name:
                continue
            if name not in constants:
                raise ValueError(f"GRU node {node.name or node.output[0]!r}: {key} is {name!r}, which is not an "
                                 f"initializer (computed at run time); only constant weights can be extracted")
            arrays[key] = constants[name]
        directions = arrays["W"].shape[0]
        layers.append([layouts.from_onnx(arrays["W"], arrays["R"], arrays.get("B"), direction=d)
                       for d in range(directions)])
    if not layers:
        raise ValueError("the model has no GRU node")
    return layers


def _dtype_name(dtype) -> str:
    try:
        name = np.dtype(dtype).name
    except TypeError:
        raise TypeError(f"dtype {dtype!r} is not a NumPy dtype; use float32 or float64") from None
    if name not in DTYPES:
        raise ValueError(f"dtype {name} is not supported; the ONNX GRU here is built in float32 or float64")
    return name


# ----------------------------------------------------------------- the adapters


class _OnnxAdapter(Adapter):
    """Everything but the runtime: configurations, building, extracting, laying out inputs and outputs."""


    def rows(self) -> tuple[Row, ...]:
        return ROWS

    def configurations(self) -> list[LayerConfig]:
        return [_config(self.name, row) for row in self.rows()]

    def _runner(self, model: onnx.ModelProto):
        """A callable ``feeds -> list of outputs (graph order)`` for ``model``."""
        raise NotImplementedError

    def build(self, config: LayerConfig, layers: Layers, dtype) -> OnnxGRU:
        row = config.option("row")
        if not isinstance(row, Row):
            raise ValueError(f"{config.label} is not a configuration of the ONNX adapters; use adapter.configuration(name)")
        check_build_layers(config, layers, holds="; its GRU node has no B input")
        dtype = _dtype_name(dtype)
        copied = [[params.astype(dtype) for params in layer] for layer in layers]
        model = build_model(row, copied, dtype)
        first = copied[0][0]
        return OnnxGRU(config, dtype, model, first.input_size, first.hidden_size)

    def extract(self, layer) -> list[list[GRUParams]]:
        """Canonical parameters of an ``OnnxGRU`` or of any ``onnx.ModelProto`` whose GRU nodes read
        their W, R (and B) from initializers, one layer per GRU node in graph order (copies)."""
        if isinstance(layer, OnnxGRU):
            return _extract_model(layer.model)
        if isinstance(layer, onnx.ModelProto):
            return _extract_model(layer)
        raise TypeError(f"expected an OnnxGRU from adapters.get({self.name!r}).build or an onnx.ModelProto, "
                        f"got {describe_value(layer)}")

    def describe(self, layer) -> LayerConfig:
        if isinstance(layer, OnnxGRU):
            return layer.config
        if isinstance(layer, onnx.ModelProto):
            raise TypeError("describe needs an OnnxGRU built by this adapter: a ModelProto's GRU attributes are not "
                            "one of its configurations by themselves; read its weights with extract()")
        raise TypeError(f"expected an OnnxGRU from adapters.get({self.name!r}).build, got {describe_value(layer)}")

    def gradients(self, layer, x, h0, mask, d_outputs, d_h_last):
        """Never: an ONNX graph here is run for its forward pass only (see the module docstring)."""
        raise GradientsUnavailable(self.no_gradients)

    # ------------------------------------------------------------- running

    def run(self, layer, x, h0=None, mask=None) -> ForwardResult:
        if not isinstance(layer, OnnxGRU):
            raise TypeError(f"expected an OnnxGRU from adapters.get({self.name!r}).build, got {describe_value(layer)}")
        row, config = layer.row, layer.config
        x = check_float_array("x", x)
        if x.dtype.name != layer.dtype:
            raise TypeError(f"x has dtype {x.dtype} but the graph computes in {layer.dtype}; pass x.astype(np.{layer.dtype})")
        if x.ndim != 3 or x.shape[2] != layer.input_size or 0 in x.shape:
            raise ValueError(f"x has shape {x.shape}; expected (batch, time, input_size={layer.input_size}), none empty")
        batch, _, _ = x.shape
        slots = config.num_layers * config.directions
        feeds = {"X": np.ascontiguousarray(x.transpose(1, 0, 2) if row.layout == 0 else x)}
        if h0 is not None:
            h0 = check_float_array("h0", h0, (slots, batch, layer.hidden_size))
            if h0.dtype != x.dtype:
                raise TypeError(f"h0 has dtype {h0.dtype} but the graph computes in {x.dtype}; pass h0.astype(np.{x.dtype})")
            for index in range(config.num_layers):
                state = h0[index * config.directions : (index + 1) * config.directions]
                feeds[f"initial_h_{index}"] = np.ascontiguousarray(state if row.layout == 0 else state.transpose(1, 0, 2))
        if mask is not None:
            if np.shape(mask) != x.shape[:2]:
                raise ValueError(f"mask has shape {np.shape(mask)}; expected (batch, time) = {x.shape[:2]}")
            feeds["sequence_lens"] = mask_lengths(mask).astype(np.int32)
        key = (self.name, h0 is not None, mask is not None)
        runner = layer._sessions.get(key)
        if runner is None:
            runner = layer._sessions[key] = self._runner(layer.variant(h0 is not None, mask is not None))
        results = runner(feeds)
        produced = dict(zip(["Y"] * row.returns_sequences + [f"Y_h_{k}" for k in range(config.num_layers)], results))
        finals = [produced[f"Y_h_{k}"] for k in range(config.num_layers)]
        h_last = np.concatenate([state if row.layout == 0 else state.transpose(1, 0, 2) for state in finals])
        outputs = None
        if row.returns_sequences:
            y = produced["Y"]
            y = y.transpose(2, 0, 1, 3) if row.layout == 0 else y  # -> [B, T, D, H]
            outputs = np.ascontiguousarray(y).reshape(batch, y.shape[1], -1)
        return ForwardResult(outputs, np.ascontiguousarray(h_last))


class OnnxRuntimeAdapter(_OnnxAdapter):
    """The graphs through ``onnxruntime.InferenceSession`` on the CPU provider (forward only: no gradients)."""

    name = "onnxruntime"
    no_gradients = ("onnxruntime has no gradients: InferenceSession runs forward passes only (training is the "
                    "separate onnxruntime-training package, not what this adapter measures)")

    def versions(self) -> dict[str, str]:
        import onnxruntime

        return {"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__}

    def _runner(self, model: onnx.ModelProto):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # deterministic, and the machine is shared
        options.inter_op_num_threads = 1
        options.log_severity_level = 4  # errors come back as exceptions, with the same text
        version = onnxruntime.__version__
        try:
            session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=[CPU])
        except Exception as error:
            raise RuntimeError(f"onnxruntime {version} ({CPU}) cannot load this GRU graph: {_message(error)}") from None

        def run(feeds):
            try:
                return session.run(None, feeds)
            except Exception as error:
                raise RuntimeError(f"onnxruntime {version} ({CPU}) cannot run this GRU graph: {_message(error)}") from None

        return run


class OnnxReferenceAdapter(_OnnxAdapter):
    """The same graphs through ``onnx.reference.ReferenceEvaluator`` (NumPy; forward only)."""

    name = "onnx-reference"
    no_gradients = "onnx.reference.ReferenceEvaluator has no gradients: it evaluates forward passes only"

    def rows(self) -> tuple[Row, ...]:
        """Every row without activations or clip, and the one evidence row that has them all."""
        return tuple(row for row in ROWS if (not row.activations and row.clip is None) or row.name == REFERENCE_EVIDENCE)

    def versions(self) -> dict[str, str]:
        return {"onnx": onnx.__version__, "numpy": np.__version__}

    def _runner(self, model: onnx.ModelProto):
        from onnx.reference import ReferenceEvaluator

        evaluator = ReferenceEvaluator(model)
        return lambda feeds: evaluator.run(None, feeds)


def _message(error: Exception) -> str:
    """onnxruntime's own message without its '[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION :' prefix."""
    text = str(error).strip()
    return text.split(" : ", 3)[-1] if text.startswith("[ONNXRuntimeError]") else text


ADAPTER = OnnxRuntimeAdapter()
REFERENCE_ADAPTER = OnnxReferenceAdapter()
