"""The haiku adapter: exact round trips, loud refusals, the installed source it cites, and Haiku's own
specifics measured against ``reference``: reverse unrolls, ResetCore's resets, DeepRNN with skip
connections, ``initial_state``'s dtype, and float64 without ``jax_enable_x64``."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest

from reference import Convention, fold_recurrent_biases, gru, gru_stack, random_layers

from .conftest import adapter_or_skip

DOCUMENTED = Convention("z_on_candidate", "before")
I, H, B, T = 3, 4, 3, 6


@pytest.fixture(scope="module")
def haiku_adapter():
    return adapter_or_skip("haiku")


@pytest.fixture(scope="module")
def hk(haiku_adapter):
    import haiku

    return haiku


def _single_bias(layers):
    """Random parameters with the recurrent biases hk.GRU cannot hold set to zero."""
    return [[p.without_biases(recurrent_only=True) for p in layer] for layer in layers]


def _probe(slots=1, dtype=np.float64, seed=1, batch=B, time=T, input_size=I):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, time, input_size)).astype(dtype)
    h0 = rng.uniform(-0.8, 0.8, size=(slots, batch, H)).astype(dtype)
    return x, h0


def _assert_close(actual, expected, atol, what):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} vs {expected.shape}"
    worst = float(np.max(np.abs(actual - expected)))
    assert worst <= atol, f"{what}: max abs difference {worst:.3g} > {atol:g}"


# ----------------------------------------------------------------- the source it cites


def test_the_cited_lines_of_the_installed_source_state_the_claimed_formula_and_layout(haiku_adapter, hk):
    with open(inspect.getsourcefile(hk.GRU)) as handle:
        source = handle.read().splitlines()
    cited = "\n".join(source[540:546])  # recurrent.py:541-546
    for fragment in (r"z_t &= \sigma(W_{iz} x_t + W_{hz} h_{t-1} + b_z)", r"W_{ha} (r_t \bigodot h_{t-1}) + b_a",
                     r"h_t &= (1 - z_t) \bigodot h_{t-1} + z_t \bigodot a_t"):
        assert fragment in cited, f"recurrent.py:541-546 no longer reads {fragment!r}:\n{cited}"
    assert source[589].strip() == "a_h = jnp.matmul(r * state, w_h_a)", source[589]
    assert source[592].strip() == "next_state = (1 - z) * state + z * a", source[592]
    assert 'hk.get_parameter("w_i", [input_size, 3 * hidden_size]' in source[574], source[574]
    assert "z_t` and :math:`r_t` are reset and update gates" in source[547], source[547]
    for config in haiku_adapter.configurations():
        assert config.claimed == DOCUMENTED and "recurrent.py (dm-haiku 0.0.17):541-546" in config.claim_source, config
        assert config.bias_fields == ("b_z", "b_r", "b_h") and not config.masked, config


def test_dynamic_unroll_has_no_mask_argument_so_no_row_is_masked_and_run_refuses_one(haiku_adapter, hk):
    assert "mask" not in inspect.signature(hk.dynamic_unroll).parameters
    assert "mask" not in inspect.signature(hk.static_unroll).parameters
    config = haiku_adapter.configuration("hk.GRU + dynamic_unroll")
    layer = haiku_adapter.build(config, _single_bias(random_layers(I, H)), np.float32)
    x, _ = _probe(dtype=np.float32)
    with pytest.raises(ValueError, match="take no mask or sequence lengths.*run it without a mask"):
        haiku_adapter.run(layer, x, mask=np.ones((B, T), bool))


# ----------------------------------------------------------------- building, extracting, describing


def test_build_then_extract_is_bit_exact_where_jax_keeps_the_dtype(haiku_adapter):
    for config in haiku_adapter.configurations():
        for dtype in (np.float32, np.float64):
            layers = _single_bias(random_layers(I, H, num_layers=config.num_layers, seed=3, dtype=dtype))
            layer = haiku_adapter.build(config, layers, dtype)
            back = haiku_adapter.extract(layer)
            # Without x64, JAX holds a float64 request in float32: exactly the rounded parameters.
            held = np.float64 if dtype == np.float64 and config.option("x64") else np.float32
            for index, ((p,), (q,)) in enumerate(zip(layers, back, strict=True)):
                expected = p.astype(held)
                assert expected.identical(q), (f"{config.label} [{np.dtype(dtype).name}] layers[{index}]: "
                                               f"{expected.first_difference(q)}")
            assert haiku_adapter.describe(layer) == config
            assert layer.compute_dtype == held, f"{config.label}: params are {layer.compute_dtype}"


def test_a_users_own_haiku_params_are_read_in_haikus_layout(haiku_adapter, hk):
    """Weights made by Haiku itself (random biases too), read by extract, give Haiku's own outputs."""
    import jax

    def forward(x, h0):
        core = hk.GRU(H, b_init=hk.initializers.RandomNormal(0.5), w_h_init=hk.initializers.RandomNormal(0.5))
        return hk.dynamic_unroll(core, x, h0, time_major=False)

    with jax.enable_x64(True):
        transformed = hk.transform(forward)
        x, h0 = _probe()
        params = jax.jit(transformed.init)(jax.random.PRNGKey(7), x, h0[0])  # jitted: one compilation, not one per op
        outputs, h_last = jax.jit(transformed.apply)(params, None, x, h0[0])
        (extracted,), = haiku_adapter.extract(params)
    assert set(params) == {"gru"} and extracted.dtype == np.float64
    assert np.all(extracted.b_z != 0) and not np.any(extracted.c_z), extracted
    expected_outputs, expected_h = gru(x, extracted, DOCUMENTED, h0=h0[0])
    _assert_close(outputs, expected_outputs, 1e-12, "outputs")
    _assert_close(h_last, expected_h, 1e-12, "h_last")
    # The gate order matters: reading the z and r columns the other way round misses by far.
    swapped = extracted.replace(W_z=extracted.W_r, W_r=extracted.W_z, U_z=extracted.U_r, U_r=extracted.U_z,
                                b_z=extracted.b_r, b_r=extracted.b_z)
    wrong, _ = gru(x, swapped, DOCUMENTED, h0=h0[0])
    assert np.max(np.abs(wrong - np.asarray(outputs))) > 1e-2


