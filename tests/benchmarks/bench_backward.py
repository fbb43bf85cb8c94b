"""Backward passes on the same shapes and inputs: ``reference.gru_grad`` (its forward tape included)
and torch autograd through ``nn.GRU`` (forward and backward), for the loss ``sum(outputs * G) + sum(h_last * K)``;
the reference at growing sequence lengths (linear time means a constant time per step)."""

from __future__ import annotations

import numpy as np
import pytest

from reference import Convention, gru_grad, layouts

from ..conftest import adapter_or_skip
from .conftest import SHAPES

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
    grad = benchmark(forward_and_backward)
    # Same gradients as the reference (torch's rows are r|z|n; compare the candidate's recurrent block).
    expected = gru_grad(x, params, CONVENTION, h0=h0, d_outputs=G, d_h_last=K, dtype=np.float64).params.U_h
    np.testing.assert_allclose(grad[2 * params.hidden_size:].numpy().T, expected, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("steps", [2_500, 5_000, 10_000])
def bench_reference_backward_steps(benchmark, workload, steps):
    params, x, h0 = workload("batch1-10000steps-128", np.float32)
    x = x[:, :steps]
    G, K = _loss_gradients(x, params.hidden_size, np.float32)
    benchmark.group = "reference backward linearity batch1-128 float32"
    benchmark.name = f"bench_reference_backward_steps_{steps}"
    grads = benchmark(gru_grad, x, params, CONVENTION, h0=h0, d_outputs=G, d_h_last=K, dtype=np.float32)
    assert grads.x.shape[1] == steps
