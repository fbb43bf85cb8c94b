"""The ONNX adapters (onnxruntime and onnx.reference on one graph builder), the ONNX activation
functions of ``reference.activations``, and the ``candidate_activation`` / ``clip`` options of the
reference forward pass that model them.

Every semantic claim of ``adapters/onnx_runtime.py`` is measured here against ``reference.gru_stack``
and against ``spec_gru``, a literal transcription of the operator's equations
(``onnx/defs/doc_strings.cc:84-90``) written independently of the reference's fast path.
"""

from __future__ import annotations

import importlib.util
import pickle
import sys

import numpy as np
import pytest

import adapters
from reference import Convention, GRUParams, gru, gru_stack, layouts, random_layers
from reference import activations as act
from reference.compare import SEPARATION_FACTOR, TOLERANCES
from reports.matrix import DEFAULT_CASE, make_probe

from .conftest import adapter_or_skip, module_or_skip

module_or_skip("onnx")
module_or_skip("onnxruntime")

import onnx  # noqa: E402
from onnx import numpy_helper  # noqa: E402

from adapters import onnx_runtime as M  # noqa: E402

BEFORE, AFTER = Convention("z_on_previous", "before"), Convention("z_on_previous", "after")
DTYPES = [np.float32, np.float64]
RTOL32, ATOL32 = TOLERANCES[np.dtype(np.float32)]
RTOL64, ATOL64 = TOLERANCES[np.dtype(np.float64)]


@pytest.fixture(scope="module")
def ort_adapter():
    return adapter_or_skip("onnxruntime")


@pytest.fixture(scope="module")
def ref_adapter():
    return adapter_or_skip("onnx-reference")


def _config(row: M.Row, framework: str = "onnxruntime"):
    return M._config(framework, row)


