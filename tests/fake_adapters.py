"""Deliberately wrong 'frameworks', computed with the reference, to prove the checks can fail."""

from __future__ import annotations

import numpy as np

from adapters import Adapter, ForwardResult, LayerConfig
from reference import Convention, GRUParams, flip_update_weighting, gru_stack
from reference.params import FIELDS


class ReferenceBackedAdapter(Adapter):
    """A 'framework' whose layer is just (convention, layers, transform) run through the reference."""

    name = "fake"

    def __init__(self, computes: Convention, claims: Convention, transform=lambda p: p, name="fake"):
        self.computes, self.claims, self.transform, self.name = computes, claims, transform, name

    def versions(self):
        return {"fake": "0"}

    def configurations(self):
        return [LayerConfig(framework=self.name, name="FakeGRU", claimed=self.claims)]

    def build(self, config, layers, dtype):
        return [[self.transform(p) for p in layer] for layer in layers]

    def extract(self, layer):
        return layer

    def describe(self, layer):
        return self.configurations()[0]

    def run(self, layer, x, h0=None, mask=None):
        outputs, h_last = gru_stack(x, layer, self.computes, h0=h0, mask=mask, dtype=x.dtype)
        return ForwardResult(outputs, h_last)


def swap_reset_and_update(params: GRUParams) -> GRUParams:
    return params.replace(W_z=params.W_r, W_r=params.W_z, U_z=params.U_r, U_r=params.U_z,
                          b_z=params.b_r, b_r=params.b_z, c_z=params.c_r, c_r=params.c_z)


PREVIOUS_AFTER = Convention("z_on_previous", "after")
# What the registry finds when a test points it at this module: a port that silently flipped z.
ADAPTER = ReferenceBackedAdapter(Convention("z_on_candidate", "after"), PREVIOUS_AFTER, name="fake")


class LowPrecisionAdapter(ReferenceBackedAdapter):
    """Right formula, but computed in float32 whatever was asked (as JAX does without x64)."""

    def run(self, layer, x, h0=None, mask=None):
        x32 = x.astype("float32")
        layers32 = [[p.astype("float32") for p in layer_params] for layer_params in layer]
        outputs, h_last = gru_stack(x32, layers32, self.computes, h0=None if h0 is None else h0.astype("float32"),
                                    mask=mask, dtype="float32")
        return ForwardResult(outputs.astype(x.dtype), h_last.astype(x.dtype))


class CrashingAdapter(ReferenceBackedAdapter):
    """Builds, then fails to run, as a broken install would."""

    def run(self, layer, x, h0=None, mask=None):
        raise RuntimeError("kernel not registered for this dtype")


class ReferenceGradientsAdapter(ReferenceBackedAdapter):
    """Right forward and right backward: the reference's own gradients (the meta-tests' control)."""

    def gradients(self, layer, x, h0=None, mask=None, d_outputs=None, d_h_last=None):
        from reference.backward import gru_stack_grad

        return gru_stack_grad(x, layer, self.computes, h0=h0, mask=mask, d_outputs=d_outputs, d_h_last=d_h_last,
                              dtype=x.dtype)


class DroppedBiasGradientAdapter(ReferenceGradientsAdapter):
    """Right forward; its backward loses one bias's gradient (``dropped``, zero), as a port that forgot
    to register a parameter would."""

    def __init__(self, *args, dropped: str = "c_h", **kwargs):
        super().__init__(*args, **kwargs)
        self.dropped = dropped

    def gradients(self, layer, x, h0=None, mask=None, d_outputs=None, d_h_last=None):
        from reference.backward import StackGradients

        right = super().gradients(layer, x, h0, mask, d_outputs, d_h_last)
        layers = [[p.replace(**{self.dropped: np.zeros_like(getattr(p, self.dropped))}) for p in layer_grads]
                  for layer_grads in right.layers]
        return StackGradients(layers, right.x, right.h0)


class DetachedResetGateAdapter(ReferenceBackedAdapter):
    """Right forward (the reference's); its backward is torch autograd of the same GRU written in torch
    ops with the reset gate detached, so no gradient flows through ``r``: a custom kernel that forgot
    the ``dr`` term. Single layer, single direction, no mask; computes z_on_previous / reset-after."""

    def gradients(self, layer, x, h0=None, mask=None, d_outputs=None, d_h_last=None):
        import torch

        from reference.backward import StackGradients

        assert self.computes == PREVIOUS_AFTER and len(layer) == 1 and len(layer[0]) == 1 and mask is None
        params = layer[0][0]
        tensors = {name: torch.tensor(getattr(params, name), requires_grad=True) for name in FIELDS}
        x_t = torch.tensor(x, requires_grad=True)
        h0_t = torch.tensor(np.zeros((1, x.shape[0], params.hidden_size), x.dtype) if h0 is None else h0,
                            requires_grad=True)
        p = tensors
        h, outputs = h0_t[0], []
        for t in range(x.shape[1]):
            xt = x_t[:, t]
            z = torch.sigmoid(xt @ p["W_z"] + p["b_z"] + h @ p["U_z"] + p["c_z"])
            r = torch.sigmoid(xt @ p["W_r"] + p["b_r"] + h @ p["U_r"] + p["c_r"]).detach()  # the bug
            n = torch.tanh(xt @ p["W_h"] + p["b_h"] + r * (h @ p["U_h"] + p["c_h"]))
            h = z * h + (1 - z) * n
            outputs.append(h)
        loss = (torch.stack(outputs, dim=1) * torch.tensor(d_outputs)).sum() if d_outputs is not None else 0
        loss = loss + (h[None] * torch.tensor(d_h_last)).sum()
        loss.backward()
        # No path reaches W_r, U_r, b_r, c_r at all now: autograd leaves their .grad None, i.e. zero.
        grads = GRUParams(**{name: np.zeros_like(getattr(params, name)) if tensors[name].grad is None
                             else tensors[name].grad.numpy() for name in FIELDS})
        return StackGradients([[grads]], x_t.grad.numpy(), h0_t.grad.numpy())


# What the registry finds at ``tests.fake_adapters:DROPPED_BIAS_ADAPTER``: right formula, c_h's gradient lost.
DROPPED_BIAS_ADAPTER = DroppedBiasGradientAdapter(PREVIOUS_AFTER, PREVIOUS_AFTER, name="fake", dropped="c_h")
