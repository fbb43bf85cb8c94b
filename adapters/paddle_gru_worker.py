"""The half of the paddle adapter that imports paddle. It runs only inside an isolated worker
process (``adapters.isolation``), never in the suite's own process; ``adapters.paddle_gru`` sends
it plain data (packed NumPy weights and a few switches) and gets NumPy arrays back.

Each forward pass runs in a child forked from the worker (``run_contained``). Paddle is imported
once, in the worker, which then runs one tiny forward pass of each kind (``_warm_up``: paddle
initialises kernels lazily, and that first use would otherwise cost every child about 25 ms) and
nothing else, so every child starts from the same state. The worker runs single-threaded
(``OMP_NUM_THREADS=1`` from the adapter), so ``fork`` copies no thread pool.
When paddle segfaults or aborts (``nn.GRU(bias_ih_attr=False)`` does, see ``adapters.paddle_gru``)
only the child dies: the call raises ``WorkerCrashed`` with the signal and paddle's own crash
report, and the next configuration runs in the same warm worker instead of paying the import
(about 1.7 s) again.
"""

from __future__ import annotations

import importlib
import os
import pickle
import re
import select
import signal
import tempfile
import time
import traceback
import warnings

import numpy as np

with warnings.catch_warnings():
    # paddle.utils.cpp_extension warns at import that ccache is missing; it compiles nothing here.
    warnings.filterwarnings("ignore", message="No ccache found")
    import paddle

from adapters.isolation import WorkerCrashed, _describe_exit

CHILD_TIMEOUT_S = 120.0
_CRASH_REPORT_CHARS = 3000


def version() -> str:
    return paddle.__version__


def _warm_up() -> None:
    with warnings.catch_warnings(), paddle.no_grad():
        warnings.simplefilter("ignore")
        for dtype in ("float32", "float64"):
            paddle.set_default_dtype(dtype)
            x = paddle.zeros([1, 2, 1], dtype=dtype)
            lengths = paddle.to_tensor(np.array([2], np.int64))
            paddle.nn.GRU(1, 1, direction="bidirect")(x, None, lengths)
            paddle.nn.RNN(paddle.nn.GRUCell(1, 1))(x, None, lengths)
        paddle.set_default_dtype("float32")


# ----------------------------------------------------------------- containment


def run_contained(target: str, *args, label: str | None = None, timeout: float = CHILD_TIMEOUT_S):
    """``module:function(*args)`` in a child forked from this worker; its result, or its exception
    re-raised here, or ``WorkerCrashed`` naming the signal when the child dies."""
    module_name, function_name = target.split(":")
    function = getattr(importlib.import_module(module_name), function_name)
    label = label or target
    with tempfile.TemporaryFile() as log:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            _child(function, args, read_end, write_end, log)
        os.close(write_end)
        try:
            data, finished = _read_until_closed(read_end, timeout)
        finally:
            os.close(read_end)
        if not finished:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        log.seek(0)
        output = log.read().decode("utf-8", "replace")
    if not finished:
        raise WorkerCrashed(label, f"did not answer within {timeout:g} s and was killed", output)
    if code != 0 or not data:
        status = _describe_exit(code) + ("" if code else " without an answer")
        raise WorkerCrashed(label, status, summarize_crash_report(output))
    ok, value = pickle.loads(data)
    if ok:
        return value
    raise value


def summarize_crash_report(output: str) -> str:
    """Paddle's crash report in a few lines: its error summary and the C++ call chain by function
    name (the full report spells out every template and parameter list, thousands of characters)."""
    lines = output.splitlines()
    if "C++ Traceback (most recent call last):" not in output:
        return output[-_CRASH_REPORT_CHARS:]
    start = next(i for i, line in enumerate(lines) if line.startswith("C++ Traceback"))
    frames = []
    for line in lines[start + 1:]:
        match = re.match(r"^\s*(\d+)\s+(\S.*)$", line)
        if match:
            frames.append(_function_name(match.group(2)))
        elif line.startswith("Error Message Summary"):
            break
    # Not paddle's [SignalInfo] line: its PID and address differ per run, and reports must not.
    summary = [line.strip() for line in lines[start:] if re.match(r"^\s*(FatalError|\w+Error:)", line)]
    chain = " -> ".join(frames)
    return "\n".join([*summary, f"C++ call chain (outermost first): {chain}"])[-_CRASH_REPORT_CHARS:]


