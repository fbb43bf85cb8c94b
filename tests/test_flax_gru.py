"""The Flax adapter: exact round trips, the biases each class really holds, loud refusals, what
``seq_lengths`` and ``reverse`` do (measured against ``reference.gru``), the float64 policy, and
MGUCell as a GRU with tied gates.

Shapes follow ``reports.matrix.DEFAULT_CASE`` (batch 3, time 7, input 4, hidden 5), so the programs
compiled for the matrix serve these tests too.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys

import numpy as np
import pytest

import adapters
from reference import Convention, GRUParams, gru, gru_stack, random_layers

from .conftest import adapter_or_skip

DOCUMENTED = Convention("z_on_previous", "after")
DTYPES = [np.float32, np.float64]
BATCH, TIME, INPUT, HIDDEN = 3, 7, 4, 5
LENGTHS = np.array([7, 4, 1])
MASK = np.arange(TIME)[None, :] < LENGTHS[:, None]


flax_gru = pytest.importorskip("adapters.flax_gru", reason="flax is not installed", exc_type=ImportError)


@pytest.fixture(scope="module")
def flax_adapter():
    return adapter_or_skip("flax")


@pytest.fixture(scope="module")
def fx(flax_adapter):
    """``(jax, jax.numpy, flax.linen, flax.nnx)``, imported once the adapter loaded them."""
    import jax
    import jax.numpy as jnp
    from flax import linen, nnx

    return jax, jnp, linen, nnx


def _layers_for(config, dtype=np.float64, seed=0):
    """Random parameters with zeros where ``config`` holds no bias."""
    layers = random_layers(INPUT, HIDDEN, bidirectional=config.bidirectional, seed=seed, dtype=dtype)
    return config.holdable(layers)


def _probe(config, dtype=np.float64, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCH, TIME, INPUT)).astype(dtype)
    h0 = rng.uniform(-0.8, 0.8, size=(config.directions, BATCH, HIDDEN)).astype(dtype)
    return x, h0


def _close(actual, expected, atol, what):
    error = float(np.max(np.abs(np.asarray(actual, np.float64) - expected)))
    assert error <= atol, f"{what}: max abs error {error:.3g} > {atol:g}"


# ----------------------------------------------------------------- availability


def test_the_adapter_is_unavailable_with_a_reason_when_flax_is_missing(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "flax" else real_find_spec(name, *a))
    monkeypatch.delitem(sys.modules, "adapters.flax_gru", raising=False)
    loaded = adapters._load.__wrapped__("flax")  # uncached: the session's own answer stays as it was
    assert isinstance(loaded, adapters.AdapterUnavailable)
    assert loaded.reason.startswith("flax is not installed"), loaded.reason
    assert "pip install flax" in loaded.reason


def test_versions_name_flax_jax_jaxlib_and_the_device(flax_adapter):
    """The device is part of the answer: JAX on a GPU may round float32 products to TF32 (jax_common)."""
    versions = flax_adapter.versions()
    assert set(versions) == {"flax", "jax", "jaxlib", "device"}, versions
    import jax

    backend = jax.default_backend()
    assert versions["device"] == "cpu" if backend == "cpu" else versions["device"].startswith(f"{backend}: "), versions


def test_every_class_has_a_default_row_and_an_x64_row(flax_adapter):
    names = [c.name for c in flax_adapter.configurations()]
    for api in ("linen", "nnx"):
        for cls in ("GRUCell", "RNN(GRUCell)", "Bidirectional(RNN(GRUCell), RNN(GRUCell))"):
            assert any(n.startswith(f"{api}.{cls}") and not n.endswith(" + x64") for n in names), (api, cls, names)
            assert any(n.startswith(f"{api}.{cls}") and n.endswith(" + x64") for n in names), (api, cls, names)
    for config in flax_adapter.configurations():
        assert config.option("x64") == config.name.endswith(" + x64"), config.name
        assert config.returns_sequences == (not config.masked), config.name


# ----------------------------------------------------------------- building, extracting, describing


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_build_then_extract_is_bit_exact_in_what_jax_holds(flax_adapter, dtype):
    """Exact in float32, and in float64 under x64; a float64 request without x64 holds the float32 rounding."""
    for config in flax_adapter.configurations():
        layers = _layers_for(config, dtype=dtype)
        layer = flax_adapter.build(config, layers, dtype)
        held_dtype = np.dtype(dtype) if config.option("x64") or dtype == np.float32 else np.dtype(np.float32)
        back = flax_adapter.extract(layer)
        assert len(back) == 1 and len(back[0]) == config.directions, config.label
        for direction, (ours, theirs) in enumerate(zip(layers[0], back[0], strict=True)):
            assert theirs.dtype == held_dtype, f"{config.label} [{np.dtype(dtype).name}]: holds {theirs.dtype}"
            wanted = ours.astype(held_dtype)
            assert wanted.identical(theirs), f"{config.label} direction {direction}: {wanted.first_difference(theirs)}"
        assert flax_adapter.describe(layer) == config


def test_flax_holds_the_weights_under_its_own_names(flax_adapter, fx):
    """Read back from Flax's own parameter trees, not through the adapter's extract."""
    (params,), = _layers_for(flax_adapter.configuration("linen.GRUCell"), dtype=np.float32)
    linen_rnn = flax_adapter.build(flax_adapter.configuration("linen.RNN(GRUCell)"), [[params]], np.float32)
    tree = linen_rnn.variables["params"]["cell"]
    for flax_name, canonical in (("ir", "r"), ("iz", "z"), ("in", "h")):
        np.testing.assert_array_equal(tree[flax_name]["kernel"], getattr(params, f"W_{canonical}"), err_msg=flax_name)
        np.testing.assert_array_equal(tree[flax_name]["bias"], getattr(params, f"b_{canonical}"), err_msg=flax_name)
    for flax_name, canonical in (("hr", "r"), ("hz", "z"), ("hn", "h")):
        np.testing.assert_array_equal(tree[flax_name]["kernel"], getattr(params, f"U_{canonical}"), err_msg=flax_name)
    np.testing.assert_array_equal(tree["hn"]["bias"], params.c_h)

    nnx_params = params.without_biases(recurrent_only=True)
    cell = flax_adapter.build(flax_adapter.configuration("nnx.GRUCell"), [[nnx_params]], np.float32).module
    H = HIDDEN
    for index, gate in enumerate("rzh"):
        columns = slice(index * H, (index + 1) * H)
        np.testing.assert_array_equal(np.asarray(cell.dense_i.kernel[...])[:, columns], getattr(params, f"W_{gate}"))
        np.testing.assert_array_equal(np.asarray(cell.dense_i.bias[...])[columns], getattr(params, f"b_{gate}"))
        np.testing.assert_array_equal(np.asarray(cell.dense_h.kernel[...])[:, columns], getattr(params, f"U_{gate}"))


def test_each_class_holds_the_biases_flax_itself_creates(flax_adapter, fx):
    """linen: input biases and hn's bias (c_h); nnx: input biases only. Read off Flax's own init."""
    jax, jnp, linen, nnx = fx
    variables = linen.GRUCell(features=HIDDEN).init(jax.random.key(0), jnp.zeros((1, HIDDEN)), jnp.zeros((1, INPUT)))
    with_bias = sorted(name for name, layer in variables["params"].items() if "bias" in layer)
    assert with_bias == ["hn", "in", "ir", "iz"], with_bias
    cell = nnx.GRUCell(INPUT, HIDDEN, rngs=nnx.Rngs(0))
    assert cell.dense_i.use_bias and cell.dense_i.bias is not None
    assert cell.dense_h.use_bias is False and cell.dense_h.bias is None, (
        "nnx.GRUCell's dense_h has a bias now (google/flax#5594 fixed?): update BIASES['nnx'] and the layout in "
        "adapters/flax_gru.py"
    )
    holds = {c.name: c.bias_fields for c in flax_adapter.configurations()}
    assert holds["linen.GRUCell"] == ("b_z", "b_r", "b_h", "c_h"), holds["linen.GRUCell"]
    assert holds["nnx.GRUCell"] == ("b_z", "b_r", "b_h"), holds["nnx.GRUCell"]


def test_finding_the_nnx_docstring_names_a_b_hn_bias_the_class_does_not_have(flax_adapter, fx):
    """flax 0.12.8: nnx.GRUCell's docstring (recurrent.py:601) has ``r * (W_hn h + b_hn)``; dense_h has no bias.
    A linen (or PyTorch) GRU with a non-zero c_h therefore has no nnx equivalent, and dropping c_h changes it."""
    _, _, _, nnx = fx
    assert r"r * (W_{hn} h + b_{hn})" in inspect.getdoc(nnx.GRUCell)
    (params,), = random_layers(INPUT, HIDDEN, seed=3)
    params = params.replace(c_z=np.zeros(HIDDEN), c_r=np.zeros(HIDDEN))
    x, h0 = _probe(flax_adapter.configuration("nnx.GRUCell + x64"))
    linen_layer = flax_adapter.build(flax_adapter.configuration("linen.GRUCell + x64"), [[params]], np.float64)
    nnx_layer = flax_adapter.build(flax_adapter.configuration("nnx.GRUCell + x64"), [[params.replace(c_h=np.zeros(HIDDEN))]],
                                   np.float64)
    with_c_h = flax_adapter.run(linen_layer, x, h0).outputs
    without = flax_adapter.run(nnx_layer, x, h0).outputs
    _close(with_c_h, gru(x, params, DOCUMENTED, h0=h0[0])[0], 1e-12, "linen.GRUCell with c_h")
    assert np.max(np.abs(with_c_h - without)) > 1e-2, "dropping c_h should change the outputs"


def test_build_refuses_biases_a_class_cannot_hold_and_names_the_way_out(flax_adapter):
    params = random_layers(INPUT, HIDDEN, seed=0)
    with pytest.raises(ValueError, match=r"layers\[0\]\[0\] has non-zero biases c_z, c_r, which flax:linen.GRUCell "
                                         r"cannot hold \(it keeps only b_z, b_r, b_h, c_h\); c_z and c_r fold exactly"):
        flax_adapter.build(flax_adapter.configuration("linen.GRUCell"), params, np.float32)
    with pytest.raises(ValueError, match=r"non-zero biases c_z, c_r, c_h, which flax:nnx.RNN\(GRUCell\) cannot hold "
                                         r".*c_h does not \(it is scaled by r\): use linen.GRUCell"):
        flax_adapter.build(flax_adapter.configuration("nnx.RNN(GRUCell)"), params, np.float32)
    config = flax_adapter.configuration("nnx.Bidirectional(RNN(GRUCell), RNN(GRUCell))")
    layers = _layers_for(config)
    layers[0][1] = layers[0][1].replace(c_h=np.full(HIDDEN, 0.5))
    with pytest.raises(ValueError, match=r"layers\[0\]\[1\] has non-zero biases c_h"):
        flax_adapter.build(config, layers, np.float64)
    layers[0][1] = layers[0][1].replace(c_h=np.zeros(HIDDEN))
    assert flax_adapter.build(config, layers, np.float64).config is config  # zero there: accepted


def test_build_refuses_the_wrong_structure_dtype_and_configuration(flax_adapter):
    config = flax_adapter.configuration("linen.RNN(GRUCell)")
    with pytest.raises(ValueError, match=r"needs 1 layer\(s\) x 1 direction\(s\), the parameters have 1 x 2"):
        flax_adapter.build(config, _layers_for(flax_adapter.configuration("linen.Bidirectional(RNN(GRUCell), RNN(GRUCell))")),
                           np.float32)
    with pytest.raises(ValueError, match=r"needs 1 layer\(s\) x 1 direction\(s\), the parameters have 2 x 1"):
        flax_adapter.build(config, [[p.without_biases(recurrent_only=True)] for p, in random_layers(INPUT, HIDDEN, 2)],
                           np.float32)
    with pytest.raises(ValueError, match="dtype must be float32 or float64, got float16"):
        flax_adapter.build(config, _layers_for(config), np.float16)
    with pytest.raises(TypeError, match="config is str 'linen.GRUCell'; expected one of adapters.get\\('flax'\\)"):
        flax_adapter.build("linen.GRUCell", _layers_for(config), np.float32)
    with pytest.raises(ValueError, match="flax has no configuration 'nn.GRU'; valid: linen.GRUCell, "):
        flax_adapter.configuration("nn.GRU")


# ----------------------------------------------------------------- a user's own Flax objects


def test_a_users_nnx_rnn_is_described_extracted_and_run_as_flax_runs_it(flax_adapter, fx):
    jax, jnp, _, nnx = fx
    bias = nnx.initializers.normal(0.5)
    rnn = nnx.RNN(nnx.GRUCell(INPUT, HIDDEN, bias_init=bias, rngs=nnx.Rngs(7)), reverse=True, keep_order=True)
    config = flax_adapter.describe(rnn)
    assert config.name == "nnx.RNN(GRUCell, reverse=True, keep_order=True)", config.name
    (params,), = flax_adapter.extract(rnn)
    assert params.dtype == np.float32 and np.any(params.b_z != 0) and not np.any(params.c_h)
    x, h0 = _probe(config, np.float32)
    observed = flax_adapter.run(rnn, x, h0)
    carry, direct = rnn(jnp.asarray(x), initial_carry=jnp.asarray(h0[0]), return_carry=True)
    np.testing.assert_array_equal(observed.outputs, np.asarray(direct))
    np.testing.assert_array_equal(observed.h_last[0], np.asarray(carry))
    outputs, h_last = gru(x, params, DOCUMENTED, h0=h0[0], reverse=True)
    _close(observed.outputs, outputs, 2e-6, "nnx.RNN(reverse=True, keep_order=True) outputs")
    _close(observed.h_last[0], h_last, 2e-6, "nnx.RNN(reverse=True, keep_order=True) carry")


def test_a_users_linen_pair_is_described_extracted_and_run(flax_adapter, fx):
    jax, jnp, linen, _ = fx
    module = linen.Bidirectional(linen.RNN(linen.GRUCell(HIDDEN, bias_init=linen.initializers.normal(0.5))),
                                 linen.RNN(linen.GRUCell(HIDDEN, bias_init=linen.initializers.normal(0.5))))
    x, h0 = _probe(flax_adapter.configuration("linen.Bidirectional(RNN(GRUCell), RNN(GRUCell))"), np.float32)
    variables = module.init(jax.random.key(3), jnp.asarray(x))
    config = flax_adapter.describe((module, variables))
    assert config.name == "linen.Bidirectional(RNN(GRUCell), RNN(GRUCell))", config.name
    layers = flax_adapter.extract((module, variables))
    assert np.any(layers[0][1].c_h != 0) and not layers[0][0].identical(layers[0][1])
    observed = flax_adapter.run((module, variables), x, h0)
    outputs, h_last = gru_stack(x, layers, DOCUMENTED, h0=h0)
    _close(observed.outputs, outputs, 2e-6, "linen.Bidirectional outputs")
    _close(observed.h_last, h_last, 2e-6, "linen.Bidirectional carries")


def test_objects_the_adapter_cannot_read_are_refused_naming_them(flax_adapter, fx):
    _, _, linen, nnx = fx
    with pytest.raises(TypeError, match="got a linen GRUCell without its variables.*pass \\(module, variables\\)"):
        flax_adapter.extract(linen.GRUCell(HIDDEN))
    with pytest.raises(TypeError, match="nnx.RNN runs a LSTMCell, not a nnx.GRUCell"):
        flax_adapter.describe(nnx.RNN(nnx.LSTMCell(INPUT, HIDDEN, rngs=nnx.Rngs(0))))
    with pytest.raises(TypeError, match="nnx.GRUCell has gate_fn=hard_sigmoid; this adapter maps only the default sigmoid gates"):
        flax_adapter.describe(nnx.GRUCell(INPUT, HIDDEN, gate_fn=nnx.hard_sigmoid, rngs=nnx.Rngs(0)))
    with pytest.raises(TypeError, match="expected a FlaxGRU from adapters.get\\('flax'\\).build.*got a list"):
        flax_adapter.run([], np.zeros((1, 2, INPUT)))


# ----------------------------------------------------------------- running


@pytest.fixture(scope="module")
def linen_rnn(flax_adapter):
    config = flax_adapter.configuration("linen.RNN(GRUCell)")
    return flax_adapter.build(config, _layers_for(config, dtype=np.float32), np.float32)


def test_run_refuses_bad_input_naming_the_value_and_the_fix(flax_adapter, linen_rnn):
    x = np.zeros((BATCH, TIME, INPUT), np.float32)
    with pytest.raises(TypeError, match="x has dtype float64 but the layer was built for float32; pass x.astype\\(np.float32\\)"):
        flax_adapter.run(linen_rnn, x.astype(np.float64))
    with pytest.raises(ValueError, match="x has shape \\(3, 7, 6\\); expected \\(batch, time, input_size=4\\)"):
        flax_adapter.run(linen_rnn, np.zeros((BATCH, TIME, 6), np.float32))
    bad = x.copy()
    bad[0, 1, 2] = np.nan
    with pytest.raises(ValueError, match="x contains a non-finite value \\(nan at index \\(0, 1, 2\\)\\)"):
        flax_adapter.run(linen_rnn, bad)
    with pytest.raises(ValueError, match="h0 has shape \\(2, 3, 5\\), expected \\(1, 3, 5\\)"):
        flax_adapter.run(linen_rnn, x, np.zeros((2, BATCH, HIDDEN), np.float32))
    with pytest.raises(TypeError, match="h0 has dtype float64 but the layer was built for float32"):
        flax_adapter.run(linen_rnn, x, np.zeros((1, BATCH, HIDDEN)))
    with pytest.raises(ValueError, match="mask has shape \\(3, 2\\); expected \\(batch, time\\) = \\(3, 7\\)"):
        flax_adapter.run(linen_rnn, x, mask=np.ones((BATCH, 2), bool))
    with pytest.raises(ValueError, match="mask row 1 is \\[1, 0, 1, 1, 1, 1, 1\\].*right padding"):
        flax_adapter.run(linen_rnn, x, mask=np.array([[1] * 7, [1, 0, 1, 1, 1, 1, 1], [1] * 7], bool))


@pytest.mark.parametrize("api", ["linen", "nnx"])
def test_the_cell_refuses_a_mask_and_names_rnn(flax_adapter, api):
    config = flax_adapter.configuration(f"{api}.GRUCell")
    cell = flax_adapter.build(config, _layers_for(config, dtype=np.float32), np.float32)
    with pytest.raises(ValueError, match=f"{api}.GRUCell has no notion of padding; .*through {api}.RNN\\(GRUCell\\) with seq_lengths"):
        flax_adapter.run(cell, np.zeros((BATCH, TIME, INPUT), np.float32), mask=MASK)


@pytest.mark.parametrize("name", ["linen.GRUCell + x64", "nnx.GRUCell + x64", "linen.RNN(GRUCell) + x64",
                                  "nnx.RNN(GRUCell) + x64"])
def test_without_h0_flax_starts_from_zeros(flax_adapter, name):
    config = flax_adapter.configuration(name)
    layers = _layers_for(config)
    x, _ = _probe(config)
    observed = flax_adapter.run(flax_adapter.build(config, layers, np.float64), x)
    outputs, h_last = gru_stack(x, layers, DOCUMENTED)
    _close(observed.outputs, outputs, 1e-12, f"{name} outputs")
    _close(observed.h_last, h_last, 1e-12, f"{name} h_last")


@pytest.mark.parametrize("api", ["linen", "nnx"])
def test_reverse_without_keep_order_returns_processing_order_and_the_adapter_realigns(flax_adapter, fx, api):
    jax, jnp, _, _ = fx
    config = flax_adapter.configuration(f"{api}.RNN(GRUCell, reverse=True)")
    layers = _layers_for(config, dtype=np.float32)
    x, h0 = _probe(config, np.float32)
    layer = flax_adapter.build(config, layers, np.float32)
    if api == "linen":
        raw = layer.module.apply(layer.variables, jnp.asarray(x), initial_carry=jnp.asarray(h0[0]))
    else:
        raw = layer.module(jnp.asarray(x), initial_carry=jnp.asarray(h0[0]))
    observed = flax_adapter.run(layer, x, h0)
    np.testing.assert_array_equal(np.asarray(raw)[:, ::-1], observed.outputs)
    outputs, _ = gru(x, layers[0][0], DOCUMENTED, h0=h0[0], reverse=True)
    _close(observed.outputs, outputs, 2e-6, f"{config.label} realigned outputs")


# ----------------------------------------------------------------- seq_lengths, measured


@pytest.mark.parametrize("api", ["linen", "nnx"])
def test_seq_lengths_carry_is_the_last_valid_state_and_padded_outputs_are_unmasked_steps(flax_adapter, api):
    """Forward: Flax's outputs are those of the *unmasked* GRU at every step, padding included; only the
    carry honours seq_lengths. Neither zeros, the carried state nor the previous output: no masked_output mode."""
    config = flax_adapter.configuration(f"{api}.RNN(GRUCell) + x64")
    layers = _layers_for(config)
    (params,), = layers
    x, h0 = _probe(config)
    observed = flax_adapter.run(flax_adapter.build(config, layers, np.float64), x, h0, MASK)
    unmasked, _ = gru(x, params, DOCUMENTED, h0=h0[0])
    carried, h_last = gru(x, params, DOCUMENTED, h0=h0[0], mask=MASK)
    _close(observed.outputs, unmasked, 1e-12, f"{config.label} outputs vs the unmasked GRU")
    _close(observed.h_last[0], h_last, 1e-12, f"{config.label} carry vs the state after the last valid step")
    padded = ~MASK
    for wrong, what in ((0.0, "zeros"), (carried, "the carried state")):
        gap = np.min(np.max(np.abs(observed.outputs - wrong)[padded], axis=-1))
        assert gap > 1e-3, f"a padded output equals {what} (closest {gap:.3g})"


@pytest.mark.parametrize("api", ["linen", "nnx"])
def test_seq_lengths_reverse_reads_the_valid_part_backwards_then_the_padding_backwards(flax_adapter, api):
    """reverse=True, keep_order=True: flip_sequences reverses each valid part in place and leaves the padding at
    the end, so the valid steps match the reference's reverse pass from h0, and the padding is consumed last,
    from the final step back, starting from the state after x[0]."""
    config = flax_adapter.configuration(f"{api}.RNN(GRUCell, reverse=True, keep_order=True) + seq_lengths (carry)")
    layers = _layers_for(config)
    (params,), = layers
    x, h0 = _probe(config)
    layer = flax_adapter.build(config, layers, np.float64)
    assert flax_adapter.run(layer, x, h0, MASK).outputs is None  # the masked row compares the carry only
    # The same class as an unmasked configuration returns its outputs when given a mask: measure them.
    unmasked_config = flax_gru._config(api, "rnn", reverse=True, keep_order=True, x64=True)
    observed = flax_adapter.run(flax_adapter.build(unmasked_config, layers, np.float64), x, h0, MASK)
    reference_outputs, h_last = gru(x, params, DOCUMENTED, h0=h0[0], mask=MASK, reverse=True)
    _close(flax_adapter.run(layer, x, h0, MASK).h_last[0], h_last, 2e-6, f"{config.label} carry (float32: no x64)")
    _close(observed.h_last[0], h_last, 1e-12, f"{unmasked_config.label} carry with a mask")
    for row, length in enumerate(LENGTHS):
        _close(observed.outputs[row, :length], reference_outputs[row, :length], 1e-12, f"row {row} valid steps")
        if length < TIME:
            tail, _ = gru(x[row:row + 1, length:], params, DOCUMENTED, h0=h_last[row:row + 1], reverse=True)
            _close(observed.outputs[row, length:], tail[0], 1e-12, f"row {row} padded steps")
            gap = np.min(np.max(np.abs(observed.outputs[row, length:] - h_last[row]), axis=-1))
            assert gap > 1e-3, f"row {row}: a padded output equals the carried state (closest {gap:.3g})"


def test_bidirectional_seq_lengths_carries_are_both_directions_last_valid_states(flax_adapter):
    for api in ("linen", "nnx"):
        config = flax_adapter.configuration(f"{api}.Bidirectional(RNN(GRUCell), RNN(GRUCell)) + seq_lengths (carry) + x64")
        layers = _layers_for(config)
        x, h0 = _probe(config)
        observed = flax_adapter.run(flax_adapter.build(config, layers, np.float64), x, h0, MASK)
        assert observed.outputs is None
        for row, length in enumerate(LENGTHS):  # each sequence alone, cut to its length
            _, alone = gru_stack(x[row:row + 1, :length], layers, DOCUMENTED, h0=h0[:, row:row + 1])
            _close(observed.h_last[:, row], alone[:, 0], 1e-12, f"{config.label} row {row}")


# ----------------------------------------------------------------- precision


@pytest.mark.parametrize("api", ["linen", "nnx"])
def test_finding_float64_without_x64_computes_float32_and_x64_restores_it(flax_adapter, fx, api):
    jax, _, _, _ = fx
    plain, fixed = flax_adapter.configuration(f"{api}.RNN(GRUCell)"), flax_adapter.configuration(f"{api}.RNN(GRUCell) + x64")
    layers = _layers_for(plain)
    x, h0 = _probe(plain)
    outputs, _ = gru(x, layers[0][0], DOCUMENTED, h0=h0[0])
    truncated = flax_adapter.run(flax_adapter.build(plain, layers, np.float64), x, h0)
    restored = flax_adapter.run(flax_adapter.build(fixed, layers, np.float64), x, h0)
    assert truncated.outputs.dtype == np.float32 and restored.outputs.dtype == np.float64
    error32 = float(np.max(np.abs(truncated.outputs - outputs)))
    error64 = float(np.max(np.abs(restored.outputs - outputs)))
    assert 1e-9 < error32 < 1e-5, f"float64 without x64: error {error32:.3g}, expected float32 rounding"
    assert error64 < 1e-13, f"float64 with x64: error {error64:.3g}"
    assert jax.config.jax_enable_x64 is False, "running an x64 row must leave JAX's global flag as it was"


def test_the_float64_request_without_x64_reuses_the_float32_program(flax_adapter, monkeypatch):
    """Two modules (dtype float32, dtype float64 truncated to float32), one XLA program, compiled once."""
    monkeypatch.setattr(flax_gru, "_EXECUTABLES", {})
    monkeypatch.setattr(flax_gru, "_BY_CONTENT", {})
    config = flax_adapter.configuration("nnx.RNN(GRUCell)")
    for dtype in DTYPES:
        x, h0 = _probe(config, dtype)
        flax_adapter.run(flax_adapter.build(config, _layers_for(config, dtype=dtype), dtype), x, h0)
    keys = list(flax_gru._EXECUTABLES)
    assert len(keys) == 2, f"expected one cache entry per module (float32, float64), got {len(keys)}"
    assert dict(keys[0][1])["graphdef"] != dict(keys[1][1])["graphdef"], "the two modules should differ (dtype)"
    assert len(flax_gru._BY_CONTENT) == 1 and flax_gru._EXECUTABLES[keys[0]] is flax_gru._EXECUTABLES[keys[1]]


# ----------------------------------------------------------------- MGUCell: not a row, still measured


def test_mgu_cell_is_a_gru_with_tied_update_and_reset_gates(flax_adapter, fx):
    """linen.MGUCell (reset_gate=True): f is both z and r, so it is z_on_previous+reset_after with W_z = W_r,
    U_z = U_r, b_z = b_r (recurrent.py:625-627, 718-729). The matrix's probes have independent gates: no row."""
    jax, jnp, linen, _ = fx
    x, h0 = _probe(flax_adapter.configuration("linen.GRUCell + x64"))
    with jax.enable_x64(True):
        cell = linen.MGUCell(HIDDEN, dtype=jnp.float64, param_dtype=jnp.float64,
                             activation_bias_init=linen.initializers.normal(0.5))
        variables = cell.init(jax.random.key(0), jnp.asarray(h0[0]), jnp.asarray(x[:, 0]))
        p = jax.tree_util.tree_map(np.asarray, variables["params"])
        assert sorted(p) == ["hf", "hn", "if", "in"] and "bias" not in p["hf"], sorted(p)
        h, steps = jnp.asarray(h0[0]), []
        for t in range(TIME):
            h, y = cell.apply(variables, h, jnp.asarray(x[:, t]))
            steps.append(np.asarray(y))
    tied = GRUParams(W_z=p["if"]["kernel"], W_r=p["if"]["kernel"], W_h=p["in"]["kernel"],
                     U_z=p["hf"]["kernel"], U_r=p["hf"]["kernel"], U_h=p["hn"]["kernel"],
                     b_z=p["if"]["bias"], b_r=p["if"]["bias"], b_h=p["in"]["bias"],
                     c_z=np.zeros(HIDDEN), c_r=np.zeros(HIDDEN), c_h=p["hn"]["bias"])
    assert np.any(tied.c_h != 0) and np.all(tied.b_z == 1.0)  # forget_bias_init is ones
    outputs, _ = gru(x, tied, DOCUMENTED, h0=h0[0])
    _close(np.stack(steps, axis=1), outputs, 1e-12, "MGUCell vs the tied-gate GRU")
    for other in Convention.all():
        if other != DOCUMENTED:
            assert np.max(np.abs(np.stack(steps, axis=1) - gru(x, tied, other, h0=h0[0])[0])) > 1e-3, other.id
