"""Deliberately wrong 'frameworks', computed with the reference, to prove the checks can fail."""

from __future__ import annotations


from adapters import Adapter, ForwardResult, LayerConfig
from reference import Convention, GRUParams, flip_update_weighting, gru_stack


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