def test_recurrent_biases_are_refused_with_the_fold_and_the_fold_is_exact(haiku_adapter):
    config = haiku_adapter.configuration("hk.GRU + dynamic_unroll + x64")
    (params,), = random_layers(I, H, seed=5)
    with pytest.raises(ValueError, match="non-zero biases c_z, c_r, c_h.*fold_recurrent_biases"):
        haiku_adapter.build(config, [[params]], np.float64)
    folded = fold_recurrent_biases(params, DOCUMENTED)
    x, h0 = _probe()
    observed = haiku_adapter.run(haiku_adapter.build(config, [[folded]], np.float64), x, h0)
    outputs, h_last = gru(x, params, DOCUMENTED, h0=h0[0])  # the unfolded parameters
    _assert_close(observed.outputs, outputs, 1e-12, "outputs")
    _assert_close(observed.h_last[0], h_last, 1e-12, "h_last")


def test_build_and_run_refuse_bad_arguments_with_the_fix(haiku_adapter):
    config = haiku_adapter.configuration("hk.GRU + dynamic_unroll")
    layers = _single_bias(random_layers(I, H))
    with pytest.raises(ValueError, match="needs 1 layer\\(s\\) x 1 direction\\(s\\), the parameters have 2 x 1"):
        haiku_adapter.build(config, _single_bias(random_layers(I, H, num_layers=2)), np.float32)
    with pytest.raises(ValueError, match="dtype float16 is not supported"):
        haiku_adapter.build(config, layers, np.float16)
    layer = haiku_adapter.build(config, layers, np.float32)
    x, h0 = _probe(dtype=np.float32)
    with pytest.raises(TypeError, match="x has dtype float64 but the layer computes in float32.*astype"):
        haiku_adapter.run(layer, x.astype(np.float64))
    with pytest.raises(ValueError, match="x has 2 features per step .* input_size=3"):
        haiku_adapter.run(layer, x[:, :, :2])
    with pytest.raises(ValueError, match="h0 has shape \\(3, 4\\).*\\(1, 3, 4\\).*h0\\[None\\]"):
        haiku_adapter.run(layer, x, h0[0])
    bad = x.copy()
    bad[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match="x holds 1 non-finite value.*\\(1, 2, 0\\)"):
        haiku_adapter.run(layer, bad)
    with pytest.raises(TypeError, match="params mapping.*extract"):
        haiku_adapter.run(layer.params, x)
    with pytest.raises(TypeError, match="expected a HaikuGRU"):
        haiku_adapter.describe(object())
    with pytest.raises(ValueError, match="no hk.GRU parameters"):
        haiku_adapter.extract({"linear": {"w": np.zeros((2, 2)), "b": np.zeros(2)}})


