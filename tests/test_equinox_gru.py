"""The equinox adapter: exact round trips, loud refusals, the installed source it cites (a docstring
without a formula), where ``bias_n`` sits, a PyTorch port, reverse scans and float64 without x64,
each measured against ``reference``."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest

from reference import Convention, gru, layouts, random_layers

from .conftest import adapter_or_skip

DOCUMENTED = Convention("z_on_previous", "after")  # what the code computes; the docstring states no formula
I, H, B, T = 3, 4, 3, 6


@pytest.fixture(scope="module")
def equinox_adapter():
    return adapter_or_skip("equinox")


@pytest.fixture(scope="module")
def eqx(equinox_adapter):
    import equinox

    return equinox


def _holdable(layers, use_bias=True):
    """Random parameters with what eqx.nn.GRUCell cannot hold set to zero (c_z, c_r; every bias without use_bias)."""
    zero = ("c_z", "c_r") if use_bias else ("b_z", "b_r", "b_h", "c_z", "c_r", "c_h")
    return [[p.replace(**{name: np.zeros_like(getattr(p, name)) for name in zero}) for p in layer] for layer in layers]


def _probe(dtype=np.float64, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, T, I)).astype(dtype)
    h0 = rng.uniform(-0.8, 0.8, size=(1, B, H)).astype(dtype)
    return x, h0


def _assert_close(actual, expected, atol, what):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} vs {expected.shape}"
    worst = float(np.max(np.abs(actual - expected)))
    assert worst <= atol, f"{what}: max abs difference {worst:.3g} > {atol:g}"


# ----------------------------------------------------------------- the source it cites


def test_the_docstring_states_no_formula_and_the_cited_code_computes_the_claim(equinox_adapter, eqx):
    docstring = inspect.getdoc(eqx.nn.GRUCell)
    for symbol in ("tanh", "sigma", "sigmoid", "1 - z", "(1 -"):
        assert symbol not in docstring, (
            f"the GRUCell docstring now mentions {symbol!r}: it may state a formula; read it and update claim_source "
            f"in adapters/equinox_gru.py\n{docstring}")
    with open(inspect.getsourcefile(eqx.nn.GRUCell)) as handle:
        source = handle.read().splitlines()
    assert source[14].strip() == '"""A single step of a Gated Recurrent Unit (GRU).', source[14]  # _rnn.py:15
    cited = [line.strip() for line in source[103:109]]  # _rnn.py:104-109
    assert cited == [
        "igates = jnp.split(self.weight_ih @ input + bias, 3)",
        "hgates = jnp.split(self.weight_hh @ hidden, 3)",
        "reset = jnn.sigmoid(igates[0] + hgates[0])",
        "inp = jnn.sigmoid(igates[1] + hgates[1])",
        "new = jnn.tanh(igates[2] + reset * (hgates[2] + bias_n))",
        "return new + inp * (hidden - new)",
    ], cited
    assert "- `use_bias`: Whether to add on a bias after each update." in source[57], source[57]  # _rnn.py:58
    for config in equinox_adapter.configurations():
        assert config.claimed == DOCUMENTED and "_rnn.py (equinox 0.13.8):104-109" in config.claim_source, config
        assert config.bias_fields == (("b_z", "b_r", "b_h", "c_h") if config.option("use_bias") else ()), config


# ----------------------------------------------------------------- building, extracting, describing


def test_build_then_extract_is_bit_exact_where_jax_keeps_the_dtype(equinox_adapter):
    for config in equinox_adapter.configurations():
        for dtype in (np.float32, np.float64):
            layers = _holdable(random_layers(I, H, seed=3, dtype=dtype), use_bias=config.bias)
            layer = equinox_adapter.build(config, layers, dtype)
            (back,), = equinox_adapter.extract(layer)
            # Without x64, JAX holds a float64 request in float32: exactly the rounded parameters.
            held = np.float64 if dtype == np.float64 and config.option("x64") else np.float32
            expected = layers[0][0].astype(held)
            assert expected.identical(back), f"{config.label} [{np.dtype(dtype).name}]: {expected.first_difference(back)}"
            assert equinox_adapter.describe(layer) == config
            assert (layer.cell.bias is None) == (not config.bias), config