def _function_name(signature: str) -> str:
    """``void ns::f<T, U>(args) const`` -> ``ns::f<T, U>``; long template arguments become ``<...>``."""
    depth, name, template = 0, [], []
    for char in signature:
        if char == "(" and depth == 0:
            break
        if char == " " and depth == 0:
            name = []  # what came before was the return type
            continue
        if char == "<":
            depth += 1
            if depth == 1:
                template = []
                continue
        elif char == ">":
            depth -= 1
            if depth == 0:
                arguments = "".join(template)
                name.append(f"<{arguments}>" if len(arguments) <= 40 else "<...>")
                continue
        (template if depth else name).append(char)
    return "".join(name)


def _child(function, args, read_end: int, write_end: int, log) -> None:
    """Never returns: the child must not run the worker's serving loop or its exit handlers."""
    try:
        os.close(read_end)
        # Paddle's crash handler prints its C++ stack on fd 2: keep it for the crash report.
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            data = pickle.dumps((True, function(*args)))
        except BaseException as error:  # everything goes back to the worker, then to the caller
            data = pickle.dumps((False, _portable(error)))
        view = memoryview(data)
        while view:
            view = view[os.write(write_end, view):]
    finally:
        os._exit(0)


def _portable(error: BaseException) -> BaseException:
    """``error`` if it survives a pickle round trip, else a RuntimeError carrying its text."""
    text = traceback.format_exc()
    try:
        pickle.loads(pickle.dumps(error))
        portable = error
    except Exception:
        portable = RuntimeError(f"{type(error).__name__}: {error}")
    portable.add_note(f"(raised in a paddle child process)\n{text}")
    return portable


def _read_until_closed(fd: int, timeout: float) -> tuple[bytes, bool]:
    chunks = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return b"".join(chunks), False
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)


# ----------------------------------------------------------------- building and running paddle layers


def forward(spec: dict, x: np.ndarray, h0: np.ndarray | None, lengths: np.ndarray | None) -> dict:
    """Build the layer ``spec`` describes, load its weights, run it; contained in a child."""
    return run_contained("adapters.paddle_gru_worker:_forward", spec, x, h0, lengths, label=f"paddle {spec['name']}")


def _forward(spec: dict, x: np.ndarray, h0: np.ndarray | None, lengths: np.ndarray | None) -> dict:
    warnings.simplefilter("ignore")  # paddle's own deprecation notices (sequence_mask) are noise in a report
    paddle.set_default_dtype(spec["dtype"])
    layer, cells = _build(spec)
    layer.eval()
    _load(cells, spec["weights"], spec["dtype"])
    with paddle.no_grad():
        outputs, h_last = _run(spec, layer, x, h0, lengths)
    return {"outputs": outputs, "h_last": h_last}


def parameters_by_name(spec: dict) -> dict[str, np.ndarray]:
    """The loaded layer's own parameters under paddle's own names (for ``nn.GRU``: the
    ``weight_ih_l{k}`` ... attributes, rnn.py:1611-1620), to check the layout against them."""
    return run_contained("adapters.paddle_gru_worker:_parameters_by_name", spec, label=f"paddle {spec['name']}")


def _parameters_by_name(spec: dict) -> dict[str, np.ndarray]:
    paddle.set_default_dtype(spec["dtype"])
    layer, cells = _build(spec)
    _load(cells, spec["weights"], spec["dtype"])
    own = spec["kind"] == "GRU"  # nn.GRU re-exposes its cells' parameters as its own attributes
    return {name: parameter.numpy() for name, parameter in layer.named_parameters(include_sublayers=not own)}