# ----------------------------------------------------------------- Haiku's own semantics, measured


def test_reverse_unroll_keeps_outputs_on_the_input_time_axis_and_ends_at_step_zero(haiku_adapter):
    layers = _single_bias(random_layers(I, H, seed=2))
    forward = haiku_adapter.build(haiku_adapter.configuration("hk.GRU + dynamic_unroll"), layers, np.float32)
    backward = haiku_adapter.build(haiku_adapter.configuration("hk.GRU + dynamic_unroll(reverse=True)"), layers,
                                   np.float32)
    x, h0 = _probe(dtype=np.float32)
    flipped = haiku_adapter.run(forward, np.ascontiguousarray(x[:, ::-1]), h0)
    reversed_run = haiku_adapter.run(backward, x, h0)
    _assert_close(reversed_run.outputs, flipped.outputs[:, ::-1], 1e-6, "reverse=True outputs vs flipped forward")
    _assert_close(reversed_run.h_last, flipped.h_last, 1e-6, "reverse=True h_last vs flipped forward")
    _assert_close(reversed_run.h_last[0], reversed_run.outputs[:, 0], 0.0, "h_last is the output at step 0")


def test_reset_core_restarts_from_zeros_not_from_h0(haiku_adapter):
    config = haiku_adapter.configuration("hk.ResetCore(GRU) + dynamic_unroll")
    (params,), = _single_bias(random_layers(I, H, seed=4))
    layer = haiku_adapter.build(config, [[params]], np.float32)
    x, h0 = _probe(dtype=np.float32)
    should_reset = np.zeros((B, T), bool)
    should_reset[1, 3] = True
    outputs, h_last = layer.transformed.apply(layer.params, x, h0, should_reset)
    outputs, h_last = np.asarray(outputs), np.asarray(h_last)
    untouched, _ = gru(x, params, DOCUMENTED, h0=h0[0])
    _assert_close(outputs[[0, 2]], untouched[[0, 2]], 1e-6, "rows without a reset")
    _assert_close(outputs[1, :3], untouched[1, :3], 1e-6, "row 1 before its reset")
    restarted, restarted_h = gru(x[1:2, 3:], params, DOCUMENTED, h0=np.zeros((1, H)))
    _assert_close(outputs[1, 3:], restarted[0], 1e-6, "row 1 from its reset: a fresh start from zeros")
    _assert_close(h_last[0, 1], restarted_h[0], 1e-6, "row 1 final state")
    from_h0, _ = gru(x[1:2, 3:], params, DOCUMENTED, h0=h0[0, 1:2])
    assert np.max(np.abs(outputs[1, 3:] - from_h0[0])) > 1e-2, "the reset restarted from h0, not from zeros"


def test_deep_rnn_with_skip_connections_feeds_x_to_every_layer_and_concatenates_outputs(haiku_adapter, hk):
    """Not a row (reference.gru_stack does not model skip connections): measured here by hand."""
    import jax.numpy as jnp

    from adapters.haiku_gru import to_haiku

    first, = _single_bias(random_layers(I, H, seed=6))[0]
    second, = _single_bias(random_layers(I + H, H, seed=7))[0]

    def forward(x, h0):
        core = hk.deep_rnn_with_skip_connections([hk.GRU(H, name="layer_0"), hk.GRU(H, name="layer_1")])
        return hk.dynamic_unroll(core, x, (h0[0], h0[1]), time_major=False)

    transformed = hk.without_apply_rng(hk.transform(forward))
    params = {f"layer_{k}": {key: jnp.asarray(value) for key, value in to_haiku(p).items()}
              for k, p in enumerate((first.astype(np.float32), second.astype(np.float32)))}
    x, h0 = _probe(slots=2, dtype=np.float32)
    outputs, (h_first, h_second) = transformed.apply(params, x, h0)
    out0, last0 = gru(x, first, DOCUMENTED, h0=h0[0])
    out1, last1 = gru(np.concatenate([x, out0], axis=-1), second, DOCUMENTED, h0=h0[1])
    _assert_close(outputs, np.concatenate([out0, out1], axis=-1), 1e-6, "skip-connection outputs")
    _assert_close(h_first, last0, 1e-6, "layer 0 final state")
    _assert_close(h_second, last1, 1e-6, "layer 1 final state")