def test_the_cell_holds_pytorchs_rows_and_bias_n_is_the_recurrent_candidate_bias(equinox_adapter):
    config = equinox_adapter.configuration("eqx.nn.GRUCell + lax.scan + x64")
    (params,), = _holdable(random_layers(I, H, seed=4))
    cell = equinox_adapter.build(config, [[params]], np.float64).cell
    torch_layout = layouts.to_torch(params)
    np.testing.assert_array_equal(np.asarray(cell.weight_ih), torch_layout["weight_ih"], err_msg="weight_ih rows r|z|n")
    np.testing.assert_array_equal(np.asarray(cell.weight_hh), torch_layout["weight_hh"], err_msg="weight_hh rows r|z|n")
    np.testing.assert_array_equal(np.asarray(cell.bias), torch_layout["bias_ih"], err_msg="bias b_r|b_z|b_n")
    np.testing.assert_array_equal(np.asarray(cell.bias_n), params.c_h, err_msg="bias_n = c_h")
    # bias_n is scaled by the reset gate: the same values as b_h instead give other numbers.
    x, h0 = _probe()
    observed = equinox_adapter.run(equinox_adapter.build(config, [[params]], np.float64), x, h0)
    moved = params.replace(b_h=params.b_h + params.c_h, c_h=np.zeros_like(params.c_h))
    as_input_bias, _ = gru(x, moved, DOCUMENTED, h0=h0[0])
    assert np.max(np.abs(observed.outputs - as_input_bias)) > 1e-3, "bias_n behaves like an input bias"
    expected, _ = gru(x, params, DOCUMENTED, h0=h0[0])
    _assert_close(observed.outputs, expected, 1e-12, "outputs with bias_n inside r * (...)")


def test_a_users_own_cell_is_extracted_described_and_run(equinox_adapter, eqx):
    """Weights made by Equinox itself (its random biases too), in 64-bit mode, read and run."""
    import jax

    with jax.enable_x64(True):
        cell = eqx.nn.GRUCell(I, H, key=jax.random.PRNGKey(3))
    assert cell.weight_ih.dtype == np.float64
    (params,), = equinox_adapter.extract(cell)
    assert np.all(params.b_z != 0) and np.all(params.c_h != 0) and not np.any(params.c_z), params
    config = equinox_adapter.describe(cell)
    assert config.option("x64") and config.bias and not config.reverse, config
    x, h0 = _probe()
    observed = equinox_adapter.run(cell, x, h0)
    expected, h_last = gru(x, params, DOCUMENTED, h0=h0[0])
    _assert_close(observed.outputs, expected, 1e-12, "outputs")
    _assert_close(observed.h_last[0], h_last, 1e-12, "h_last")
    # The docstring's own usage, one unbatched sequence through jax.lax.scan, agrees.
    with jax.enable_x64(True):
        final, _ = jax.lax.scan(lambda state, step: (cell(step, state), None), jax.numpy.asarray(h0[0, 1]), x[1])
    _assert_close(final, h_last[1], 1e-12, "the docstring's lax.scan example")


def test_a_pytorch_port_is_refused_until_c_z_and_c_r_are_folded_and_then_it_is_exact(equinox_adapter):
    config = equinox_adapter.configuration("eqx.nn.GRUCell + lax.scan + x64")
    (params,), = random_layers(I, H, seed=5)  # PyTorch-like: every bias non-zero
    with pytest.raises(ValueError, match="non-zero biases c_z, c_r.*fold exactly.*b_z=params.b_z \\+ params.c_z"):
        equinox_adapter.build(config, [[params]], np.float64)
    folded = params.replace(b_z=params.b_z + params.c_z, b_r=params.b_r + params.c_r,
                            c_z=np.zeros_like(params.c_z), c_r=np.zeros_like(params.c_r))
    x, h0 = _probe()
    observed = equinox_adapter.run(equinox_adapter.build(config, [[folded]], np.float64), x, h0)
    expected, _ = gru(x, params, DOCUMENTED, h0=h0[0])  # the unfolded parameters
    _assert_close(observed.outputs, expected, 1e-12, "folded port vs the original parameters")


