"""Forward passes on the same shapes and inputs: the NumPy reference, torch nn.GRU, Keras GRU, and the
bare matrix products a reset-after forward needs (the GEMM floor).

Target (issue 12): the float32 reference at batch 32 x 128 steps x 256 -> 256 no slower than torch
``nn.GRU`` (ratio <= 1.0), measured side by side in one run; ``make bench`` prints the ratios to torch and
to the GEMM floor with the thread counts. Speed is reported, never asserted."""

from __future__ import annotations

import numpy as np
import pytest

from reference import Convention, gru

from ..conftest import adapter_or_skip
from .conftest import SHAPES, thread_counts

CONVENTION = Convention("z_on_previous", "after")
CASES = [pytest.param(shape, dtype, id=f"{shape}-{np.dtype(dtype).name}")
         for shape in SHAPES for dtype in (np.float32, np.float64)]


@pytest.mark.parametrize("shape,dtype", CASES)
def bench_reference_forward(benchmark, workload, shape, dtype):
    params, x, h0 = workload(shape, dtype)
    benchmark.group = f"forward {shape} {np.dtype(dtype).name}"
    benchmark.extra_info.update(shape=SHAPES[shape], dtype=np.dtype(dtype).name, threads=thread_counts())
    outputs, h_last = benchmark(gru, x, params, CONVENTION, h0=h0, dtype=dtype)
    assert outputs.shape == (*x.shape[:2], params.hidden_size) and np.isfinite(h_last).all()


@pytest.mark.parametrize("shape,dtype", CASES)
def bench_torch_gru(benchmark, workload, shape, dtype):
    adapter = adapter_or_skip("torch")
    params, x, h0 = workload(shape, dtype)
    config = adapter.configuration("nn.GRU(batch_first=True)")
    layer = adapter.build(config, [[params]], dtype)
    benchmark.group = f"forward {shape} {np.dtype(dtype).name}"
    benchmark.extra_info.update(shape=SHAPES[shape], dtype=np.dtype(dtype).name, threads=thread_counts())
    result = benchmark(adapter.run, layer, x, h0[None])
    expected = gru(x, params, CONVENTION, h0=h0, dtype=dtype)[1]
    np.testing.assert_allclose(result.h_last[0], expected, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("shape,dtype", CASES)
def bench_keras_gru(benchmark, workload, shape, dtype):
    """Keras as ``model.predict`` runs it: the layer call traced once by ``tf.function`` (eager
    Keras steps through the time loop in Python, ~6 ms a step)."""
    adapter = adapter_or_skip("keras")
    import tensorflow as tf

    params, x, h0 = workload(shape, dtype)
    layer = adapter.build(adapter.configuration("GRU(reset_after=True)"), [[params]], dtype)
    compiled = tf.function(lambda inputs, state: layer(inputs, initial_state=[state]), reduce_retracing=True)
    inputs, state = tf.constant(x), tf.constant(h0)
    compiled(inputs, state)  # trace outside the timing
    benchmark.group = f"forward {shape} {np.dtype(dtype).name}"
    _, h_last = benchmark(compiled, inputs, state)
    expected = gru(x, params, CONVENTION, h0=h0, dtype=dtype)[1]
    np.testing.assert_allclose(np.asarray(h_last), expected, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("shape,dtype", CASES)
def bench_gemm_floor(benchmark, workload, shape, dtype):
    """Only the matrix products a reset-after forward needs (one input projection for all steps, one
    recurrent product a step), into preallocated buffers: the floor that elementwise work sits on."""
    params, x, h0 = workload(shape, dtype)
    batch, time, input_size = x.shape
    hidden = params.hidden_size
    W = np.asfortranarray(np.concatenate([params.W_z, params.W_r, params.W_h], axis=1))
    U = np.asfortranarray(np.concatenate([params.U_z, params.U_r, params.U_h], axis=1))
    x_rows = np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(time * batch, input_size)
    projection, recurrent = np.empty((time * batch, 3 * hidden), dtype), np.empty((batch, 3 * hidden), dtype)

    def gemms():
        np.matmul(x_rows, W, out=projection)
        for _ in range(time):
            np.matmul(h0, U, out=recurrent)
        return recurrent

    benchmark.group = f"forward {shape} {np.dtype(dtype).name}"
    assert np.isfinite(benchmark(gemms)).all()


@pytest.mark.parametrize("steps", [2_500, 5_000, 10_000])
def bench_reference_steps(benchmark, workload, steps):
    """Time per step must not grow with the sequence (the summary prints us/step)."""
    params, x, h0 = workload("batch1-10000steps-128", np.float32)
    benchmark.group = "reference linearity batch1-128 float32"
    benchmark.name = f"bench_reference_steps_{steps}"
    outputs, _ = benchmark(gru, x[:, :steps], params, CONVENTION, h0=h0, dtype=np.float32)
    assert outputs.shape[1] == steps