def test_deep_rnn_is_a_plain_stack(haiku_adapter):
    config = haiku_adapter.configuration("hk.DeepRNN([GRU, GRU]) + dynamic_unroll")
    layers = _single_bias(random_layers(I, H, num_layers=2, seed=8))
    x, h0 = _probe(slots=2, dtype=np.float32)
    observed = haiku_adapter.run(haiku_adapter.build(config, layers, np.float32), x, h0)
    outputs, h_last = gru_stack(x, layers, DOCUMENTED, h0=h0)
    _assert_close(observed.outputs, outputs, 1e-6, "DeepRNN outputs (the last layer's)")
    _assert_close(observed.h_last, h_last, 1e-6, "DeepRNN states, one per layer")


# ----------------------------------------------------------------- precision


def test_finding_float64_without_x64_silently_computes_in_float32(haiku_adapter, hk):
    """What a user gets: hk.GRU casts the input with jnp.asarray and makes its parameters in the input's
    dtype (recurrent.py:568, :575-579), so float64 NumPy input becomes float32 without a warning."""
    import jax

    def forward(x):
        core = hk.GRU(H)
        return hk.dynamic_unroll(core, x, core.initial_state(x.shape[0]), time_major=False)

    transformed = hk.transform(forward)
    x, _ = _probe()
    assert not jax.config.jax_enable_x64, "this test describes JAX's default; something turned x64 on globally"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        params = jax.jit(transformed.init)(jax.random.PRNGKey(0), x)
        outputs, h_last = jax.jit(transformed.apply)(params, None, x)
    assert params["gru"]["w_i"].dtype == np.float32 and outputs.dtype == np.float32, (
        params["gru"]["w_i"].dtype, outputs.dtype)
    # The adapter's rows show the same as a precision finding; the x64 row computes in float64.
    layers = _single_bias(random_layers(I, H, seed=9))
    plain = haiku_adapter.run(haiku_adapter.build(haiku_adapter.configuration("hk.GRU + dynamic_unroll"), layers,
                                                  np.float64), x, _probe()[1])
    x64 = haiku_adapter.run(haiku_adapter.build(haiku_adapter.configuration("hk.GRU + dynamic_unroll + x64"), layers,
                                                np.float64), x, _probe()[1])
    expected, _ = gru(x, layers[0][0], DOCUMENTED, h0=_probe()[1][0])
    assert plain.outputs.dtype == np.float32 and x64.outputs.dtype == np.float64
    plain_error, x64_error = (float(np.max(np.abs(r.outputs - expected))) for r in (plain, x64))
    assert 1e-9 < plain_error < 1e-5 and x64_error < 1e-13, (plain_error, x64_error)


def test_finding_initial_state_ignores_the_parameters_dtype_under_x64(hk):
    """recurrent.py:597: ``jnp.zeros([hidden_size])`` in JAX's default dtype, float64 under x64, so a
    float32 GRU started from its own initial_state returns float64."""
    import jax

    def forward(x):
        core = hk.GRU(H)
        return hk.dynamic_unroll(core, x, core.initial_state(x.shape[0]), time_major=False)

    transformed = hk.transform(forward)
    x, _ = _probe(dtype=np.float32)
    with jax.enable_x64(True):
        params = jax.jit(transformed.init)(jax.random.PRNGKey(0), x)
        outputs, h_last = jax.jit(transformed.apply)(params, None, x)
        assert params["gru"]["w_i"].dtype == np.float32
        assert outputs.dtype == np.float64 and h_last.dtype == np.float64, (outputs.dtype, h_last.dtype)