def test_build_and_run_refuse_bad_arguments_with_the_fix(equinox_adapter):
    config = equinox_adapter.configuration("eqx.nn.GRUCell(use_bias=False) + lax.scan")
    with pytest.raises(ValueError, match="non-zero biases b_z, b_r, b_h, c_h.*use_bias=False"):
        equinox_adapter.build(config, _holdable(random_layers(I, H)), np.float32)
    with pytest.raises(ValueError, match="needs 1 layer\\(s\\) x 1 direction\\(s\\), the parameters have 2 x 1"):
        equinox_adapter.build(config, random_layers(I, H, num_layers=2, bias=False), np.float32)
    with pytest.raises(ValueError, match="dtype float16 is not supported"):
        equinox_adapter.build(config, random_layers(I, H, bias=False), np.float16)
    layer = equinox_adapter.build(config, random_layers(I, H, bias=False), np.float32)
    x, h0 = _probe(dtype=np.float32)
    with pytest.raises(TypeError, match="x has dtype float64 but the layer computes in float32.*astype"):
        equinox_adapter.run(layer, x.astype(np.float64))
    with pytest.raises(ValueError, match="no notion of padding.*without a mask"):
        equinox_adapter.run(layer, x, mask=np.ones((B, T), bool))
    with pytest.raises(ValueError, match="h0 has shape \\(3, 4\\).*\\(1, 3, 4\\).*h0\\[None\\]"):
        equinox_adapter.run(layer, x, h0[0])
    with pytest.raises(ValueError, match="x has shape \\(6, 3\\) \\(rank 2\\).*x\\[None\\]"):
        equinox_adapter.run(layer, x[0])
    with pytest.raises(TypeError, match="expected an eqx.nn.GRUCell or an EquinoxGRU"):
        equinox_adapter.extract(object())


# ----------------------------------------------------------------- semantics and precision, measured


def test_reverse_scan_keeps_outputs_on_the_input_time_axis_and_ends_at_step_zero(equinox_adapter):
    layers = _holdable(random_layers(I, H, seed=2))
    forward = equinox_adapter.build(equinox_adapter.configuration("eqx.nn.GRUCell + lax.scan"), layers, np.float32)
    backward = equinox_adapter.build(equinox_adapter.configuration("eqx.nn.GRUCell + lax.scan(reverse=True)"), layers,
                                     np.float32)
    x, h0 = _probe(dtype=np.float32)
    flipped = equinox_adapter.run(forward, np.ascontiguousarray(x[:, ::-1]), h0)
    reversed_run = equinox_adapter.run(backward, x, h0)
    _assert_close(reversed_run.outputs, flipped.outputs[:, ::-1], 1e-6, "reverse=True outputs vs flipped forward")
    _assert_close(reversed_run.h_last[0], reversed_run.outputs[:, 0], 0.0, "h_last is the output at step 0")


def test_finding_float64_without_x64_gives_a_float32_cell_with_only_a_warning(equinox_adapter, eqx):
    """_rnn.py:59-61: dtype defaults by 64-bit mode; asking for float64 without it warns and holds float32."""
    import jax

    assert not jax.config.jax_enable_x64, "this test describes JAX's default; something turned x64 on globally"
    with pytest.warns(UserWarning, match="Explicitly requested dtype float64 is not available"):
        cell = eqx.nn.GRUCell(I, H, dtype=np.float64, key=jax.random.PRNGKey(0))
    assert cell.weight_ih.dtype == np.float32 and cell.bias_n.dtype == np.float32
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stepped = cell(np.ones(I), np.zeros(H))  # float64 NumPy input: silently float32
    assert stepped.dtype == np.float32
    layers = _holdable(random_layers(I, H, seed=9))
    x, h0 = _probe()
    expected, _ = gru(x, layers[0][0], DOCUMENTED, h0=h0[0])
    errors = {}
    for name in ("eqx.nn.GRUCell + lax.scan", "eqx.nn.GRUCell + lax.scan + x64"):
        observed = equinox_adapter.run(equinox_adapter.build(equinox_adapter.configuration(name), layers, np.float64),
                                       x, h0)
        errors[name] = (observed.outputs.dtype.name, float(np.max(np.abs(observed.outputs - expected))))
    plain, x64 = errors.values()
    assert plain[0] == "float32" and 1e-9 < plain[1] < 1e-5, errors
    assert x64[0] == "float64" and x64[1] < 1e-13, errors
