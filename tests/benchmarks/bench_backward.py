"""Backward passes on the same shapes and inputs: ``reference.gru_grad`` (its forward tape included)
and torch autograd through ``nn.GRU`` (forward and backward), for the loss ``sum(outputs * G) + sum(h_last * K)``;
the reference at growing sequence lengths (linear time means a constant time per step), and its peak
memory against the activations its forward stores (linear memory means a constant per step).

Target (issue 12): reference / torch <= 2 at batch 32 x 128 steps x 256 -> 256, float32, side by side in one
run; ``make bench`` prints the ratio. Speed is reported, never asserted."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from reference import Convention, gru_grad, layouts

from ..conftest import adapter_or_skip
from .conftest import SHAPES, thread_counts

CONVENTION = Convention("z_on_previous", "after")
CASES = [pytest.param("batch32-128steps-256", dtype, id=f"batch32-128steps-256-{np.dtype(dtype).name}")
         for dtype in (np.float32, np.float64)]


def _loss_gradients(x, hidden, dtype):
    rng = np.random.default_rng(4)
    return (rng.normal(size=(*x.shape[:2], hidden)).astype(dtype), rng.normal(size=(x.shape[0], hidden)).astype(dtype))


@pytest.mark.parametrize("shape,dtype", CASES)
def bench_reference_backward(benchmark, workload, shape, dtype):
    params, x, h0 = workload(shape, dtype)
    G, K = _loss_gradients(x, params.hidden_size, dtype)
    benchmark.group = f"backward {shape} {np.dtype(dtype).name}"
    benchmark.extra_info.update(shape=SHAPES[shape], dtype=np.dtype(dtype).name, threads=thread_counts())
    grads = benchmark(gru_grad, x, params, CONVENTION, h0=h0, d_outputs=G, d_h_last=K, dtype=dtype)
    assert np.isfinite(grads.params.U_h).all() and grads.x.shape == x.shape


@pytest.mark.parametrize("shape,dtype", CASES)
def bench_torch_autograd(benchmark, workload, shape, dtype):
    adapter_or_skip("torch")
    import torch

    params, x, h0 = workload(shape, dtype)
    G, K = _loss_gradients(x, params.hidden_size, dtype)
    torch_dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[np.dtype(dtype)]
    module = torch.nn.GRU(params.input_size, params.hidden_size, batch_first=True, dtype=torch_dtype)
    with torch.no_grad():
        for name, array in layouts.to_torch(params).items():
            getattr(module, f"{name}_l0").copy_(torch.from_numpy(array))
    inputs = torch.from_numpy(x).requires_grad_(True)
    state, G_t, K_t = torch.from_numpy(h0)[None].requires_grad_(True), torch.from_numpy(G), torch.from_numpy(K)

    def forward_and_backward():
        module.zero_grad()
        outputs, h_n = module(inputs, state)
        ((outputs * G_t).sum() + (h_n[0] * K_t).sum()).backward()
        return module.weight_hh_l0.grad

    benchmark.group = f"backward {shape} {np.dtype(dtype).name}"
    benchmark.extra_info.update(shape=SHAPES[shape], dtype=np.dtype(dtype).name, threads=thread_counts())
    grad = benchmark(forward_and_backward)
    # Same gradients as the reference (torch's rows are r|z|n; compare the candidate's recurrent block).
    expected = gru_grad(x, params, CONVENTION, h0=h0, d_outputs=G, d_h_last=K, dtype=np.float64).params.U_h
    np.testing.assert_allclose(grad[2 * params.hidden_size:].numpy().T, expected, rtol=1e-2, atol=1e-2)


LINEARITY_STEPS = [64, 128, 256]


@pytest.mark.parametrize("steps", LINEARITY_STEPS)
def bench_reference_backward_steps(benchmark, workload, steps):
    """batch 32, 256 -> 256, float32, at 64/128/256 steps: the summary prints us/step (a constant when linear)."""
    params, x, h0 = _long_workload(workload, max(LINEARITY_STEPS))
    x = x[:, :steps]
    G, K = _loss_gradients(x, params.hidden_size, np.float32)
    benchmark.group = "reference backward linearity batch32-256 float32"
    benchmark.name = f"bench_reference_backward_steps_{steps}"
    benchmark.extra_info.update(steps=steps, threads=thread_counts())
    grads = benchmark(gru_grad, x, params, CONVENTION, h0=h0, d_outputs=G, d_h_last=K, dtype=np.float32)
    assert grads.x.shape[1] == steps


def _long_workload(workload, steps):
    """The batch32-128steps-256 parameters, with inputs long enough for ``steps``."""
    params, x, h0 = workload("batch32-128steps-256", np.float32)
    repeats = -(-steps // x.shape[1])
    return params, np.concatenate([x] * repeats, axis=1)[:, :steps], h0


def _peak_bytes(function) -> int:
    """Peak bytes NumPy allocated while ``function`` ran (NumPy reports its buffers to tracemalloc)."""
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def bench_reference_backward_memory(benchmark, workload):
    """Peak memory of ``gru_grad`` at 64/128/256 steps against what its forward stores (z|r, h_cand, q and
    the states: 5 x time x batch x hidden). Issue 12 asks for no more than that plus O(batch x hidden) a
    step: the peak must grow by a constant per step (deterministic, hence asserted), and that constant is
    printed in units of one step's state (batch x hidden values)."""
    params, x_long, h0 = _long_workload(workload, max(LINEARITY_STEPS))
    batch, _, input_size = x_long.shape
    hidden, itemsize = params.hidden_size, np.dtype(np.float32).itemsize
    state_bytes = batch * hidden * itemsize  # one step's (batch, hidden) state
    peaks = {}
    for steps in LINEARITY_STEPS:
        x = np.ascontiguousarray(x_long[:, :steps])
        G, K = _loss_gradients(x, hidden, np.float32)
        peaks[steps] = _peak_bytes(lambda: gru_grad(x, params, CONVENTION, h0=h0, d_outputs=G, d_h_last=K, dtype=np.float32))
    lengths = sorted(peaks)
    growth = [(peaks[b] - peaks[a]) / (b - a) / state_bytes for a, b in zip(lengths, lengths[1:])]
    report = {steps: {"peak_mb": peaks[steps] / 2**20, "peak_over_stored": peaks[steps] / (5 * steps * state_bytes),
                      "states_per_step": growth[-1]} for steps in lengths}
    benchmark.group = "reference backward memory batch32-256 float32"
    benchmark.extra_info.update(peak_per_step=report)
    # One round of the middle case, so the benchmark has a time; the numbers above are the point.
    x = np.ascontiguousarray(x_long[:, :128])
    G, K = _loss_gradients(x, hidden, np.float32)
    benchmark.pedantic(gru_grad, args=(x, params, CONVENTION), kwargs=dict(h0=h0, d_outputs=G, d_h_last=K, dtype=np.float32),
                       rounds=1, iterations=1)
    assert max(growth) <= 1.05 * min(growth), f"peak memory grows faster than linearly in the sequence: {report}"
    # A step costs: its 5 stored activations, its pre-activation gradients (4, reset-after), x reordered and dx
    # (input_size / hidden each; dx twice while it is transposed): 12 states a step here (input_size == hidden).
    bound = 5 + 4 + 3 * input_size / hidden
    assert max(growth) <= bound + 0.1, (f"peak memory grows by {max(growth):.2f} states a step, more than the "
                                        f"{bound:.0f} the tape, the gradients and dx account for: {report}")
