"""PaddlePaddle: ``paddle.nn.GRU`` (batch- or time-major, stacked, ``direction="bidirect"``,
``bias_ih_attr``/``bias_hh_attr=False``, ``sequence_length``), ``paddle.nn.GRUCell`` stepped over
time, ``paddle.nn.RNN(GRUCell)`` (also ``is_reverse=True`` and bias-free cells) and
``paddle.nn.BiRNN(GRUCell, GRUCell)``.

Paddle runs only in an isolated worker process (``adapters.isolation``; the code that imports it
is ``adapters.paddle_gru_worker``), because it can take its process down: this module never
imports paddle. So the "framework object" ``build`` returns is a picklable description
(``PaddleGRU``: configuration, canonical parameters, dtype); ``run`` sends it to the worker, which
builds the real paddle layer, loads the weights, checks it holds them bit for bit, and runs it.
``extract`` and ``describe`` read such a description. A paddle layer object of your own lives in
your process, where this adapter does not load paddle, so it cannot be passed here (a TypeError
says so); read its weights yourself and use ``reference.layouts.from_torch``, which is Paddle's
layout too (below).

Facts this module relies on, from ``paddle/nn/layer/rnn.py`` (paddlepaddle 3.3.1):

- the formula, ``GRUCell`` docstring rnn.py:1158-1160 (and ``GRU`` rnn.py:2143-2145):
  ``h~_t = tanh(W_ic x_t + b_ic + r_t * (W_hc h_{t-1} + b_hc))``, ``h_t = z_t * h_{t-1} + (1 - z_t) * h~_t``:
  z on previous, reset after; ``GRUCell.forward`` computes the same, rnn.py:1317-1323;
- layout, rnn.py:1185-1188: ``weight_ih (3H, I)`` rows r|z|c, ``weight_hh (3H, H)``, ``bias_ih``
  and ``bias_hh (3H,)`` in the same order: the PyTorch layout (rows r, z, n);
- ``bias_ih_attr=False`` / ``bias_hh_attr=False`` still create the bias, as a frozen zero
  (``Constant(0.0)``, ``stop_gradient``), rnn.py:1266-1294: the class holds no b_* / c_* then;
- ``nn.GRU`` is a ``LayerList`` of ``RNN(GRUCell)`` / ``BiRNN(GRUCell, GRUCell)``, rnn.py:1575-1597,
  run by the fused ``rnn`` kernel when every cell has 4 parameters (rnn.py:1600, 1827); its
  states are ``(num_layers * directions, batch, hidden)``, forward at even indices, rnn.py:2188;
- with ``sequence_length`` the fused kernel keeps the state through padding and outputs zeros
  there ("if mask flag is 0, we will return the zero data", ``postprocess`` in
  ``paddle/phi/kernels/cpu/rnn_kernel.cc``); measured here: padded outputs are exactly 0 and
  ``h_last`` is the state after each sequence's last valid step, in both directions;
- ``RNN``/``BiRNN`` with ``sequence_length`` (rnn.py:217-222) keep the state through padding too,
  but their output at a padded step is the cell's output on the padding input (not zero, not the
  carried state), which no ``masked_output`` mode models: no configuration here masks them.

Findings (paddlepaddle 3.3.1, CPU): ``nn.GRU`` with ``bias_ih_attr=False`` or
``bias_hh_attr=False`` cannot run. ``RNNBase.__init__`` names only the parameters whose attr is
not False (rnn.py:1611-1618) but zips those names with *all* parameters (rnn.py:1619), so
``gru.bias_hh_l0`` is the frozen ``bias_ih``, ``gru.weight_ih_l1`` is layer 0's ``bias_hh``, and
``flatten_parameters`` (rnn.py:1640-1644) hands the fused kernel 2 or 3 tensors per cell where it
reads 4 (``vec[3 + offset * 4]`` in rnn_kernel.cc): one layer segfaults (SIGSEGV in
``DenseTensor::check_memory_size``), two layers raise "Tensor holds no memory", two bidirectional
layers raise IndexError while constructing. The crashing rows report the signal; ``RNN(GRUCell)``
with the same bias options runs correctly. The ``nn.GRU`` docstring (rnn.py:2191) gives
``weight_ih_l[k]`` the shape ``[hidden_size, input_size]``; it is ``[3 * hidden_size, input_size]``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from functools import cache

import numpy as np

if importlib.util.find_spec("paddle") is None:
    raise ImportError("the paddle adapter needs PaddlePaddle (pip install paddlepaddle)", name="paddlepaddle")

from reference import Convention, GRUParams, Layers, layouts  # noqa: E402
from reference.params import INPUT_BIASES, RECURRENT_BIASES, check_float_array  # noqa: E402

from . import isolation  # noqa: E402
from .base import Adapter, ForwardResult, LayerConfig, check_build_layers, mask_lengths  # noqa: E402

WORKER = "adapters.paddle_gru_worker"
# Its own marker keeps paddle out of any other adapter's worker; GLOG_minloglevel=2 silences
# paddle's C++ INFO/WARNING log lines; one thread, because the worker forks a child per run.
WORKER_ENV = {"GRU_EQUIV_FRAMEWORK": "paddle", "GLOG_minloglevel": "2", "OMP_NUM_THREADS": "1"}
WORKER_TIMEOUT_S = 180.0  # the worker gives up on a hung child after 120 s and reports it first

CLAIMED = Convention("z_on_previous", "after")
DTYPES = ("float32", "float64")
SOURCE = "paddle/nn/layer/rnn.py"
CELL_CLAIM = (
    f"{SOURCE}:1158-1160 (paddlepaddle 3.3.1), GRUCell docstring: \\widetilde{{h}}_{{t}} = \\tanh(W_{{ic}}x_{{t}} + "
    f"b_{{ic}} + r_{{t}} * (W_{{hc}}h_{{t-1}} + b_{{hc}})); h_{{t}} = z_{{t}} * h_{{t-1}} + (1 - z_{{t}}) * \\widetilde{{h}}_{{t}}"
)
GRU_CLAIM = (
    f"{SOURCE}:2143-2145 (paddlepaddle 3.3.1), GRU docstring: \\widetilde{{h}}_{{t}} = \\tanh(W_{{ic}}x_{{t}} + "
    f"b_{{ic}} + r_{{t}} * (W_{{hc}}h_{{t-1}} + b_{{hc}})); h_{{t}} = z_{{t}} * h_{{t-1}} + (1 - z_{{t}}) * \\widetilde{{h}}_{{t}}"
)
CELL_LAYOUT = (
    "per GRUCell: weight_ih (3H, I) rows r|z|c, weight_hh (3H, H) rows r|z|c, bias_ih (3H,) b_r|b_z|b_h, "
    "bias_hh (3H,) c_r|c_z|c_h (the PyTorch layout; rnn.py:1185-1188)"
)
GRU_LAYOUT = (
    f"{CELL_LAYOUT}; layer k is gru[k].cell, or gru[k].cell_fw / gru[k].cell_bw with direction='bidirect' "
    f"(not the weight_ih_l{{k}} attributes, misnamed when a bias attr is False); "
    f"states (num_layers * directions, batch, hidden), forward at even indices"
)


GRU_DOC_SHAPE = (
    f"the nn.GRU docstring gives weight_ih_l[k] the shape [hidden_size, input_size] ({SOURCE}:2191, paddlepaddle "
    f"3.3.1); it is [3 * hidden_size, input_size] (the three gates stacked), as the class holds it"
)


def _bias_note(bias_ih: bool, bias_hh: bool) -> str:
    absent = [name for name, present in (("bias_ih", bias_ih), ("bias_hh", bias_hh)) if not present]
    return f"; {' and '.join(absent)} frozen at zero (attr=False)" if absent else ""


def _config(name: str, kind: str, bias_ih: bool = True, bias_hh: bool = True, time_major: bool = False,
            **fields) -> LayerConfig:
    biases = (INPUT_BIASES if bias_ih else ()) + (RECURRENT_BIASES if bias_hh else ())
    claim, layout = (GRU_CLAIM, GRU_LAYOUT) if kind == "GRU" else (CELL_CLAIM, CELL_LAYOUT)
    if kind == "BiRNN":
        layout += "; direction 0 is cell_fw, 1 is cell_bw, states (h_fw, h_bw), outputs concatenated fw|bw"
    findings = (GRU_DOC_SHAPE,) if kind == "GRU" else ()
    return LayerConfig(
        documentation_findings=findings,
        framework="paddle", name=name, claimed=CLAIMED, bias=bool(biases), biases=biases,
        claim_source=claim, layout=layout + _bias_note(bias_ih, bias_hh),
        options=(("kind", kind), ("time_major", time_major), ("bias_ih", bias_ih), ("bias_hh", bias_hh)),
        **fields,
    )


@dataclass(frozen=True, eq=False)
class PaddleGRU:
    """A paddle GRU layer as data: built and run in the worker from exactly these parameters."""

    config: LayerConfig
    layers: tuple[tuple[GRUParams, ...], ...]
    dtype: str

    def __repr__(self) -> str:
        first = self.layers[0][0]
        return (f"PaddleGRU({self.config.name}, input_size={first.input_size}, hidden_size={first.hidden_size}, "
                f"dtype={self.dtype})")

    def worker_spec(self) -> dict:
        """Plain data for ``paddle_gru_worker.forward``: switches and packed weights per cell."""
        config = self.config
        bias_ih, bias_hh = config.option("bias_ih"), config.option("bias_hh")
        weights = []
        for layer in self.layers:
            packed_layer = []
            for params in layer:
                packed = layouts.to_torch(params, bias=True)
                if not bias_ih:
                    del packed["bias_ih"]
                if not bias_hh:
                    del packed["bias_hh"]
                packed_layer.append(packed)
            weights.append(packed_layer)
        first = self.layers[0][0]
        return {
            "name": config.name, "kind": config.option("kind"), "dtype": self.dtype,
            "input_size": first.input_size, "hidden_size": first.hidden_size,
            "num_layers": config.num_layers, "bidirectional": config.bidirectional,
            "time_major": config.option("time_major"), "is_reverse": config.reverse,
            "bias_ih": bias_ih, "bias_hh": bias_hh, "weights": weights,
        }


def _dtype_name(dtype) -> str:
    name = np.dtype(dtype).name
    if name not in DTYPES:
        raise ValueError(f"dtype {name} is not supported; use float32 or float64")
    return name


def _check_description(layer) -> PaddleGRU:
    if isinstance(layer, PaddleGRU):
        return layer
    if type(layer).__module__.split(".")[0] == "paddle":
        raise TypeError(
            f"got a paddle {type(layer).__name__} object: this adapter runs paddle only in an isolated worker "
            f"process and cannot read or run a layer living in yours. Take its weights (each GRUCell's "
            f"weight_ih, weight_hh, bias_ih, bias_hh .numpy()) into reference.layouts.from_torch (Paddle's layout "
            f"is PyTorch's: rows r, z, c), then build a configuration with adapters.get('paddle').build"
        )
    raise TypeError(f"expected a PaddleGRU from adapters.get('paddle').build, got {type(layer).__name__}")


class PaddleAdapter(Adapter):
    name = "paddle"

    def versions(self) -> dict[str, str]:
        return {"paddlepaddle": _paddle_version()}

    def configurations(self) -> list[LayerConfig]:
        # Every caller that lists configurations runs some soon: let the worker import paddle meanwhile.
        isolation.start(WORKER_ENV, preload=(WORKER,))
        masked = {"masked": True, "masked_output": "zero"}
        bidirect = {"bidirectional": True}
        return [
            _config("nn.GRU", "GRU"),
            _config("nn.GRU(time_major=True)", "GRU", time_major=True),
            _config("nn.GRU(num_layers=2)", "GRU", num_layers=2),
            _config("nn.GRU(direction='bidirect')", "GRU", **bidirect),
            _config("nn.GRU(num_layers=2, direction='bidirect')", "GRU", num_layers=2, **bidirect),
            _config("nn.GRU(bias_ih_attr=False)", "GRU", bias_ih=False),
            _config("nn.GRU(bias_hh_attr=False)", "GRU", bias_hh=False),
            _config("nn.GRU(bias_ih_attr=False, bias_hh_attr=False)", "GRU", bias_ih=False, bias_hh=False),
            _config("nn.GRU + sequence_length", "GRU", **masked),
            _config("nn.GRU(num_layers=2, direction='bidirect') + sequence_length", "GRU", num_layers=2,
                    **bidirect, **masked),
            _config("nn.GRUCell", "GRUCell"),
            _config("nn.RNN(GRUCell)", "RNN"),
            _config("nn.RNN(GRUCell, is_reverse=True)", "RNN", reverse=True),
            _config("nn.RNN(GRUCell(bias_ih_attr=False))", "RNN", bias_ih=False),
            _config("nn.RNN(GRUCell(bias_hh_attr=False))", "RNN", bias_hh=False),
            _config("nn.BiRNN(GRUCell, GRUCell)", "BiRNN", **bidirect),
        ]

    # ------------------------------------------------------------- building and extracting

    def build(self, config: LayerConfig, layers: Layers, dtype) -> PaddleGRU:
        """A ``PaddleGRU`` description; paddle builds the layer from it in the worker, at ``run``."""
        check_build_layers(config, layers, holds="; an attr=False bias is a frozen zero")
        dtype = _dtype_name(dtype)
        copied = tuple(tuple(params.astype(dtype) for params in layer) for layer in layers)
        return PaddleGRU(config, copied, dtype)

    def extract(self, layer) -> list[list[GRUParams]]:
        """The parameters of a ``PaddleGRU`` (copies). A paddle layer object cannot be read here: see the module docstring."""
        description = _check_description(layer)
        return [[params.astype(params.dtype) for params in directions] for directions in description.layers]

    def describe(self, layer) -> LayerConfig:
        return _check_description(layer).config

    # ------------------------------------------------------------- running

    def run(self, layer, x, h0=None, mask=None) -> ForwardResult:
        description, x, h0, lengths = self._check_run(layer, x, h0, mask)
        result = isolation.call(
            f"{WORKER}:forward", description.worker_spec(), x, h0, lengths, env=WORKER_ENV, timeout=WORKER_TIMEOUT_S
        )
        return ForwardResult(result["outputs"], result["h_last"])

    @staticmethod
    def _check_run(layer, x, h0, mask):
        """``(description, x, h0, lengths)`` once ``run``'s arguments are checked; errors name the bad one."""
        description = _check_description(layer)
        config = description.config
        first = description.layers[0][0]
        x = check_float_array("x", x)
        if x.dtype.name != description.dtype:
            raise TypeError(
                f"x has dtype {x.dtype} but the layer computes in {description.dtype}; pass x.astype(np.{description.dtype})"
            )
        if x.ndim != 3 or x.shape[2] != first.input_size or 0 in x.shape:
            raise ValueError(f"x has shape {x.shape}; expected (batch, time, input_size={first.input_size}), none empty")
        batch = x.shape[0]
        if h0 is not None:
            expected = (config.num_layers * config.directions, batch, first.hidden_size)
            h0 = check_float_array("h0", h0, expected)
            if h0.dtype != x.dtype:
                raise TypeError(f"h0 has dtype {h0.dtype} but the layer computes in {x.dtype}; pass h0.astype(np.{x.dtype})")
        lengths = None
        if mask is not None:
            if config.option("kind") == "GRUCell":
                raise ValueError("nn.GRUCell has no notion of padding; run it without a mask")
            if np.shape(mask) != x.shape[:2]:
                raise ValueError(f"mask has shape {np.shape(mask)}; expected (batch, time) = {x.shape[:2]}")
            lengths = mask_lengths(mask)
        return description, x, h0, lengths

    # ------------------------------------------------------------- differentiating

    def gradients(self, layer, x, h0=None, mask=None, d_outputs=None, d_h_last=None):
        """Paddle's own autograd (``loss.backward()``) of ``sum(outputs * d_outputs) + sum(h_last * d_h_last)``,
        in the worker, contained in a forked child like ``run`` (a crash is ``WorkerCrashed`` with the signal,
        never this process's end); ``paddle_gru_worker._gradients`` says how.

        Each GRUCell's ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh`` gradient maps back through
        ``layouts.from_torch``, the inverse of the ``layouts.to_torch`` that packs the weights (rows r|z|c);
        a bias built with ``attr=False`` is a frozen zero (``stop_gradient``), so its gradient is zeros, as
        for a bias the class lacks (not compared). ``h0=None`` differentiates at zero initial states.
        """
        from reference.backward import StackGradients

        description, x, h0, lengths = self._check_run(layer, x, h0, mask)
        result = isolation.call(
            f"{WORKER}:gradients", description.worker_spec(), x, h0, lengths, d_outputs, d_h_last, env=WORKER_ENV,
            timeout=WORKER_TIMEOUT_S,
        )
        layers = [[layouts.from_torch(*(cell[name] for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")))
                   for cell in layer_cells] for layer_cells in result["cells"]]
        return StackGradients(layers, result["x"], result["h0"])


@cache
def _paddle_version() -> str:
    for distribution in ("paddlepaddle", "paddlepaddle-gpu"):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return isolation.call(f"{WORKER}:version", env=WORKER_ENV, timeout=WORKER_TIMEOUT_S)


ADAPTER = PaddleAdapter()