def _bias_attrs(spec: dict) -> dict:
    # None is paddle's default (a trainable bias); False makes it a frozen zero.
    return {"bias_ih_attr": None if spec["bias_ih"] else False, "bias_hh_attr": None if spec["bias_hh"] else False}


def _build(spec: dict):
    """The paddle layer and its GRUCells as ``cells[layer][direction]``."""
    nn = paddle.nn
    kind, input_size, hidden_size = spec["kind"], spec["input_size"], spec["hidden_size"]
    attrs = _bias_attrs(spec)
    if kind == "GRU":
        layer = nn.GRU(
            input_size, hidden_size, num_layers=spec["num_layers"],
            direction="bidirect" if spec["bidirectional"] else "forward", time_major=spec["time_major"], **attrs,
        )
        # Through the sublayers, not the weight_ih_l{k} attributes: rnn.py:1611-1620 names them
        # wrongly when a bias attr is False.
        cells = [[sub.cell_fw, sub.cell_bw] if isinstance(sub, nn.BiRNN) else [sub.cell] for sub in layer]
        return layer, cells
    if kind == "GRUCell":
        cell = nn.GRUCell(input_size, hidden_size, **attrs)
        return cell, [[cell]]
    if kind == "RNN":
        cell = nn.GRUCell(input_size, hidden_size, **attrs)
        return nn.RNN(cell, is_reverse=spec["is_reverse"], time_major=spec["time_major"]), [[cell]]
    if kind == "BiRNN":
        forward_cell = nn.GRUCell(input_size, hidden_size, **attrs)
        backward_cell = nn.GRUCell(input_size, hidden_size, **attrs)
        return nn.BiRNN(forward_cell, backward_cell, time_major=spec["time_major"]), [[forward_cell, backward_cell]]
    raise ValueError(f"unknown paddle layer kind {kind!r}; valid: GRU, GRUCell, RNN, BiRNN")


def _load(cells, weights, dtype: str) -> None:
    """Copy each packed array into its parameter and read it back: what paddle holds is exactly
    what was asked, in the asked dtype, or the run stops here naming the parameter."""
    for index, (layer_cells, layer_weights) in enumerate(zip(cells, weights, strict=True)):
        for direction, (cell, packed) in enumerate(zip(layer_cells, layer_weights, strict=True)):
            for name, array in packed.items():
                parameter = getattr(cell, name)
                where = f"layer {index} direction {direction} {name}"
                if tuple(parameter.shape) != array.shape:
                    raise ValueError(f"paddle's {where} has shape {tuple(parameter.shape)}, the weights {array.shape}")
                parameter.set_value(array)
                held = parameter.numpy()
                if held.dtype != np.dtype(dtype) or not np.array_equal(held, array):
                    raise TypeError(f"paddle's {where} holds {held.dtype} values that differ from the {dtype} weights loaded")


def _run(spec: dict, layer, x: np.ndarray, h0: np.ndarray | None, lengths: np.ndarray | None):
    """(outputs (batch, time, features), h_last (layers * directions, batch, hidden)) as NumPy."""
    state = None if h0 is None else paddle.to_tensor(h0)
    outputs, h_last = _run_tensors(spec, layer, paddle.to_tensor(x), state, lengths)
    return np.ascontiguousarray(outputs.numpy()), h_last.numpy()


