"""PyTorch: ``nn.GRU`` (stacked, bidirectional, batch-first or time-major, bias-free, packed
variable-length input) and ``nn.GRUCell`` stepped over time.

Facts this module relies on, from ``torch/nn/modules/rnn.py`` (torch 2.13):
``weight_ih_l{k}{_reverse}`` is ``(W_ir|W_iz|W_in)`` of shape ``(3H, I)``, ``weight_hh_l{k}`` is
``(3H, H)``, biases ``(3H,)``; ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))`` and
``h' = (1 - z) * n + z * h``: z on previous, reset after. ``h_0``/``h_n`` are
``(D * num_layers, N, H)``, layer-major. ``pad_packed_sequence`` fills padding with zeros.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from reference import Convention, GRUParams, Layers, check_layers, layouts

from .base import Adapter, ForwardResult, LayerConfig, mask_lengths

CLAIMED = Convention("z_on_previous", "after")  # the nn.GRU / nn.GRUCell docstrings' equations
DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


def pin_numerics() -> None:
    # TF32 would round matmul inputs to 10 mantissa bits on Ampere+ GPUs and swamp float32 tolerances.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def _torch_dtype(dtype) -> torch.dtype:
    try:
        return DTYPES[np.dtype(dtype)]
    except KeyError:
        raise ValueError(f"dtype {np.dtype(dtype)} is not supported; use float32 or float64") from None


def _suffix(direction: int) -> str:
    return "_reverse" if direction else ""


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().copy()


def _config(name: str, **fields) -> LayerConfig:
    return LayerConfig(framework="torch", name=name, claimed=CLAIMED, **fields)


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
            _config("nn.GRUCell", options=(("cell", True),)),
        ]

    # ------------------------------------------------------------- building and extracting

    def build(self, config: LayerConfig, layers: Layers, dtype) -> nn.Module:
        num_layers, directions = check_layers(layers)
        if (num_layers, directions) != (config.num_layers, config.directions):
            raise ValueError(
                f"{config.label} needs {config.num_layers} layer(s) x {config.directions} direction(s), "
                f"the parameters have {num_layers} x {directions}"
            )
        first = layers[0][0]
        torch_dtype = _torch_dtype(dtype)
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
        if isinstance(layer, nn.GRUCell):
            biases = (_numpy(layer.bias_ih), _numpy(layer.bias_hh)) if layer.bias else (None, None)
            return [[layouts.from_torch(_numpy(layer.weight_ih), _numpy(layer.weight_hh), *biases)]]
        self._check_module(layer)
        stack = []
        for index in range(layer.num_layers):
            directions = []
            for direction in range(2 if layer.bidirectional else 1):
                tensor = lambda name: _numpy(getattr(layer, f"{name}_l{index}{_suffix(direction)}"))  # noqa: E731
                biases = (tensor("bias_ih"), tensor("bias_hh")) if layer.bias else (None, None)
                directions.append(layouts.from_torch(tensor("weight_ih"), tensor("weight_hh"), *biases))
            stack.append(directions)
        return stack

    @staticmethod
    def _check_module(layer) -> None:
        if not isinstance(layer, (nn.GRU, nn.GRUCell)):
            raise TypeError(f"expected torch.nn.GRU or torch.nn.GRUCell, got {type(layer).__name__}")

    def describe(self, layer: nn.Module) -> LayerConfig:
        self._check_module(layer)
        if isinstance(layer, nn.GRUCell):
            return _config("nn.GRUCell", bias=layer.bias, options=(("cell", True),))
        return _config(
            f"nn.GRU(num_layers={layer.num_layers}, bidirectional={layer.bidirectional}, "
            f"bias={layer.bias}, batch_first={layer.batch_first})",
            num_layers=layer.num_layers, bidirectional=layer.bidirectional, bias=layer.bias,
            options=(("batch_first", layer.batch_first),),
        )

    # ------------------------------------------------------------- running

    def run(self, layer: nn.Module, x, h0=None, mask=None) -> ForwardResult:
        self._check_module(layer)
        parameter = next(layer.parameters())
        x = np.asarray(x)
        if x.dtype != np.dtype(str(parameter.dtype).removeprefix("torch.")):
            raise TypeError(
                f"x has dtype {x.dtype} but the layer computes in {parameter.dtype}; "
                f"pass x.astype({str(parameter.dtype).replace('torch.', 'np.')})"
            )
        if getattr(layer, "dropout", 0) and layer.training:
            raise ValueError(
                f"the layer has dropout={layer.dropout} and is in training mode, so its outputs are random; "
                f"call .eval() on it first (this adapter never changes your model)"
            )
        as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(parameter.device)  # noqa: E731
        with torch.no_grad():
            if isinstance(layer, nn.GRUCell):
                return self._run_cell(layer, as_tensor(x), None if h0 is None else as_tensor(h0), mask)
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

    @staticmethod
    def _run_cell(cell: nn.GRUCell, x: torch.Tensor, h0, mask) -> ForwardResult:
        if mask is not None:
            raise ValueError("nn.GRUCell has no notion of padding; run it without a mask")
        h = None if h0 is None else h0[0]
        outputs = []
        for t in range(x.shape[1]):
            h = cell(x[:, t], h)
            outputs.append(h)
        return ForwardResult(_numpy(torch.stack(outputs, dim=1)), _numpy(h)[None])


pin_numerics()
ADAPTER = TorchAdapter()
