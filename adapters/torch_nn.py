"""PyTorch: ``nn.GRU`` (stacked, bidirectional, batch-first or time-major, bias-free, packed
variable-length input) and ``nn.GRUCell`` stepped over time.

Facts this module relies on, from ``torch/nn/modules/rnn.py`` (torch 2.13.0):

- the formula, ``nn.GRU`` docstring rnn.py:1215-1218 (``nn.GRUCell`` rnn.py:1777-1780):
  ``n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_(t-1) + b_hn))``, ``h_t = (1 - z_t) * n_t + z_t * h_(t-1)``:
  z on previous, reset after (the note at rnn.py:1306-1323 contrasts it with the original paper's reset before);
- layout, rnn.py:1284-1292: ``weight_ih_l{k}{_reverse}`` is ``(W_ir|W_iz|W_in)`` of shape ``(3H, I)``
  for k = 0 and ``(3H, D * H)`` above, ``weight_hh_l{k}`` ``(W_hr|W_hz|W_hn)`` ``(3H, H)``, biases
  ``(b_ir|b_iz|b_in)`` and ``(b_hr|b_hz|b_hn)`` ``(3H,)``; ``bias=False`` creates no bias at all
  (rnn.py:189-206); ``nn.GRUCell`` holds ``weight_ih``/``weight_hh``/``bias_ih``/``bias_hh`` in the
  same layout, rnn.py:1809-1814;
- ``h_0``/``h_n`` are ``(D * num_layers, N, H)`` (rnn.py:1257, 1279), layer-major with forward
  and backward as directions 0 and 1 (rnn.py:1299);
- ``pad_packed_sequence`` fills padding with ``padding_value=0.0`` (``torch/nn/utils/rnn.py:330``).

``run`` validates what it is given (x's rank, feature size, dtype; h0's shape and dtype; the mask's
shape, dtype and right padding; non-finite values) before calling torch, so a bad input reads as
our message, not as a torch traceback; ``build``/``extract``/``describe`` refuse any module other
than ``nn.GRU``/``nn.GRUCell``, naming its class. Nothing here changes the user's module.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from reference import Convention, GRUParams, Layers, check_layers, layouts
from reference.params import check_dtype, check_float_array, describe_value

from .base import ALL_BIASES, Adapter, ForwardResult, LayerConfig, mask_lengths

CLAIMED = Convention("z_on_previous", "after")  # the nn.GRU / nn.GRUCell docstrings' equations
DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}

SOURCE = "torch/nn/modules/rnn.py"
GRU_CLAIM = (
    f"{SOURCE}:1215-1218 (torch 2.13.0), nn.GRU docstring: "
    r"r_t = \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{(t-1)} + b_{hr}); "
    r"z_t = \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{(t-1)} + b_{hz}); "
    r"n_t = \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{(t-1)}+ b_{hn})); "
    r"h_t = (1 - z_t) \odot n_t + z_t \odot h_{(t-1)}"
)
CELL_CLAIM = (
    f"{SOURCE}:1777-1780 (torch 2.13.0), nn.GRUCell docstring: "
    r"r = \sigma(W_{ir} x + b_{ir} + W_{hr} h + b_{hr}); "
    r"z = \sigma(W_{iz} x + b_{iz} + W_{hz} h + b_{hz}); "
    r"n = \tanh(W_{in} x + b_{in} + r \odot (W_{hn} h + b_{hn})); "
    r"h' = (1 - z) \odot n + z \odot h"
)
GRU_WEIGHTS = (
    "weight_ih_l{k} (3H, I) for k = 0, (3H, D*H) above, rows r|z|n (W_ir|W_iz|W_in = W_r|W_z|W_h transposed); "
    "weight_hh_l{k} (3H, H) rows r|z|n (U_r|U_z|U_h transposed); _reverse suffix for the backward direction"
)
GRU_BIASES = "bias_ih_l{k} (3H,) b_r|b_z|b_h; bias_hh_l{k} (3H,) c_r|c_z|c_h"
GRU_STATES = "h_0/h_n (D*num_layers, N, H), layer-major, forward then backward (rnn.py:1257, 1284-1299)"
CELL_WEIGHTS = "weight_ih (3H, I) rows r|z|n; weight_hh (3H, H) rows r|z|n"
CELL_BIASES = "bias_ih (3H,) b_r|b_z|b_h; bias_hh (3H,) c_r|c_z|c_h"
CELL_STATES = "h (N, H), stepped over time here (rnn.py:1809-1814)"


def _layout(cell: bool, bias: bool) -> str:
    weights, biases, states = (CELL_WEIGHTS, CELL_BIASES, CELL_STATES) if cell else (GRU_WEIGHTS, GRU_BIASES, GRU_STATES)
    return f"{weights}; {biases if bias else 'no biases (bias=False)'}; {states}"


def _torch_dtype(dtype) -> torch.dtype:
    return DTYPES[check_dtype(dtype)]


def _suffix(direction: int) -> str:
    return "_reverse" if direction else ""


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().copy()


def _config(name: str, bias: bool = True, cell: bool = False, **fields) -> LayerConfig:
    options = (("cell", True),) if cell else fields.pop("options", ())
    return LayerConfig(
        framework="torch", name=name, claimed=CLAIMED, bias=bias, biases=ALL_BIASES if bias else (),
        claim_source=CELL_CLAIM if cell else GRU_CLAIM, layout=_layout(cell, bias), options=options, **fields,
    )


def _check_module(layer) -> None:
    """``layer`` must be an ``nn.GRU`` or ``nn.GRUCell`` in float32 or float64; anything else is named."""
    if isinstance(layer, (nn.GRU, nn.GRUCell)):
        dtype = next(layer.parameters()).dtype
        if dtype not in DTYPES.values():
            raise TypeError(
                f"the {type(layer).__name__}'s parameters are {dtype}; supported dtypes are torch.float32 and "
                f"torch.float64: run a copy converted with copy.deepcopy(module).float() or .double() "
                f"(this adapter never changes your module)"
            )
        return
    if isinstance(layer, nn.Module):
        cls = type(layer)
        inner = [name for name, sub in layer.named_modules() if name and isinstance(sub, (nn.GRU, nn.GRUCell))]
        hint = f"; it contains a GRU at {inner[0]!r}: pass that submodule" if inner else ""
        raise TypeError(
            f"expected torch.nn.GRU or torch.nn.GRUCell, got {cls.__name__} ({cls.__module__}.{cls.__qualname__}), "
            f"which is not a GRU{hint}"
        )
    raise TypeError(f"expected a torch.nn.GRU or torch.nn.GRUCell module, got {describe_value(layer)}")


def _module_dtype(layer: nn.Module) -> np.dtype:
    return np.dtype(str(next(layer.parameters()).dtype).removeprefix("torch."))


def _check_mask(mask, batch: int, time: int) -> np.ndarray:
    if isinstance(mask, torch.Tensor):
        raise TypeError("mask is a torch tensor; pass a NumPy bool array: mask.detach().cpu().numpy()")
    if isinstance(mask, (str, bytes, dict)):
        raise TypeError(f"mask is {describe_value(mask)}; expected a (batch, time) bool NumPy array")
    try:
        mask = np.asarray(mask)
    except (ValueError, TypeError) as error:
        raise ValueError(f"mask cannot be read as a (batch, time) bool array ({error}); a ragged list?") from None
    if mask.dtype != np.bool_:
        raise TypeError(f"mask has dtype {mask.dtype}; expected bool (True = real step, False = padding): "
                        f"pass mask.astype(bool) if it holds 0/1")
    if mask.shape != (batch, time):
        raise ValueError(f"mask has shape {mask.shape}; expected (batch, time) = {(batch, time)}")
    mask_lengths(mask)  # right padding, and no empty sequence: pack_padded_sequence needs both
    return mask


class TorchAdapter(Adapter):
    name = "torch"

    def versions(self) -> dict[str, str]:
        return {"torch": torch.__version__}

    def configurations(self) -> list[LayerConfig]:
        packed = {"masked": True, "masked_output": "zero"}
        return [
            _config("nn.GRU(batch_first=True)", options=(("batch_first", True),)),
            _config("nn.GRU(batch_first=False)", options=(("batch_first", False),)),
            _config("nn.GRU(num_layers=2)", num_layers=2, options=(("batch_first", True),)),
            _config("nn.GRU(bidirectional=True)", bidirectional=True, options=(("batch_first", True),)),
            _config("nn.GRU(num_layers=2, bidirectional=True)", num_layers=2, bidirectional=True,
                    options=(("batch_first", False),)),
            _config("nn.GRU(bias=False)", bias=False, options=(("batch_first", True),)),
            _config("nn.GRU + PackedSequence", options=(("batch_first", True),), **packed),
            _config("nn.GRU(bidirectional=True) + PackedSequence", bidirectional=True, num_layers=2,
                    options=(("batch_first", True),), **packed),
            _config("nn.GRUCell", cell=True),
        ]

    # ------------------------------------------------------------- building and extracting

    def build(self, config: LayerConfig, layers: Layers, dtype) -> nn.Module:
        if not isinstance(config, LayerConfig):
            raise TypeError(f"config is {describe_value(config)}; expected a LayerConfig: "
                            f"adapters.get('torch').configuration(name), names from `gru-equiv list`")
        if config.framework != self.name:
            raise ValueError(f"config {config.label} is a {config.framework} configuration; this adapter builds "
                             f"torch ones: {', '.join(c.name for c in self.configurations())}")
        torch_dtype = _torch_dtype(dtype)
        num_layers, directions = check_layers(layers)
        if (num_layers, directions) != (config.num_layers, config.directions):
            raise ValueError(
                f"{config.label} needs {config.num_layers} layer(s) x {config.directions} direction(s), "
                f"the parameters have {num_layers} x {directions}"
            )
        first = layers[0][0]
        if config.option("cell"):
            module = nn.GRUCell(first.input_size, first.hidden_size, bias=config.bias, dtype=torch_dtype)
            tensors = {name: getattr(module, name) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
            self._load(tensors, first, config.bias)
            return module
        module = nn.GRU(
            first.input_size, first.hidden_size, num_layers=num_layers, bias=config.bias,
            batch_first=config.option("batch_first", True), bidirectional=config.bidirectional, dtype=torch_dtype,
        )
        for index, layer in enumerate(layers):
            for direction, params in enumerate(layer):
                tensors = {
                    name: getattr(module, f"{name}_l{index}{_suffix(direction)}", None)
                    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                }
                self._load(tensors, params, config.bias)
        return module

    @staticmethod
    def _load(tensors: dict, params: GRUParams, bias: bool) -> None:
        packed = layouts.to_torch(params, bias=bias)
        with torch.no_grad():
            for name, array in packed.items():
                target = tensors[name]
                target.copy_(torch.from_numpy(np.ascontiguousarray(array)).to(target.dtype))

    def extract(self, layer: nn.Module) -> list[list[GRUParams]]:
        _check_module(layer)
        if isinstance(layer, nn.GRUCell):
            names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")[: 4 if layer.bias else 2]
            return [[self._params(type(layer).__name__, [(name, getattr(layer, name)) for name in names])]]
        stack = []
        for index in range(layer.num_layers):
            directions = []
            for direction in range(2 if layer.bidirectional else 1):
                names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")[: 4 if layer.bias else 2]
                attributes = [f"{name}_l{index}{_suffix(direction)}" for name in names]
                directions.append(self._params("GRU", [(a, getattr(layer, a)) for a in attributes]))
            stack.append(directions)
        return stack

    @staticmethod
    def _params(owner: str, tensors: list[tuple[str, torch.Tensor]]) -> GRUParams:
        try:
            return layouts.from_torch(*(_numpy(tensor) for _, tensor in tensors))
        except (TypeError, ValueError) as error:  # say which of the module's own tensors it was
            names = ", ".join(name for name, _ in tensors)
            raise type(error)(f"{owner} ({names}): {error}") from None

    def describe(self, layer: nn.Module) -> LayerConfig:
        _check_module(layer)
        if isinstance(layer, nn.GRUCell):
            return _config(f"nn.GRUCell(bias={layer.bias})", bias=layer.bias, cell=True)
        return _config(
            f"nn.GRU(num_layers={layer.num_layers}, bidirectional={layer.bidirectional}, "
            f"bias={layer.bias}, batch_first={layer.batch_first})",
            num_layers=layer.num_layers, bidirectional=layer.bidirectional, bias=layer.bias,
            options=(("batch_first", layer.batch_first),),
        )

    # ------------------------------------------------------------- running

    def _check_run_inputs(self, layer: nn.Module, x, h0, mask):
        """What ``run`` gets, checked against the module before torch sees it; returns NumPy arrays."""
        computes = _module_dtype(layer)
        x = check_float_array("x", x)
        if x.ndim != 3:
            raise ValueError(f"x has shape {x.shape}; expected (batch, time, input_size) = (batch, time, "
                             f"{layer.input_size}), batch first whatever the module's batch_first says")
        batch, time, features = x.shape
        if features != layer.input_size:
            raise ValueError(f"x has {features} features (shape {x.shape}) but the module's input_size is "
                             f"{layer.input_size}")
        if batch == 0 or time == 0:
            raise ValueError(f"x has shape {x.shape}: at least one sequence (batch >= 1) of one timestep is needed")
        if x.dtype != computes:
            raise TypeError(
                f"x has dtype {x.dtype} but the layer computes in torch.{computes}; pass x.astype(np.{computes})"
            )
        if h0 is not None:
            h0 = check_float_array("h0", h0)
            if isinstance(layer, nn.GRUCell):
                expected, meaning = (1, batch, layer.hidden_size), "(1, batch, hidden_size): a GRUCell has one state slot"
            else:
                slots = layer.num_layers * (2 if layer.bidirectional else 1)
                expected = (slots, batch, layer.hidden_size)
                meaning = "(num_layers * directions, batch, hidden_size)"
            if h0.shape != expected:
                raise ValueError(f"h0 has shape {h0.shape}; expected {meaning} = {expected}")
            if h0.dtype != computes:
                raise TypeError(
                    f"h0 has dtype {h0.dtype} but the layer computes in torch.{computes}; pass h0.astype(np.{computes})"
                )
        if mask is not None:
            if isinstance(layer, nn.GRUCell):
                raise ValueError("nn.GRUCell has no notion of padding; run it without a mask")
            mask = _check_mask(mask, batch, time)
        return x, h0, mask

    def run(self, layer: nn.Module, x, h0=None, mask=None) -> ForwardResult:
        _check_module(layer)
        x, h0, mask = self._check_run_inputs(layer, x, h0, mask)
        if getattr(layer, "dropout", 0) and layer.training:
            raise ValueError(
                f"the layer has dropout={layer.dropout} and is in training mode, so its outputs are random; "
                f"call .eval() on it first (this adapter never changes your model)"
            )
        device = next(layer.parameters()).device
        as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)  # noqa: E731
        with torch.no_grad():
            if isinstance(layer, nn.GRUCell):
                return self._run_cell(layer, as_tensor(x), None if h0 is None else as_tensor(h0))
            inputs = as_tensor(x) if layer.batch_first else as_tensor(x).transpose(0, 1)
            state = None if h0 is None else as_tensor(h0)
            if mask is None:
                outputs, h_n = layer(inputs, state)
            else:
                lengths = torch.from_numpy(mask_lengths(mask))
                packed = pack_padded_sequence(inputs, lengths, batch_first=layer.batch_first, enforce_sorted=False)
                packed_outputs, h_n = layer(packed, state)
                outputs, _ = pad_packed_sequence(packed_outputs, batch_first=layer.batch_first, total_length=x.shape[1])
            if not layer.batch_first:
                outputs = outputs.transpose(0, 1)
        return ForwardResult(_numpy(outputs), _numpy(h_n))

    def gradients(self, layer: nn.Module, x, h0=None, mask=None, d_outputs=None, d_h_last=None):
        """Autograd of ``sum(outputs * d_outputs) + sum(h_last * d_h_last)`` on a deep copy of ``layer``.

        ``outputs``/``h_last`` are what ``run`` returns (packed input pads outputs with zeros). The copy is
        put in training mode when it has no dropout (cuDNN differentiates only in training mode), so the
        user's module, its ``.grad`` and its mode are untouched. ``.grad`` of ``weight_ih_l{k}{_reverse}``
        etc. maps back to canonical ``GRUParams`` through ``layouts.from_torch`` (a linear map, so it maps
        gradients too); ``bias=False`` gives zero bias gradients. ``h0=None`` differentiates at zeros.
        """
        import copy

        from reference.backward import StackGradients

        _check_module(layer)
        x, h0, mask = self._check_run_inputs(layer, x, h0, mask)
        if getattr(layer, "dropout", 0) and layer.training:
            raise ValueError(
                f"the layer has dropout={layer.dropout} and is in training mode, so its outputs are random; "
                f"call .eval() on it first (this adapter never changes your model)"
            )
        module = copy.deepcopy(layer)
        module.train(not getattr(layer, "dropout", 0))
        module.zero_grad(set_to_none=True)
        for parameter in module.parameters():
            parameter.requires_grad_(True)
        device = next(module.parameters()).device
        dtype = next(module.parameters()).dtype
        as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=dtype)  # noqa: E731
        cell = isinstance(module, nn.GRUCell)
        slots = 1 if cell else module.num_layers * (2 if module.bidirectional else 1)
        x_t = as_tensor(x).requires_grad_(True)
        h0_t = (torch.zeros(slots, x.shape[0], module.hidden_size, dtype=dtype, device=device) if h0 is None
                else as_tensor(h0)).requires_grad_(True)
        with torch.enable_grad():
            if cell:
                h, steps = h0_t[0], []
                for t in range(x.shape[1]):
                    h = module(x_t[:, t], h)
                    steps.append(h)
                outputs, h_n = torch.stack(steps, dim=1), h[None]
            else:
                inputs = x_t if module.batch_first else x_t.transpose(0, 1)
                if mask is None:
                    outputs, h_n = module(inputs, h0_t)
                else:
                    lengths = torch.from_numpy(mask_lengths(mask))
                    packed = pack_padded_sequence(inputs, lengths, batch_first=module.batch_first, enforce_sorted=False)
                    packed_outputs, h_n = module(packed, h0_t)
                    outputs, _ = pad_packed_sequence(packed_outputs, batch_first=module.batch_first,
                                                     total_length=x.shape[1])
                if not module.batch_first:
                    outputs = outputs.transpose(0, 1)
            loss = torch.zeros((), dtype=dtype, device=device)
            if d_outputs is not None:
                loss = loss + (outputs * as_tensor(d_outputs)).sum()
            if d_h_last is not None:
                loss = loss + (h_n * as_tensor(d_h_last)).sum()
            loss.backward()

        def grad(tensor: torch.Tensor) -> np.ndarray:
            return np.zeros(tuple(tensor.shape), _module_dtype(module)) if tensor.grad is None else _numpy(tensor.grad)

        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")[: 4 if module.bias else 2]
        if cell:
            layers = [[layouts.from_torch(*(grad(getattr(module, name)) for name in names))]]
        else:
            layers = [
                [layouts.from_torch(*(grad(getattr(module, f"{name}_l{index}{_suffix(direction)}")) for name in names))
                 for direction in range(2 if module.bidirectional else 1)]
                for index in range(module.num_layers)
            ]
        dx = np.zeros_like(x) if x_t.grad is None else _numpy(x_t.grad)
        dh0 = np.zeros(tuple(h0_t.shape), x.dtype) if h0_t.grad is None else _numpy(h0_t.grad)
        return StackGradients(layers, dx, dh0)

    @staticmethod
    def _run_cell(cell: nn.GRUCell, x: torch.Tensor, h0) -> ForwardResult:
        h = None if h0 is None else h0[0]
        outputs = []
        for t in range(x.shape[1]):
            h = cell(x[:, t], h)
            outputs.append(h)
        return ForwardResult(_numpy(torch.stack(outputs, dim=1)), _numpy(h)[None])


ADAPTER = TorchAdapter()