def _run_tensors(spec: dict, layer, x, state, lengths: np.ndarray | None):
    """``_run`` on paddle tensors ``x (batch, time, input)`` and ``state`` (or None): ``(outputs (batch, time,
    features), h_last (layers * directions, batch, hidden))`` as tensors, so autograd can follow them."""
    kind, time_major = spec["kind"], spec["time_major"]
    inputs = paddle.transpose(x, [1, 0, 2]) if time_major else x
    sequence_length = None if lengths is None else paddle.to_tensor(lengths.astype(np.int64))
    if kind == "GRUCell":
        h = None if state is None else state[0]
        outputs = []
        for t in range(x.shape[1]):
            out, h = layer(inputs[t] if time_major else inputs[:, t], h)
            outputs.append(out)
        return paddle.stack(outputs, axis=1), h.unsqueeze(0)
    if kind == "GRU":
        out, h_last = layer(inputs, state, sequence_length)
    elif kind == "RNN":
        out, h = layer(inputs, None if state is None else state[0], sequence_length)
        h_last = h.unsqueeze(0)
    else:  # BiRNN
        out, (h_forward, h_backward) = layer(inputs, None if state is None else (state[0], state[1]), sequence_length)
        h_last = paddle.stack([h_forward, h_backward])
    if time_major:
        out = paddle.transpose(out, [1, 0, 2])
    return out, h_last


# ----------------------------------------------------------------- gradients through paddle's autograd


def gradients(spec: dict, x: np.ndarray, h0: np.ndarray | None, lengths: np.ndarray | None,
              d_outputs: np.ndarray | None, d_h_last: np.ndarray | None) -> dict:
    """Paddle's own autograd of ``sum(outputs * d_outputs) + sum(h_last * d_h_last)``; contained in a child."""
    return run_contained("adapters.paddle_gru_worker:_gradients", spec, x, h0, lengths, d_outputs, d_h_last,
                         label=f"paddle {spec['name']} (gradients)")


GRADIENT_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def _gradients(spec: dict, x: np.ndarray, h0: np.ndarray | None, lengths: np.ndarray | None,
               d_outputs: np.ndarray | None, d_h_last: np.ndarray | None) -> dict:
    """``loss.backward()`` on a freshly built layer holding the spec's weights, in training mode, as paddle
    differentiates a layer (``nn.GRU`` passes ``is_test = not self.training`` to the fused ``rnn`` op,
    paddle/nn/layer/rnn.py:1750; dropout is 0, so the forward computes what ``_forward``'s does). Returns
    ``{"cells": [[{name: gradient}]], "x", "h0"}``: every GRUCell's ``weight_ih``,
    ``weight_hh``, ``bias_ih``, ``bias_hh`` gradient (an ``attr=False`` bias is frozen, ``stop_gradient``: zeros),
    read through the cells as ``_load`` writes them."""
    warnings.simplefilter("ignore")
    dtype = spec["dtype"]
    paddle.set_default_dtype(dtype)
    layer, cells = _build(spec)
    _load(cells, spec["weights"], dtype)
    layer.train()
    if h0 is None:
        h0 = np.zeros((spec["num_layers"] * (2 if spec["bidirectional"] else 1), x.shape[0], spec["hidden_size"]),
                      dtype)
    x_t = paddle.to_tensor(x, stop_gradient=False)
    h0_t = paddle.to_tensor(h0, stop_gradient=False)
    outputs, h_last = _run_tensors(spec, layer, x_t, h0_t, lengths)
    loss = paddle.zeros([], dtype=dtype)
    if d_outputs is not None:
        loss = loss + (outputs * paddle.to_tensor(np.asarray(d_outputs, dtype))).sum()
    if d_h_last is not None:
        loss = loss + (h_last * paddle.to_tensor(np.asarray(d_h_last, dtype))).sum()
    loss.backward()

    def gradient(tensor) -> np.ndarray:
        return np.zeros(tuple(tensor.shape), dtype) if tensor.grad is None else np.array(tensor.grad.numpy())

    return {
        "cells": [[{name: gradient(getattr(cell, name)) for name in GRADIENT_NAMES} for cell in layer_cells]
                  for layer_cells in cells],
        "x": gradient(x_t), "h0": gradient(h0_t),
    }


# ----------------------------------------------------------------- for tests of the containment itself


def crash_with(signal_name: str) -> None:
    """Kill the calling process with ``signal_name`` (``SIGSEGV``, ``SIGABRT``): a planted crash."""
    os.kill(os.getpid(), getattr(signal, signal_name))


_warm_up()