def _probe(config, dtype=np.float32, seed=0):
    """The matrix's own probe (dense weights, non-zero h0, lengths T, ~T/2, 1 when masked)."""
    case = DEFAULT_CASE if seed == 0 else type(DEFAULT_CASE)(seed=seed)
    probe = make_probe(case, config, dtype)
    mask = probe.mask
    if mask is None:
        lengths = np.array([case.time, (case.time + 1) // 2, 1])[: case.batch]
        mask = np.arange(case.time)[None, :] < lengths[:, None]
    return probe.layers, probe.x, probe.h0, mask


def _run(adapter, config, dtype=np.float32, masked=None, with_h0=True, seed=0):
    layers, x, h0, mask = _probe(config, dtype, seed)
    if masked is None:
        masked = config.masked
    layer = adapter.build(config, layers, dtype)
    result = adapter.run(layer, x, h0 if with_h0 else None, mask if masked else None)
    return result, layers, x, h0, mask


def _expected(config, layers, x, h0, mask=None, convention=None, **options):
    options = {"masked_output": config.masked_output, **dict(config.reference_options), **options}
    return gru_stack(x, layers, convention or config.claimed, h0=h0, mask=mask, reverse=config.reverse, **options)


def _gap(actual, expected) -> float:
    return float(np.max(np.abs(np.asarray(actual, np.float64) - expected)))


# ----------------------------------------------------------------- an independent spec transcription


def _clip(a, c):
    return a if c is None else np.clip(a, -c, c)


def spec_gru(x, p: GRUParams, lbr: int, h0, f=act.sigmoid, g=np.tanh, clip=None, clip_mode="input"):
    """The ONNX GRU equations (doc_strings.cc:86-90) in float64, one direction, no mask.

    ``clip_mode="input"``: clip the complete input of f and g (the spec: "applied to the input of
    activations"); ``"before_reset"``: a rival reading for reset-after that clips ``Ht-1*(Rh^T) + Rbh``
    before the reset gate multiplies it, and the x part separately.
    """
    x = np.asarray(x, np.float64)
    q = p.astype(np.float64)
    h = np.asarray(h0, np.float64)
    outputs = []
    for t in range(x.shape[1]):
        xt = x[:, t]
        z = f(_clip(xt @ q.W_z + h @ q.U_z + q.b_z + q.c_z, clip))
        r = f(_clip(xt @ q.W_r + h @ q.U_r + q.b_r + q.c_r, clip))
        if lbr:
            if clip_mode == "before_reset":
                pre = _clip(xt @ q.W_h + q.b_h, clip) + r * _clip(h @ q.U_h + q.c_h, clip)
            else:
                pre = _clip(xt @ q.W_h + r * (h @ q.U_h + q.c_h) + q.b_h, clip)
        else:
            pre = _clip(xt @ q.W_h + (r * h) @ q.U_h + q.c_h + q.b_h, clip)
        h = (1 - z) * g(pre) + z * h
        outputs.append(h)
    return np.stack(outputs, axis=1), h


# ----------------------------------------------------------------- reference.activations


GRID = np.linspace(-4.0, 4.0, 33)
SPEC_FORMULAS = {  # doc_strings.cc:68-82, with the defaults of reference.activations.ONNX_DEFAULTS
    "Relu": lambda x: np.maximum(0, x),
    "Tanh": lambda x: (1 - np.exp(-2 * x)) / (1 + np.exp(-2 * x)),
    "Sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "Affine": lambda x: 1.0 * x + 0.0,
    "LeakyRelu": lambda x: np.where(x >= 0, x, 0.01 * x),
    "ThresholdedRelu": lambda x: np.where(x > 1.0, x, 0.0),
    "ScaledTanh": lambda x: 1.0 * np.tanh(1.0 * x),
    "HardSigmoid": lambda x: np.minimum(np.maximum(0.2 * x + 0.5, 0), 1),
    "Elu": lambda x: np.where(x >= 0, x, 1.0 * (np.exp(x) - 1)),
    "Softsign": lambda x: x / (1 + np.abs(x)),
    "Softplus": lambda x: np.log(1 + np.exp(x)),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", list(act.ONNX_ACTIVATIONS))
def test_each_onnx_activation_is_the_spec_formula_keeps_dtype_and_writes_out_in_place(name, dtype):
    function = act.onnx_activation(name)
    a = GRID.astype(dtype)
    plain = function(a.copy())
    assert plain.dtype == a.dtype and plain.shape == a.shape, f"{name}: {plain.dtype} {plain.shape} for {a.dtype} {a.shape}"
    wanted = SPEC_FORMULAS[name](GRID)
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    assert np.allclose(plain, wanted, rtol=rtol, atol=rtol), f"{name}: max gap {_gap(plain, wanted):.3g}"
    separate = np.empty_like(a)
    assert function(a.copy(), out=separate) is separate and np.array_equal(separate, plain), name
    aliased = a.copy()
    assert function(aliased, out=aliased) is aliased and np.array_equal(aliased, plain), f"{name}: out=input differs"


def test_parameterised_activations_take_alpha_and_beta():
    x = GRID
    cases = {
        ("HardSigmoid", 0.25, 0.375): np.clip(0.25 * x + 0.375, 0, 1),
        ("ScaledTanh", 1.5, 0.75): 1.5 * np.tanh(0.75 * x),
        ("Affine", 0.5, 0.125): 0.5 * x + 0.125,
        ("LeakyRelu", 0.3, None): np.where(x >= 0, x, 0.3 * x),
        ("ThresholdedRelu", 0.5, None): np.where(x > 0.5, x, 0.0),
        ("Elu", 0.5, None): np.where(x >= 0, x, 0.5 * np.expm1(x)),
    }
    for (name, alpha, beta), wanted in cases.items():
        got = act.onnx_activation(name, alpha, beta)(x)
        assert np.allclose(got, wanted, rtol=1e-14, atol=1e-14), f"{name}({alpha}, {beta}): gap {_gap(got, wanted):.3g}"


def test_activation_defaults_are_the_standalone_operators_defaults():
    assert act.ONNX_DEFAULTS["LeakyRelu"] == {"alpha": 0.01}
    assert act.ONNX_DEFAULTS["HardSigmoid"] == {"alpha": 0.2, "beta": 0.5}
    assert act.ONNX_DEFAULTS["ThresholdedRelu"] == {"alpha": 1.0}
    assert act.ONNX_DEFAULTS["Elu"] == {"alpha": 1.0}
    assert act.ONNX_DEFAULTS["Affine"] == {"alpha": 1.0, "beta": 0.0}
    # The installed schemas agree where the operator still exists.
    from onnx import defs

    for op, attribute, value in (("LeakyRelu", "alpha", 0.01), ("HardSigmoid", "alpha", 0.2), ("HardSigmoid", "beta", 0.5),
                                 ("ThresholdedRelu", "alpha", 1.0), ("Elu", "alpha", 1.0)):
        default = defs.get_schema(op).attributes[attribute].default_value.f
        assert np.float32(default) == np.float32(value), f"{op}.{attribute}: schema default {default}, table {value}"


def test_onnx_activation_names_are_case_insensitive_and_bound_functions_pickle_and_hash_by_value():
    bound = act.onnx_activation("hardsigmoid", 0.25, 0.375)
    assert bound == act.onnx_activation("HardSigmoid", alpha=0.25, beta=0.375)
    assert hash(bound) == hash(act.onnx_activation("HARDSIGMOID", 0.25, 0.375))
    assert bound != act.onnx_activation("HardSigmoid", 0.25, 0.5)
    restored = pickle.loads(pickle.dumps(bound))
    assert restored == bound and hash(restored) == hash(bound) and np.array_equal(restored(GRID), bound(GRID))
    assert act.onnx_activation("tanh") is np.tanh and act.onnx_activation("Sigmoid") is act.sigmoid
    assert act.activation_name(bound) == "HardSigmoid(alpha=0.25, beta=0.375)"
    assert act.activation_name(np.tanh) == "Tanh"


def test_a_bound_activation_knows_which_parameters_the_node_left_to_their_defaults():
    left = act.onnx_activation("ThresholdedRelu")
    given = act.onnx_activation("ThresholdedRelu", alpha=1.0)
    assert left.defaulted == ("alpha",) and given.defaulted == ()
    assert left == given and hash(left) == hash(given), "a default computes what the same explicit value does"
    assert act.onnx_activation("HardSigmoid", 0.25).defaulted == ("beta",)
    assert pickle.loads(pickle.dumps(left)).defaulted == ("alpha",)


def test_defaults_read_as_zero_zeroes_only_the_defaulted_parameters():
    zeroed = act.defaults_read_as_zero(act.onnx_activation("HardSigmoid", 0.25))
    assert (zeroed.alpha, zeroed.beta) == (0.25, 0.0), act.activation_name(zeroed)
    assert np.array_equal(act.defaults_read_as_zero(act.onnx_activation("ThresholdedRelu"))(GRID), act.relu(GRID))
    explicit = act.onnx_activation("ThresholdedRelu", alpha=1.0)
    assert act.defaults_read_as_zero(explicit) is explicit
    assert act.defaults_read_as_zero(np.tanh) is np.tanh


@pytest.mark.parametrize("call, error, match", [
    (lambda: act.onnx_activation("Swish"), ValueError, "unknown ONNX activation 'Swish'; valid: Relu, Tanh"),
    (lambda: act.onnx_activation("Tanh", alpha=2.0), ValueError, "Tanh takes no alpha"),
    (lambda: act.onnx_activation("LeakyRelu", beta=2.0), ValueError, "LeakyRelu takes no beta"),
    (lambda: act.onnx_activation("Elu", alpha=float("nan")), ValueError, "alpha must be a finite real number, got nan"),
    (lambda: act.onnx_activation(None), TypeError, "named by a string, got None"),
])
def test_bad_activation_requests_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ----------------------------------------------------------------- reference.gru: candidate_activation and clip


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(3)
    params = random_layers(3, 4, seed=5)[0][0]
    x = rng.normal(size=(3, 6, 3))
    h0 = rng.uniform(-0.8, 0.8, size=(3, 4))
    return params, x, h0


@pytest.mark.parametrize("convention", [BEFORE, AFTER], ids=lambda c: c.reset)
def test_defaults_are_unchanged_and_a_clip_that_never_binds_changes_nothing(small, convention):
    params, x, h0 = small
    plain = gru(x, params, convention, h0=h0)
    for kwargs in ({"candidate_activation": np.tanh}, {"candidate_activation": act.tanh, "clip": None},
                   {"clip": 1e300}, {"candidate_activation": lambda a: np.tanh(a)}):
        other = gru(x, params, convention, h0=h0, **kwargs)
        assert np.array_equal(other[0], plain[0]) and np.array_equal(other[1], plain[1]), (
            f"{kwargs}: max gap {_gap(other[0], plain[0]):.3g}")


@pytest.mark.parametrize("lbr", [0, 1])
@pytest.mark.parametrize("f, g, clip", [
    (act.sigmoid, np.tanh, 0.5),
    (act.onnx_activation("HardSigmoid", 0.25, 0.375), act.onnx_activation("ScaledTanh", 1.5, 0.75), None),
    (act.onnx_activation("HardSigmoid"), act.relu, 0.75),
    (act.softsign, act.softplus, 1.0),
], ids=["clip", "hard-scaled", "hard-relu-clip", "softsign-softplus-clip"])
def test_reference_activations_and_clip_equal_the_literal_spec(small, lbr, f, g, clip):
    params, x, h0 = small
    outputs, h_last = gru(x, params, AFTER if lbr else BEFORE, h0=h0, gate_activation=f, candidate_activation=g, clip=clip)
    wanted, wanted_last = spec_gru(x, params, lbr, h0, f, g, clip)
    assert np.allclose(outputs, wanted, rtol=1e-13, atol=1e-13), f"outputs gap {_gap(outputs, wanted):.3g}"
    assert np.allclose(h_last, wanted_last, rtol=1e-13, atol=1e-13)
    if clip is not None:
        unclipped = spec_gru(x, params, lbr, h0, f, g, None)[0]
        assert _gap(unclipped, wanted) > 1e-3, "the clip never binds on this probe: the test would be vacuous"


def test_clip_and_activations_pass_through_gru_stack_to_every_layer_and_direction(small):
    params, x, h0 = small
    layers = random_layers(3, 4, num_layers=2, bidirectional=True, seed=9)
    h0s = np.stack([h0] * 4)
    options = {"gate_activation": act.onnx_activation("HardSigmoid"), "candidate_activation": act.softsign, "clip": 0.5}
    outputs, h_last = gru_stack(x, layers, AFTER, h0=h0s, **options)
    forward = gru(x, layers[0][0], AFTER, h0=h0, **options)
    backward = gru(x, layers[0][1], AFTER, h0=h0, reverse=True, **options)
    second = gru(np.concatenate([forward[0], backward[0]], axis=-1), layers[1][1], AFTER, h0=h0, reverse=True, **options)
    assert np.array_equal(h_last[0], forward[1]) and np.array_equal(h_last[1], backward[1])
    assert np.array_equal(h_last[3], second[1]) and np.array_equal(outputs[..., 4:], second[0])


@pytest.mark.parametrize("kwargs, error, match", [
    ({"clip": 0}, ValueError, "clip must be a positive finite number .* got int 0"),
    ({"clip": -1.5}, ValueError, "clip must be a positive finite number"),
    ({"clip": float("nan")}, ValueError, "clip must be a positive finite number"),
    ({"clip": True}, ValueError, "clip must be a positive finite number"),
    ({"clip": "1"}, ValueError, "clip must be a positive finite number"),
    ({"candidate_activation": "tanh"}, TypeError, "candidate_activation must be callable"),
    ({"candidate_activation": lambda a: a.sum(axis=0)}, ValueError, "candidate_activation returned shape"),
    ({"candidate_activation": lambda a: a * np.nan}, ValueError, "candidate_activation returned non-finite values"),
])
def test_bad_candidate_activation_and_clip_are_named(small, kwargs, error, match):
    params, x, h0 = small
    with pytest.raises(error, match=match):
        gru(x, params, BEFORE, h0=h0, **kwargs)
    with pytest.raises(error, match=match):
        gru_stack(x, [[params]], BEFORE, **kwargs)


def test_reference_options_of_every_row_pickle_and_hash(ort_adapter, ref_adapter):
    for adapter in (ort_adapter, ref_adapter):
        for config in adapter.configurations():
            assert hash(config) == hash(pickle.loads(pickle.dumps(config))), config.label
            assert pickle.loads(pickle.dumps(config)) == config, f"{config.label}: does not survive pickling equal"
        assert adapter.configurations() == adapter.configurations(), f"{adapter.name}: tables differ between calls"


# ----------------------------------------------------------------- availability and versions


def test_the_adapters_are_unavailable_with_a_reason_when_onnxruntime_is_missing(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real_find_spec(name, *a))
    monkeypatch.delitem(sys.modules, "adapters.onnx_runtime", raising=False)
    for name in ("onnxruntime", "onnx-reference"):
        loaded = adapters._load.__wrapped__(name)  # uncached: the session's own answer stays as it was
        assert isinstance(loaded, adapters.AdapterUnavailable), name
        assert loaded.reason.startswith("onnxruntime is not installed"), loaded.reason
        assert "pip install onnx onnxruntime" in loaded.reason


def test_versions_name_the_libraries_that_compute(ort_adapter, ref_adapter):
    import onnxruntime

    assert ort_adapter.versions() == {"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__}
    assert ref_adapter.versions() == {"onnx": onnx.__version__, "numpy": np.__version__}


@pytest.mark.parametrize("framework, reason", [
    ("onnxruntime", "onnxruntime has no gradients: InferenceSession runs forward passes only"),
    ("onnx-reference", "onnx.reference.ReferenceEvaluator has no gradients"),
])
def test_neither_runtime_has_gradients_and_says_so(framework, reason):
    from adapters.base import GradientsUnavailable

    adapter = adapter_or_skip(framework)
    config = adapter.configuration("GRU")
    layers, x, h0, _ = _probe(config)
    with pytest.raises(GradientsUnavailable, match=reason):
        adapter.gradients(adapter.build(config, layers, np.float32), x, h0, None, np.ones((3, 7, 5)), None)


def test_every_row_claims_the_spec_convention_for_its_linear_before_reset(ort_adapter, ref_adapter):
    for adapter in (ort_adapter, ref_adapter):
        for config in adapter.configurations():
            row = config.option("row")
            assert config.claimed == (AFTER if row.linear_before_reset else BEFORE), config.label
            line = "line 89" if row.linear_before_reset else "line 88"
            assert config.claim_source.startswith("onnx/defs/doc_strings.cc:84-90") and line in config.claim_source


def test_the_reference_table_is_the_runtime_table_minus_repeated_evidence(ort_adapter, ref_adapter):
    ort_names = [c.name for c in ort_adapter.configurations()]
    ref_names = [c.name for c in ref_adapter.configurations()]
    assert set(ref_names) <= set(ort_names)
    assert M.REFERENCE_EVIDENCE in ref_names
    dropped = [M.ROWS[ort_names.index(name)] for name in set(ort_names) - set(ref_names)]
    assert all(row.activations or row.clip is not None for row in dropped), dropped


# ----------------------------------------------------------------- the graph builder


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_build_then_extract_is_bit_exact_for_every_configuration_and_survives_serialisation(ort_adapter, dtype):
    for config in ort_adapter.configurations():
        layers, *_ = _probe(config, dtype)
        built = ort_adapter.build(config, layers, dtype)
        reloaded = onnx.load_from_string(built.model.SerializeToString())
        for source in (built, reloaded):
            extracted = ort_adapter.extract(source)
            for index, layer in enumerate(layers):
                for direction, params in enumerate(layer):
                    got = extracted[index][direction]
                    for name, array in params.arrays():
                        other = getattr(got, name)
                        assert other.dtype == np.dtype(dtype) and np.array_equal(other, array), (
                            f"{config.label} [{np.dtype(dtype).name}] layers[{index}][{direction}].{name}: "
                            f"max gap {_gap(other, array):.3g}")
        assert ort_adapter.describe(built) is config


def test_the_graph_is_one_gru_node_per_layer_with_the_rows_attributes(ort_adapter):
    for config in ort_adapter.configurations():
        row = config.option("row")
        layers, *_ = _probe(config)
        model = ort_adapter.build(config, layers, np.float32).model
        grus = [node for node in model.graph.node if node.op_type == "GRU"]
        assert len(grus) == config.num_layers, config.label
        directions = config.directions
        for index, node in enumerate(grus):
            attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            assert attributes["direction"].decode() == row.direction and attributes["layout"] == row.layout
            assert attributes["linear_before_reset"] == row.linear_before_reset and attributes["hidden_size"] == 5
            assert [s.decode() for s in attributes.get("activations", [])] == list(row.activations) * directions
            assert list(attributes.get("activation_alpha", [])) == list(row.activation_alpha) * directions
            assert attributes.get("clip") == row.clip, config.label
            packed = layouts.to_onnx(layers[index])
            constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
            assert np.array_equal(constants[node.input[1]], packed["W"]) and np.array_equal(constants[node.input[2]], packed["R"])
            if row.bias:
                assert np.array_equal(constants[node.input[3]], packed["B"]), config.label
            else:
                assert node.input[3] == "" and f"B_{index}" not in constants, f"{config.label}: B should be omitted"
        outputs = [o.name for o in model.graph.output]
        assert ("Y" in outputs) == config.returns_sequences, f"{config.label}: outputs {outputs}"


def test_stacked_layers_are_chained_through_transpose_and_reshape():
    row = M.Row("r", direction="bidirectional", num_layers=2)
    layers = random_layers(4, 5, num_layers=2, bidirectional=True, seed=1, dtype=np.float32)
    ops = [node.op_type for node in M.build_model(row, layers, np.float32).graph.node]
    assert ops == ["GRU", "Transpose", "Reshape", "GRU"], ops
    ops = [node.op_type for node in M.build_model(M.Row("r", layout=1, num_layers=2), random_layers(
        4, 5, num_layers=2, seed=1, dtype=np.float32), np.float32).graph.node]
    assert ops == ["GRU", "Reshape", "GRU"], ops


# ----------------------------------------------------------------- refusals and bad input


def test_refusals_name_the_value_and_the_fix(ort_adapter):
    no_b = ort_adapter.configuration("GRU(linear_before_reset=1) without B")
    layers = random_layers(4, 5, seed=2, dtype=np.float32)
    with pytest.raises(ValueError, match=r"layers\[0\]\[0\] has non-zero biases b_z, b_r, b_h, c_z, c_r, c_h"):
        ort_adapter.build(no_b, layers, np.float32)
    with pytest.raises(ValueError, match=r"needs 2 layer\(s\) x 1 direction\(s\), the parameters have 1 x 1"):
        ort_adapter.build(ort_adapter.configuration("[GRU, GRU](linear_before_reset=1)"), layers, np.float32)
    plain = ort_adapter.configuration("GRU")
    with pytest.raises(ValueError, match="dtype float16 is not supported"):
        ort_adapter.build(plain, layers, np.float16)
    built = ort_adapter.build(plain, layers, np.float32)
    x = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(TypeError, match=r"x has dtype float64 but the graph computes in float32; pass x.astype"):
        ort_adapter.run(built, x.astype(np.float64))
    with pytest.raises(ValueError, match=r"x has shape \(2, 3, 7\); expected \(batch, time, input_size=4\)"):
        ort_adapter.run(built, np.zeros((2, 3, 7), np.float32))
    with pytest.raises(ValueError, match=r"h0 .*\(1, 2, 5\)"):
        ort_adapter.run(built, x, np.zeros((2, 2, 5), np.float32))
    with pytest.raises(ValueError, match=r"mask row 1 is \[0, 1, 1\]: frameworks take variable lengths as right padding"):
        ort_adapter.run(built, x, mask=np.array([[1, 1, 1], [0, 1, 1]], bool))
    with pytest.raises(ValueError, match="mask row 0 has no valid step"):
        ort_adapter.run(built, x, mask=np.array([[0, 0, 0], [1, 1, 1]], bool))
    with pytest.raises(TypeError, match=r"expected an OnnxGRU from adapters.get\('onnxruntime'\).build, got"):
        ort_adapter.run(built.model, x)
    with pytest.raises(TypeError, match="describe needs an OnnxGRU"):
        ort_adapter.describe(built.model)


def test_extract_refuses_weights_computed_at_run_time(ort_adapter):
    layers = random_layers(4, 5, seed=2, dtype=np.float32)
    model = M.build_model(M.Row("r"), layers, np.float32)
    graph = model.graph
    w = next(t for t in graph.initializer if t.name == "W_0")
    graph.initializer.remove(w)
    graph.node.insert(0, onnx.helper.make_node("Identity", ["W_source"], ["W_0"]))
    graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(w), "W_source"))
    with pytest.raises(ValueError, match="W is 'W_0', which is not an initializer"):
        ort_adapter.extract(model)


# ----------------------------------------------------------------- both runtimes, one graph


STRUCTURAL = [row.name for row in M.ROWS if not row.activations and row.clip is None and row.layout == 0]


@pytest.mark.parametrize("name", STRUCTURAL)
def test_onnxruntime_and_the_reference_evaluator_agree_on_the_same_graph_without_lengths(ort_adapter, ref_adapter, name):
    config = ort_adapter.configuration(name)
    layers, x, h0, _ = _probe(config)
    built = ort_adapter.build(config, layers, np.float32)
    ours, theirs = ort_adapter.run(built, x, h0), ref_adapter.run(built, x, h0)
    assert np.allclose(ours.h_last, theirs.h_last, rtol=RTOL32, atol=ATOL32), f"{name}: {_gap(ours.h_last, theirs.h_last):.3g}"
    if config.returns_sequences:
        assert np.allclose(ours.outputs, theirs.outputs, rtol=RTOL32, atol=ATOL32), name


@pytest.mark.parametrize("framework", ["onnxruntime", "onnx-reference"])
def test_absent_optional_inputs_mean_zero_state_and_full_length(framework):
    adapter = adapter_or_skip(framework)
    config = adapter.configuration("GRU(direction='bidirectional', linear_before_reset=1)")
    layers, x, h0, _ = _probe(config)
    built = adapter.build(config, layers, np.float32)
    bare = adapter.run(built, x)
    zeros = adapter.run(built, x, np.zeros_like(h0), np.ones(x.shape[:2], bool))
    assert np.allclose(bare.outputs, zeros.outputs, rtol=1e-6, atol=1e-7), f"{_gap(bare.outputs, zeros.outputs):.3g}"
    expected = _expected(config, layers, x, None)
    assert np.allclose(bare.outputs, expected[0], rtol=RTOL32, atol=ATOL32), f"{_gap(bare.outputs, expected[0]):.3g}"
    assert len(built._sessions) == 2, f"one session per input signature, got {list(built._sessions)}"


# ----------------------------------------------------------------- onnxruntime specifics (findings 1, 2, 4)


def test_onnxruntime_refuses_float64_gru_on_cpu_finding_1(ort_adapter):
    config = ort_adapter.configuration("GRU")
    layers, x, h0, _ = _probe(config, np.float64)
    built = ort_adapter.build(config, layers, np.float64)
    assert numpy_helper.to_array(built.model.graph.initializer[0]).dtype == np.float64, "the graph itself is float64"
    with pytest.raises(RuntimeError, match="cannot run this GRU graph: .*GRU operator does not support double yet"):
        ort_adapter.run(built, x, h0)


def test_onnxruntime_refuses_layout_1_finding_2(ort_adapter, ref_adapter):
    config = ort_adapter.configuration("GRU(layout=1)")
    layers, x, h0, _ = _probe(config)
    built = ort_adapter.build(config, layers, np.float32)
    with pytest.raises(RuntimeError, match=r"cannot load this GRU graph: .*deep_cpu_gru.h:56.*layout == 1\) are not supported"):
        ort_adapter.run(built, x, h0)
    # The same graph is valid ONNX, and the reference evaluator computes it as the spec says.
    result = ref_adapter.run(built, x, h0)
    expected = _expected(config, layers, x, h0)
    assert np.allclose(result.outputs, expected[0], rtol=RTOL32, atol=ATOL32), f"{_gap(result.outputs, expected[0]):.3g}"


@pytest.mark.parametrize("name", [
    "GRU + sequence_lens",
    "GRU(direction='reverse', linear_before_reset=1) + sequence_lens",
    "[GRU, GRU](direction='bidirectional') + sequence_lens",
])
def test_onnxruntime_outputs_exact_zeros_past_each_length_and_the_last_valid_state(ort_adapter, name):
    config = ort_adapter.configuration(name)
    result, layers, x, h0, mask = _run(ort_adapter, config)
    padded = ~mask
    assert padded.any() and np.all(result.outputs[padded] == 0.0), f"{name}: padded outputs {result.outputs[padded]}"
    expected = _expected(config, layers, x, h0, mask)
    assert np.allclose(result.outputs, expected[0], rtol=RTOL32, atol=ATOL32), f"{name}: {_gap(result.outputs, expected[0]):.3g}"
    assert np.allclose(result.h_last, expected[1], rtol=RTOL32, atol=ATOL32), f"{name}: {_gap(result.h_last, expected[1]):.3g}"
    # Not the carried state: the probe tells "zero" from "carry" at the padded steps.
    carry = _expected(config, layers, x, h0, mask, masked_output="carry")[0]
    assert _gap(result.outputs, carry) > SEPARATION_FACTOR * ATOL32


def test_onnxruntime_yh_only_graph_takes_the_other_code_path_and_still_keeps_the_last_valid_state(ort_adapter):
    config = ort_adapter.configuration("GRU(direction='bidirectional', linear_before_reset=1) + sequence_lens, Y_h only")
    result, layers, x, h0, mask = _run(ort_adapter, config)
    assert result.outputs is None
    expected = _expected(config, layers, x, h0, mask)[1]
    assert np.allclose(result.h_last, expected, rtol=RTOL32, atol=ATOL32), f"{_gap(result.h_last, expected):.3g}"


@pytest.mark.parametrize("lbr", [0, 1])
def test_onnxruntime_clips_the_complete_input_of_each_activation(ort_adapter, lbr):
    """After the reset gate is applied (reset-after), as the spec's 'input of activations' says."""
    config = _config(M.Row("clip", linear_before_reset=lbr, clip=0.75))
    result, layers, x, h0, _ = _run(ort_adapter, config)
    params = layers[0][0]
    spec = spec_gru(x, params, lbr, h0[0], clip=0.75)[0]
    assert np.allclose(result.outputs, spec, rtol=RTOL32, atol=ATOL32), f"vs spec: {_gap(result.outputs, spec):.3g}"
    unclipped = spec_gru(x, params, lbr, h0[0])[0]
    assert _gap(result.outputs, unclipped) > SEPARATION_FACTOR * ATOL32, "the clip must bind on the probe"
    if lbr:
        rival = spec_gru(x, params, lbr, h0[0], clip=0.75, clip_mode="before_reset")[0]
        gap = _gap(result.outputs, rival)
        assert gap > SEPARATION_FACTOR * ATOL32, f"clipping before r * (...) is not separated: {gap:.3g}"


@pytest.mark.parametrize("activations, alpha, beta", [
    (("HardSigmoid", "ScaledTanh"), (0.25, 1.5), (0.375, 0.75)),
    (("HardSigmoid", "ScaledTanh"), (0.5, 0.75), (0.25, 1.25)),
    (("LeakyRelu", "Elu"), (0.125, 0.5), ()),
    (("Affine", "Softsign"), (0.25,), (0.5,)),
    # Sigmoid consumes no alpha, so LeakyRelu takes the first (a positional reading would give it none).
    (("Sigmoid", "LeakyRelu"), (0.125,), ()),
])
def test_onnxruntime_consumes_alpha_and_beta_in_activation_order(ort_adapter, activations, alpha, beta):
    config = _config(M.Row("act", activations=activations, activation_alpha=alpha, activation_beta=beta))
    result, layers, x, h0, _ = _run(ort_adapter, config)
    expected = _expected(config, layers, x, h0)
    assert np.allclose(result.outputs, expected[0], rtol=RTOL32, atol=ATOL32), (
        f"{activations} alpha={alpha} beta={beta}: {_gap(result.outputs, expected[0]):.3g}")
    defaults = _config(M.Row("act", activations=activations))
    assert _gap(result.outputs, _expected(defaults, layers, x, h0)[0]) > SEPARATION_FACTOR * ATOL32, (
        "alpha/beta must change the result on the probe")


@pytest.mark.parametrize("name, spec_alpha, ort_alpha", [("ThresholdedRelu", 1.0, 0.0), ("Affine", 1.0, 0.0)])
def test_onnxruntime_defaults_alpha_to_zero_where_the_spec_says_one_finding_4(ort_adapter, name, spec_alpha, ort_alpha):
    config = _config(M.Row("default", activations=("Sigmoid", name)))
    result, layers, x, h0, _ = _run(ort_adapter, config)
    spec = _expected(config, layers, x, h0)[0]
    measured = _expected(config, layers, x, h0, candidate_activation=act.onnx_activation(name, alpha=ort_alpha))[0]
    assert np.allclose(result.outputs, measured, rtol=RTOL32, atol=ATOL32), (
        f"{name}: onnxruntime is not {name}(alpha={ort_alpha}): gap {_gap(result.outputs, measured):.3g}")
    assert _gap(result.outputs, spec) > SEPARATION_FACTOR * ATOL32, (
        f"{name}: onnxruntime now uses the spec default alpha={spec_alpha}; finding 4 is gone")


def test_identify_names_onnxruntimes_absent_alpha_as_the_catalogued_mistake(ort_adapter):
    """The matrix row of finding 4, measured on the real runtime: no convention fits, and the diagnosis is the
    catalogue's "absent activation parameters read as 0" (not "no catalogued mistake explains it")."""
    from reports.matrix import compare_configuration

    config = ort_adapter.configuration("GRU(activations=['Sigmoid', 'ThresholdedRelu'])")
    identification = compare_configuration(ort_adapter, config, np.float32).identification
    assert identification.matched is None and identification.diagnosis, identification.describe()
    best = identification.diagnosis[0]
    assert [m.name for m in best.mistakes] == ["absent activation parameters read as 0"], identification.describe()
    assert best.convention == config.claimed and best.error < 1e-6, identification.describe()


def test_onnxruntime_float32_error_is_that_of_float32(ort_adapter):
    worst = 0.0
    for config in ort_adapter.configurations():
        if config.option("row").layout == 1 or "ThresholdedRelu" in config.name:
            continue
        result, layers, x, h0, mask = _run(ort_adapter, config)
        expected = _expected(config, layers, x, h0, mask if config.masked else None)
        worst = max(worst, _gap(result.h_last, expected[1]))
    assert 1e-9 < worst < 1e-6, f"largest h_last gap {worst:.3g}: float32 rounding (rational tanh/sigmoid) expected"


# ----------------------------------------------------------------- onnx.reference specifics (finding 3)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_the_reference_evaluator_ignores_sequence_lens(ref_adapter, dtype):
    config = ref_adapter.configuration("[GRU, GRU](direction='bidirectional') + sequence_lens")
    layers, x, h0, mask = _probe(config, dtype)
    built = ref_adapter.build(config, layers, dtype)
    masked, unmasked = ref_adapter.run(built, x, h0, mask), ref_adapter.run(built, x, h0)
    assert np.array_equal(masked.outputs, unmasked.outputs) and np.array_equal(masked.h_last, unmasked.h_last), (
        "sequence_lens changed the result: finding 3 is gone for sequence_lens")
    expected = _expected(config, layers, x, h0, mask)
    assert _gap(masked.h_last, expected[1]) > 0.1, "the probe must tell the lengths apart"


@pytest.mark.parametrize("row", [
    M.Row("act", activations=("HardSigmoid", "Relu")),
    M.Row("alpha", activations=("HardSigmoid", "ScaledTanh"), activation_alpha=(0.25, 1.5), activation_beta=(0.375, 0.75)),
    M.Row("clip", linear_before_reset=1, clip=0.5),
], ids=["activations", "alpha-beta", "clip"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_the_reference_evaluator_ignores_activations_alpha_beta_and_clip(ref_adapter, ort_adapter, row, dtype):
    config = _config(row, "onnx-reference")
    result, layers, x, h0, _ = _run(ref_adapter, config, dtype)
    plain = _expected(config, layers, x, h0, gate_activation=act.sigmoid, candidate_activation=np.tanh, clip=None)
    spec = _expected(config, layers, x, h0)
    rtol, atol = (RTOL32, ATOL32) if dtype == np.float32 else (RTOL64, ATOL64)
    assert np.allclose(result.outputs, plain[0], rtol=rtol, atol=atol), (
        f"{row.name}: the evaluator no longer computes plain Sigmoid/Tanh: gap {_gap(result.outputs, plain[0]):.3g}")
    assert _gap(result.outputs, spec[0]) > SEPARATION_FACTOR * atol, f"{row.name}: the attribute must matter on the probe"
    if dtype == np.float32:  # the same graph through onnxruntime follows the spec
        ours = ort_adapter.run(ort_adapter.build(_config(row), layers, dtype), x, h0)
        assert np.allclose(ours.outputs, spec[0], rtol=RTOL32, atol=ATOL32), f"{row.name}: {_gap(ours.outputs, spec[0]):.3g}"


def test_the_reference_evaluator_computes_float64_in_float64(ref_adapter):
    config = ref_adapter.configuration("[GRU, GRU](direction='bidirectional')")
    result, layers, x, h0, _ = _run(ref_adapter, config, np.float64)
    expected = _expected(config, layers, x, h0)
    assert result.outputs.dtype == np.float64
    gap = _gap(result.outputs, expected[0])
    assert gap < 1e-14, f"float64 graph off by {gap:.3g}: not computed in float64"


def test_a_bound_activation_is_also_what_the_runtime_reads_from_the_row(ort_adapter):
    """The row's reference_options and its node attributes name the same functions and parameters."""
    config = ort_adapter.configuration(M.REFERENCE_EVIDENCE)
    options = dict(config.reference_options)
    assert options["gate_activation"] == act.onnx_activation("HardSigmoid", 0.25, 0.375)
    assert options["candidate_activation"] == act.onnx_activation("Affine", 0.5, 0.125)
    assert options["clip"] == 0.75
    assert all(np.float32(v) == v for v in (0.25, 0.375, 0.5, 0.125, 0.75)), (
        "attribute values must be exact in float32 (ONNX stores FLOAT attributes)")
